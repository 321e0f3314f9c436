package stack

import (
	"strings"

	"gopkg.in/yaml.v3"
)

// serviceName is the name a service key gets. Kontena took upper-case
// letters in service names (its check was \w), but a service is reached
// by DNS (web.stack.grid.kontena.local), where names are case-insensitive,
// and Docker's and the grid's names are lower-case: such a name is lowered,
// with a warning, and references to it in this file (links, depends_on,
// volumes_from, network_mode, expose, extends, service affinity) are
// lowered with it. Two names that are the same once lowered would be one
// DNS name for two services: that is an error naming both, and the second
// is dropped. ok=false drops the service.
func (d *decoder) serviceName(name string, k *yaml.Node, sd *stackDraft) (string, bool) {
	lower := strings.ToLower(name)
	if other := sd.byName[lower]; other != nil {
		first := other.at.n.Value
		d.errorf(k, "services."+name, "services %q (line %d) and %q (line %d) differ only in case: DNS names are case-insensitive, so both would be %q; rename one of them",
			first, d.src.line(other.at.n.Line), name, d.src.line(k.Line), lower)
		return "", false
	}
	if lower == name || !serviceNameRe.MatchString(lower) {
		return name, true // decodeService reports a name that is wrong anyway
	}
	d.warnf(k, "services."+name, "service name %q has upper-case letters: it is deployed as %q (DNS names are case-insensitive); write %s",
		name, lower, lower)
	if sd.lowered == nil {
		sd.lowered = map[string]string{}
	}
	sd.lowered[name] = lower
	return lower, true
}

// lowerRefs rewrites the references to lowered services, as written in
// the file, to their names.
func (sd *stackDraft) lowerRefs() {
	if len(sd.lowered) == 0 {
		return
	}
	for _, dr := range sd.services {
		s := &dr.svc
		for i, l := range s.Links {
			if l.Stack == "" && sd.lowered[l.Service] != "" {
				if l.Alias == l.Service {
					s.Links[i].Alias = sd.lowered[l.Service]
				}
				s.Links[i].Service = sd.lowered[l.Service]
			}
		}
		for i, dep := range s.DependsOn {
			s.DependsOn[i] = sd.lowerRef(dep)
		}
		for i, vf := range s.VolumesFrom {
			s.VolumesFrom[i] = sd.lowerRef(vf)
		}
		if target, ok := strings.CutPrefix(s.NetworkMode, "container:"); ok {
			s.NetworkMode = "container:" + sd.lowerRef(target)
		}
		for i, a := range s.Affinity {
			if rest, ok := strings.CutPrefix(a, "service"); ok {
				op := rest[:len(rest)-len(strings.TrimLeft(rest, "=!~"))]
				s.Affinity[i] = "service" + op + sd.lowerRef(rest[len(op):])
			}
		}
		if ref := dr.extends; ref != nil && ref.file == "" && ref.stack == "" {
			ref.service = sd.lowerRef(ref.service)
		}
	}
	sd.st.Expose = sd.lowerRef(sd.st.Expose)
}

// lowerRef is a reference to a service, or to one of its instances
// (volumes_from: web-%s, web-1), with a lowered service's name.
func (sd *stackDraft) lowerRef(ref string) string {
	if l := sd.lowered[ref]; l != "" {
		return l
	}
	if i := strings.LastIndexByte(ref, '-'); i > 0 && sd.lowered[ref[:i]] != "" && isInstanceSuffix(ref[i+1:]) {
		return sd.lowered[ref[:i]] + ref[i:]
	}
	return ref
}

func isInstanceSuffix(s string) bool {
	if s == "%s" {
		return true
	}
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// service is the service a reference from another file names (extends
// from a stack file), by its name or as written.
func (sd *stackDraft) service(ref string) *draft {
	if dr := sd.byName[ref]; dr != nil {
		return dr
	}
	return sd.byName[sd.lowered[ref]]
}
