package stack

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// posRef remembers where a list entry came from, for errors found after
// extends has merged services from several files.
type posRef struct {
	d *decoder
	n *yaml.Node
}

func (p posRef) errorf(path, format string, args ...any) {
	if p.d != nil {
		p.d.errorf(p.n, path, format, args...)
	}
}

func (p posRef) warnf(path, format string, args ...any) {
	if p.d != nil {
		p.d.warnf(p.n, path, format, args...)
	}
}

// draft is a service as decoded from one file, before extends and defaults.
type draft struct {
	svc      Service
	name     string
	path     string // services.<name>
	at       posRef // the service's key
	has      map[string]bool
	refs     map[string][]posRef // per list key, where each entry came from
	extends  *extendsRef
	envFiles []string
	dir      string // base for relative paths (env_file, build)
	compose  bool   // from a docker-compose file: unknown keys only warn
	state    uint8  // extends resolution: 1 resolving, 2 done
}

type extendsRef struct {
	service string
	file    string
	stack   string
	at      posRef
}

var serviceNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// serviceKeys are the keys a service may have; each decodes into the draft.
var serviceKeys = map[string]func(d *decoder, n *yaml.Node, path string, dr *draft){
	"image": func(d *decoder, n *yaml.Node, path string, dr *draft) {
		if s, ok := d.str(n, path); ok {
			dr.svc.Image = strings.TrimSpace(s)
		}
	},
	"build":      decodeBuild,
	"command":    func(d *decoder, n *yaml.Node, path string, dr *draft) { dr.svc.Command = d.command(n, path) },
	"entrypoint": func(d *decoder, n *yaml.Node, path string, dr *draft) { dr.svc.Entrypoint = d.command(n, path) },
	"user": func(d *decoder, n *yaml.Node, path string, dr *draft) {
		dr.svc.User, _ = d.str(n, path)
	},
	"privileged": func(d *decoder, n *yaml.Node, path string, dr *draft) {
		dr.svc.Privileged, _ = d.boolean(n, path)
	},
	"cap_add": func(d *decoder, n *yaml.Node, path string, dr *draft) {
		dr.svc.CapAdd, _ = d.strList(n, path)
	},
	"cap_drop": func(d *decoder, n *yaml.Node, path string, dr *draft) {
		dr.svc.CapDrop, _ = d.strList(n, path)
	},
	"pid": func(d *decoder, n *yaml.Node, path string, dr *draft) {
		dr.svc.Pid, _ = d.str(n, path)
	},
	"read_only": func(d *decoder, n *yaml.Node, path string, dr *draft) {
		dr.svc.ReadOnly, _ = d.boolean(n, path)
	},
	"instances": func(d *decoder, n *yaml.Node, path string, dr *draft) {
		if i, ok := d.integer(n, path, 0, MaxInstances, fmt.Sprintf("a number of instances (0 to %d)", MaxInstances)); ok {
			dr.svc.Instances = i
		} else {
			delete(dr.has, "instances")
		}
	},
	"stateful": func(d *decoder, n *yaml.Node, path string, dr *draft) {
		dr.svc.Stateful, _ = d.boolean(n, path)
	},
	"environment": decodeEnvironment,
	"env_file":    decodeEnvFile,
	"ports":       decodePorts,
	"links":       decodeLinks,
	"external_links": func(d *decoder, n *yaml.Node, path string, dr *draft) {
		dr.svc.ExternalLinks = d.refList(n, path, dr, "external_links")
	},
	"depends_on": func(d *decoder, n *yaml.Node, path string, dr *draft) {
		dr.svc.DependsOn = d.refList(n, path, dr, "depends_on")
	},
	"volumes": decodeMounts,
	"volumes_from": func(d *decoder, n *yaml.Node, path string, dr *draft) {
		dr.svc.VolumesFrom = d.refList(n, path, dr, "volumes_from")
	},
	"affinity":     decodeAffinity,
	"deploy":       decodeDeploy,
	"health_check": decodeHealthCheck,
	"hooks":        decodeHooks,
	"secrets":      decodeSecrets,
	"certificates": decodeCertificates,
	"cpus": func(d *decoder, n *yaml.Node, path string, dr *draft) {
		dr.svc.CPUs, _ = d.float(n, path, 0, 1024, "a number of CPUs like 0.5")
	},
	"cpu_shares": func(d *decoder, n *yaml.Node, path string, dr *draft) {
		dr.svc.CPUShares, _ = d.integer(n, path, 0, 262144, "a whole number of CPU shares (default 1024)")
	},
	"mem_limit":     func(d *decoder, n *yaml.Node, path string, dr *draft) { dr.svc.MemLimit = d.byteSize(n, path) },
	"memswap_limit": func(d *decoder, n *yaml.Node, path string, dr *draft) { dr.svc.MemswapLimit = d.byteSize(n, path) },
	"shm_size":      func(d *decoder, n *yaml.Node, path string, dr *draft) { dr.svc.ShmSize = d.byteSize(n, path) },
	"network_mode": func(d *decoder, n *yaml.Node, path string, dr *draft) {
		s, ok := d.str(n, path)
		if !ok {
			return
		}
		if s != "host" && s != "bridge" && !(strings.HasPrefix(s, "container:") && len(s) > len("container:")) {
			d.expected(n, path, "host, bridge or container:<service>")
			return
		}
		dr.svc.NetworkMode = s
	},
	"logging":           decodeLogging,
	"stop_signal":       decodeStopSignal,
	"stop_grace_period": decodeStopGracePeriod,
	"extends":           decodeExtends,
	"only_if":           func(*decoder, *yaml.Node, string, *draft) {},
	"skip_if":           func(*decoder, *yaml.Node, string, *draft) {},
}

// composeOnlyKeys are docker-compose keys Kontena has no use for; an extended
// compose file may have them.
var composeOnlyKeys = []string{"container_name", "restart", "networks", "expose", "labels", "dns", "dns_search",
	"hostname", "domainname", "mac_address", "stdin_open", "tty", "working_dir", "ulimits", "tmpfs", "devices",
	"extra_hosts", "security_opt", "cgroup_parent", "init", "isolation", "sysctls", "userns_mode", "healthcheck",
	"platform", "profiles", "deploy"}

func serviceKeyNames() []string {
	out := make([]string, 0, len(serviceKeys))
	for k := range serviceKeys {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// decodeService reads one service mapping.
func (d *decoder) decodeService(name string, k, n *yaml.Node, dir string, compose bool) *draft {
	path := "services." + name
	dr := &draft{name: name, path: path, at: posRef{d, k}, has: map[string]bool{}, refs: map[string][]posRef{},
		dir: dir, compose: compose}
	dr.svc.Name = name
	if !serviceNameRe.MatchString(name) {
		d.expectedFound(k, path, "a service name of lowercase letters, digits, - and _", describeScalar(name))
	}
	if n.Kind != yaml.MappingNode {
		if isNull(n) {
			return dr
		}
		d.expected(n, path, "a mapping of service keys (image:, ports:, ...)")
		return nil
	}
	d.mapping(n, path, "a mapping", func(key string, kn, vn *yaml.Node) {
		kpath := path + "." + key
		fn, ok := serviceKeys[key]
		if compose && contains(composeOnlyKeys, key) {
			d.warnf(kn, kpath, "docker-compose key %q is not used by Kontena; ignored", key)
			return
		}
		if !ok {
			if compose {
				d.warnf(kn, kpath, "%s; ignored", unknownKeyMsg("service key", key, serviceKeyNames()))
				return
			}
			d.errorf(kn, kpath, "%s", unknownKeyMsg("service key", key, serviceKeyNames()))
			return
		}
		dr.has[key] = true
		fn(d, vn, kpath, dr)
	})
	return dr
}

// command accepts a string (split like a shell) or a list of words.
func (d *decoder) command(n *yaml.Node, path string) []string {
	if isNull(n) {
		return nil
	}
	if n.Kind == yaml.SequenceNode {
		l, _ := d.strList(n, path)
		return l
	}
	s, ok := scalarText(n)
	if !ok {
		d.expected(n, path, "a command string or a list of words")
		return nil
	}
	words, err := shellSplit(s)
	if err != nil {
		d.expectedFound(n, path, "a command line", fmt.Sprintf("%s (%v)", describeScalar(s), err))
		return nil
	}
	return words
}

// refList reads a list of names and remembers their positions.
func (d *decoder) refList(n *yaml.Node, path string, dr *draft, key string) []string {
	l, _ := d.strList(n, path)
	if n != nil && n.Kind == yaml.SequenceNode {
		for _, c := range n.Content {
			dr.refs[key] = append(dr.refs[key], posRef{d, c})
		}
	}
	return l
}
