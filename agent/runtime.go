package agent

import (
	"context"
	"time"
)

// Runtime is the handful of container-engine operations the agent needs.
// It is declared here, where it is consumed, so tests can swap in a fake;
// dockerRuntime is the real one.
type Runtime interface {
	// List returns every container labelled LabelManaged=true, running or not.
	List(ctx context.Context) ([]Container, error)
	// EnsureImage makes sure image ref is on the engine, pulling it when it
	// is not (an image already there is used as it is: no registry needs
	// to answer for a node to run what it has).
	EnsureImage(ctx context.Context, ref string) error
	// EnsureVolume creates a named volume unless it exists.
	EnsureVolume(ctx context.Context, v VolumeRequest) error
	// Create creates (does not start) a container and returns its ID.
	Create(ctx context.Context, r CreateRequest) (string, error)
	Start(ctx context.Context, id string) error
	// Stop stops with the stop signal and grace period the container was
	// created with (so an old revision keeps its own), then SIGKILL.
	Stop(ctx context.Context, id string) error
	// Remove removes the container and its anonymous volumes.
	Remove(ctx context.Context, id string) error
	// Exec runs cmd in a running container and returns its exit code and
	// (truncated) output.
	Exec(ctx context.Context, id string, cmd []string) (int, string, error)
	// RunOnce runs r to completion in a throw-away container, removes it,
	// and returns its exit code and (truncated) output.
	RunOnce(ctx context.Context, r CreateRequest) (int, string, error)
	// Watch signals (never blocking) when a managed container dies, so the
	// agent can react before its next tick. The channel closes when ctx ends
	// or the event stream fails; the agent then relies on its ticker.
	Watch(ctx context.Context) <-chan struct{}
}

// Container is what the agent observes of one managed container.
type Container struct {
	ID        string
	Name      string // without the leading "/"
	Labels    map[string]string
	State     string // Docker state: created, running, paused, restarting, exited, dead
	ExitCode  int
	StartedAt time.Time
	IP        string // address on its Docker network; "" with network_mode host
	// HostPorts maps "port/proto" of the container to the published host port.
	HostPorts map[string]int
}

// CreateRequest is a spec resolved for the engine: env and labels computed,
// named volumes given their engine names.
type CreateRequest struct {
	Spec   ContainerSpec
	Name   string // engine container name
	Env    []string
	Labels map[string]string
	Mounts []Mount
	// Entrypoint/Cmd override the spec's (for hook containers) when set.
	Entrypoint []string
	Cmd        []string
	// NoPorts drops published ports (a hook container must not take the
	// service's host ports).
	NoPorts bool
	// Net puts the container on the overlay; nil = engine default network.
	Net *Attachment
}

// Mount is one resolved volume mount.
type Mount struct {
	Kind     VolumeKind
	Source   string // engine volume name or host path; "" for anonymous
	Target   string
	ReadOnly bool
}

// VolumeRequest is a named volume to create.
type VolumeRequest struct {
	Name   string
	Driver string
	Labels map[string]string
}
