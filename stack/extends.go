package stack

import (
	"path/filepath"
	"reflect"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// resolveExtends merges the service dr extends (in this file, another stack
// file, a registry stack or a docker-compose file) into dr.
func (ly *layer) resolveExtends(sd *stackDraft, dr *draft, sc *scope) {
	if dr.state == 1 {
		dr.at.errorf(dr.path+".extends", "extends loops back to service %q", dr.name)
		return
	}
	if dr.state == 2 || dr.extends == nil {
		dr.state = 2
		return
	}
	dr.state = 1
	defer func() { dr.state = 2 }()
	ref := dr.extends
	dr.extends = nil
	var parent *draft
	switch {
	case ref.file == "" && ref.stack == "":
		parent = sd.byName[ref.service]
		if parent == nil {
			ref.at.errorf(dr.path+".extends", "service %q is not defined in this file (or only_if/skip_if removed it)", ref.service)
			return
		}
		if parent == dr {
			ref.at.errorf(dr.path+".extends", "a service cannot extend itself")
			return
		}
		ly.resolveExtends(sd, parent, sc)
	default:
		target := ref.file
		if target == "" {
			target = ref.stack
		}
		parent = ly.extendedService(dr, ref, target, sc)
		if parent == nil {
			return
		}
	}
	merged := mergeDraft(parent, dr)
	*dr = *merged
	dr.state = 1
}

// extendedService loads service ref.service from another file.
func (ly *layer) extendedService(dr *draft, ref *extendsRef, target string, sc *scope) *draft {
	l := ly.l
	path := dr.path + ".extends"
	if ly.depth+1 > l.lim.MaxDependsDepth {
		ref.at.errorf(path, "extends across files is nested more than %d levels deep", l.lim.MaxDependsDepth)
		return nil
	}
	dir, local := dr.dir, dr.dir != ""
	if ref.stack != "" {
		dir, local = "", false
	}
	src, text, err := l.open(target, dir, local)
	if err != nil {
		ref.at.errorf(path, "cannot read %s: %v", target, err)
		return nil
	}
	id := identity(src) + "#" + ref.service
	for _, c := range ly.chain {
		if c == id {
			ref.at.errorf(path, "extends loops: %s → %s", strings.Join(ly.chain, " → "), id)
			return nil
		}
	}
	chain := append(append([]string(nil), ly.chain...), id)
	d := ly.decoder(src)
	root, perr := parseYAML(src, text)
	if perr != nil {
		*d.errs = append(*d.errs, perr)
		return nil
	}
	if root.Kind == yaml.MappingNode && mapKeyNode(root, "stack") != nil {
		return ly.serviceFromStackFile(src, text, ref, chain)
	}
	return ly.composeService(src, text, ref.service, ref.at, path, sc, chain)
}

// serviceFromStackFile loads another Kontena stack file for one of its
// services. Its variables get this stack's values where the names match.
func (ly *layer) serviceFromStackFile(src *source, text []byte, ref *extendsRef, chain []string) *draft {
	values := map[string]any{}
	for k, v := range ly.eng.storedValues() {
		values[k] = v
	}
	sub := &layer{l: ly.l, src: src, text: text, name: ly.name, parent: ly.parent, values: values,
		depth: ly.depth + 1, chain: chain, onlyService: true}
	_, sd := sub.run()
	if sd == nil {
		return nil
	}
	dr := sd.service(ref.service)
	if dr == nil {
		ref.at.errorf("extends", "service %q is not defined in %s", ref.service, src.name)
		return nil
	}
	return dr
}

// composeService reads a service of a docker-compose file (version 2/3 with
// services:, or version 1 with services at the top). ${} in it is
// substituted from the extending stack's variables, then the environment.
func (ly *layer) composeService(src *source, text []byte, service string, at posRef, path string, sc *scope, chain []string) *draft {
	d := ly.decoder(src)
	root := ly.parseExpand(d, text)
	if root == nil {
		return nil
	}
	services := root
	if s := mapGet(root, "services"); s != nil {
		services = s
	}
	vn := mapGet(services, service)
	kn := mapKeyNode(services, service)
	if vn == nil {
		at.errorf(path, "service %q is not defined in %s", service, src.name)
		return nil
	}
	csc := &scope{values: sc.values, unset: sc.unset, env: ly.l.env}
	d.substituteTree(vn, "services."+service, csc)
	dr := d.decodeService(service, kn, vn, src.dir, true)
	if dr == nil {
		return nil
	}
	ly.applyEnvFiles(dr)
	if ref := dr.extends; ref != nil {
		dr.extends = nil
		target := ref.file
		if target == "" {
			// The same file; dr.dir is its directory.
			target = src.name
			if src.path != "" {
				target = filepath.Base(src.path)
			}
		}
		sub := &layer{l: ly.l, src: src, depth: ly.depth + 1, chain: chain, eng: ly.eng, name: ly.name}
		var parent *draft
		if ref.stack != "" {
			parent = sub.extendedService(dr, ref, ref.stack, sc)
		} else {
			parent = sub.extendedService(dr, ref, target, sc)
		}
		if parent != nil {
			dr = mergeDraft(parent, dr)
		}
	}
	return dr
}

// serviceFields maps service keys to Service fields for merging.
var serviceFields = sync.OnceValue(func() map[string][]int {
	m := map[string][]int{}
	t := reflect.TypeOf(Service{})
	for i := 0; i < t.NumField(); i++ {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		m[tag] = t.Field(i).Index
	}
	return m
})

// mergeDraft applies child's keys over parent, as Kontena did: keys replace
// the parent's, except environment (merged by name, child wins), secrets
// (merged by secret) and build args (merged by name).
func mergeDraft(parent, child *draft) *draft {
	out := *parent
	out.name, out.path, out.at, out.dir, out.compose = child.name, child.path, child.at, child.dir, child.compose
	out.svc.Name = child.name
	out.extends = nil
	out.state = 0
	out.has = map[string]bool{}
	for k := range parent.has {
		out.has[k] = true
	}
	out.refs = map[string][]posRef{}
	for k, v := range parent.refs {
		out.refs[k] = v
	}
	fields := serviceFields()
	dst := reflect.ValueOf(&out.svc).Elem()
	src := reflect.ValueOf(&child.svc).Elem()
	for key := range child.has {
		out.has[key] = true
		if refs, ok := child.refs[key]; ok {
			out.refs[key] = refs
		}
		switch key {
		case "environment", "env_file":
			out.svc.Environment = mergeEnv(parent.svc.Environment, child.svc.Environment)
		case "secrets":
			out.svc.Secrets = mergeSecrets(parent.svc.Secrets, child.svc.Secrets)
		case "build":
			out.svc.Build = mergeBuild(parent.svc.Build, child.svc.Build)
		default:
			if idx, ok := fields[key]; ok {
				dst.FieldByIndex(idx).Set(src.FieldByIndex(idx))
			}
		}
	}
	return &out
}

func mergeEnv(parent, child []EnvVar) []EnvVar {
	childVals := map[string]string{}
	for _, e := range child {
		childVals[e.Name] = e.Value
	}
	out := make([]EnvVar, 0, len(parent)+len(child))
	seen := map[string]bool{}
	for _, e := range parent {
		if v, ok := childVals[e.Name]; ok {
			e.Value = v
		}
		seen[e.Name] = true
		out = append(out, e)
	}
	for _, e := range child {
		if !seen[e.Name] {
			seen[e.Name] = true
			out = append(out, e)
		}
	}
	return out
}

func mergeSecrets(parent, child []Secret) []Secret {
	out := append([]Secret(nil), child...)
	for _, p := range parent {
		dup := false
		for _, c := range child {
			dup = dup || c.Secret == p.Secret
		}
		if !dup {
			out = append(out, p)
		}
	}
	return out
}

func mergeBuild(parent, child *Build) *Build {
	if child == nil {
		return parent
	}
	if parent == nil {
		return child
	}
	out := *parent
	if child.Context != "" {
		out.Context = child.Context
	}
	if child.Dockerfile != "" {
		out.Dockerfile = child.Dockerfile
	}
	out.Args = map[string]*string{}
	for k, v := range parent.Args {
		out.Args[k] = v
	}
	for k, v := range child.Args {
		out.Args[k] = v
	}
	return &out
}

// finalize applies defaults and returns the service.
func (dr *draft) finalize() *Service {
	s := dr.svc
	s.Name = dr.name
	if !dr.has["instances"] {
		s.Instances = 1
	}
	if s.Deploy.Strategy == "" {
		s.Deploy.Strategy = "ha"
	}
	if !dr.has["deploy.min_health"] {
		s.Deploy.MinHealth = 0.8
	}
	if !dr.has["stop_grace_period"] {
		s.StopGracePeriod = Duration(10e9)
	}
	return &s
}

// validateStack runs the checks that need every service: links, volumes,
// expose.
func validateStack(sd *stackDraft) {
	st := sd.st
	names := map[string]bool{}
	for _, s := range st.Services {
		names[s.Name] = true
	}
	for i, s := range st.Services {
		dr := sd.services[i]
		path := "services." + s.Name
		for j, lk := range s.Links {
			if lk.Stack != "" || names[lk.Service] {
				if lk.Stack == "" && lk.Service == s.Name {
					refAt(dr, "links", j).errorf(path+".links", "a service cannot link to itself")
				}
				continue
			}
			refAt(dr, "links", j).errorf(path+".links", "expected a service of this stack (or stack/service for another stack), found %q", lk.Service)
		}
		for j, dep := range s.DependsOn {
			if !names[dep] {
				refAt(dr, "depends_on", j).errorf(path+".depends_on", "expected a service of this stack, found %q", dep)
			}
		}
		mounts := map[string]bool{}
		for j, m := range s.Volumes {
			if m.Volume != "" && st.Volume(m.Volume) == nil {
				if _, declared := sd.volRefs[m.Volume]; declared {
					continue // the volume itself was reported or skipped
				}
				refAt(dr, "volumes", j).errorf(path+".volumes", "volume %q is not declared under the top-level volumes", m.Volume)
			}
			if mounts[m.Path] {
				refAt(dr, "volumes", j).errorf(path+".volumes", "mount point %s is used twice", m.Path)
			}
			mounts[m.Path] = true
		}
		if s.Build != nil && s.Build.Context == "" {
			dr.at.errorf(path+".build.context", "expected a build context directory, found nothing")
		}
		if s.Image == "" {
			dr.at.warnf(path, "no image: the service cannot be deployed until it has one")
		}
	}
	if st.Expose != "" && !names[st.Expose] {
		sd.expose.errorf("expose", "expected a service of this stack, found %q", st.Expose)
	}
}

func refAt(dr *draft, key string, i int) posRef {
	if refs := dr.refs[key]; i < len(refs) {
		return refs[i]
	}
	return dr.at
}
