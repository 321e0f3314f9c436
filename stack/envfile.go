package stack

import (
	"fmt"
	"strings"
)

// applyEnvFiles appends the variables of the service's env_file(s) after its
// environment; the first definition of a name wins, so environment beats
// env_file and earlier files beat later ones.
func (ly *layer) applyEnvFiles(dr *draft) {
	if len(dr.envFiles) == 0 {
		return
	}
	env := append([]EnvVar(nil), dr.svc.Environment...)
	for i, f := range dr.envFiles {
		at := refAt(dr, "env_file", i)
		path := fmt.Sprintf("%s.env_file", dr.path)
		if dr.dir == "" {
			at.errorf(path, "a stack from a registry cannot read the local file %s", f)
			continue
		}
		b, err := ly.l.readFile(dr.localPath(f))
		if err != nil {
			at.errorf(path, "cannot read %s: %v", f, err)
			continue
		}
		vars, bad := parseEnvFile(string(b))
		for _, line := range bad {
			at.errorf(path, "%s line %d: expected KEY=VALUE, found %s", f, line.n, describeScalar(line.text))
		}
		env = append(env, vars...)
	}
	dr.svc.Environment = uniqueEnv(env)
	dr.envFiles = nil
}

type badLine struct {
	n    int
	text string
}

// parseEnvFile reads KEY=VALUE lines; blank lines and # comments are
// skipped, an "export " prefix is allowed. Values are taken as written.
func parseEnvFile(s string) ([]EnvVar, []badLine) {
	var out []EnvVar
	var bad []badLine
	for i, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || !envNameRe.MatchString(k) {
			bad = append(bad, badLine{i + 1, line})
			continue
		}
		out = append(out, EnvVar{Name: k, Value: v})
	}
	return out, bad
}
