package stack

import (
	"strings"
	"testing"
)

const liquidHeader = `stack: user/liq
variables:
  n:
    type: integer
    default: 2
  flag:
    type: boolean
    default: false
  opt:
    type: string
    required: false
  list:
    type: array
    default: a,b
services:
`

func TestLiquid(t *testing.T) {
	cases := []struct {
		name   string
		body   string
		values map[string]any
		err    []string // expected error parts
		check  func(t *testing.T, res *Result)
	}{
		{name: "for loop over a range with a variable bound", body: `
  # {% for i in (1..n) %}
  s{{ i }}:
    image: img:{{ i }}
  # {% endfor %}
`, check: func(t *testing.T, res *Result) {
			eq(t, "services", len(res.Stack.Services), 2)
			eq(t, "s2 image", svc(t, res, "s2").Image, "img:2")
		}},
		{name: "a false boolean is false in Liquid even though ${} sees \"false\"", body: `
  web:
    image: web
    environment:
      - FLAG=${flag}
      # {% if flag %}
      - ON=1
      # {% endif %}
`, check: func(t *testing.T, res *Result) {
			web := svc(t, res, "web")
			eq(t, "FLAG", env(t, web, "FLAG"), "false")
			noEnv(t, web, "ON")
		}},
		{name: "a declared variable without value is defined (renders empty)", body: `
  web:
    image: "web{{ opt }}"
    # {% unless opt %}
    instances: 3
    # {% endunless %}
`, check: func(t *testing.T, res *Result) {
			eq(t, "image", svc(t, res, "web").Image, "web")
			eq(t, "instances", svc(t, res, "web").Instances, 3)
		}},
		{name: "filters and assign", body: `
  # {% assign up = "web" | upcase %}
  web:
    image: "{{ up | downcase }}:{{ list | join: '-' }}"
`, check: func(t *testing.T, res *Result) {
			eq(t, "image", svc(t, res, "web").Image, "web:a-b")
		}},
		{name: "capture", body: `
  # {% capture tag %}v{{ n }}{% endcapture %}
  web:
    image: "web:{{ tag }}"
`, check: func(t *testing.T, res *Result) {
			eq(t, "image", svc(t, res, "web").Image, "web:v2")
		}},
		{name: "whitespace trimming is kept", body: `
  web:
    image: web
    environment:
      {%- for i in (1..2) %}
      - E{{ i }}=x
      {%- endfor %}
`, check: func(t *testing.T, res *Result) {
			eq(t, "env", len(svc(t, res, "web").Environment), 2)
		}},
		{name: "built-ins and dependency names are Liquid variables", body: `
  web:
    image: "{{ STACK }}-{{ GRID }}-{{ PLATFORM }}"
`, check: func(t *testing.T, res *Result) {
			eq(t, "image", svc(t, res, "web").Image, "liq-testgrid-testgrid")
		}},
		{name: "undefined variable is named, with its position", body: `
  web:
    image: "{{ nn }}"
`, err: []string{`kontena.yml:18:16: Liquid: undefined variable "nn" (did you mean "n"?)`}},
		{name: "undefined variable in a branch that is not taken is still an error", body: `
  web:
    image: web
    # {% if flag %}{{ typo_here }}{% endif %}
`, err: []string{`undefined variable "typo_here"`}},
		{name: "undefined filter is named", body: `
  web:
    image: "{{ n | frobnicate }}"
`, err: []string{`Liquid: undefined filter "frobnicate"`}},
		{name: "loop variable is only defined in the loop", body: `
  web:
    image: web
    # {% for x in list %}{% endfor %}{{ x }}
`, err: []string{`undefined variable "x"`}},
		{name: "unknown tag", body: `
  # {% iff n %}
  web:
    image: web
`, err: []string{`kontena.yml:17:5: Liquid: unknown tag "iff" (did you mean "if"?)`}},
		{name: "include is disabled", body: `
  # {% include "/etc/passwd" %}
  web:
    image: web
`, err: []string{"include is not supported"}},
		{name: "syntax error", body: `
  # {% if n %}
  web:
    image: web
`, err: []string{"kontena.yml:", "Liquid:"}},
		{name: "YAML errors after rendering point at the source line", body: `
  # {% for i in (1..3) %}
  s{{ i }}:
    image: x
  # {% endfor %}
  bad:
    image: a: b
`, err: []string{"kontena.yml:22: invalid YAML: mapping values are not allowed"}},
		{name: "an endless loop is stopped", body: `
  # {% for i in (1..100000000) %}{% endfor %}
  web:
    image: web
`, err: []string{"too long"}},
		{name: "nested loops are stopped", body: `
  # {% for i in (1..2000) %}{% for j in (1..2000) %}{% endfor %}{% endfor %}
  web:
    image: web
`, err: []string{"too long"}},
		{name: "output size is limited", body: `
  # {% for i in (1..900000) %}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}
  web:
    image: web
`, err: []string{"Liquid:"}},
		{name: "doubling a string with append is limited", body: `
  # {% assign s = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" %}{% for i in (1..40) %}{% assign s = s | append: s %}{% endfor %}
  web:
    image: web
`, err: []string{"larger than"}},
		{name: "doubling a capture is limited", body: `
  # {% assign s = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" %}{% for i in (1..40) %}{% capture s %}{{s}}{{s}}{% endcapture %}{% endfor %}
  web:
    image: web
`, err: []string{"larger than"}},
		{name: "a range outside a loop would be built in memory", body: `
  # {% assign r = (1..100000000) %}{{ r | join: "," }}
  web:
    image: web
`, err: []string{"a range (a..b) can only be looped over directly"}},
		{name: "a range through a filter too", body: `
  # {% for i in (1..100000000) | reverse %}{% endfor %}
  web:
    image: web
`, err: []string{"a range (a..b) can only be looped over directly"}},
		{name: "deep nesting is refused", body: "  # " + strings.Repeat("{% if n %}", 100) + strings.Repeat("{% endif %}", 100) + `
  web:
    image: web
`, err: []string{"nested more than"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := baseOptions()
			opts.Values = c.values
			res, err := loadString(t, liquidHeader+c.body, opts)
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

// The step counter and line markers must not change what a template renders.
func TestLiquidInstrumentationKeepsOutput(t *testing.T) {
	templates := []string{
		"a\n  {%- if x -%}\n  b\n  {%- endif -%}\n  c\n",
		"{% for i in (1..3) -%}\n {{ i }}\n{%- endfor %}\nend\n",
		"x: {{ x }}\n{% if x %}  y\n{% else %}  z\n{% endif %}",
		"{%- capture c -%}  {{ x }}  {%- endcapture -%}[{{ c }}]\n",
		"{% case x %}{% when 1 %}one{% when 2 %}two{% else %}other{% endcase %}\n",
		"{% raw %}{{ not rendered }}{% endraw %} {% comment %}{% nonsense %}{% endcomment %}\n",
	}
	for _, tmpl := range templates {
		r := newLiquidRenderer(defaultLimits)
		out, _, errs := r.render(&source{name: "t"}, tmpl, map[string]any{"x": 1})
		if len(errs) > 0 {
			t.Fatalf("%q: %v", tmpl, errs)
		}
		want := plainLiquid(t, tmpl, map[string]any{"x": 1})
		if string(out) != want {
			t.Errorf("template %q\n got %q\nwant %q", tmpl, out, want)
		}
	}
}

// plainLiquid renders with osteele/liquid's standard configuration, nothing
// inserted.
func plainLiquid(t *testing.T, tmpl string, b map[string]any) string {
	t.Helper()
	r := newLiquidRenderer(defaultLimits)
	pre, _, _, err := preprocessLiquid(tmpl, 64)
	if err != nil {
		t.Fatal(err)
	}
	root, perr := r.compile(&source{name: "t"}, pre)
	if perr != nil {
		t.Fatal(perr)
	}
	r.out = &limitedBuffer{max: 1 << 20}
	if err := r.run(root, b); err != nil {
		t.Fatal(err)
	}
	return string(r.out.b)
}

func TestLineMap(t *testing.T) {
	r := newLiquidRenderer(defaultLimits)
	src := "a\n{% for i in (1..3) %}\nline{{ i }}\n{% endfor %}\nz\n"
	out, lm, errs := r.render(&source{name: "t"}, src, nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	lines := strings.Split(string(out), "\n")
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "line"):
			eq(t, "source line of "+l, lm.source(i+1), 3)
		case l == "z":
			eq(t, "source line of z", lm.source(i+1), 5)
		case l == "a":
			eq(t, "source line of a", lm.source(i+1), 1)
		}
	}
}
