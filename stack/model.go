package stack

import (
	"encoding/json"
	"time"
)

// Stack is a validated, typed stack definition: what install/upgrade deploy.
// Defaults are filled in; services skipped by only_if/skip_if are gone.
type Stack struct {
	Stack       string            `json:"stack" yaml:"stack"`                   // as written: [user/]name
	User        string            `json:"user,omitempty" yaml:"user,omitempty"` // part before '/'
	StackName   string            `json:"stack_name" yaml:"stack_name"`         // part after '/', the default install name
	Name        string            `json:"name" yaml:"name"`                     // installed name ($STACK)
	ParentName  string            `json:"parent_name,omitempty" yaml:"parent_name,omitempty"`
	Version     string            `json:"version" yaml:"version"`
	Description string            `json:"description,omitempty" yaml:"description,omitempty"`
	Expose      string            `json:"expose,omitempty" yaml:"expose,omitempty"`
	Labels      map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	Meta        *Meta             `json:"meta,omitempty" yaml:"meta,omitempty"`
	Variables   []*Variable       `json:"variables,omitempty" yaml:"variables,omitempty"`
	Services    []*Service        `json:"services" yaml:"services"`
	Volumes     []*Volume         `json:"volumes,omitempty" yaml:"volumes,omitempty"`
	Depends     []*Dependency     `json:"depends,omitempty" yaml:"depends,omitempty"`
}

// Service returns the named service or nil.
func (s *Stack) Service(name string) *Service {
	for _, svc := range s.Services {
		if svc.Name == name {
			return svc
		}
	}
	return nil
}

// Volume returns the named top-level volume or nil.
func (s *Stack) Volume(name string) *Volume {
	for _, v := range s.Volumes {
		if v.Name == name {
			return v
		}
	}
	return nil
}

// Meta is the registry metadata of a stack.
type Meta struct {
	Tags                   []string `json:"tags,omitempty" yaml:"tags,omitempty"`
	Readme                 string   `json:"readme,omitempty" yaml:"readme,omitempty"`
	License                string   `json:"license,omitempty" yaml:"license,omitempty"`
	RequiredKontenaVersion string   `json:"required_kontena_version,omitempty" yaml:"required_kontena_version,omitempty"`
}

// Dependency is one entry of `depends`: a child stack installed as
// <parent>-<name>.
type Dependency struct {
	Name          string         `json:"name" yaml:"name"`
	Stack         string         `json:"stack" yaml:"stack"`                   // file path, registry ref or URL as written
	InstalledName string         `json:"installed_name" yaml:"installed_name"` // <parent>-<name>
	Variables     map[string]any `json:"variables,omitempty" yaml:"variables,omitempty"`
}

// Volume is a top-level volume declaration.
type Volume struct {
	Name       string            `json:"name" yaml:"name"`
	External   string            `json:"external,omitempty" yaml:"external,omitempty"` // name of the existing grid volume
	Driver     string            `json:"driver,omitempty" yaml:"driver,omitempty"`
	DriverOpts map[string]string `json:"driver_opts,omitempty" yaml:"driver_opts,omitempty"`
	Scope      string            `json:"scope,omitempty" yaml:"scope,omitempty"` // instance (default), stack, grid
}

// Service is one service of a stack with defaults applied.
type Service struct {
	Name            string        `json:"name" yaml:"name"`
	Image           string        `json:"image,omitempty" yaml:"image,omitempty"`
	Build           *Build        `json:"build,omitempty" yaml:"build,omitempty"`
	Command         []string      `json:"command,omitempty" yaml:"command,omitempty"`
	Entrypoint      []string      `json:"entrypoint,omitempty" yaml:"entrypoint,omitempty"`
	User            string        `json:"user,omitempty" yaml:"user,omitempty"`
	Privileged      bool          `json:"privileged,omitempty" yaml:"privileged,omitempty"`
	CapAdd          []string      `json:"cap_add,omitempty" yaml:"cap_add,omitempty"`
	CapDrop         []string      `json:"cap_drop,omitempty" yaml:"cap_drop,omitempty"`
	Pid             string        `json:"pid,omitempty" yaml:"pid,omitempty"`
	ReadOnly        bool          `json:"read_only,omitempty" yaml:"read_only,omitempty"`
	Instances       int           `json:"instances" yaml:"instances"`
	Stateful        bool          `json:"stateful" yaml:"stateful"`
	Environment     []EnvVar      `json:"environment,omitempty" yaml:"environment,omitempty"`
	Ports           []Port        `json:"ports,omitempty" yaml:"ports,omitempty"`
	Links           []Link        `json:"links,omitempty" yaml:"links,omitempty"`
	ExternalLinks   []string      `json:"external_links,omitempty" yaml:"external_links,omitempty"`
	DependsOn       []string      `json:"depends_on,omitempty" yaml:"depends_on,omitempty"`
	Volumes         []Mount       `json:"volumes,omitempty" yaml:"volumes,omitempty"`
	VolumesFrom     []string      `json:"volumes_from,omitempty" yaml:"volumes_from,omitempty"`
	Affinity        []string      `json:"affinity,omitempty" yaml:"affinity,omitempty"`
	Deploy          Deploy        `json:"deploy" yaml:"deploy"`
	HealthCheck     *HealthCheck  `json:"health_check,omitempty" yaml:"health_check,omitempty"`
	Hooks           *Hooks        `json:"hooks,omitempty" yaml:"hooks,omitempty"`
	Secrets         []Secret      `json:"secrets,omitempty" yaml:"secrets,omitempty"`
	Certificates    []Certificate `json:"certificates,omitempty" yaml:"certificates,omitempty"`
	CPUs            float64       `json:"cpus,omitempty" yaml:"cpus,omitempty"`
	CPUShares       int           `json:"cpu_shares,omitempty" yaml:"cpu_shares,omitempty"`
	MemLimit        int64         `json:"mem_limit,omitempty" yaml:"mem_limit,omitempty"` // bytes
	MemswapLimit    int64         `json:"memswap_limit,omitempty" yaml:"memswap_limit,omitempty"`
	ShmSize         int64         `json:"shm_size,omitempty" yaml:"shm_size,omitempty"`
	NetworkMode     string        `json:"network_mode,omitempty" yaml:"network_mode,omitempty"`
	Logging         *Logging      `json:"logging,omitempty" yaml:"logging,omitempty"`
	StopSignal      string        `json:"stop_signal,omitempty" yaml:"stop_signal,omitempty"`
	StopGracePeriod Duration      `json:"stop_grace_period" yaml:"stop_grace_period"`
}

// Env returns the value of an environment variable of the service.
func (s *Service) Env(name string) (string, bool) {
	for _, e := range s.Environment {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// EnvVar is one environment variable; order is the file's.
type EnvVar struct {
	Name  string `json:"name" yaml:"name"`
	Value string `json:"value" yaml:"value"`
}

// String is the K=V form.
func (e EnvVar) String() string { return e.Name + "=" + e.Value }

// Build is how to build the image.
type Build struct {
	Context    string             `json:"context" yaml:"context"`
	Dockerfile string             `json:"dockerfile,omitempty" yaml:"dockerfile,omitempty"`
	Args       map[string]*string `json:"args,omitempty" yaml:"args,omitempty"` // nil value: taken from the build environment
}

// Port is a published port.
type Port struct {
	IP            string `json:"ip,omitempty" yaml:"ip,omitempty"`
	NodePort      int    `json:"node_port" yaml:"node_port"`
	ContainerPort int    `json:"container_port" yaml:"container_port"`
	Protocol      string `json:"protocol" yaml:"protocol"` // tcp or udp
}

// Link is a link to a service of this or another stack.
type Link struct {
	Stack   string `json:"stack,omitempty" yaml:"stack,omitempty"` // "" = this stack
	Service string `json:"service" yaml:"service"`
	Alias   string `json:"alias" yaml:"alias"` // defaults to the service name
}

// Mount is one entry of a service's volumes.
type Mount struct {
	Volume   string `json:"volume,omitempty" yaml:"volume,omitempty"`       // named volume (declared at top level)
	HostPath string `json:"host_path,omitempty" yaml:"host_path,omitempty"` // bind mount
	Path     string `json:"path" yaml:"path"`                               // mount point in the container
	Flags    string `json:"flags,omitempty" yaml:"flags,omitempty"`         // e.g. ro
}

// Deploy is the rollout policy.
type Deploy struct {
	Strategy    string   `json:"strategy" yaml:"strategy"` // ha (default), daemon, random
	WaitForPort int      `json:"wait_for_port,omitempty" yaml:"wait_for_port,omitempty"`
	MinHealth   float64  `json:"min_health" yaml:"min_health"`                 // default 0.8
	Interval    Duration `json:"interval,omitempty" yaml:"interval,omitempty"` // periodic redeploy, 0 = never
}

// HealthCheck is how instances are probed.
type HealthCheck struct {
	Protocol     string `json:"protocol" yaml:"protocol"` // http or tcp
	Port         int    `json:"port" yaml:"port"`
	URI          string `json:"uri,omitempty" yaml:"uri,omitempty"` // http only, default "/"
	Timeout      int    `json:"timeout" yaml:"timeout"`             // seconds, default 10
	Interval     int    `json:"interval" yaml:"interval"`           // seconds, default 60
	InitialDelay int    `json:"initial_delay" yaml:"initial_delay"` // seconds, default 10
}

// Hooks are commands run around the service's lifecycle.
type Hooks struct {
	PreBuild  []Hook `json:"pre_build,omitempty" yaml:"pre_build,omitempty"`
	PreStart  []Hook `json:"pre_start,omitempty" yaml:"pre_start,omitempty"`
	PostStart []Hook `json:"post_start,omitempty" yaml:"post_start,omitempty"`
	PreStop   []Hook `json:"pre_stop,omitempty" yaml:"pre_stop,omitempty"`
}

// Hook is one hook command.
type Hook struct {
	Name      string `json:"name" yaml:"name"`
	Cmd       string `json:"cmd" yaml:"cmd"`
	Instances string `json:"instances,omitempty" yaml:"instances,omitempty"` // "*" or a comma list of numbers
	Oneshot   bool   `json:"oneshot,omitempty" yaml:"oneshot,omitempty"`
}

// Secret injects a vault secret.
type Secret struct {
	Secret string `json:"secret" yaml:"secret"`
	Name   string `json:"name" yaml:"name"`
	Type   string `json:"type" yaml:"type"` // env or file (under /run/secrets)
}

// Certificate injects a certificate bundle.
type Certificate struct {
	Subject string `json:"subject" yaml:"subject"`
	Name    string `json:"name" yaml:"name"`
	Type    string `json:"type" yaml:"type"` // env
}

// Logging is the service's own Docker log driver.
type Logging struct {
	Driver  string            `json:"driver,omitempty" yaml:"driver,omitempty"`
	Options map[string]string `json:"options,omitempty" yaml:"options,omitempty"`
}

// Duration prints as a Go duration ("10s") in JSON and YAML.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// UnmarshalJSON accepts what MarshalJSON writes, so stored stacks read back.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}
