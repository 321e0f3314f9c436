package stack

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

var portRe = regexp.MustCompile(`^(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d+):(\d+)(?:/(tcp|udp))?$`)

func decodePorts(d *decoder, n *yaml.Node, path string, dr *draft) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.expected(n, path, `a list of "[ip:]node_port:container_port[/protocol]"`)
		return
	}
	seen := map[string]bool{}
	for i, c := range n.Content {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		s, ok := scalarText(c)
		m := portRe.FindStringSubmatch(s)
		if !ok || m == nil {
			d.expectedFound(c, ipath, `"[ip:]node_port:container_port[/tcp|udp]" like "80:8080"`, describe(c))
			continue
		}
		node, _ := strconv.Atoi(m[2])
		cont, _ := strconv.Atoi(m[3])
		if node < 1 || node > 65535 || cont < 1 || cont > 65535 {
			d.expectedFound(c, ipath, "ports between 1 and 65535", describeScalar(s))
			continue
		}
		p := Port{IP: m[1], NodePort: node, ContainerPort: cont, Protocol: m[4]}
		if p.Protocol == "" {
			p.Protocol = "tcp"
		}
		key := fmt.Sprintf("%s:%d/%s", p.IP, p.NodePort, p.Protocol)
		if seen[key] {
			d.errorf(c, ipath, "node port %d/%s is published twice", p.NodePort, p.Protocol)
			continue
		}
		seen[key] = true
		dr.svc.Ports = append(dr.svc.Ports, p)
	}
}

var linkPartRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

func decodeLinks(d *decoder, n *yaml.Node, path string, dr *draft) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.expected(n, path, `a list of "service[:alias]" or "stack/service[:alias]"`)
		return
	}
	for i, c := range n.Content {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		s, ok := scalarText(c)
		if !ok {
			d.expected(c, ipath, `"service[:alias]" or "stack/service[:alias]"`)
			continue
		}
		target, alias, hasAlias := strings.Cut(s, ":")
		l := Link{Service: target}
		if st, svc, found := strings.Cut(target, "/"); found {
			l.Stack, l.Service = st, svc
		}
		l.Alias = l.Service
		if hasAlias {
			l.Alias = alias
		}
		if !linkPartRe.MatchString(l.Service) || (l.Stack != "" && !linkPartRe.MatchString(l.Stack)) ||
			!linkPartRe.MatchString(l.Alias) {
			d.expectedFound(c, ipath, `"service[:alias]" or "stack/service[:alias]"`, describeScalar(s))
			continue
		}
		dr.svc.Links = append(dr.svc.Links, l)
		dr.refs["links"] = append(dr.refs["links"], posRef{d, c})
	}
}

var mountFlags = []string{"ro", "rw", "z", "Z", "nocopy", "shared", "rshared", "slave", "rslave", "private",
	"rprivate", "consistent", "cached", "delegated"}

func decodeMounts(d *decoder, n *yaml.Node, path string, dr *draft) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.expected(n, path, `a list of "volume:/path[:ro]", "/host/path:/path[:ro]" or "/path"`)
		return
	}
	for i, c := range n.Content {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		s, ok := scalarText(c)
		if !ok {
			d.expected(c, ipath, "a volume definition")
			continue
		}
		m, problem := parseMount(s)
		if problem != "" {
			d.expectedFound(c, ipath, problem, describeScalar(s))
			continue
		}
		dr.svc.Volumes = append(dr.svc.Volumes, m)
		dr.refs["volumes"] = append(dr.refs["volumes"], posRef{d, c})
	}
}

func parseMount(s string) (Mount, string) {
	parts := strings.Split(s, ":")
	const format = `"volume:/path[:ro]", "/host/path:/path[:ro]" or "/path"`
	var m Mount
	switch {
	case len(parts) == 1 && strings.HasPrefix(parts[0], "/"):
		m.Path = parts[0]
		return m, ""
	case len(parts) < 2 || len(parts) > 3 || parts[0] == "" || !strings.HasPrefix(parts[1], "/"):
		return m, format
	}
	if strings.HasPrefix(parts[0], "/") {
		m.HostPath = parts[0]
	} else {
		m.Volume = parts[0]
	}
	m.Path = parts[1]
	if len(parts) == 3 {
		for _, f := range strings.Split(parts[2], ",") {
			if !contains(mountFlags, f) {
				return m, "mount flags among " + strings.Join(mountFlags, ", ")
			}
		}
		m.Flags = parts[2]
	}
	return m, ""
}

var affinityRe = regexp.MustCompile(`^([A-Za-z0-9_.-]+)(==~|!=~|==|!=)(.+)$`)

func decodeAffinity(d *decoder, n *yaml.Node, path string, dr *draft) {
	l, _ := d.strList(n, path)
	for i, s := range l {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		m := affinityRe.FindStringSubmatch(s)
		if m == nil {
			d.expectedFound(n.Content[i], ipath, `"key==value" or "key!=value" (key: node, service, container or label)`, describeScalar(s))
			continue
		}
		switch m[1] {
		case "node", "service", "container", "label":
		default:
			d.warnf(n.Content[i], ipath, "affinity key %q is not one of node, service, container, label: the grid will refuse to place the service", m[1])
		}
		dr.svc.Affinity = append(dr.svc.Affinity, s)
	}
}
