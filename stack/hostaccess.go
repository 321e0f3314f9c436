package stack

import (
	"fmt"
	"sort"
	"strings"
)

// HostAccess is one setting of a stack that lets its containers take over
// the host they run on.
type HostAccess struct {
	Service string // "" for a top-level volume
	Key     string // the stack-file key: privileged, cap_add, pid...
	Detail  string
}

func (h HostAccess) String() string {
	if h.Service == "" {
		return fmt.Sprintf("volume %s: %s", h.Key, h.Detail)
	}
	return fmt.Sprintf("service %s: %s (%s)", h.Service, h.Key, h.Detail)
}

// HostAccesses lists the settings of s that give its containers power over
// their host: privileged mode, added capabilities, the host's PID or network
// namespace, and bind mounts of host paths (the Docker socket, /, /etc...),
// directly or through a volume driver's bind options.
func HostAccesses(s *Stack) []HostAccess {
	var out []HostAccess
	for _, svc := range s.Services {
		if svc == nil {
			continue
		}
		if svc.Privileged {
			out = append(out, HostAccess{svc.Name, "privileged", "true"})
		}
		if len(svc.CapAdd) > 0 {
			out = append(out, HostAccess{svc.Name, "cap_add", strings.Join(svc.CapAdd, ",")})
		}
		// pid: host, or another container's namespace (which may be the
		// host's: Docker takes any container name there).
		if svc.Pid != "" {
			out = append(out, HostAccess{svc.Name, "pid", svc.Pid})
		}
		if svc.NetworkMode == "host" {
			out = append(out, HostAccess{svc.Name, "network_mode", "host"})
		}
		for _, m := range svc.Volumes {
			if m.HostPath != "" {
				out = append(out, HostAccess{svc.Name, "volumes", "host path " + m.HostPath + ":" + m.Path})
			}
		}
	}
	for _, v := range s.Volumes {
		if v == nil {
			continue
		}
		keys := make([]string, 0, len(v.DriverOpts))
		for k := range v.DriverOpts {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			val := v.DriverOpts[k]
			if k == "device" || (k == "o" && strings.Contains(val, "bind")) {
				out = append(out, HostAccess{Key: v.Name, Detail: fmt.Sprintf("driver_opts %s=%s mounts a host path", k, val)})
			}
		}
	}
	return out
}
