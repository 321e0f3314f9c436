package stack

import (
	"fmt"
	"math"
	"regexp"
	"strings"
)

// Bounds of a typed stack. The loader enforces them on every stack file it
// reads (the CLI), and the grid enforces them on every stack it is sent
// and stores, with the same function: ValidateSpec. They are far above
// what a real stack needs and low enough that no stack can make the leader
// plan, store or send something unbounded.
const (
	// MaxInstances is the most instances a service may ask for (for a
	// daemon service: per node). `service scale` is bound by it too.
	MaxInstances = 10000
	// MaxStoredInstances is what the grid's state machine accepts when it
	// applies (and replays) a command: the bound the loader had before
	// MaxInstances, so no entry an older grid accepted is refused on replay,
	// and far below what would overflow the scheduler.
	MaxStoredInstances = 100000
	// MaxServices is the most services one stack may have.
	MaxServices = 256
	// MaxVolumes is the most top-level volumes one stack may declare.
	MaxVolumes = 256
	// MaxDepends is the most dependencies (depends) one stack may have.
	MaxDepends = 64
	// MaxVariables is the most variables one stack may declare.
	MaxVariables = 1024
	// MaxLabels is the most labels one stack may carry.
	MaxLabels = 64
	// MaxNameLen is the longest stack or service name: one DNS label
	// (<service>.<stack>.<grid>.kontena.local).
	MaxNameLen = 63
	// MaxListLen is the most entries of any list of a service (environment,
	// ports, links, volumes, command words, hooks...).
	MaxListLen = 1024
	// MaxStringLen is the longest single string of a stack (an environment
	// value, a command word, a hook command, a label value...).
	MaxStringLen = 64 << 10
	// MaxEnvBytes bounds the whole environment of a service (names and
	// values), about what a Linux exec accepts.
	MaxEnvBytes = 256 << 10
	// MaxCPUs and MaxCPUShares are what the decoder accepts.
	MaxCPUs      = 1024
	MaxCPUShares = 262144
	// MaxHealthCheckSeconds bounds health check timings.
	MaxHealthCheckSeconds = 86400
)

var (
	// dnsLabelRe is a stack name: one DNS label of lowercase letters,
	// digits and dashes, not starting or ending with a dash.
	dnsLabelRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	// specEnvNameRe is an environment variable name as Docker takes it.
	specEnvNameRe = regexp.MustCompile(`^[^=\x00]+$`)
)

// IsDNSLabel tells whether s is one DNS label of at most MaxNameLen
// lowercase letters, digits and dashes: a stack, grid or node name.
func IsDNSLabel(s string) bool { return len(s) <= MaxNameLen && dnsLabelRe.MatchString(s) }

// ValidateStackName checks an installed stack name: a DNS label of at most
// MaxNameLen lowercase letters, digits and dashes.
func ValidateStackName(name string) error {
	if !IsDNSLabel(name) {
		return &Error{Path: "name", Expected: fmt.Sprintf("a stack name of lowercase letters, digits and - (a DNS label of at most %d, not starting or ending with -)", MaxNameLen),
			Found: describeScalar(name)}
	}
	return nil
}

// ValidateInstances checks an instance count (install, upgrade, scale).
func ValidateInstances(n int) error {
	if n < 0 || n > MaxInstances {
		return &Error{Path: "instances", Expected: fmt.Sprintf("a number of instances between 0 and %d", MaxInstances), Found: fmt.Sprint(n)}
	}
	return nil
}

// ValidateSpec checks a typed stack, wherever it comes from: the loader
// runs it on every stack it builds, and the grid on every stack a client
// sends (where nothing the loader checked can be assumed). It checks the
// bounds above, names, nil entries in lists, and what the services refer
// to. It returns nil or a non-empty Errors whose paths name the service
// and key ("services.web.volumes[0]"). The name is checked when set.
func ValidateSpec(st *Stack) error {
	if st == nil {
		return Errors{{Msg: "no stack"}}
	}
	v := &specChecker{}
	v.stack(st)
	if len(v.errs) == 0 {
		return nil
	}
	return v.errs
}

type specChecker struct {
	errs Errors
}

func (v *specChecker) errorf(path, format string, args ...any) {
	// Enough to fix a stack; a hostile one must not make a huge answer.
	if len(v.errs) < 50 {
		v.errs = append(v.errs, &Error{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
}

func (v *specChecker) expected(path, expected, found string) {
	if len(v.errs) < 50 {
		v.errs = append(v.errs, &Error{Path: path, Expected: expected, Found: found})
	}
}

// str checks one string's length.
func (v *specChecker) str(path, s string) {
	if len(s) > MaxStringLen {
		v.expected(path, fmt.Sprintf("at most %d bytes", MaxStringLen), fmt.Sprintf("%d bytes", len(s)))
	}
}

// list checks a list's length and every string in it (none empty).
func (v *specChecker) list(path string, l []string) {
	if len(l) > MaxListLen {
		v.expected(path, fmt.Sprintf("at most %d entries", MaxListLen), fmt.Sprintf("%d", len(l)))
		return
	}
	for i, s := range l {
		if s == "" {
			v.expected(fmt.Sprintf("%s[%d]", path, i), "a value", "nothing")
			continue
		}
		v.str(fmt.Sprintf("%s[%d]", path, i), s)
	}
}

func (v *specChecker) count(path string, n, max int) bool {
	if n > max {
		v.expected(path, fmt.Sprintf("at most %d entries", max), fmt.Sprint(n))
		return false
	}
	return true
}

func (v *specChecker) strMap(path string, m map[string]string, max int) {
	if !v.count(path, len(m), max) {
		return
	}
	for k, val := range m {
		if k == "" || strings.IndexByte(k, 0) >= 0 {
			v.expected(path, "keys that are not empty", describeScalar(k))
			continue
		}
		v.str(path+"."+k, k)
		v.str(path+"."+k, val)
	}
}

func (v *specChecker) stack(st *Stack) {
	if st.Name != "" {
		if err := ValidateStackName(st.Name); err != nil {
			v.errs = append(v.errs, err.(*Error))
		}
	}
	for _, s := range []struct{ path, val string }{{"stack", st.Stack}, {"version", st.Version}, {"description", st.Description},
		{"expose", st.Expose}, {"parent_name", st.ParentName}} {
		v.str(s.path, s.val)
	}
	v.strMap("labels", st.Labels, MaxLabels)
	if st.Meta != nil {
		v.list("meta.tags", st.Meta.Tags)
		v.str("meta.readme", st.Meta.Readme)
	}
	if v.count("variables", len(st.Variables), MaxVariables) {
		for i, x := range st.Variables {
			if x == nil {
				v.expected(fmt.Sprintf("variables[%d]", i), "a variable", "null")
			}
		}
	}
	if v.count("depends", len(st.Depends), MaxDepends) {
		for i, d := range st.Depends {
			if d == nil {
				v.expected(fmt.Sprintf("depends[%d]", i), "a dependency", "null")
			}
		}
	}
	volumes := map[string]bool{}
	if v.count("volumes", len(st.Volumes), MaxVolumes) {
		for i, vol := range st.Volumes {
			path := fmt.Sprintf("volumes[%d]", i)
			if vol == nil {
				v.expected(path, "a volume {name, driver or external}", "null")
				continue
			}
			if !volNameRe.MatchString(vol.Name) || len(vol.Name) > MaxNameLen*4 {
				v.expected(path+".name", "a volume name of letters, digits, _, . and -", describeScalar(vol.Name))
				continue
			}
			path = "volumes." + vol.Name
			if volumes[vol.Name] {
				v.errorf(path, "volume %s is declared twice", vol.Name)
			}
			volumes[vol.Name] = true
			switch vol.Scope {
			case "", "instance", "stack", "grid":
			default:
				v.expected(path+".scope", "instance, stack or grid", describeScalar(vol.Scope))
			}
			v.str(path+".external", vol.External)
			v.str(path+".driver", vol.Driver)
			v.strMap(path+".driver_opts", vol.DriverOpts, MaxListLen)
		}
	}
	if len(st.Services) > MaxServices {
		v.expected("services", fmt.Sprintf("at most %d services", MaxServices), fmt.Sprint(len(st.Services)))
		return
	}
	names := map[string]bool{}
	for i, s := range st.Services {
		if s == nil {
			v.expected(fmt.Sprintf("services[%d]", i), "a service", "null")
			continue
		}
		if names[s.Name] {
			v.errorf("services."+s.Name, "service %s is defined twice", s.Name)
		}
		names[s.Name] = true
	}
	for i, s := range st.Services {
		if s != nil {
			v.service(fmt.Sprintf("services[%d]", i), s, names, volumes)
		}
	}
	if st.Expose != "" && !names[st.Expose] {
		v.expected("expose", "a service of this stack", describeScalar(st.Expose))
	}
}

func validPort(p int) bool { return p >= 1 && p <= 65535 }

func (v *specChecker) service(at string, s *Service, names, volumes map[string]bool) {
	if len(s.Name) > MaxNameLen || !serviceNameRe.MatchString(s.Name) {
		v.expected(at+".name", fmt.Sprintf("a service name of lowercase letters, digits, - and _ (at most %d)", MaxNameLen), describeScalar(s.Name))
		return
	}
	path := "services." + s.Name
	if err := ValidateInstances(s.Instances); err != nil {
		e := err.(*Error)
		e.Path = path + "." + e.Path
		v.errs = append(v.errs, e)
	}
	for _, f := range []struct{ key, val string }{{"image", s.Image}, {"user", s.User}, {"pid", s.Pid}, {"stop_signal", s.StopSignal}} {
		v.str(path+"."+f.key, f.val)
	}
	if s.Build != nil {
		v.str(path+".build.context", s.Build.Context)
		v.str(path+".build.dockerfile", s.Build.Dockerfile)
		v.count(path+".build.args", len(s.Build.Args), MaxListLen)
	}
	v.list(path+".command", s.Command)
	v.list(path+".entrypoint", s.Entrypoint)
	v.list(path+".cap_add", s.CapAdd)
	v.list(path+".cap_drop", s.CapDrop)
	v.list(path+".external_links", s.ExternalLinks)
	v.list(path+".volumes_from", s.VolumesFrom)
	v.list(path+".affinity", s.Affinity)
	v.list(path+".depends_on", s.DependsOn)
	for i, d := range s.DependsOn {
		if d != "" && !names[d] {
			v.expected(fmt.Sprintf("%s.depends_on[%d]", path, i), "a service of this stack", describeScalar(d))
		}
	}
	if v.count(path+".environment", len(s.Environment), MaxListLen) {
		size := 0
		for i, e := range s.Environment {
			size += len(e.Name) + len(e.Value) + 2
			if !specEnvNameRe.MatchString(e.Name) {
				v.expected(fmt.Sprintf("%s.environment[%d]", path, i), "an environment variable name", describeScalar(e.Name))
			}
			v.str(fmt.Sprintf("%s.environment[%d].name", path, i), e.Name)
			v.str(fmt.Sprintf("%s.environment[%d].value", path, i), e.Value)
		}
		if size > MaxEnvBytes {
			v.expected(path+".environment", fmt.Sprintf("at most %d bytes in all", MaxEnvBytes), fmt.Sprintf("%d bytes", size))
		}
	}
	if v.count(path+".ports", len(s.Ports), MaxListLen) {
		for i, p := range s.Ports {
			ipath := fmt.Sprintf("%s.ports[%d]", path, i)
			if !validPort(p.NodePort) || !validPort(p.ContainerPort) {
				v.expected(ipath, "node_port and container_port between 1 and 65535", fmt.Sprintf("%d:%d", p.NodePort, p.ContainerPort))
			}
			if p.Protocol != "" && p.Protocol != "tcp" && p.Protocol != "udp" {
				v.expected(ipath+".protocol", "tcp or udp", describeScalar(p.Protocol))
			}
			v.str(ipath+".ip", p.IP)
		}
	}
	if v.count(path+".links", len(s.Links), MaxListLen) {
		for i, l := range s.Links {
			ipath := fmt.Sprintf("%s.links[%d]", path, i)
			switch {
			case l.Service == "":
				v.expected(ipath, "a link to service[:alias] or stack/service[:alias]", "nothing")
			case l.Stack == "" && l.Service == s.Name:
				v.errorf(ipath, "a service cannot link to itself")
			case l.Stack == "" && !names[l.Service]:
				v.expected(ipath, "a service of this stack (or stack/service for another stack)", describeScalar(l.Service))
			}
			v.str(ipath, l.Stack+l.Service+l.Alias)
		}
	}
	if v.count(path+".volumes", len(s.Volumes), MaxListLen) {
		mounts := map[string]bool{}
		for i, m := range s.Volumes {
			ipath := fmt.Sprintf("%s.volumes[%d]", path, i)
			if !strings.HasPrefix(m.Path, "/") {
				v.expected(ipath, `a mount "volume:/path", "/host/path:/path" or "/path"`, describeScalar(m.Path))
				continue
			}
			if m.Volume != "" && m.HostPath != "" {
				v.errorf(ipath, "a mount is either a named volume or a host path, not both")
			}
			if m.Volume != "" && !volumes[m.Volume] {
				v.errorf(ipath, "volume %q is not declared under the top-level volumes", m.Volume)
			}
			if mounts[m.Path] {
				v.errorf(ipath, "mount point %s is used twice", m.Path)
			}
			mounts[m.Path] = true
			v.str(ipath, m.Volume+m.HostPath+m.Path+m.Flags)
		}
	}
	switch s.Deploy.Strategy {
	case "", "ha", "daemon", "random":
	default:
		v.expected(path+".deploy.strategy", "ha, daemon or random", describeScalar(s.Deploy.Strategy))
	}
	if s.Deploy.WaitForPort != 0 && !validPort(s.Deploy.WaitForPort) {
		v.expected(path+".deploy.wait_for_port", "a port number", fmt.Sprint(s.Deploy.WaitForPort))
	}
	if !(s.Deploy.MinHealth >= 0 && s.Deploy.MinHealth <= 1) {
		v.expected(path+".deploy.min_health", "a number between 0.0 and 1.0", fmt.Sprint(s.Deploy.MinHealth))
	}
	if s.Deploy.Interval < 0 {
		v.expected(path+".deploy.interval", "an interval of 0 or more", fmt.Sprint(s.Deploy.Interval))
	}
	if s.StopGracePeriod < 0 {
		v.expected(path+".stop_grace_period", "a duration of 0 or more", fmt.Sprint(s.StopGracePeriod))
	}
	if hc := s.HealthCheck; hc != nil {
		hpath := path + ".health_check"
		if hc.Protocol != "http" && hc.Protocol != "tcp" {
			v.expected(hpath+".protocol", "http or tcp", describeScalar(hc.Protocol))
		}
		if !validPort(hc.Port) {
			v.expected(hpath+".port", "a port number", fmt.Sprint(hc.Port))
		}
		for _, f := range []struct {
			key string
			val int
		}{{"timeout", hc.Timeout}, {"interval", hc.Interval}, {"initial_delay", hc.InitialDelay}} {
			if f.val < 0 || f.val > MaxHealthCheckSeconds {
				v.expected(hpath+"."+f.key, fmt.Sprintf("seconds between 0 and %d", MaxHealthCheckSeconds), fmt.Sprint(f.val))
			}
		}
		v.str(hpath+".uri", hc.URI)
	}
	if h := s.Hooks; h != nil {
		for _, hl := range []struct {
			key   string
			hooks []Hook
		}{{"pre_build", h.PreBuild}, {"pre_start", h.PreStart}, {"post_start", h.PostStart}, {"pre_stop", h.PreStop}} {
			if !v.count(path+".hooks."+hl.key, len(hl.hooks), MaxListLen) {
				continue
			}
			for i, hk := range hl.hooks {
				ipath := fmt.Sprintf("%s.hooks.%s[%d]", path, hl.key, i)
				if hk.Cmd == "" {
					v.expected(ipath+".cmd", "a command", "nothing")
				}
				v.str(ipath, hk.Name+hk.Cmd+hk.Instances)
			}
		}
	}
	if v.count(path+".secrets", len(s.Secrets), MaxListLen) {
		for i, x := range s.Secrets {
			if x.Secret == "" || x.Name == "" {
				v.expected(fmt.Sprintf("%s.secrets[%d]", path, i), "a secret and the name to inject it as", "nothing")
			}
			switch x.Type {
			case "", "env":
			case "file":
				if !IsSecretFileName(x.Name) {
					v.expected(fmt.Sprintf("%s.secrets[%d].name", path, i), "a file name under /run/secrets (letters, digits, . _ -; no /)", fmt.Sprintf("%q", x.Name))
				}
			default:
				v.expected(fmt.Sprintf("%s.secrets[%d].type", path, i), "env or file", fmt.Sprintf("%q", x.Type))
			}
			v.str(fmt.Sprintf("%s.secrets[%d]", path, i), x.Secret+x.Name+x.Type)
		}
	}
	if v.count(path+".certificates", len(s.Certificates), MaxListLen) {
		for i, x := range s.Certificates {
			if x.Subject == "" || x.Name == "" {
				v.expected(fmt.Sprintf("%s.certificates[%d]", path, i), "a subject and the name to inject it as", "nothing")
			}
			v.str(fmt.Sprintf("%s.certificates[%d]", path, i), x.Subject+x.Name+x.Type)
		}
	}
	if !(s.CPUs >= 0 && s.CPUs <= MaxCPUs) || math.IsNaN(s.CPUs) {
		v.expected(path+".cpus", fmt.Sprintf("a number of CPUs between 0 and %d", MaxCPUs), fmt.Sprint(s.CPUs))
	}
	if s.CPUShares < 0 || s.CPUShares > MaxCPUShares {
		v.expected(path+".cpu_shares", fmt.Sprintf("CPU shares between 0 and %d", MaxCPUShares), fmt.Sprint(s.CPUShares))
	}
	for _, f := range []struct {
		key string
		val int64
	}{{"mem_limit", s.MemLimit}, {"memswap_limit", s.MemswapLimit}, {"shm_size", s.ShmSize}} {
		if f.val < 0 {
			v.expected(path+"."+f.key, "a size of 0 or more bytes", fmt.Sprint(f.val))
		}
	}
	switch nm := s.NetworkMode; {
	case nm == "", nm == "host", nm == "bridge":
	case strings.HasPrefix(nm, "container:") && len(nm) > len("container:"):
		v.str(path+".network_mode", nm)
	default:
		v.expected(path+".network_mode", "host, bridge or container:<service>", describeScalar(nm))
	}
	if s.Logging != nil {
		v.str(path+".logging.driver", s.Logging.Driver)
		v.strMap(path+".logging.options", s.Logging.Options, MaxListLen)
	}
}
