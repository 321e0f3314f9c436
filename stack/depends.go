package stack

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// addDepNames declares ${dep} for each dependency: the child's stack name.
func (ly *layer) addDepNames(root *yaml.Node, deps map[string]string) {
	dn := mapGet(root, "depends")
	if dn == nil || dn.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(dn.Content); i += 2 {
		name := dn.Content[i].Value
		if _, ok := deps[name]; !ok && depNameRe.MatchString(name) {
			deps[name] = ly.name + "-" + name
		}
	}
}

func (ly *layer) loadDependency(dep *Dependency, at, stackAt posRef) *Result {
	l := ly.l
	path := "depends." + dep.Name
	if ly.depth+1 > l.lim.MaxDependsDepth {
		at.errorf(path, "dependencies are nested more than %d levels deep", l.lim.MaxDependsDepth)
		return nil
	}
	src, text, err := l.open(dep.Stack, ly.src.dir, ly.src.path != "")
	if err != nil {
		stackAt.errorf(path+".stack", "cannot read %s: %v", dep.Stack, err)
		return nil
	}
	id := identity(src)
	for _, c := range ly.chain {
		if c == id {
			at.errorf(path, "circular dependency: %s → %s", strings.Join(ly.chain, " → "), id)
			return nil
		}
	}
	values := map[string]any{}
	for k, v := range dep.Variables {
		values[k] = v
	}
	prefix := dep.Name + "."
	for k, v := range ly.values {
		if strings.HasPrefix(k, prefix) {
			values[k[len(prefix):]] = v
		}
	}
	defaults := map[string]any{}
	for k, v := range ly.defaults {
		if strings.HasPrefix(k, prefix) {
			defaults[k[len(prefix):]] = v
		}
	}
	child := &layer{l: l, src: src, text: text, name: dep.InstalledName, parent: ly.name,
		valuePrefix: ly.valuePrefix + prefix, values: values, defaults: defaults, prompter: ly.prompter,
		depth: ly.depth + 1, chain: append(append([]string(nil), ly.chain...), id)}
	res, _ := child.run()
	return res
}

// checkUnusedValues warns about -v names no stack declares: usually a typo.
func (l *loader) checkUnusedValues(res *Result) {
	byPrefix := map[string]*Result{"": res}
	var walk func(r *Result, prefix string)
	walk = func(r *Result, prefix string) {
		if r.Stack == nil {
			return
		}
		for _, dep := range r.Stack.Depends {
			for _, c := range r.Children {
				if c.Name == dep.InstalledName {
					byPrefix[prefix+dep.Name+"."] = c
					walk(c, prefix+dep.Name+".")
				}
			}
		}
	}
	walk(res, "")
	for _, k := range sortedKeys(l.opts.Values) {
		prefix, name := "", k
		if i := strings.LastIndexByte(k, '.'); i >= 0 {
			prefix, name = k[:i+1], k[i+1:]
		}
		r := byPrefix[prefix]
		known := false
		if r != nil && r.Stack != nil {
			for _, v := range r.Stack.Variables {
				known = known || v.Name == name
			}
		}
		if !known {
			l.warns = append(l.warns, &Error{File: res.File, Msg: fmt.Sprintf("-v %s: the stack declares no such variable; ignored", k)})
		}
	}
}
