package stack

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// varStack builds a stack whose only job is to declare variables.
func varStack(vars string) string {
	return "stack: user/vars\nvariables:\n" + vars + "services:\n  web:\n    image: web\n"
}

func variable(t testing.TB, res *Result, name string) *Variable {
	t.Helper()
	for _, v := range res.Stack.Variables {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no variable %q", name)
	return nil
}

func TestVariableTypes(t *testing.T) {
	cases := []struct {
		name string
		def  string // the definition of x, indented 4
		set  any    // -v x=...; nil = not given
		want any    // value; ignored when err is set
		err  string
	}{
		// string
		{name: "string", def: "type: string", set: "abc", want: "abc"},
		{name: "string from a number", def: "type: string", set: 12, want: "12"},
		{name: "string empty_is_nil (default)", def: "type: string\n    required: false", set: "  ", want: nil},
		{name: "string empty_is_nil false", def: "type: string\n    empty_is_nil: false", set: "", want: ""},
		{name: "min_length", def: "type: string\n    min_length: 4", set: "abc", err: "variables.x: expected at least 4 characters, found 3 (from the value given with -v x)"},
		{name: "max_length", def: "type: string\n    max_length: 2", set: "abc", err: "expected at most 2 characters"},
		{name: "upcase", def: "type: string\n    upcase: true", set: "abc", want: "ABC"},
		{name: "downcase", def: "type: string\n    downcase: true", set: "AbC", want: "abc"},
		{name: "capitalize", def: "type: string\n    capitalize: true", set: "hELLO", want: "Hello"},
		{name: "strip", def: "type: string\n    strip: true", set: "  a b  ", want: "a b"},
		{name: "chomp", def: "type: string\n    chomp: true", set: "line\n", want: "line"},
		{name: "encode_64", def: "type: string\n    encode_64: true", set: "hello", want: "aGVsbG8="},
		{name: "decode_64", def: "type: string\n    decode_64: true", set: "aGVsbG8=", want: "hello"},
		{name: "decode_64 bad", def: "type: string\n    decode_64: true", set: "!!!", err: "expected base64 text"},
		{name: "hexdigest", def: "type: string\n    hexdigest: md5", set: "hello", want: "5d41402abc4b2a76b9719d911017c592"},
		{name: "hexdigest sha256", def: "type: string\n    hexdigest: sha256", set: "a", want: "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"},
		{name: "hexdigest unknown", def: "type: string\n    hexdigest: crc", set: "a", err: "variables.x.hexdigest: expected one of md5"},
		{name: "in", def: "type: string\n    in: [a, b]", set: "c", err: "expected one of a, b"},
		{name: "ruby symbol type", def: "type: :string", set: "s", want: "s"},
		// integer
		{name: "integer", def: "type: integer", set: "42", want: 42},
		{name: "integer from YAML", def: "type: integer\n    value: 7", want: 7},
		{name: "integer not a number", def: "type: integer", set: "abc", err: `expected a whole number or a calculation, found "abc"`},
		{name: "integer min (default 0)", def: "type: integer", set: "-1", err: "expected a number of at least 0, found -1"},
		{name: "integer min negative", def: "type: integer\n    min: -5", set: "-1", want: -1},
		{name: "integer max", def: "type: integer\n    max: 10", set: "11", err: "expected a number of at most 10, found 11"},
		{name: "integer calculation", def: "type: integer", set: "2*(3+4)", want: 14},
		{name: "integer nil_is_zero", def: "type: integer\n    nil_is_zero: true", want: 0},
		{name: "integer fraction is truncated", def: "type: integer", set: 1.5, want: 1},
		{name: "integer infinity is refused", def: "type: integer", set: "Inf", err: "expected a whole number"},
		// boolean
		{name: "boolean true", def: "type: boolean", set: "yes", want: "true"},
		{name: "boolean other text is false", def: "type: boolean", set: "nope", want: "false"},
		{name: "boolean nil is false", def: "type: boolean", want: "false"},
		{name: "boolean nil_is", def: "type: boolean\n    nil_is: true", want: "true"},
		{name: "boolean as boolean", def: "type: boolean\n    as: boolean", set: "on", want: true},
		{name: "boolean as integer", def: "type: boolean\n    as: integer", set: "1", want: 1},
		{name: "boolean as true_or_nil", def: "type: boolean\n    as: true_or_nil", set: "false", want: nil},
		{name: "boolean custom outputs", def: "type: boolean\n    true: enabled\n    false: disabled", set: "true", want: "enabled"},
		{name: "boolean truthy list", def: "type: boolean\n    as: boolean\n    truthy: [si]", set: "SI", want: true},
		// enum
		{name: "enum", def: "type: enum\n    options: [a, b]", set: "b", want: "b"},
		{name: "enum not an option", def: "type: enum\n    options: [a, b]", set: "c", err: `expected one of a, b, found "c"`},
		{name: "enum can_be_other", def: "type: enum\n    can_be_other: true\n    options: [a]", set: "c", want: "c"},
		{name: "enum detailed options", def: "type: enum\n    options:\n      - value: mysql\n        label: MySQL\n        description: plain", set: "mysql", want: "mysql"},
		{name: "enum numbers keep their type", def: "type: enum\n    options: [1, 3]", set: "3", want: 3},
		{name: "enum without options", def: "type: enum\n    options: []", set: "a", err: "expected at least one option"},
		// uri
		{name: "uri", def: "type: uri", set: "https://example.com/x", want: "https://example.com/x"},
		{name: "uri bad scheme", def: "type: uri", set: "ftp://x", err: "expected a URI with scheme http or https"},
		{name: "uri schemes", def: "type: uri\n    schemes: [file]", set: "file:///etc/hosts", want: "file:///etc/hosts"},
		{name: "uri not a uri", def: "type: uri", set: "not a uri", err: "expected a URI"},
		// array
		{name: "array split", def: "type: array", set: "a,b,c", want: []any{"a", "b", "c"}},
		{name: "array custom split", def: "type: array\n    split: ';'", set: "a;b", want: []any{"a", "b"}},
		{name: "array join", def: "type: array\n    join: ' '", set: "a,b", want: "a b"},
		{name: "array sort uniq compact", def: "type: array\n    sort: true\n    uniq: true\n    compact: true", set: "c,,a,c", want: []any{"a", "c"}},
		{name: "array count", def: "type: array\n    count: true", set: "a,b,c", want: 3},
		{name: "array from YAML", def: "type: array\n    value: [x, y]", want: []any{"x", "y"}},
		{name: "array empty_is_nil", def: "type: array\n    empty_is_nil: true\n    required: false", set: "", want: nil},
		// common keys
		{name: "required without value", def: "type: string", err: "variables.x: required variable has no value; pass it with -v x=VALUE"},
		{name: "default", def: "type: string\n    default: d", want: "d"},
		{name: "value wins over default", def: "type: string\n    value: v\n    default: d", want: "v"},
		{name: "-v wins over value", def: "type: string\n    value: v", set: "cli", want: "cli"},
		{name: "unknown type", def: "type: float", err: "variables.x.type: expected one of string, integer, boolean, enum, uri, array"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := baseOptions()
			if c.set != nil {
				opts.Values = map[string]any{"x": c.set}
			}
			res, err := loadString(t, varStack("  x:\n    "+c.def+"\n"), opts)
			if c.err != "" {
				wantErr(t, err, c.err)
				return
			}
			if err != nil {
				t.Fatalf("unexpected error:\n%v", err)
			}
			got := variable(t, res, "x").Value
			if !equalValues(got, c.want) {
				t.Fatalf("value = %#v, want %#v", got, c.want)
			}
		})
	}
}

func equalValues(a, b any) bool {
	la, okA := a.([]any)
	lb, okB := b.([]any)
	if okA || okB {
		if len(la) != len(lb) {
			return false
		}
		for i := range la {
			if la[i] != lb[i] {
				return false
			}
		}
		return okA == okB
	}
	return a == b
}

// fakePrompter answers from a script and records the questions.
type fakePrompter struct {
	answers map[string][]string
	asked   []Question
	choices map[string][]Choice
}

func (p *fakePrompter) Ask(_ context.Context, q Question) (string, error) {
	p.asked = append(p.asked, q)
	a := p.answers[q.Variable]
	if len(a) == 0 {
		return "", nil
	}
	return a[0], nil
}

func (p *fakePrompter) Choose(_ context.Context, q Question, choices []Choice, multi bool) ([]string, error) {
	p.asked = append(p.asked, q)
	if p.choices == nil {
		p.choices = map[string][]Choice{}
	}
	p.choices[q.Variable] = choices
	return p.answers[q.Variable], nil
}

func TestResolvers(t *testing.T) {
	grid := &fakeGrid{
		vault:     map[string]string{"DB_PASS": "s3cret"},
		instances: map[string]int{"vars/web": 4, "other/db": 2},
		services:  []GridService{{Stack: "lbs", Name: "lb", Image: "kontena/lb:latest"}, {Stack: "x", Name: "y", Image: "redis"}},
		certs:     []string{"a.example.com", "b.example.com"},
	}
	cases := []struct {
		name     string
		vars     string
		env      map[string]string
		grid     GridResolver
		prompter Prompter
		files    MapFS
		want     map[string]any
		err      string
		check    func(t *testing.T, res *Result)
	}{
		{name: "env with a name", vars: "  x:\n    type: string\n    from:\n      env: MY_X\n", env: map[string]string{"MY_X": "1", "x": "own"}, want: map[string]any{"x": "1"}},
		{name: "env tries a list in order", vars: "  x:\n    type: string\n    from:\n      env: [A, B]\n", env: map[string]string{"B": "b"}, want: map[string]any{"x": "b"}},
		{name: "every variable reads the env var of its own name", vars: "  x:\n    type: string\n    from:\n      random_string: 8\n", env: map[string]string{"x": "from-env"}, want: map[string]any{"x": "from-env"}},
		{name: "empty env value falls through", vars: "  x:\n    type: string\n    default: d\n", env: map[string]string{"x": ""}, want: map[string]any{"x": "d"}},
		{name: "file", vars: "  x:\n    type: string\n    strip: true\n    from:\n      file: secret.txt\n", files: MapFS{"secret.txt": "  pw\n"}, want: map[string]any{"x": "pw"}},
		{name: "file missing", vars: "  x:\n    type: string\n    from:\n      file: missing.txt\n", err: "variables.x: from file: open missing.txt"},
		{name: "file missing ignored", vars: "  x:\n    type: string\n    default: d\n    from:\n      file:\n        path: missing.txt\n        ignore_errors: true\n", want: map[string]any{"x": "d"}},
		{name: "random_string", vars: "  x:\n    type: string\n    from:\n      random_string:\n        length: 12\n        charset: hex\n", check: func(t *testing.T, res *Result) {
			if !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(res.Variables["x"].(string)) {
				t.Errorf("got %q", res.Variables["x"])
			}
		}},
		{name: "random_string custom charset", vars: "  x:\n    type: string\n    from:\n      random_string:\n        length: 6\n        charset: '01'\n", check: func(t *testing.T, res *Result) {
			if !regexp.MustCompile(`^[01]{6}$`).MatchString(res.Variables["x"].(string)) {
				t.Errorf("got %q", res.Variables["x"])
			}
		}},
		{name: "random_string too long", vars: "  x:\n    type: string\n    from:\n      random_string: 1000000\n", err: "length: expected 1 to 65536"},
		{name: "random_number", vars: "  x:\n    type: integer\n    from:\n      random_number:\n        min: 5\n        max: 6\n", check: func(t *testing.T, res *Result) {
			if n := res.Variables["x"].(int); n < 5 || n > 6 {
				t.Errorf("got %d", n)
			}
		}},
		{name: "random_number bad hint", vars: "  x:\n    type: integer\n    from:\n      random_number: 5\n", err: "expected {min: N, max: M}"},
		{name: "random_uuid", vars: "  x:\n    type: string\n    from: random_uuid\n", check: func(t *testing.T, res *Result) {
			if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(res.Variables["x"].(string)) {
				t.Errorf("got %q", res.Variables["x"])
			}
		}},
		{name: "interpolate (refers to a later variable)", vars: "  x:\n    type: string\n    from:\n      interpolate: ${a}-${b}.${STACK}\n  a:\n    type: string\n    value: A\n  b:\n    type: integer\n    value: 2\n", want: map[string]any{"x": "A-2.vars"}},
		{name: "interpolate undeclared", vars: "  x:\n    type: string\n    from:\n      interpolate: ${zz}\n", err: `variables.x: from interpolate: variable "zz" is not declared`},
		{name: "evaluate", vars: "  x:\n    type: integer\n    from:\n      evaluate: (${a} + 1) * 3 / 2\n  a:\n    type: integer\n    value: 3\n", want: map[string]any{"x": 6}},
		{name: "evaluate floors like Ruby", vars: "  x:\n    type: integer\n    min: -10\n    from:\n      evaluate: 0 - 7 / 2\n", want: map[string]any{"x": -3}},
		{name: "evaluate rejects code", vars: "  x:\n    type: integer\n    from:\n      evaluate: system('ls')\n", err: "only numbers, + - * / and parentheses are allowed"},
		{name: "evaluate division by zero", vars: "  x:\n    type: integer\n    from:\n      evaluate: 1/0\n", err: "division by zero"},
		{name: "variable", vars: "  x:\n    type: string\n    from:\n      variable: a\n  a:\n    type: string\n    value: A\n", want: map[string]any{"x": "A"}},
		{name: "cycle is reported, not followed", vars: "  x:\n    type: string\n    from:\n      interpolate: ${y}\n  y:\n    type: string\n    from:\n      interpolate: ${x}\n", err: "depends on itself"},
		{name: "prompt asks on a terminal", vars: "  x:\n    type: string\n    default: d\n    from:\n      prompt: Your x?\n", prompter: &fakePrompter{answers: map[string][]string{"x": {"typed"}}}, want: map[string]any{"x": "typed"}},
		{name: "prompt: empty answer takes the default", vars: "  x:\n    type: string\n    default: d\n    from: prompt\n", prompter: &fakePrompter{}, want: map[string]any{"x": "d"}},
		{name: "prompt enum chooses among the options", vars: "  x:\n    type: enum\n    options: [a, b]\n    from: prompt\n", prompter: &fakePrompter{answers: map[string][]string{"x": {"b"}}}, want: map[string]any{"x": "b"}},
		{name: "prompt without a terminal names the variable and -v", vars: "  x:\n    type: string\n    from:\n      prompt: Your x?\n", err: "variables.x: no value: this variable is asked with a prompt, but there is no terminal; pass it with -v x=VALUE"},
		{name: "prompt without a terminal falls through to later resolvers", vars: "  x:\n    type: string\n    from:\n      prompt: Your x?\n      random_string: 5\n", check: func(t *testing.T, res *Result) {
			eq(t, "len", len(res.Variables["x"].(string)), 5)
		}},
		{name: "vault needs a grid", vars: "  x:\n    type: string\n    from:\n      vault: DB_PASS\n", err: "variables.x: from vault: the vault resolver needs a grid (connect to a grid, or pass the value with -v x=VALUE)"},
		{name: "vault reads the grid and is not stored", vars: "  x:\n    type: string\n    from:\n      vault: DB_PASS\n", grid: grid, check: func(t *testing.T, res *Result) {
			eq(t, "value", variable(t, res, "x").Value, any("s3cret"))
			if _, stored := res.Variables["x"]; stored {
				t.Errorf("vault-backed values must not be stored")
			}
		}},
		{name: "a grid that cannot answer yet says so", vars: "  x:\n    type: string\n    from:\n      vault: DB_PASS\n", grid: notYetGrid{}, err: "the vault resolver needs a grid"},
		{name: "service_instances offline: the default applies", vars: "  x:\n    type: integer\n    default: 1\n    from:\n      service_instances: web\n", want: map[string]any{"x": 1}},
		{name: "service_instances needs a grid when required and nothing else", vars: "  x:\n    type: integer\n    from:\n      service_instances: web\n", err: "variables.x: from service_instances: the service_instances resolver needs a grid"},
		{name: "vault offline: the next resolver applies", vars: "  x:\n    type: string\n    from:\n      vault: DB_PASS\n      random_string: 7\n", check: func(t *testing.T, res *Result) {
			eq(t, "len", len(variable(t, res, "x").Value.(string)), 7)
		}},
		{name: "service_link offline, optional: no value", vars: "  x:\n    type: string\n    required: false\n    from:\n      service_link:\n        image: kontena/lb\n", want: map[string]any{}},
		{name: "service_instances of this stack", vars: "  x:\n    type: integer\n    from:\n      service_instances: web\n", grid: grid, want: map[string]any{"x": 4}},
		{name: "service_instances of another stack", vars: "  x:\n    type: integer\n    from:\n      service_instances: other/db\n", grid: grid, want: map[string]any{"x": 2}},
		{name: "service_instances not installed yet: default", vars: "  x:\n    type: integer\n    default: 1\n    from:\n      service_instances: nope\n", grid: grid, want: map[string]any{"x": 1}},
		{name: "service_link needs a grid", vars: "  x:\n    type: string\n    from:\n      service_link:\n        image: kontena/lb\n", err: "the service_link resolver needs a grid"},
		{name: "service_link single match without a terminal", vars: "  x:\n    type: string\n    from:\n      service_link:\n        prompt: pick\n        image: kontena/lb\n", grid: grid, want: map[string]any{"x": "lbs/lb"}},
		{name: "service_link asks on a terminal", vars: "  x:\n    type: string\n    from:\n      service_link:\n        prompt: pick\n", grid: grid, prompter: &fakePrompter{answers: map[string][]string{"x": {"x/y"}}}, want: map[string]any{"x": "x/y"}},
		{name: "service_link ambiguous without a terminal", vars: "  x:\n    type: string\n    from:\n      service_link:\n        prompt: pick\n", grid: grid, err: "asked with a prompt, but there is no terminal"},
		{name: "certificates offline: an empty list", vars: "  x:\n    type: array\n    from:\n      certificates: pick\n", check: func(t *testing.T, res *Result) {
			if v := variable(t, res, "x").Value; fmt.Sprint(v) != "[]" {
				t.Errorf("offline certificates = %#v, want an empty list", v)
			}
		}},
		{name: "certificates multi-select", vars: "  x:\n    type: array\n    from:\n      certificates: pick\n", grid: grid, prompter: &fakePrompter{answers: map[string][]string{"x": {"a.example.com", "b.example.com"}}}, want: map[string]any{"x": []any{"a.example.com", "b.example.com"}}},
		{name: "unknown resolver", vars: "  x:\n    type: string\n    from:\n      envv: X\n", err: `variables.x.from: unknown resolver "envv" (did you mean "env"?)`},
		{name: "to env exposes another name", vars: "  x:\n    type: string\n    value: v\n    to:\n      env: OTHER\n", check: func(t *testing.T, res *Result) {}},
		{name: "to vault is a pending write, not stored", vars: "  x:\n    type: string\n    value: generated\n    to:\n      vault: APP_SECRET\n", check: func(t *testing.T, res *Result) {
			eq(t, "writes", len(res.VaultWrites), 1)
			eq(t, "write", res.VaultWrites[0], VaultWrite{Variable: "x", Secret: "APP_SECRET", Value: "generated"})
			if _, stored := res.Variables["x"]; stored {
				t.Errorf("vault-backed values must not be stored")
			}
			g := &fakeGrid{}
			if err := res.WriteVault(context.Background(), g); err != nil {
				t.Fatal(err)
			}
			eq(t, "written", g.written["APP_SECRET"], "generated")
			if err := res.WriteVault(context.Background(), nil); !errors.Is(err, ErrNeedsGrid) {
				t.Errorf("WriteVault without a grid: %v", err)
			}
		}},
		{name: "unknown setter", vars: "  x:\n    type: string\n    value: v\n    to:\n      file: x\n", err: `unknown setter "file"`},
		{name: "built-ins cannot be declared", vars: "  STACK:\n    type: string\n", err: "variables.STACK: STACK is a built-in variable and cannot be declared"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := baseOptions()
			opts.LookupEnv = envFrom(c.env)
			opts.GridResolver = c.grid
			opts.Prompter = c.prompter
			if c.files != nil {
				opts.FS = c.files
			}
			src := varStack(c.vars)
			res, err := LoadBytes(context.Background(), "kontena.yml", []byte(src), opts)
			if c.err != "" {
				wantErr(t, err, c.err)
				return
			}
			if err != nil {
				t.Fatalf("unexpected error:\n%v", err)
			}
			for k, v := range c.want {
				if !equalValues(variable(t, res, k).Value, v) {
					t.Errorf("%s = %#v, want %#v", k, variable(t, res, k).Value, v)
				}
			}
			if c.check != nil {
				c.check(t, res)
			}
		})
	}
}

func TestConditions(t *testing.T) {
	const vars = `  db:
    type: enum
    options: [mysql, galera]
    default: mysql
  nodes:
    type: integer
    default: 3
  off:
    type: boolean
    default: false
  on:
    type: boolean
    default: true
  nothing:
    type: string
    required: false
  galera_only:
    type: string
    default: g
    only_if:
      db: galera
`
	cases := []struct {
		cond string
		want bool // service kept
		err  string
	}{
		{cond: "only_if: on", want: true},
		{cond: "only_if: off", want: false}, // "false" is false
		{cond: "only_if: nothing", want: false},
		{cond: "skip_if: nothing", want: true},
		{cond: "skip_if: on", want: false},
		{cond: "only_if: [on, db]", want: true},
		{cond: "only_if: [on, off]", want: false},
		{cond: "skip_if: [off, on]", want: false}, // skip_if: any
		{cond: "only_if: {db: mysql}", want: true},
		{cond: "only_if: {db: galera}", want: false},
		{cond: "only_if: {nodes: 3}", want: true},
		{cond: "only_if: {nodes: {gt: 2, lte: 3}}", want: true},
		{cond: "only_if: {nodes: {lt: 3}}", want: false},
		{cond: "only_if: {db: {start_with: my}}", want: true},
		{cond: "only_if: {db: {end_with: sql}}", want: true},
		{cond: "only_if: {db: {contain: ysq}}", want: true},
		{cond: "only_if: {db: {any_of: 'galera,mysql'}}", want: true},
		{cond: "only_if: {db: {any_of: [galera]}}", want: false},
		{cond: "only_if: {db: {ne: mysql}}", want: false},
		{cond: "only_if: galera_only", want: false}, // a skipped variable has no value
		{cond: "only_if: undeclared", err: `services.web.only_if: expected the name of a declared variable, found "undeclared"`},
		{cond: "only_if: {db: {near: x}}", err: `unknown condition operator "near"`},
	}
	for _, c := range cases {
		t.Run(c.cond, func(t *testing.T) {
			src := "stack: user/cond\nvariables:\n" + vars + "services:\n  base:\n    image: base\n  web:\n    image: web\n    " + c.cond + "\n"
			res, err := loadString(t, src, baseOptions())
			if c.err != "" {
				wantErr(t, err, c.err)
				return
			}
			if err != nil {
				t.Fatalf("unexpected error:\n%v", err)
			}
			eq(t, "web kept", res.Stack.Service("web") != nil, c.want)
		})
	}
}

func TestConditionalVolumesAndVariables(t *testing.T) {
	src := `stack: user/cond
variables:
  persist:
    type: boolean
    default: false
  size:
    type: integer
    only_if: persist
services:
  web:
    image: web
volumes:
  data:
    driver: local
    only_if: persist
    driver_opts:
      size: ${size}
`
	res := mustLoadString(t, src, baseOptions())
	eq(t, "volumes", len(res.Stack.Volumes), 0)
	eq(t, "size skipped", variable(t, res, "size").Skipped, true)

	opts := baseOptions()
	opts.Values = map[string]any{"persist": "true", "size": "10"}
	res = mustLoadString(t, src, opts)
	eq(t, "volume kept", res.Stack.Volume("data").DriverOpts["size"], "10")

	opts.Values = map[string]any{"persist": "true"}
	_, err := loadString(t, src, opts)
	wantErr(t, err, "variables.size: required variable has no value")
}

func TestBuiltins(t *testing.T) {
	src := `stack: user/filename
variables:
  x:
    type: string
    value: ${STACK}-${GRID}-${PLATFORM}
services:
  web:
    image: web
    environment:
      - STACK=${STACK}
      - X=${x}
      - PARENT=${PARENT_STACK}
`
	opts := baseOptions()
	opts.Name = "installed-name"
	opts.Platform = "plat"
	res := mustLoadString(t, src, opts)
	web := svc(t, res, "web")
	eq(t, "STACK is the installed name, not the file's", env(t, web, "STACK"), "installed-name")
	eq(t, "built-ins in variable values", env(t, web, "X"), "installed-name-testgrid-plat")
	eq(t, "PARENT_STACK at the top", env(t, web, "PARENT"), "")
	eq(t, "stack name from the file", res.Stack.StackName, "filename")
	if _, ok := res.Variables["STACK"]; ok {
		t.Errorf("built-ins are not stored")
	}
}

func TestUnusedValueWarning(t *testing.T) {
	opts := baseOptions()
	opts.Values = map[string]any{"typo": "1"}
	res := mustLoadString(t, varStack("  x:\n    type: string\n    default: a\n"), opts)
	found := false
	for _, w := range res.Warnings {
		found = found || strings.Contains(w.Error(), "-v typo: the stack declares no such variable")
	}
	eq(t, "warning", found, true)
}

func TestDefaultsFromPreviousInstall(t *testing.T) {
	opts := baseOptions()
	opts.Defaults = map[string]any{"x": "previous"}
	res := mustLoadString(t, varStack("  x:\n    type: string\n    default: file-default\n"), opts)
	eq(t, "x", res.Variables["x"], any("previous"))
}

// notYetGrid is a grid whose resolvers are not implemented yet.
type notYetGrid struct{}

func (notYetGrid) VaultRead(context.Context, string) (string, bool, error) {
	return "", false, ErrNeedsGrid
}
func (notYetGrid) VaultWrite(context.Context, string, string) error { return ErrNeedsGrid }
func (notYetGrid) ServiceInstances(context.Context, string, string) (int, bool, error) {
	return 0, false, ErrNeedsGrid
}
func (notYetGrid) Services(context.Context) ([]GridService, error) { return nil, ErrNeedsGrid }
func (notYetGrid) Certificates(context.Context) ([]string, error)  { return nil, ErrNeedsGrid }
