package stack

import (
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

var topLevelKeys = []string{"stack", "version", "description", "variables", "expose", "services", "volumes",
	"depends", "labels", "meta", "networks", "data"}

var (
	stackKeyRe = regexp.MustCompile(`^(?:([a-z0-9][a-z0-9_.-]*)/)?([a-z0-9][a-z0-9-]*)(?::([0-9A-Za-z.+-]+))?$`)
	versionRe  = regexp.MustCompile(`^\d+(\.\d+){0,2}([-+][0-9A-Za-z.+-]+)?$`)
	depNameRe  = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	volNameRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
)

// stackKey is the parsed `stack:` value.
type stackKey struct {
	full, user, name, version string
}

func parseStackKey(n *yaml.Node) (stackKey, bool) {
	s, ok := scalarText(n)
	if !ok {
		return stackKey{}, false
	}
	m := stackKeyRe.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return stackKey{full: s}, false
	}
	return stackKey{full: m[0], user: m[1], name: m[2], version: m[3]}, true
}

// stackDraft is a decoded stack file before extends, defaults and the
// checks that need all services.
type stackDraft struct {
	st       *Stack
	services []*draft
	byName   map[string]*draft
	lowered  map[string]string // upper-case service names as written → their name
	volRefs  map[string]posRef
	depRefs  map[string]posRef // the dependency's key
	depStack map[string]posRef // its stack: value
	expose   posRef
}

// decodeTop reads the top-level keys of a rendered, substituted stack file.
func (d *decoder) decodeTop(root *yaml.Node, dir string) *stackDraft {
	sd := &stackDraft{st: &Stack{Version: "0.0.1"}, byName: map[string]*draft{}, volRefs: map[string]posRef{},
		depRefs: map[string]posRef{}, depStack: map[string]posRef{}}
	st := sd.st
	if root.Kind != yaml.MappingNode {
		d.expected(root, "", "a mapping of stack keys (stack:, services:, ...)")
		return sd
	}
	if sn := mapGet(root, "stack"); isNull(sn) {
		d.add(d.errs, &yaml.Node{Line: 1, Column: 1}, "stack", Error{Msg: missingStackMsg(root)})
	} else if k, ok := parseStackKey(sn); ok {
		st.Stack, st.User, st.StackName = k.full, k.user, k.name
		if k.version != "" {
			st.Version = k.version
		}
	} else {
		d.expected(sn, "stack", `"user/name" (name: lowercase letters, digits and -)`)
	}
	d.mapping(root, "", "a mapping", func(key string, k, v *yaml.Node) {
		switch key {
		case "stack", "variables", "data":
		case "version":
			s, ok := scalarText(v)
			if !ok || !versionRe.MatchString(s) {
				d.expected(v, "version", `the stack's version, like "1.0.0"`)
				return
			}
			st.Version = s
		case "description":
			st.Description, _ = d.str(v, "description")
		case "expose":
			st.Expose, _ = d.str(v, "expose")
			sd.expose = posRef{d, v}
		case "services":
			d.decodeServices(v, dir, sd)
		case "volumes":
			d.decodeVolumes(v, sd)
		case "depends":
			d.decodeDepends(v, sd)
		case "labels":
			st.Labels = d.decodeLabels(v, "labels")
		case "meta":
			st.Meta = d.decodeMeta(v)
		case "networks":
			d.warnf(k, "networks", "networks are not supported: all services of a grid share one network and reach each other by name (service.stack.grid.kontena.local); ignored")
		default:
			d.warnf(k, key, "%s; ignored", unknownKeyMsg("top-level key", key, topLevelKeys))
		}
	})
	sd.lowerRefs()
	if len(sd.services) == 0 && len(st.Volumes) == 0 && isNull(mapGet(root, "services")) && isNull(mapGet(root, "volumes")) {
		d.add(d.errs, root, "", Error{Msg: "the file does not list any services or volumes"})
	}
	return sd
}

// missingStackMsg explains what to add, recognising docker-compose files.
func missingStackMsg(root *yaml.Node) string {
	msg := `stack is required: add a line "stack: <user>/<name>" (for example "stack: myuser/myapp") at the top of the file`
	if v := mapGet(root, "version"); v != nil && !isNull(v) {
		if s, _ := scalarText(v); !strings.Contains(s, ".") || strings.Count(s, ".") == 1 {
			return msg + fmt.Sprintf(`; this looks like a docker-compose file (version: %q): in a Kontena stack file "version" is the stack's own version, like 0.1.0, and compose services can be reused with "extends: {file: docker-compose.yml, service: NAME}"`, s)
		}
	}
	return msg
}

func (d *decoder) decodeServices(n *yaml.Node, dir string, sd *stackDraft) {
	if isNull(n) {
		return
	}
	d.mapping(n, "services", "a mapping of service names to services", func(name string, k, v *yaml.Node) {
		name, ok := d.serviceName(name, k, sd)
		if !ok {
			return
		}
		dr := d.decodeService(name, k, v, dir, false)
		if dr == nil {
			return
		}
		sd.services = append(sd.services, dr)
		sd.byName[name] = dr
	})
}

func (d *decoder) decodeVolumes(n *yaml.Node, sd *stackDraft) {
	if isNull(n) {
		return
	}
	d.mapping(n, "volumes", "a mapping of volume names to volumes", func(name string, k, v *yaml.Node) {
		path := "volumes." + name
		if !volNameRe.MatchString(name) {
			d.expectedFound(k, path, "a volume name of letters, digits, _, . and -", describeScalar(name))
			return
		}
		vol := &Volume{Name: name}
		sd.volRefs[name] = posRef{d, k}
		if isNull(v) {
			d.expectedFound(k, path, `"driver: <name>" or "external: true"`, "neither")
			return
		}
		hasDriver := false
		ok := d.mapping(v, path, "a mapping {driver, driver_opts, scope} or {external: true}", func(key string, kn, vn *yaml.Node) {
			kpath := path + "." + key
			switch key {
			case "external":
				if vn.Kind == yaml.MappingNode {
					if s, ok := d.nonEmpty(mapGet(vn, "name"), kpath+".name", "the name of an existing volume"); ok {
						vol.External = s
					}
					return
				}
				if b, ok := d.boolean(vn, kpath); ok && b {
					vol.External = name
				}
			case "driver":
				if s, ok := d.nonEmpty(vn, kpath, "a volume driver name, like local"); ok {
					vol.Driver, hasDriver = s, true
				}
			case "driver_opts":
				vol.DriverOpts, _ = d.strMap(vn, kpath)
			case "scope":
				s, _ := d.str(vn, kpath)
				if s != "instance" && s != "stack" && s != "grid" {
					d.expected(vn, kpath, "instance, stack or grid")
					return
				}
				vol.Scope = s
			case "only_if", "skip_if":
			default:
				d.errorf(kn, kpath, "%s", unknownKeyMsg("volume key", key, []string{"external", "driver", "driver_opts", "scope", "only_if", "skip_if"}))
			}
		})
		if !ok {
			return
		}
		if vol.External == "" && !hasDriver && mapKeyNode(v, "driver") == nil {
			d.expectedFound(k, path, `"driver: <name>" (like driver: local) or "external: true"`, "neither")
			return
		}
		if vol.External == "" && vol.Scope == "" {
			vol.Scope = "instance"
		}
		sd.st.Volumes = append(sd.st.Volumes, vol)
	})
}

func (d *decoder) decodeDepends(n *yaml.Node, sd *stackDraft) {
	if isNull(n) {
		return
	}
	d.mapping(n, "depends", "a mapping of dependency names to {stack, variables}", func(name string, k, v *yaml.Node) {
		path := "depends." + name
		if !depNameRe.MatchString(name) {
			d.expectedFound(k, path, "a dependency name of lowercase letters, digits, - and _", describeScalar(name))
			return
		}
		dep := &Dependency{Name: name}
		ok := d.mapping(v, path, "a mapping {stack: file.yml or user/name:version, variables: {...}}", func(key string, kn, vn *yaml.Node) {
			kpath := path + "." + key
			switch key {
			case "stack":
				dep.Stack, _ = d.nonEmpty(vn, kpath, "a stack file or a stack like user/name:version")
			case "variables":
				if isNull(vn) {
					return
				}
				if vn.Kind != yaml.MappingNode {
					d.expected(vn, kpath, "a mapping of variable values")
					return
				}
				dep.Variables, _ = nodeValue(vn).(map[string]any)
			default:
				d.errorf(kn, kpath, "%s", unknownKeyMsg("depends key", key, []string{"stack", "variables"}))
			}
		})
		if !ok {
			return
		}
		if dep.Stack == "" {
			if mapKeyNode(v, "stack") == nil {
				d.expectedFound(v, path+".stack", "a stack file or a stack like user/name:version", "nothing")
			}
			return
		}
		sd.depRefs[name] = posRef{d, k}
		sd.depStack[name] = posRef{d, mapGet(v, "stack")}
		sd.st.Depends = append(sd.st.Depends, dep)
	})
}

func (d *decoder) decodeLabels(n *yaml.Node, path string) map[string]string {
	if isNull(n) {
		return nil
	}
	out := map[string]string{}
	switch n.Kind {
	case yaml.SequenceNode:
		for i, c := range n.Content {
			s, ok := scalarText(c)
			k, v, found := strings.Cut(s, "=")
			if !ok || !found || k == "" {
				d.expectedFound(c, fmt.Sprintf("%s[%d]", path, i), "key=value", describe(c))
				continue
			}
			out[k] = v
		}
	case yaml.MappingNode:
		m, _ := d.strMap(n, path)
		for k, v := range m {
			out[k] = v
		}
	default:
		d.expected(n, path, "a list of key=value")
	}
	return out
}

func (d *decoder) decodeMeta(n *yaml.Node) *Meta {
	if isNull(n) {
		return nil
	}
	m := &Meta{}
	d.mapping(n, "meta", "a mapping {tags, readme, license, required_kontena_version}", func(key string, kn, vn *yaml.Node) {
		path := "meta." + key
		switch key {
		case "tags":
			m.Tags, _ = d.strList(vn, path)
		case "readme":
			m.Readme, _ = d.str(vn, path)
		case "license":
			m.License, _ = d.str(vn, path)
		case "required_kontena_version":
			m.RequiredKontenaVersion, _ = d.str(vn, path)
		default:
			d.warnf(kn, path, "%s; ignored", unknownKeyMsg("meta key", key, []string{"tags", "readme", "license", "required_kontena_version"}))
		}
	})
	return m
}
