package agent

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/go-connections/nat"

	// Imported under another name: the agent's tests have a helper
	// called engine.
	dockerengine "github.com/kontena-ng/kontena/agent/engine"
)

// dockerRuntime is the Runtime of a Docker engine: it translates the
// agent's requests to the engine's types and calls agent/engine.
type dockerRuntime struct {
	eng *dockerengine.Engine
	log *slog.Logger
}

// NewRuntime is the Runtime of the node's engine (which the caller opened
// and closes).
func NewRuntime(eng *dockerengine.Engine, log *slog.Logger) Runtime {
	if log == nil {
		log = slog.Default()
	}
	return &dockerRuntime{eng: eng, log: log}
}

// NewDockerRuntime opens the engine named by the DOCKER_* environment
// (default: the local socket) for a Runtime of its own; a node opens its
// engine once and uses NewRuntime. Call closeFn when done.
func NewDockerRuntime(ctx context.Context, log *slog.Logger) (rt Runtime, closeFn func() error, err error) {
	eng, err := dockerengine.Open(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("agent: %w", err)
	}
	return NewRuntime(eng, log), eng.Close, nil
}

func (d *dockerRuntime) List(ctx context.Context) ([]Container, error) {
	list, err := d.eng.ListManaged(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Container, 0, len(list))
	for _, ins := range list {
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

// SelfImagePrefix names the images a node builds of its own executable
// (what its load balancers run): they are built, never pulled.
const SelfImagePrefix = "kontena/lb-self:"

func (d *dockerRuntime) EnsureImage(ctx context.Context, ref string) error {
	if err := d.eng.InspectImage(ctx, ref); err == nil {
		return nil
	} else if !cerrdefs.IsNotFound(err) {
		return err
	}
	if strings.HasPrefix(ref, SelfImagePrefix) {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("build %s: %w", ref, err)
		}
		d.log.Info("building the load balancer image from this executable", "image", ref)
		return d.eng.BuildSelfImage(ctx, ref, exe)
	}
	d.log.Info("pulling image", "image", ref)
	if err := d.eng.PullImage(ctx, ref); err != nil {
		return fmt.Errorf("not on this node, and pulling it failed: %w", err)
	}
	if err := d.eng.InspectImage(ctx, ref); err != nil {
		return fmt.Errorf("pulled, but the engine does not have it: %w", err)
	}
	return nil
}

func (d *dockerRuntime) EnsureVolume(ctx context.Context, v VolumeRequest) error {
	return d.eng.CreateVolume(ctx, v.Name, v.Driver, v.Labels)
}

func (d *dockerRuntime) Create(ctx context.Context, r CreateRequest) (string, error) {
	cfg, hc, err := dockerConfig(r)
	if err != nil {
		return "", err
	}
	id, warnings, err := d.eng.CreateContainer(ctx, r.Name, cfg, hc, networkConfig(r, hc))
	if cerrdefs.IsConflict(err) {
		return "", fmt.Errorf("%w (a container not managed by the agent has this name: remove it)", err)
	}
	if err != nil {
		return "", err
	}
	for _, w := range warnings {
		d.log.Warn("docker create warning", "container", r.Name, "warning", w)
	}
	return id, nil
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
	return d.eng.StartContainer(ctx, id)
}

func (d *dockerRuntime) Stop(ctx context.Context, id string) error {
	return d.eng.StopContainer(ctx, id)
}

func (d *dockerRuntime) Remove(ctx context.Context, id string) error {
	return d.eng.RemoveContainer(ctx, id)
}

func (d *dockerRuntime) Exec(ctx context.Context, id string, cmd []string) (int, string, error) {
	out := &capBuffer{max: 4096}
	code, err := d.eng.Exec(ctx, id, cmd, out)
	return code, out.String(), err
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
	out := &capBuffer{max: 4096}
	code, err := d.eng.RunToExit(ctx, id, out)
	if err != nil {
		return -1, "", err
	}
	return code, out.String(), nil
}

func (d *dockerRuntime) Watch(ctx context.Context) <-chan struct{} {
	return d.eng.WatchDeaths(ctx, func(err error) {
		d.log.Warn("docker event stream ended; relying on periodic reconcile", "err", err)
	})
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
