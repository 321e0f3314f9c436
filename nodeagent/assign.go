package nodeagent

import (
	"strconv"
	"strings"
	"time"

	"github.com/kontena-ng/kontena/agent"
	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/stack"
)

// containerName is Kontena's instance name: <stack>.<service>-<n>.
func containerName(stackName, service string, n int) string {
	return fsm.ContainerName(stackName, service, n)
}

// containerSpecs turns a node's assignments into what its agent runs.
func containerSpecs(as api.Assignments, lbr LBRuntime) []agent.ContainerSpec {
	out := make([]agent.ContainerSpec, 0, len(as.Items))
	for _, a := range as.Items {
		spec := containerSpec(a)
		if stack.IsLB(&a.Service) {
			lbSpec(&spec, lbr)
		}
		out = append(out, spec)
	}
	return out
}

// lbSpec makes an instance of a load balancer service run `kontena lb`
// from the node's own image (no image is pulled for it): it reads its
// routing from the node's API with the token of its assignment.
func lbSpec(spec *agent.ContainerSpec, lbr LBRuntime) {
	spec.Image = lbr.Image
	spec.Entrypoint = []string{"/kontena"}
	spec.Cmd = []string{"lb", "--api", lbr.API, "--cache", "/tmp/routing.json"}
}

func containerSpec(a api.Assignment) agent.ContainerSpec {
	s := a.Service
	in := a.Instance
	spec := agent.ContainerSpec{
		Name: containerName(a.Stack, s.Name, in.Number), ServiceID: in.ServiceID, Stack: a.Stack, Service: s.Name,
		Instance: in.Number, Revision: in.Revision, Image: s.Image, Cmd: s.Command, Entrypoint: s.Entrypoint,
		Env: map[string]string{}, CPUs: s.CPUs, CPUShares: int64(s.CPUShares), MemoryBytes: s.MemLimit,
		MemorySwapBytes: s.MemswapLimit, ShmBytes: s.ShmSize, User: s.User, Privileged: s.Privileged,
		CapAdd: s.CapAdd, CapDrop: s.CapDrop, ReadOnly: s.ReadOnly, Pid: s.Pid, StopSignal: s.StopSignal,
		StopGrace: time.Duration(s.StopGracePeriod),
	}
	switch x, isContainer := strings.CutPrefix(s.NetworkMode, "container:"); {
	case s.NetworkMode == "host":
		spec.NetworkMode = "host"
	case isContainer:
		spec.NetworkMode = "container:" + engineContainer(a.Stack, x, in.Number)
	}
	for _, vf := range s.VolumesFrom {
		spec.VolumesFrom = append(spec.VolumesFrom, engineContainer(a.Stack, vf, in.Number))
	}
	for _, e := range s.Environment {
		if _, ok := spec.Env[e.Name]; !ok { // first key wins, as env_file after environment
			spec.Env[e.Name] = e.Value
		}
	}
	for name, value := range a.SecretEnv { // a vault secret wins over a plain value of the same name
		spec.Env[name] = value
	}
	spec.SecretFiles = a.SecretFiles
	for _, p := range s.Ports {
		spec.Ports = append(spec.Ports, agent.Port{HostIP: p.IP, HostPort: p.NodePort, ContainerPort: p.ContainerPort, Protocol: p.Protocol})
	}
	for _, m := range s.Volumes {
		spec.Volumes = append(spec.Volumes, mountSpec(m, a.Volumes, s.Stateful))
	}
	if s.Logging != nil {
		spec.Logging = agent.Logging{Driver: s.Logging.Driver, Options: s.Logging.Options}
	}
	if s.Hooks != nil {
		spec.Hooks = agent.Hooks{PreStart: hooks(s.Hooks.PreStart), PostStart: hooks(s.Hooks.PostStart), PreStop: hooks(s.Hooks.PreStop)}
	}
	if hc := s.HealthCheck; hc != nil {
		spec.HealthCheck = &agent.HealthCheck{Protocol: hc.Protocol, Port: hc.Port, URI: hc.URI,
			Timeout: time.Duration(hc.Timeout) * time.Second, Interval: time.Duration(hc.Interval) * time.Second,
			InitialDelay: time.Duration(hc.InitialDelay) * time.Second}
	}
	if a.Routed {
		spec.Drain = lbDrain
	}
	lifecycleSpec(&spec, a)
	return spec
}

// lbDrain: the load balancers learn an instance left within milliseconds
// (a blocking query); two seconds also lets their requests in flight end.
const lbDrain = 2 * time.Second

// engineContainer is the engine name of the container a volumes_from or
// network_mode container: reference names: "db-%s" in stack shop is
// shop.db-<n> for instance n, "other/db-1" is other.db-1.
func engineContainer(stackName, ref string, n int) string {
	ref = strings.ReplaceAll(ref, "%s", strconv.Itoa(n))
	if st, name, ok := strings.Cut(ref, "/"); ok {
		return st + "." + name
	}
	return stackName + "." + ref
}

// mountSpec is one volume of the service as the agent mounts it. Named
// volumes take scope and driver from the stack's declaration (an external
// one is the existing volume of that name on the node); a stateful
// service's anonymous volumes become named per-instance volumes, so its
// data outlives the container (a redeploy replaces the container, never
// the data).
func mountSpec(m stack.Mount, decls []*stack.Volume, stateful bool) agent.Volume {
	v := agent.Volume{Path: m.Path, ReadOnly: strings.Contains(m.Flags, "ro")}
	switch {
	case m.HostPath != "":
		v.Kind, v.HostPath = agent.VolumeBind, m.HostPath
	case m.Volume != "":
		v.Kind, v.Name = agent.VolumeNamed, m.Volume
		for _, d := range decls {
			if d.Name != m.Volume {
				continue
			}
			v.Driver = d.Driver
			switch {
			case d.External != "":
				v.Name, v.Scope = d.External, agent.ScopeGrid
			case d.Scope == "stack":
				v.Scope = agent.ScopeStack
			case d.Scope == "grid":
				v.Scope = agent.ScopeGrid
			}
		}
	case stateful:
		v.Kind, v.Name = agent.VolumeNamed, "data"+volumeSafe(m.Path)
	default:
		v.Kind = agent.VolumeAnonymous
	}
	return v
}

// volumeSafe turns a mount point into characters a volume name may hold:
// /var/lib/mysql -> -var-lib-mysql.
func volumeSafe(path string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.':
			return r
		}
		return '-'
	}, path)
}

func hooks(in []stack.Hook) []agent.Hook {
	var out []agent.Hook
	for _, h := range in {
		ah := agent.Hook{Name: h.Name, Cmd: h.Cmd, Oneshot: h.Oneshot}
		if h.Instances != "" && h.Instances != "*" {
			for _, f := range strings.Split(h.Instances, ",") {
				if k, err := strconv.Atoi(strings.TrimSpace(f)); err == nil {
					ah.Instances = append(ah.Instances, k)
				}
			}
		}
		out = append(out, ah)
	}
	return out
}

// lifecycleSpec gives the agent what the lifecycle asks of an instance.
func lifecycleSpec(spec *agent.ContainerSpec, a api.Assignment) {
	in := a.Instance
	spec.Stopped = in.Stopped || a.Drained
	spec.RestartGen = in.Restart
	if in.Actual.ContainerID != "" {
		spec.RestartDone, spec.RestartDoneID = in.Actual.Restart, in.Actual.ContainerID
	}
	spec.WaitForPort = a.Service.Deploy.WaitForPort
}
