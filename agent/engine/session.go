package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// What the node's container endpoints (inspect, stats, logs, exec) ask of
// the engine. Node certificates do not open the whole engine: those
// endpoints reach only the agent's containers (InspectManaged).

// ErrNotManaged is InspectManaged's answer for a container that does not
// exist or is not the agent's (of this node).
var ErrNotManaged = errors.New("not a container of this node's agent")

// InspectManaged inspects container name if it is labelled LabelManaged and,
// when nodeID is not empty, was made by that node's agent (or carries no
// node label). Any other container is ErrNotManaged; other errors are the
// engine's.
func (e *Engine) InspectManaged(ctx context.Context, name, nodeID string) (container.InspectResponse, error) {
	ins, err := e.cli.ContainerInspect(ctx, name)
	if err != nil && !cerrdefs.IsNotFound(err) {
		return ins, err
	}
	if err != nil || ins.ContainerJSONBase == nil || ins.Config == nil || ins.Config.Labels[LabelManaged] != "true" ||
		(nodeID != "" && ins.Config.Labels[LabelNode] != "" && ins.Config.Labels[LabelNode] != nodeID) {
		return ins, ErrNotManaged
	}
	return ins, nil
}

// StatsSampleGap is the time between the two samples CPU % is computed
// from (a one-shot sample carries no previous CPU reading).
const StatsSampleGap = 500 * time.Millisecond

// SampleStats returns a CPU reading and a later sample of container id, at
// least StatsSampleGap apart. A one-shot sample carries no previous
// reading, so it takes two (or three): some engines (API 1.41) pace
// one-shot reads by their 1 s stats collector, which is gap enough; newer
// ones answer at once, and then the second read waits. An engine that does
// not answer is an error IsUnavailable recognises.
func (e *Engine) SampleStats(ctx context.Context, id string) (container.CPUStats, *container.StatsResponse, error) {
	first, err := e.oneShotStats(ctx, id)
	if err != nil {
		return container.CPUStats{}, nil, err
	}
	if first.PreCPUStats.SystemUsage != 0 {
		return first.PreCPUStats, first, nil
	}
	cur, err := e.oneShotStats(ctx, id)
	if err != nil {
		return container.CPUStats{}, nil, err
	}
	if gap := cur.Read.Sub(first.Read); gap < StatsSampleGap {
		select {
		case <-ctx.Done():
			return container.CPUStats{}, nil, ctx.Err()
		case <-time.After(StatsSampleGap - max(gap, 0)):
		}
		if cur, err = e.oneShotStats(ctx, id); err != nil {
			return container.CPUStats{}, nil, err
		}
	}
	return first.CPUStats, cur, nil
}

func (e *Engine) oneShotStats(ctx context.Context, id string) (*container.StatsResponse, error) {
	rd, err := e.cli.ContainerStatsOneShot(ctx, id)
	if err != nil {
		return nil, unavailable{fmt.Errorf("read stats of %s: %v", id[:min(12, len(id))], err)}
	}
	defer rd.Body.Close()
	var s container.StatsResponse
	if err := json.NewDecoder(rd.Body).Decode(&s); err != nil {
		return nil, fmt.Errorf("decode stats of %s: %w", id[:min(12, len(id))], err)
	}
	return &s, nil
}

// LogOptions selects what Logs streams.
type LogOptions struct {
	Follow bool
	Tail   int    // the last Tail lines; 0: the whole log
	Since  string // as docker logs --since
	Tty    bool   // the container has a terminal: its log is not multiplexed
}

// LogStream is a container's log, one "timestamp message" line per log
// line.
type LogStream struct {
	rc  io.ReadCloser
	tty bool
}

// Logs opens container name's log, stdout and stderr together, with
// timestamps.
func (e *Engine) Logs(ctx context.Context, name string, o LogOptions) (*LogStream, error) {
	tail := "all" // Tail 0 means the whole log; Docker's "0" means none
	if o.Tail > 0 {
		tail = strconv.Itoa(o.Tail)
	}
	rc, err := e.cli.ContainerLogs(ctx, name, container.LogsOptions{ShowStdout: true, ShowStderr: true,
		Timestamps: true, Follow: o.Follow, Tail: tail, Since: o.Since})
	if err != nil {
		return nil, err
	}
	return &LogStream{rc: rc, tty: o.Tty}, nil
}

// CopyTo writes the log to w until it ends (or, following, until the
// request's context ends).
func (s *LogStream) CopyTo(w io.Writer) error {
	if s.tty {
		_, err := io.Copy(w, s.rc)
		return err
	}
	_, err := stdcopy.StdCopy(w, w, s.rc)
	return err
}

// Close ends the stream.
func (s *LogStream) Close() error { return s.rc.Close() }

// ExecOptions is the process an interactive exec session starts.
type ExecOptions struct {
	Cmd   []string
	Tty   bool
	Stdin bool
	// Size is the terminal's [rows, cols] (with Tty), nil when unknown.
	Size *[2]uint
}

// Exec is an exec process created in a container.
type Exec struct {
	e    *Engine
	id   string
	opts ExecOptions
	att  types.HijackedResponse
}

// CreateExec creates (does not start) an exec process in running container
// containerID.
func (e *Engine) CreateExec(ctx context.Context, containerID string, o ExecOptions) (*Exec, error) {
	ex, err := e.cli.ContainerExecCreate(ctx, containerID, container.ExecOptions{Cmd: o.Cmd, Tty: o.Tty, ConsoleSize: o.Size,
		AttachStdin: o.Stdin, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return nil, err
	}
	return &Exec{e: e, id: ex.ID, opts: o}, nil
}

// ID is the engine's exec ID.
func (x *Exec) ID() string { return x.id }

// Start starts the process attached to its streams (Output, Stdin). The
// streams ignore ctx: Close them.
func (x *Exec) Start(ctx context.Context) error {
	att, err := x.e.cli.ContainerExecAttach(ctx, x.id, container.ExecAttachOptions{Tty: x.opts.Tty, ConsoleSize: x.opts.Size})
	if err != nil {
		return err
	}
	x.att = att
	return nil
}

// Output is the process's output: Docker's multiplexed stream
// (stdcopy), or the raw terminal with Tty.
func (x *Exec) Output() io.Reader { return x.att.Reader }

// Stdin is the process's input.
func (x *Exec) Stdin() net.Conn { return x.att.Conn }

// CloseStdin closes the process's input (end of file), keeping its output.
func (x *Exec) CloseStdin() error { return x.att.CloseWrite() }

// Close ends the process's streams.
func (x *Exec) Close() { x.att.Close() }

// Resize sets the process's terminal size.
func (x *Exec) Resize(ctx context.Context, cols, rows uint) error {
	return x.e.cli.ContainerExecResize(ctx, x.id, container.ResizeOptions{Width: cols, Height: rows})
}

// InitSize sets the terminal size the exec was created with once the
// process runs, retrying while the engine has not started it yet: engines
// before API 1.42 ignore the size given at creation. Call it before any
// input reaches the process (a program reading its terminal size at once,
// or typed-ahead input, must see the right one).
func (x *Exec) InitSize(ctx context.Context) {
	if x.opts.Size == nil {
		return
	}
	initExecSize(ctx, x.e.cli, x.id, container.ResizeOptions{Height: x.opts.Size[0], Width: x.opts.Size[1]})
}

// initExecSize sets a new exec's terminal size, retrying while the engine
// has not started the process yet.
func initExecSize(ctx context.Context, cli interface {
	ContainerExecResize(context.Context, string, container.ResizeOptions) error
}, id string, size container.ResizeOptions) {
	for i := range 10 {
		if cli.ContainerExecResize(ctx, id, size) == nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(i+1) * 10 * time.Millisecond):
		}
	}
}

// ExitCode waits (briefly) for the process to be reaped, which happens a
// moment after its output ends, and returns its exit code.
func (x *Exec) ExitCode(ctx context.Context) (int, error) {
	return execExitCode(ctx, x.e.cli, x.id)
}

func execExitCode(ctx context.Context, cli interface {
	ContainerExecInspect(context.Context, string) (container.ExecInspect, error)
}, id string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		ins, err := cli.ContainerExecInspect(ctx, id)
		if err != nil {
			return -1, fmt.Errorf("read the exit code: %w", err)
		}
		if !ins.Running {
			return ins.ExitCode, nil
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("the process still runs after its output ended")
		case <-time.After(20 * time.Millisecond):
		}
	}
}
