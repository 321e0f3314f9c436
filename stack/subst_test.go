package stack

import (
	"strings"
	"testing"
)

func TestSubstitute(t *testing.T) {
	sc := &scope{
		values: map[string]string{"a": "A", "a-b": "AB", "tag": "1.0", "STACK": "installed", "empty": ""},
		unset:  map[string]bool{"none": true},
	}
	cases := []struct {
		in, out string
		problem string // part of the expected message; "" = none
		warn    bool
	}{
		{in: "plain", out: "plain"},
		{in: "${a}", out: "A"},
		{in: "$a", out: "A"},
		{in: "x-$a-y", out: "x-A-y"},
		{in: "${a-b}", out: "AB"}, // the whole braced name, never ${a} + "-b}"
		{in: "${a-c}", out: "", problem: `undeclared variable "a-c"`}, // not silently ${a}
		{in: "$a-b", out: "A-b"}, // unbraced names stop at '-', like a shell
		{in: "$$a", out: "$a"},
		{in: "$$", out: "$"},
		{in: "price: 5$", out: "price: 5$"},
		{in: "$1 and $ alone", out: "$1 and $ alone"},
		{in: "image:${tag}", out: "image:1.0"},
		{in: "${STACK}_secret", out: "installed_secret"},
		{in: "${none}", out: "", problem: "has no value", warn: true},
		{in: "${none:-fallback}", out: "fallback"},
		{in: "${empty:-fallback}", out: "fallback"},
		{in: "${undeclared:-fallback}", out: "fallback"},
		{in: "${undeclared}", out: "", problem: `undeclared variable "undeclared" in ${undeclared}`},
		{in: "$undeclared", out: "", problem: `undeclared variable "undeclared" in $undeclared`},
		{in: "${a", out: "A", problem: "unclosed ${ in \"${a\": read as ${a}", warn: true}, // as Kontena's /\$\{?\w+\}?/ did
		{in: "x-${a-b", out: "x-A-b", problem: "read as ${a}", warn: true},
		{in: "${ a", out: "${ a", problem: "unclosed ${"},
		{in: "${}", out: "", problem: "empty ${}"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			out, problems := substitute(c.in, sc)
			eq(t, "result", out, c.out)
			if c.problem == "" {
				if len(problems) > 0 {
					t.Fatalf("unexpected problem %+v", problems)
				}
				return
			}
			if len(problems) != 1 || !strings.Contains(problems[0].msg, c.problem) || problems[0].warn != c.warn {
				t.Fatalf("problems = %+v, want one containing %q (warn=%v)", problems, c.problem, c.warn)
			}
		})
	}
}

func TestSubstituteComposeEnvFallback(t *testing.T) {
	sc := &scope{values: map[string]string{"a": "A"}, unset: map[string]bool{}, env: envFrom(map[string]string{"HOME": "/root"})}
	out, problems := substitute("$a:$HOME", sc)
	eq(t, "result", out, "A:/root")
	eq(t, "problems", len(problems), 0)
}

func TestSubstitutionInStacks(t *testing.T) {
	const head = `stack: user/subst
variables:
  tag:
    type: string
  n:
    type: integer
    default: 3
  unset:
    type: string
    required: false
services:
`
	cases := []struct {
		name   string
		body   string
		values map[string]any
		err    []string
		check  func(t *testing.T, res *Result)
	}{
		{name: "unquoted image: x:${tag} stays one string whatever the tag holds", body: `
  web:
    image: x:${tag}
`, values: map[string]any{"tag": `1.0 # not a comment: "quoted" 'too'`}, check: func(t *testing.T, res *Result) {
			eq(t, "image", svc(t, res, "web").Image, `x:1.0 # not a comment: "quoted" 'too'`)
		}},
		{name: "a value with a newline cannot add keys", body: `
  web:
    image: ${tag}
`, values: map[string]any{"tag": "a\nprivileged: true"}, check: func(t *testing.T, res *Result) {
			eq(t, "image", svc(t, res, "web").Image, "a\nprivileged: true")
			eq(t, "privileged", svc(t, res, "web").Privileged, false)
		}},
		{name: "plain scalars are re-typed: instances: $n is a number", values: map[string]any{"tag": "t"}, body: `
  web:
    image: web
    instances: $n
`, check: func(t *testing.T, res *Result) {
			eq(t, "instances", svc(t, res, "web").Instances, 3)
		}},
		{name: "quoted numbers are accepted too", values: map[string]any{"tag": "t"}, body: `
  web:
    image: web
    instances: "${n}"
`, check: func(t *testing.T, res *Result) {
			eq(t, "instances", svc(t, res, "web").Instances, 3)
		}},
		{name: "keys are substituted", values: map[string]any{"tag": "blue"}, body: `
  web-${tag}:
    image: web
`, check: func(t *testing.T, res *Result) {
			svc(t, res, "web-blue")
		}},
		{name: "comments are not substituted", values: map[string]any{"tag": "t"}, body: `
  web:
    # uses $undeclared_in_a_comment
    image: web
`, check: func(t *testing.T, res *Result) {}},
		{name: "undeclared name is an error at its position", values: map[string]any{"tag": "t"}, body: `
  web:
    image: web
    environment:
      - A=${nope}
`, err: []string{`kontena.yml:16:9: services.web.environment[0]: undeclared variable "nope" in ${nope}`}},
		{name: "a variable without value becomes empty, with a warning", values: map[string]any{"tag": "t"}, body: `
  web:
    image: web
    environment:
      - A=${unset}
`, check: func(t *testing.T, res *Result) {
			eq(t, "A", env(t, svc(t, res, "web"), "A"), "")
			found := false
			for _, w := range res.Warnings {
				found = found || strings.Contains(w.Error(), "variable unset has no value")
			}
			eq(t, "warning", found, true)
		}},
		{name: "$$ in a service is a literal $", values: map[string]any{"tag": "t"}, body: `
  web:
    image: web
    command: sh -c 'echo $$HOME'
`, check: func(t *testing.T, res *Result) {
			eq(t, "command", svc(t, res, "web").Command[2], "echo $HOME")
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := baseOptions()
			opts.Values = c.values
			res, err := loadString(t, head+c.body, opts)
			if c.err != nil {
				wantErr(t, err, c.err...)
				return
			}
			if err != nil {
				t.Fatalf("unexpected error:\n%v", err)
			}
			c.check(t, res)
		})
	}
}
