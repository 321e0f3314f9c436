package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestValidateCommand(t *testing.T) {
	files := MapFS{
		"kontena.yml": `stack: user/app
variables:
  replicas:
    type: integer
    default: 2
  password:
    type: string
    from:
      random_string: 12
    to:
      vault: APP_PW
depends:
  cache:
    stack: cache.yml
services:
  web:
    image: web
    instances: ${replicas}
    environment:
      - CACHE=${cache}
networks:
  x: {}
`,
		"cache.yml": `stack: user/cache
variables:
  mem:
    type: string
    default: 64m
services:
  redis:
    image: redis
    mem_limit: ${mem}
`,
		"values.yml": "replicas: 5\ncache:\n  mem: 128m\n",
		"broken.yml": "stack: user/b\nservices:\n  web:\n    image: w\n    instances: x\n    stateful: maybe\n",
	}
	run := func(req ValidateRequest) (string, string, error, map[string][]byte) {
		written := map[string][]byte{}
		req.Options.FS = files
		req.Options.LookupEnv = envFrom(nil)
		req.WriteFile = func(p string, b []byte) error { written[p] = b; return nil }
		var out, errOut bytes.Buffer
		err := Validate(context.Background(), req, &out, &errOut)
		return out.String(), errOut.String(), err, written
	}

	t.Run("yaml output, no grid needed", func(t *testing.T) {
		out, stderr, err, _ := run(ValidateRequest{Values: []string{"replicas=3"}})
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := yaml.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("output is not YAML: %v\n%s", err, out)
		}
		eq(t, "name", doc["name"], any("app"))
		services := doc["services"].([]any)
		web := services[0].(map[string]any)
		eq(t, "instances", web["instances"], any(3))
		eq(t, "stop_grace_period", web["stop_grace_period"], any("10s"))
		if !strings.Contains(out, "value: '********'") && !strings.Contains(out, `value: "********"`) {
			t.Errorf("vault-bound values must be masked:\n%s", out)
		}
		deps := doc["dependencies"].([]any)
		eq(t, "dependency name", deps[0].(map[string]any)["name"], any("app-cache"))
		if !strings.Contains(stderr, "warning: kontena.yml:21:1: networks: networks are not supported") {
			t.Errorf("warnings go to stderr:\n%s", stderr)
		}
	})
	t.Run("json output", func(t *testing.T) {
		out, _, err, _ := run(ValidateRequest{Format: "json", Name: "renamed"})
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Name     string `json:"name"`
			Services []struct {
				Name        string   `json:"name"`
				Instances   int      `json:"instances"`
				Environment []EnvVar `json:"environment"`
			} `json:"services"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out)
		}
		eq(t, "name", doc.Name, "renamed")
		eq(t, "CACHE", doc.Services[0].Environment[0].Value, "renamed-cache")
	})
	t.Run("values from a file, values to a file", func(t *testing.T) {
		_, _, err, written := run(ValidateRequest{ValuesFrom: "values.yml", Values: []string{"cache.mem=256m"}, ValuesTo: "out.yml"})
		if err != nil {
			t.Fatal(err)
		}
		vals, err := ParseValuesFile(written["out.yml"])
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "replicas from the file", vals["replicas"], any(5))
		eq(t, "-v beats the file", vals["cache.mem"], any("256m"))
		if _, ok := vals["password"]; ok {
			t.Errorf("vault-bound values are not written")
		}
		// The written file feeds the next run (upgrade --reuse-values).
		files["prev.yml"] = string(written["out.yml"])
		out, _, err, _ := run(ValidateRequest{ValuesFrom: "prev.yml", Format: "json"})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, `"mem_limit": 268435456`) {
			t.Errorf("reused value not applied:\n%s", out)
		}
	})
	t.Run("dependency tree", func(t *testing.T) {
		out, _, err, _ := run(ValidateRequest{DependencyTree: true})
		if err != nil {
			t.Fatal(err)
		}
		var tree DependencyNode
		if err := yaml.Unmarshal([]byte(out), &tree); err != nil {
			t.Fatal(err)
		}
		eq(t, "root", tree.Name, "app")
		eq(t, "child", tree.Depends[0].Name, "app-cache")
		eq(t, "child file", tree.Depends[0].File, "cache.yml")
	})
	t.Run("all errors", func(t *testing.T) {
		_, _, err, _ := run(ValidateRequest{File: "broken.yml"})
		wantErr(t, err, "broken.yml:5:16: services.web.instances", "broken.yml:6:15: services.web.stateful")
	})
	t.Run("bad -v", func(t *testing.T) {
		_, _, err, _ := run(ValidateRequest{Values: []string{"novalue"}})
		wantErr(t, err, "-v novalue: expected key=value")
	})
	t.Run("bad format", func(t *testing.T) {
		_, _, err, _ := run(ValidateRequest{Format: "xml"})
		wantErr(t, err, "--format: expected yaml or json")
	})
	t.Run("values with commas", func(t *testing.T) {
		vals, err := ParseValueFlags([]string{"a=1,2", "b.c=x=y"})
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "a", vals["a"], any("1,2"))
		eq(t, "b.c", vals["b.c"], any("x=y"))
	})
}

func TestTerminalPrompter(t *testing.T) {
	in := strings.NewReader("\n2\nx\n1,3\nhello\n")
	var out bytes.Buffer
	p := NewTerminalPrompter(in, &out)
	ctx := context.Background()
	got, err := p.Ask(ctx, Question{Variable: "v", Message: "Value?", Default: "dflt"})
	eq(t, "default on empty", got, "dflt")
	eq(t, "err", err, nil)
	choices := []Choice{{Value: "a"}, {Value: "b"}, {Value: "c"}}
	sel, _ := p.Choose(ctx, Question{Variable: "e", Message: "Pick"}, choices, false)
	eq(t, "choice by number", strings.Join(sel, ","), "b")
	multi, _ := p.Choose(ctx, Question{Variable: "m", Message: "Pick"}, choices, true)
	eq(t, "retry after a bad answer, then several", strings.Join(multi, ","), "a,c")
	ans, _ := p.Ask(ctx, Question{Variable: "w", Message: "Word"})
	eq(t, "answer", ans, "hello")
	_, err = p.Ask(ctx, Question{Variable: "eof", Message: "More"})
	if err == nil || !strings.Contains(err.Error(), ErrNotTerminal.Error()) {
		t.Errorf("EOF must be ErrNotTerminal, got %v", err)
	}
	if !strings.Contains(out.String(), "Value? [dflt]: ") || !strings.Contains(out.String(), "  2) b") {
		t.Errorf("prompt text:\n%s", out.String())
	}
}

// A prompt that hits end of input behaves like no terminal: the variable
// falls back and the error says how to pass it.
func TestPromptEOF(t *testing.T) {
	opts := baseOptions()
	opts.Prompter = NewTerminalPrompter(strings.NewReader(""), &bytes.Buffer{})
	_, err := loadString(t, varStack("  x:\n    type: string\n    from: prompt\n"), opts)
	wantErr(t, err, "no value: this variable is asked with a prompt, but there is no terminal; pass it with -v x=VALUE")
}
