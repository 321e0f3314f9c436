package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/hashicorp/raft"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

// Exec sessions (see the protocol in api/exec.go) take this path:
//
//	CLI ──upgrade, token──▶ entry node
//	  worker: splices the connection to a live voter (it has no state)
//	  voter:  authenticates the token (admins only), finds the instance's node in
//	          the state; runs the exec itself if the container is local, else
//	          splices the connection to the node's internal endpoint with its
//	          own certificate (the user's token does not travel further)
//	  node:   /v1/internal/containers/<name>/exec (a voter's certificate only):
//	          Docker exec create + attach, then frames ⇄ the process
//
// A node in the middle never parses frames: once both upgrades are answered
// it copies bytes both ways, with no deadline, and closes both sides when
// either ends.

// Upgrade answers must come within these bounds; the session itself has
// no deadline.
const (
	execDialTimeout    = 3 * time.Second
	execUpgradeTimeout = 40 * time.Second
)

// serveExec is the user-facing exec endpoint on every node. It passes the
// same steps as wrap (forward to a voter, catch up, authenticate) but
// forwards the upgraded connection instead of a whole body.
func (n *Node) serveExec(w http.ResponseWriter, r *http.Request) {
	if !api.IsExecUpgrade(r.Header) {
		writeErr(w, api.Errorf(api.CodeInvalid, "exec needs an HTTP/1.1 upgrade to %q (use `kontena container exec`)", api.ExecUpgrade))
		return
	}
	rn := n.voter()
	if rn == nil {
		n.proxyUpgrade(w, r, n.voterTargets(), r.URL.RequestURI(), true)
		return
	}
	if !n.caughtUp(rn) {
		n.upgradeToLeader(w, r, rn)
		return
	}
	p, err := n.authenticate(r, rn.store)
	if err != nil {
		if leader, _ := rn.raft.LeaderWithID(); leader != "" && rn.raft.State() != raft.Leader {
			n.upgradeToLeader(w, r, rn)
			return
		}
		writeErr(w, err)
		return
	}
	if !p.admin() {
		writeErr(w, api.Errorf(api.CodeForbidden, "exec needs the master_admin or grid_admin role; %s has %v", p.User, p.Roles))
		return
	}
	opts, err := api.ParseExecQuery(r.URL.Query())
	if err != nil {
		writeErr(w, err)
		return
	}
	l, err := locateLive(rn.store, r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	// The command line may hold secrets: only its program is logged.
	n.log.Info("exec session", "user", p.User, "source", sourceIP(r), "container", l.name, "node", l.node.Name,
		"program", opts.Cmd[0], "tty", opts.Tty, "stdin", opts.Stdin)
	if l.node.ID == n.id.ID {
		n.execLocal(w, r)
		return
	}
	path := "/v1/internal/containers/" + url.PathEscape(l.name) + "/exec?" + r.URL.RawQuery
	n.proxyUpgrade(w, r, []string{l.addr()}, path, false)
}

// serveContainerExec is the internal endpoint: it runs the exec on this
// node's engine. Only a voter calls it, after checking the user's token.
func (n *Node) serveContainerExec(w http.ResponseWriter, r *http.Request) {
	peer := peerNode(r)
	if m, ok := n.gossip.members()[peer]; !ok || m.Meta.Role != fsm.RoleVoter {
		writeErr(w, api.Errorf(api.CodeForbidden, "internal exec: only a voter (which checks the user's token) may open exec sessions; node %s is not one", peer))
		return
	}
	if !api.IsExecUpgrade(r.Header) {
		writeErr(w, api.Errorf(api.CodeInvalid, "exec needs an HTTP/1.1 upgrade to %q", api.ExecUpgrade))
		return
	}
	n.execLocal(w, r)
}

// execLocal starts the process in a container of this node, answers the
// upgrade and runs the session until the process ends or the client leaves.
func (n *Node) execLocal(w http.ResponseWriter, r *http.Request) {
	opts, err := api.ParseExecQuery(r.URL.Query())
	if err != nil {
		writeErr(w, err)
		return
	}
	name := r.PathValue("name")
	cli, err := dockerClient()
	if err != nil {
		writeErr(w, err)
		return
	}
	defer cli.Close()
	// The request's context lives as long as this handler, so for the
	// whole session even after the hijack.
	ctx := r.Context()
	ins, err := n.managedContainer(ctx, cli, name)
	if err != nil {
		writeErr(w, err)
		return
	}
	if ins.State == nil || !ins.State.Running {
		state := "unknown"
		if ins.State != nil {
			state = string(ins.State.Status)
		}
		writeErr(w, api.Errorf(api.CodeConflict, "container %s is not running (%s); see `kontena container ls`", name, state))
		return
	}
	var size *[2]uint
	if opts.Tty && opts.Cols > 0 && opts.Rows > 0 {
		size = &[2]uint{uint(opts.Rows), uint(opts.Cols)}
	}
	ex, err := cli.ContainerExecCreate(ctx, ins.ID, container.ExecOptions{Cmd: opts.Cmd, Tty: opts.Tty, ConsoleSize: size,
		AttachStdin: opts.Stdin, AttachStdout: true, AttachStderr: true})
	if err != nil {
		writeErr(w, api.Errorf(api.CodeInternal, "exec in %s on node %s: %v", name, n.id.Name, err))
		return
	}
	att, err := cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{Tty: opts.Tty, ConsoleSize: size})
	if err != nil {
		writeErr(w, api.Errorf(api.CodeInternal, "start exec in %s on node %s: %v", name, n.id.Name, err))
		return
	}
	defer att.Close()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		writeErr(w, api.Errorf(api.CodeInternal, "exec: cannot take over the connection: %v", err))
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, api.SwitchingProtocols); err != nil {
		return
	}
	if size != nil {
		// Engines before API 1.42 ignore ConsoleSize: set the size once
		// the process runs, as the docker CLI does, and before any input
		// reaches it (a program reading its terminal size at once, or
		// typed-ahead input, must see the right one).
		initExecSize(ctx, cli, ex.ID, container.ResizeOptions{Height: size[0], Width: size[1]})
	}
	start := time.Now()
	runExecSession(brw.Reader, conn, execProcess{
		output: att.Reader,
		tty:    opts.Tty,
		stdin:  att.Conn,
		closeStdin: func() error {
			return att.CloseWrite()
		},
		resize: func(cols, rows uint16) error {
			return cli.ContainerExecResize(ctx, ex.ID, container.ResizeOptions{Width: uint(cols), Height: uint(rows)})
		},
		exitCode: func() (int, error) { return execExitCode(ctx, cli, ex.ID) },
		close:    att.Close,
	})
	n.log.Debug("exec session ended", "container", name, "took", time.Since(start).Round(time.Millisecond))
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

// execExitCode waits (briefly) for the exec's process to be reaped: the
// output ends a moment before.
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

// execProcess is a started exec as the session sees it (Docker in
// production, pipes in tests).
type execProcess struct {
	output     io.Reader // Docker's multiplexed stream, or the raw terminal with tty
	tty        bool
	stdin      io.Writer
	closeStdin func() error
	resize     func(cols, rows uint16) error
	exitCode   func() (int, error)
	close      func() // ends the streams (the client left)
}

// runExecSession moves frames between the client (in, out) and the
// process until the process's output ends, then sends its exit code.
func runExecSession(in io.Reader, out io.Writer, p execProcess) {
	send := api.NewFrameSender(out)
	left := make(chan struct{}) // closed before the streams are, so the output loop knows why it ended
	go func() {
		for {
			typ, payload, err := api.ReadFrame(in)
			if err != nil {
				close(left)
				p.close() // the client left: end the process's streams
				return
			}
			switch typ {
			case api.FrameStdin:
				if len(payload) == 0 {
					_ = p.closeStdin()
					continue
				}
				_, _ = p.stdin.Write(payload) // a process that closed its stdin drops input, like a pipe
			case api.FrameResize:
				if cols, rows, err := api.ParseResize(payload); err == nil && p.tty && cols > 0 && rows > 0 {
					_ = p.resize(cols, rows)
				}
			}
		}
	}()
	var err error
	if p.tty {
		_, err = io.Copy(send.Writer(api.FrameStdout), p.output)
	} else {
		_, err = stdcopy.StdCopy(send.Writer(api.FrameStdout), send.Writer(api.FrameStderr), p.output)
	}
	select {
	case <-left:
		return
	default:
	}
	if err != nil {
		_ = send.Send(api.FrameError, []byte("reading the process's output: "+err.Error()))
		return
	}
	code, err := p.exitCode()
	if err != nil {
		_ = send.Send(api.FrameError, []byte(err.Error()))
		return
	}
	_ = send.Send(api.FrameExit, api.ExitPayload(code))
}

// proxyUpgrade forwards an upgrade request to the first target that can
// be dialled, with this node's certificate, and once the target switched
// protocols splices the two connections. keepToken forwards the caller's
// bearer token (to a voter that must check it); the hop to the node that
// runs the container goes without it.
func (n *Node) proxyUpgrade(w http.ResponseWriter, r *http.Request, targets []string, path string, keepToken bool) {
	hops, _ := strconv.Atoi(r.Header.Get(api.HeaderHops))
	if hops >= 3 {
		writeErr(w, api.Errorf(api.CodeUnavailable, "exec forwarded too many times (leadership is changing); retry"))
		return
	}
	if len(targets) == 0 {
		writeErr(w, api.Errorf(api.CodeUnavailable, "this worker cannot see any voter through gossip"))
		return
	}
	hdr := r.Header.Clone()
	hdr.Set(api.HeaderHops, strconv.Itoa(hops+1))
	hdr.Set(api.HeaderForwardedBy, n.id.ID)
	hdr.Set(api.HeaderSourceIP, sourceIP(r))
	hdr.Del(api.HeaderCallerNode)
	if id := callerNode(r); id != "" {
		hdr.Set(api.HeaderCallerNode, id)
	}
	if !keepToken {
		hdr.Del("Authorization")
	}
	var lastErr error
	for _, t := range targets {
		backend, err := api.DialTLS(r.Context(), t, n.clientTLS, execDialTimeout)
		if err != nil {
			lastErr = err
			continue
		}
		br, resp, err := api.Upgrade(r.Context(), backend, r.Method, api.BaseURL(t)+path, hdr, execUpgradeTimeout-time.Duration(hops)*5*time.Second)
		if err != nil {
			backend.Close()
			writeErr(w, api.Errorf(api.CodeUnavailable, "node %s did not start the exec session: %v", t, err))
			return
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			for k, v := range resp.Header {
				w.Header()[k] = v
			}
			w.WriteHeader(resp.StatusCode)
			_, _ = io.Copy(w, io.LimitReader(resp.Body, 1<<20))
			backend.Close()
			return
		}
		client, cbrw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			backend.Close()
			writeErr(w, api.Errorf(api.CodeInternal, "exec: cannot take over the connection: %v", err))
			return
		}
		_ = client.SetDeadline(time.Time{})
		if _, err := io.WriteString(client, api.SwitchingProtocols); err != nil {
			client.Close()
			backend.Close()
			return
		}
		splice(client, cbrw.Reader, backend, br)
		return
	}
	writeErr(w, api.Errorf(api.CodeUnavailable, "could not reach %s: %v", strings.Join(targets, ", "), lastErr))
}

// splice copies a⇄b (reading through ar and br, which may hold buffered
// bytes) until either side ends, then closes both.
func splice(a net.Conn, ar io.Reader, b net.Conn, br io.Reader) {
	done := make(chan struct{}, 2)
	cp := func(dst net.Conn, src io.Reader) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go cp(b, ar)
	go cp(a, br)
	<-done
	a.Close()
	b.Close()
	<-done
}

// voterTargets are the API addresses of the live voters gossip knows.
func (n *Node) voterTargets() []string {
	var targets []string
	for _, m := range n.gossip.members() {
		if m.Meta.Role == fsm.RoleVoter && m.ID != n.id.ID {
			targets = append(targets, m.apiAddr())
		}
	}
	slices.Sort(targets)
	return targets
}

// upgradeToLeader forwards an exec upgrade to the leader (this voter's
// state cannot answer yet).
func (n *Node) upgradeToLeader(w http.ResponseWriter, r *http.Request, rn *raftNode) {
	_, id := rn.raft.LeaderWithID()
	if id == "" {
		writeErr(w, api.Errorf(api.CodeUnavailable, "no leader: this node cannot reach a majority of the voters (see `kontena grid health`)"))
		return
	}
	target := ""
	if node, err := rn.store.Node(string(id)); err == nil {
		target = net.JoinHostPort(node.Addr, strconv.Itoa(node.APIPort))
	} else if m, ok := n.gossip.members()[string(id)]; ok {
		target = m.apiAddr()
	}
	if target == "" {
		writeErr(w, api.Errorf(api.CodeUnavailable, "leader %s is not known yet; retry", id))
		return
	}
	n.proxyUpgrade(w, r, []string{target}, r.URL.RequestURI(), true)
}
