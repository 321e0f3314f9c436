package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/docker/docker/pkg/stdcopy"
)

func managedFilter() filters.Args {
	return filters.NewArgs(filters.Arg("label", LabelManaged+"=true"))
}

// ListManaged inspects every container labelled LabelManaged=true, running
// or not (a container removed meanwhile is left out).
func (e *Engine) ListManaged(ctx context.Context) ([]container.InspectResponse, error) {
	list, err := e.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: managedFilter()})
	if err != nil {
		return nil, err
	}
	out := make([]container.InspectResponse, 0, len(list))
	for _, s := range list {
		// List lacks StartedAt and the exit code: inspect each (~1 ms).
		ins, err := e.cli.ContainerInspect(ctx, s.ID)
		if cerrdefs.IsNotFound(err) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("inspect %s: %w", s.ID, err)
		}
		out = append(out, ins)
	}
	return out, nil
}

// InspectImage returns nil when image ref is on the engine, an error that
// cerrdefs.IsNotFound recognises when it is not.
func (e *Engine) InspectImage(ctx context.Context, ref string) error {
	_, err := e.cli.ImageInspect(ctx, ref)
	return err
}

// PullImage pulls ref and returns once the engine has it, or with the
// failure the engine reported.
func (e *Engine) PullImage(ctx context.Context, ref string) error {
	rc, err := e.cli.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		return err
	}
	defer rc.Close()
	// The engine reports progress and failure as a JSON stream; the pull is
	// done when the stream ends.
	dec := json.NewDecoder(rc)
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		if m.Error != nil {
			return errors.New(m.Error.Message)
		}
	}
}

// CreateVolume creates a named volume; the engine returns the existing one
// when the name is taken by the same driver, so this is idempotent.
func (e *Engine) CreateVolume(ctx context.Context, name, driver string, labels map[string]string) error {
	_, err := e.cli.VolumeCreate(ctx, volume.CreateOptions{Name: name, Driver: driver, Labels: labels})
	return err
}

// CreateContainer creates (does not start) container name and returns its
// ID and the engine's warnings. A taken name is an error cerrdefs.IsConflict
// recognises.
func (e *Engine) CreateContainer(ctx context.Context, name string, cfg *container.Config, hc *container.HostConfig,
	nc *network.NetworkingConfig) (id string, warnings []string, err error) {
	resp, err := e.cli.ContainerCreate(ctx, cfg, hc, nc, nil, name)
	if err != nil {
		return "", nil, err
	}
	return resp.ID, resp.Warnings, nil
}

// StartContainer starts a created or stopped container.
func (e *Engine) StartContainer(ctx context.Context, id string) error {
	return e.cli.ContainerStart(ctx, id, container.StartOptions{})
}

// StopContainer stops with the container's own stop signal and timeout,
// then SIGKILL. A container that is gone is stopped.
func (e *Engine) StopContainer(ctx context.Context, id string) error {
	// No options: the engine uses the container's StopSignal and StopTimeout
	// (API 1.41 cannot pass a signal to stop anyway).
	err := e.cli.ContainerStop(ctx, id, container.StopOptions{})
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	return err
}

// RemoveContainer removes a container, running or not, with its anonymous
// volumes. A container that is gone is removed.
func (e *Engine) RemoveContainer(ctx context.Context, id string) error {
	err := e.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	return err
}

// Exec runs cmd in running container id, writes its stdout and stderr to
// out, and returns its exit code once the engine has reaped it.
func (e *Engine) Exec(ctx context.Context, id string, cmd []string, out io.Writer) (int, error) {
	ex, err := e.cli.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return -1, fmt.Errorf("exec create: %w", err)
	}
	att, err := e.cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return -1, fmt.Errorf("exec start: %w", err)
	}
	defer att.Close()
	// The hijacked connection ignores ctx: close it when ctx ends.
	stop := context.AfterFunc(ctx, att.Close)
	defer stop()
	if _, err := stdcopy.StdCopy(out, out, att.Reader); err != nil && ctx.Err() == nil {
		return -1, fmt.Errorf("exec output: %w", err)
	}
	for {
		ins, err := e.cli.ContainerExecInspect(ctx, ex.ID)
		if err != nil {
			return -1, fmt.Errorf("exec inspect: %w", err)
		}
		if !ins.Running {
			return ins.ExitCode, nil
		}
		select { // output ended a moment before the process is reaped
		case <-ctx.Done():
			return -1, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// RunToExit starts created container id, waits for it to exit, and writes
// its log (stdout and stderr) to out, best effort: some log drivers cannot
// be read back. It returns the exit code.
func (e *Engine) RunToExit(ctx context.Context, id string, out io.Writer) (int, error) {
	waitCh, errCh := e.cli.ContainerWait(ctx, id, container.WaitConditionNextExit)
	if err := e.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return -1, err
	}
	var code int
	select {
	case w := <-waitCh:
		code = int(w.StatusCode)
	case err := <-errCh:
		return -1, fmt.Errorf("wait: %w", err)
	}
	if logs, err := e.cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true}); err == nil {
		_, _ = stdcopy.StdCopy(out, out, logs)
		logs.Close()
	}
	return code, nil
}

// WatchDeaths signals (never blocking, coalesced) when a managed container
// dies. The channel closes when ctx ends or the event stream fails; ended
// (if not nil) is then told why, unless ctx was cancelled.
func (e *Engine) WatchDeaths(ctx context.Context, ended func(error)) <-chan struct{} {
	f := managedFilter()
	f.Add("type", "container")
	f.Add("event", "die")
	msgs, errs := e.cli.Events(ctx, events.ListOptions{Filters: f})
	out := make(chan struct{}, 1)
	go func() {
		defer close(out)
		for {
			select {
			case <-msgs:
				select { // coalesce: one pending signal is enough
				case out <- struct{}{}:
				default:
				}
			case err := <-errs:
				if err != nil && !errors.Is(err, context.Canceled) && ended != nil {
					ended(err)
				}
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
