package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"
)

// dockerRuntime is the Runtime of a Docker engine.
type dockerRuntime struct {
	cli *client.Client
	log *slog.Logger
}

// NewDockerRuntime connects to the engine named by the DOCKER_* environment
// (default: the local socket), negotiating the API version so that old
// engines (20.10, API 1.41) work. Call closeFn when done.
func NewDockerRuntime(ctx context.Context, log *slog.Logger) (rt Runtime, closeFn func() error, err error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, nil, fmt.Errorf("agent: docker client: %w", err)
	}
	if _, err := cli.Ping(ctx); err != nil {
		cli.Close()
		return nil, nil, fmt.Errorf("agent: docker engine at %s does not answer: %w (is dockerd running? is DOCKER_HOST right?)", cli.DaemonHost(), err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &dockerRuntime{cli: cli, log: log}, cli.Close, nil
}

func managedFilter() filters.Args {
	return filters.NewArgs(filters.Arg("label", LabelManaged+"=true"))
}

func (d *dockerRuntime) List(ctx context.Context) ([]Container, error) {
	list, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: managedFilter()})
	if err != nil {
		return nil, err
	}
	out := make([]Container, 0, len(list))
	for _, s := range list {
		// List lacks StartedAt and the exit code: inspect each (~1 ms).
		ins, err := d.cli.ContainerInspect(ctx, s.ID)
		if cerrdefs.IsNotFound(err) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("inspect %s: %w", s.ID, err)
		}
		out = append(out, fromInspect(ins))
	}
	return out, nil
}

func fromInspect(ins container.InspectResponse) Container {
	c := Container{ID: ins.ID, Name: strings.TrimPrefix(ins.Name, "/"), HostPorts: map[string]int{}}
	if ins.Config != nil {
		c.Labels = ins.Config.Labels
	}
	if ins.State != nil {
		c.State, c.ExitCode = ins.State.Status, ins.State.ExitCode
		c.StartedAt, _ = time.Parse(time.RFC3339Nano, ins.State.StartedAt)
	}
	if ns := ins.NetworkSettings; ns != nil {
		for _, ep := range ns.Networks {
			if ep != nil && ep.IPAddress != "" {
				c.IP = ep.IPAddress
				break
			}
		}
		for p, bs := range ns.Ports {
			for _, b := range bs {
				if hp, err := strconv.Atoi(b.HostPort); err == nil {
					c.HostPorts[string(p)] = hp
					break
				}
			}
		}
	}
	return c
}

func (d *dockerRuntime) EnsureImage(ctx context.Context, ref string) error {
	if _, err := d.cli.ImageInspect(ctx, ref); err == nil {
		return nil
	} else if !cerrdefs.IsNotFound(err) {
		return err
	}
	d.log.Info("pulling image", "image", ref)
	rc, err := d.cli.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		return fmt.Errorf("not on this node, and pulling it failed: %w", err)
	}
	defer rc.Close()
	// The engine reports progress and failure as a JSON stream; the pull is
	// done when the stream ends.
	dec := json.NewDecoder(rc)
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("not on this node, and pulling it failed: %w", err)
		}
		if m.Error != nil {
			return fmt.Errorf("not on this node, and pulling it failed: %s", m.Error.Message)
		}
	}
	if _, err := d.cli.ImageInspect(ctx, ref); err != nil {
		return fmt.Errorf("pulled, but the engine does not have it: %w", err)
	}
	return nil
}

func (d *dockerRuntime) EnsureVolume(ctx context.Context, v VolumeRequest) error {
	// VolumeCreate returns the existing volume when the name is taken by the
	// same driver, so this is idempotent.
	_, err := d.cli.VolumeCreate(ctx, volume.CreateOptions{Name: v.Name, Driver: v.Driver, Labels: v.Labels})
	return err
}

func (d *dockerRuntime) Create(ctx context.Context, r CreateRequest) (string, error) {
	cfg, hc, err := dockerConfig(r)
	if err != nil {
		return "", err
	}
	resp, err := d.cli.ContainerCreate(ctx, cfg, hc, networkConfig(r, hc), nil, r.Name)
	if cerrdefs.IsConflict(err) {
		return "", fmt.Errorf("%w (a container not managed by the agent has this name: remove it)", err)
	}
	if err != nil {
		return "", err
	}
	for _, w := range resp.Warnings {
		d.log.Warn("docker create warning", "container", r.Name, "warning", w)
	}
	return resp.ID, nil
}

// networkConfig puts the container on its overlay network with the address
// the node allocated (and the grid DNS), unless it runs in the host network.
func networkConfig(r CreateRequest, hc *container.HostConfig) *network.NetworkingConfig {
	if r.Net == nil || r.Spec.ownNetwork() {
		return nil
	}
	hc.NetworkMode = container.NetworkMode(r.Net.Network)
	hc.DNS, hc.DNSSearch = r.Net.DNS, r.Net.DNSSearch
	ep := &network.EndpointSettings{}
	if r.Net.IP.IsValid() {
		ep.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: r.Net.IP.String()}
	}
	return &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{r.Net.Network: ep}}
}

// dockerConfig translates a request; env goes only into the config, never
// into an error or a log line.
func dockerConfig(r CreateRequest) (*container.Config, *container.HostConfig, error) {
	s := r.Spec
	grace := s.StopGrace
	if grace <= 0 {
		grace = 10 * time.Second
	}
	stopTimeout := int(math.Ceil(grace.Seconds()))
	cfg := &container.Config{
		Image: s.Image, Cmd: s.Cmd, Entrypoint: s.Entrypoint, Env: r.Env, Labels: r.Labels,
		User: s.User, StopSignal: s.StopSignal, StopTimeout: &stopTimeout,
	}
	if r.Entrypoint != nil {
		cfg.Entrypoint = r.Entrypoint
	}
	if r.Cmd != nil {
		cfg.Cmd = r.Cmd
	}
	hc := &container.HostConfig{
		Resources: container.Resources{
			NanoCPUs:   int64(s.CPUs * 1e9),
			CPUShares:  s.CPUShares,
			Memory:     s.MemoryBytes,
			MemorySwap: s.MemorySwapBytes,
		},
		ShmSize:        s.ShmBytes,
		VolumesFrom:    s.VolumesFrom,
		Privileged:     s.Privileged,
		CapAdd:         s.CapAdd,
		CapDrop:        s.CapDrop,
		ReadonlyRootfs: s.ReadOnly,
		PidMode:        container.PidMode(s.Pid),
		NetworkMode:    container.NetworkMode(s.NetworkMode),
		// The agent owns restarts (it reports them and runs hooks); a Docker
		// restart policy would race it.
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		LogConfig:     container.LogConfig{Type: s.Logging.Driver, Config: s.Logging.Options},
	}
	// A container in another's network namespace has no ports of its own
	// to publish (the engine refuses them).
	if !r.NoPorts && len(s.Ports) > 0 && !strings.HasPrefix(s.NetworkMode, "container:") {
		cfg.ExposedPorts = nat.PortSet{}
		hc.PortBindings = nat.PortMap{}
		for _, p := range s.Ports {
			proto := p.Protocol
			if proto == "" {
				proto = "tcp"
			}
			np, err := nat.NewPort(proto, strconv.Itoa(p.ContainerPort))
			if err != nil {
				return nil, nil, fmt.Errorf("port %d/%s of %s: %w", p.ContainerPort, proto, s.Name, err)
			}
			cfg.ExposedPorts[np] = struct{}{}
			hp := ""
			if p.HostPort > 0 {
				hp = strconv.Itoa(p.HostPort)
			}
			hc.PortBindings[np] = append(hc.PortBindings[np], nat.PortBinding{HostIP: p.HostIP, HostPort: hp})
		}
	}
	for _, m := range r.Mounts {
		dm := mount.Mount{Target: m.Target, ReadOnly: m.ReadOnly}
		switch m.Kind {
		case VolumeBind:
			dm.Type, dm.Source = mount.TypeBind, m.Source
		case VolumeNamed:
			dm.Type, dm.Source = mount.TypeVolume, m.Source
		case VolumeAnonymous:
			dm.Type = mount.TypeVolume // no source: Docker makes an anonymous volume
		}
		hc.Mounts = append(hc.Mounts, dm)
	}
	return cfg, hc, nil
}

func (d *dockerRuntime) Start(ctx context.Context, id string) error {
	return d.cli.ContainerStart(ctx, id, container.StartOptions{})
}

func (d *dockerRuntime) Stop(ctx context.Context, id string) error {
	// No options: the engine uses the container's StopSignal and StopTimeout
	// (API 1.41 cannot pass a signal to stop anyway).
	err := d.cli.ContainerStop(ctx, id, container.StopOptions{})
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	return err
}

func (d *dockerRuntime) Remove(ctx context.Context, id string) error {
	err := d.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	return err
}

func (d *dockerRuntime) Exec(ctx context.Context, id string, cmd []string) (int, string, error) {
	ex, err := d.cli.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return -1, "", fmt.Errorf("exec create: %w", err)
	}
	att, err := d.cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return -1, "", fmt.Errorf("exec start: %w", err)
	}
	defer att.Close()
	// The hijacked connection ignores ctx: close it when ctx ends.
	stop := context.AfterFunc(ctx, att.Close)
	defer stop()
	out := &capBuffer{max: 4096}
	if _, err := stdcopy.StdCopy(out, out, att.Reader); err != nil && ctx.Err() == nil {
		return -1, out.String(), fmt.Errorf("exec output: %w", err)
	}
	for {
		ins, err := d.cli.ContainerExecInspect(ctx, ex.ID)
		if err != nil {
			return -1, out.String(), fmt.Errorf("exec inspect: %w", err)
		}
		if !ins.Running {
			return ins.ExitCode, out.String(), nil
		}
		select { // output ended a moment before the process is reaped
		case <-ctx.Done():
			return -1, out.String(), ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (d *dockerRuntime) RunOnce(ctx context.Context, r CreateRequest) (int, string, error) {
	// A hook container left over by a crashed agent would block the name.
	_ = d.Remove(ctx, r.Name)
	id, err := d.Create(ctx, r)
	if err != nil {
		return -1, "", err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := d.Remove(rctx, id); err != nil {
			d.log.Warn("could not remove hook container", "container", r.Name, "id", id, "err", err)
		}
	}()
	waitCh, errCh := d.cli.ContainerWait(ctx, id, container.WaitConditionNextExit)
	if err := d.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return -1, "", err
	}
	var code int
	select {
	case w := <-waitCh:
		code = int(w.StatusCode)
	case err := <-errCh:
		return -1, "", fmt.Errorf("wait: %w", err)
	}
	out := &capBuffer{max: 4096}
	if logs, err := d.cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true}); err == nil {
		_, _ = stdcopy.StdCopy(out, out, logs) // best effort: some log drivers cannot be read back
		logs.Close()
	}
	return code, out.String(), nil
}

func (d *dockerRuntime) Watch(ctx context.Context) <-chan struct{} {
	f := managedFilter()
	f.Add("type", "container")
	f.Add("event", "die")
	msgs, errs := d.cli.Events(ctx, events.ListOptions{Filters: f})
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
				if err != nil && !errors.Is(err, context.Canceled) {
					d.log.Warn("docker event stream ended; relying on periodic reconcile", "err", err)
				}
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// capBuffer keeps the first max bytes written and drops the rest, so a
// chatty hook cannot blow up an error message.
type capBuffer struct {
	bytes.Buffer
	max int
}

func (b *capBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
