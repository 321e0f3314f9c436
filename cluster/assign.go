package cluster

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/kontena-ng/kontena/agent"
	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/stack"
)

// containerName is Kontena's instance name: <stack>.<service>-<n>.
func containerName(stackName, service string, n int) string {
	return fmt.Sprintf("%s.%s-%d", stackName, service, n)
}

// containerSpecs turns a node's assignments into what its agent runs.
func containerSpecs(as api.Assignments) []agent.ContainerSpec {
	out := make([]agent.ContainerSpec, 0, len(as.Items))
	for _, a := range as.Items {
		out = append(out, containerSpec(a))
	}
	return out
}

func containerSpec(a api.Assignment) agent.ContainerSpec {
	s := a.Service
	in := a.Instance
	spec := agent.ContainerSpec{
		Name: containerName(a.Stack, s.Name, in.Number), ServiceID: in.ServiceID, Stack: a.Stack, Service: s.Name,
		Instance: in.Number, Revision: in.Revision, Image: s.Image, Cmd: s.Command, Entrypoint: s.Entrypoint,
		Env: map[string]string{}, CPUs: s.CPUs, MemoryBytes: s.MemLimit, User: s.User, Privileged: s.Privileged,
		CapAdd: s.CapAdd, CapDrop: s.CapDrop, ReadOnly: s.ReadOnly, Pid: s.Pid, StopSignal: s.StopSignal,
		StopGrace: time.Duration(s.StopGracePeriod),
	}
	if s.NetworkMode == "host" {
		spec.NetworkMode = "host"
	}
	for _, e := range s.Environment {
		if _, ok := spec.Env[e.Name]; !ok { // first key wins, as env_file after environment
			spec.Env[e.Name] = e.Value
		}
	}
	for _, p := range s.Ports {
		spec.Ports = append(spec.Ports, agent.Port{HostIP: p.IP, HostPort: p.NodePort, ContainerPort: p.ContainerPort, Protocol: p.Protocol})
	}
	for _, m := range s.Volumes {
		v := agent.Volume{Path: m.Path, ReadOnly: strings.Contains(m.Flags, "ro")}
		switch {
		case m.HostPath != "":
			v.Kind, v.HostPath = agent.VolumeBind, m.HostPath
		case m.Volume != "":
			v.Kind, v.Name = agent.VolumeNamed, m.Volume
		default:
			v.Kind = agent.VolumeAnonymous
		}
		spec.Volumes = append(spec.Volumes, v)
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
	lifecycleSpec(&spec, a)
	return spec
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
