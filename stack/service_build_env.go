package stack

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

func decodeBuild(d *decoder, n *yaml.Node, path string, dr *draft) {
	if isNull(n) {
		return
	}
	b := &Build{}
	if s, ok := scalarText(n); ok {
		b.Context = dr.localPath(s)
		dr.svc.Build = b
		return
	}
	d.mapping(n, path, "a build context path or {context, dockerfile, args}", func(key string, kn, vn *yaml.Node) {
		kpath := path + "." + key
		switch key {
		case "context":
			if s, ok := d.nonEmpty(vn, kpath, "a directory"); ok {
				b.Context = dr.localPath(s)
			}
		case "dockerfile":
			b.Dockerfile, _ = d.str(vn, kpath)
		case "args":
			b.Args = d.buildArgs(vn, kpath)
		default:
			d.errorf(kn, kpath, "%s", unknownKeyMsg("build key", key, []string{"context", "dockerfile", "args"}))
		}
	})
	dr.svc.Build = b
}

func (dr *draft) localPath(p string) string {
	if dr.dir == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dr.dir, p)
}

// buildArgs reads args as K=V lines or a mapping; a bare K (or K: null)
// takes its value from the build environment.
func (d *decoder) buildArgs(n *yaml.Node, path string) map[string]*string {
	if isNull(n) {
		return nil
	}
	out := map[string]*string{}
	switch n.Kind {
	case yaml.SequenceNode:
		for i, c := range n.Content {
			s, ok := scalarText(c)
			if !ok {
				d.expected(c, fmt.Sprintf("%s[%d]", path, i), "KEY=VALUE")
				continue
			}
			k, v, found := strings.Cut(s, "=")
			if !found {
				out[k] = nil
				continue
			}
			val := v
			out[k] = &val
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i].Value, n.Content[i+1]
			if isNull(v) {
				out[k] = nil
				continue
			}
			s, ok := scalarText(v)
			if !ok {
				d.expected(v, path+"."+k, "a string")
				continue
			}
			out[k] = &s
		}
	default:
		d.expected(n, path, "a list of KEY=VALUE or a mapping")
	}
	return out
}

var envNameRe = regexp.MustCompile(`^[^=\s]+$`)

func decodeEnvironment(d *decoder, n *yaml.Node, path string, dr *draft) {
	if isNull(n) {
		return
	}
	var env []EnvVar
	switch n.Kind {
	case yaml.SequenceNode:
		for i, c := range n.Content {
			ipath := fmt.Sprintf("%s[%d]", path, i)
			s, ok := scalarText(c)
			if !ok {
				d.expected(c, ipath, "KEY=VALUE")
				continue
			}
			k, v, found := strings.Cut(s, "=")
			if !found || !envNameRe.MatchString(k) {
				d.expectedFound(c, ipath, "KEY=VALUE", describeScalar(s))
				continue
			}
			env = append(env, EnvVar{Name: k, Value: v})
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i].Value, n.Content[i+1]
			if !envNameRe.MatchString(k) {
				d.expectedFound(n.Content[i], path, "an environment variable name", describeScalar(k))
				continue
			}
			if isNull(v) {
				env = append(env, EnvVar{Name: k})
				continue
			}
			s, ok := scalarText(v)
			if !ok {
				d.expected(v, path+"."+k, "a string, number or boolean")
				continue
			}
			env = append(env, EnvVar{Name: k, Value: s})
		}
	default:
		d.expected(n, path, "a list of KEY=VALUE or a mapping")
		return
	}
	dr.svc.Environment = uniqueEnv(env)
}

// uniqueEnv keeps the first definition of each name.
func uniqueEnv(env []EnvVar) []EnvVar {
	seen := map[string]bool{}
	out := env[:0:0]
	for _, e := range env {
		if seen[e.Name] {
			continue
		}
		seen[e.Name] = true
		out = append(out, e)
	}
	return out
}

func decodeEnvFile(d *decoder, n *yaml.Node, path string, dr *draft) {
	if isNull(n) {
		return
	}
	if s, ok := scalarText(n); ok {
		dr.envFiles = []string{s}
		dr.refs["env_file"] = []posRef{{d, n}}
		return
	}
	l, _ := d.strList(n, path)
	dr.envFiles = l
	if n.Kind == yaml.SequenceNode {
		for _, c := range n.Content {
			dr.refs["env_file"] = append(dr.refs["env_file"], posRef{d, c})
		}
	}
}
