package agent

import "time"

// ContainerSpec is one desired service instance on this node.
type ContainerSpec struct {
	// Name is the Docker container name, "<stack>.<service>-<instance>".
	Name      string
	ServiceID string // grid-wide service ID, exported as KONTENA_SERVICE_ID
	Stack     string
	Service   string
	Instance  int
	// Revision is the service revision the instance must run; a container
	// with another revision is replaced.
	Revision uint64

	Image      string
	Cmd        []string
	Entrypoint []string
	// Env is the service environment (secrets included). Values are never
	// logged; KONTENA_* variables are added by the agent.
	Env map[string]string
	// SecretFiles are the instance's vault secrets of type file, by name:
	// the agent writes them to its SecretFiles store (a tmpfs) and mounts
	// them read-only at /run/secrets. Never logged.
	SecretFiles map[string]string
	Labels      map[string]string
	Ports       []Port

	CPUs        float64 // 0 = unlimited
	CPUShares   int64   // relative CPU weight; 0 = engine default (1024)
	MemoryBytes int64   // 0 = unlimited
	// MemorySwapBytes is memory plus swap (memswap_limit); 0 = engine
	// default, -1 = unlimited swap.
	MemorySwapBytes int64
	ShmBytes        int64 // size of /dev/shm; 0 = engine default (64 MiB)
	User            string
	Privileged      bool
	CapAdd          []string
	CapDrop         []string
	ReadOnly        bool
	Pid             string // "" or "host"
	// NetworkMode is "" (the overlay, or the engine's bridge without one),
	// "host", or "container:<engine container name>" (share that
	// container's network namespace; it must run on this node).
	NetworkMode string
	Volumes     []Volume
	// VolumesFrom are engine container names whose volumes the container
	// mounts too (they must be on this node).
	VolumesFrom []string
	Logging     Logging

	StopSignal string        // "" = image default (SIGTERM)
	StopGrace  time.Duration // 0 = 10s, as Kontena's stop_grace_period default
	// Drain is how long a container keeps running after it is told to
	// stop, before its stop signal: a load balancer routes to it until it
	// learns the instance left, and its requests in flight finish.
	Drain time.Duration

	Hooks       Hooks
	HealthCheck *HealthCheck

	// Stopped: the service is stopped. The instance's container is kept
	// but stopped (never removed or replaced for it); none is created.
	Stopped bool
	// RestartGen is the restart generation the leader asks for (`service
	// restart`, `service start`): a container that has not reached it is
	// stopped and started again in place, once.
	RestartGen uint64
	// RestartDone is the generation the grid last heard this node report
	// for container RestartDoneID, so that a restarted agent does not
	// restart a container a second time.
	RestartDone   uint64
	RestartDoneID string
	// WaitForPort is a container port that must accept TCP connections on
	// the container's address before the instance counts as up
	// (deploy.wait_for_port); 0 = none.
	WaitForPort int
}

// Port publishes ContainerPort on the node.
type Port struct {
	HostIP        string
	HostPort      int
	ContainerPort int
	Protocol      string // "tcp" (default) or "udp"
}

// VolumeKind says how a volume entry is mounted.
type VolumeKind string

const (
	VolumeNamed     VolumeKind = "named"     // local named volume, see VolumeScope
	VolumeBind      VolumeKind = "bind"      // host path
	VolumeAnonymous VolumeKind = "anonymous" // removed with the container
)

// VolumeScope says who shares a named volume.
type VolumeScope string

const (
	ScopeInstance VolumeScope = "instance" // one per instance: "<stack>.<service>-<n>.<name>"
	ScopeStack    VolumeScope = "stack"    // one per stack: "<stack>.<name>"
	ScopeGrid     VolumeScope = "grid"     // one per node for the whole grid: "<name>" (also external volumes)
)

// Volume is one mount of the container.
type Volume struct {
	Kind     VolumeKind
	Name     string      // VolumeNamed: the stack-file volume name
	Scope    VolumeScope // VolumeNamed only; "" = instance
	Driver   string      // VolumeNamed; "" = local
	HostPath string      // VolumeBind only
	Path     string      // mount point in the container
	ReadOnly bool
}

// Logging is the Docker logging driver of the container.
type Logging struct {
	Driver  string
	Options map[string]string
}

// Hooks are commands run around the container's lifecycle.
//
// PreStart hooks run in a throw-away container of the same image, env and
// volumes before each start; PostStart and PreStop hooks run inside the
// service container (docker exec).
type Hooks struct {
	PreStart  []Hook
	PostStart []Hook
	PreStop   []Hook
}

// Hook is one hook command, run with /bin/sh -c.
type Hook struct {
	Name string
	Cmd  string
	// Instances limits the hook to these instance numbers; empty = all.
	Instances []int
	// Oneshot hooks run once per instance (not again on restart or
	// redeploy); which ones ran is carried in a container label.
	Oneshot bool
}

// HealthCheck probes the instance; a failing instance is restarted.
type HealthCheck struct {
	Protocol     string // "http" or "tcp"
	Port         int    // container port
	URI          string // http only; "" = "/"
	Timeout      time.Duration
	Interval     time.Duration
	InitialDelay time.Duration
	// Retries is how many consecutive failures make the instance unhealthy;
	// 0 means 1.
	Retries int
}

func (h Hook) appliesTo(instance int) bool {
	if len(h.Instances) == 0 {
		return true
	}
	for _, n := range h.Instances {
		if n == instance {
			return true
		}
	}
	return false
}
