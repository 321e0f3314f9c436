package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// fuzzFiles give the fuzzer something to extend and depend on.
var fuzzFiles = MapFS{
	"compose.yml": "version: '2'\nservices:\n  web:\n    image: web:$TAG\n    environment: [A=1]\n    extends:\n      service: base\n  base:\n    image: base\n",
	"child.yml":   "stack: user/child\nvariables:\n  v:\n    type: integer\n    default: 1\nservices:\n  c:\n    image: c\n    instances: ${v}\n",
	"loop.yml":    "stack: user/loop\ndepends:\n  again:\n    stack: loop.yml\nservices:\n  l:\n    image: l\n",
	".env":        "A=1\nB=2\n",
	"secret.txt":  "pw\n",
}

var fuzzSeeds = []string{
	"stack: a/b\nservices:\n  web:\n    image: x:${tag}\n",
	"stack: a/b\nvariables:\n  tag:\n    type: string\n    default: '1'\nservices:\n  web:\n    image: x:${tag}\n    instances: ${tag}\n",
	"stack: a/b\nvariables:\n  n:\n    type: integer\n    default: 3\nservices:\n  # {% for i in (1..n) %}\n  s{{i}}:\n    image: i\n  # {% endfor %}\n",
	"stack: a/b\nservices:\n  w:\n    image: '{{ undefined_var }}'\n",
	"stack: a/b\nservices:\n  w:\n    image: w\n    extends:\n      file: compose.yml\n      service: web\n    env_file: .env\n",
	"stack: a/b\ndepends:\n  c:\n    stack: child.yml\n    variables:\n      v: 2\n  l:\n    stack: loop.yml\nservices:\n  w:\n    image: ${c}\n",
	"stack: a/b\nvariables:\n  x:\n    type: integer\n    from:\n      evaluate: ((1+2)*3)/0\n  y:\n    type: string\n    from:\n      interpolate: ${x}-${y}\nservices:\n  w:\n    image: w\n",
	"stack: a/b\ndata:\n  a: &a [x, x, x]\n  b: &b [*a, *a, *a]\nservices:\n  w:\n    <<: {image: w}\n    command: *b\n",
	"stack: a/b\nservices:\n  w:\n    image: w\n    only_if:\n      x: {gt: 1}\n",
	"{% for i in (1..999999999) %}{% endfor %}stack: a/b\n",
	"stack: a/b\nvariables:\n  f:\n    type: string\n    from:\n      file: secret.txt\n      vault: X\n      service_link: {image: x}\n      certificates: pick\n      prompt: hi\nservices:\n  w:\n    image: w\n",
	"version: '2'\nservices:\n  a:\n    image: a\n",
	"stack: a/b\nservices:\n  w:\n    image: w\n    health_check: {protocol: http, port: 80}\n    hooks: {post_start: [{name: a, cmd: b, instances: '*'}]}\n    volumes: [v:/d, /h:/c:ro]\nvolumes:\n  v:\n    external: {name: vv}\n",
}

func FuzzLoad(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), "x")
	}
	// The corpus files are seeds too (when the corpus is there: the fixture
	// test itself fails without it).
	_ = filepath.WalkDir(fixturesDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b, "mysql")
			}
		}
		return nil
	})
	f.Fuzz(func(t *testing.T, src []byte, value string) {
		opts := Options{
			LookupEnv:    envFrom(map[string]string{"TAG": "1"}),
			FS:           fuzzFiles,
			Registry:     testRegistry(),
			GridResolver: &fakeGrid{vault: map[string]string{"X": "v"}, services: []GridService{{Stack: "s", Name: "x", Image: "x"}}},
			Rand:         bytes.NewReader(bytes.Repeat([]byte{1, 2, 3, 250}, 1<<12)),
			Values:       map[string]any{"tag": value, "db": value, "c.v": value},
			// Smaller limits keep each input fast; they are the same code paths.
			Limits: Limits{MaxLiquidSteps: 20000, MaxNodes: 20000, MaxRenderedSize: 1 << 20, MaxValueSize: 1 << 16},
		}
		res, err := LoadBytes(context.Background(), "kontena.yml", src, opts)
		if err != nil {
			list, ok := err.(Errors)
			if !ok || len(list) == 0 {
				t.Fatalf("errors must be a non-empty Errors, got %T %v", err, err)
			}
			for _, e := range list {
				if strings.TrimSpace(e.Error()) == "" {
					t.Fatalf("empty error message")
				}
			}
			return
		}
		if res.Stack == nil {
			t.Fatalf("no error and no stack")
		}
		doc := Document(res)
		if _, err := json.Marshal(doc); err != nil {
			t.Fatalf("json: %v", err)
		}
		if _, err := yaml.Marshal(doc); err != nil {
			t.Fatalf("yaml: %v", err)
		}
		if _, err := EncodeValues(res.AllValues()); err != nil {
			t.Fatalf("values: %v", err)
		}
	})
}
