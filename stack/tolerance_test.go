package stack

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

func toleranceFile(name string) string { return filepath.Join("testdata", "tolerance", name) }

// wantWarn is one expected warning: its position (file:line:col), its key
// and the part of the message that names what was read and the proper form.
type wantWarn struct {
	at, path, msg string
}

// checkWarnings asserts the warnings are exactly want, in file order.
func checkWarnings(t *testing.T, got Errors, want []wantWarn) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d warnings, want %d:\n%v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		at := fmt.Sprintf("%s:%d:%d", filepath.Base(g.File), g.Line, g.Col)
		if at != w.at || g.Path != w.path || !strings.Contains(g.Msg, w.msg) {
			t.Errorf("warning %d:\n got %s\nwant %s: %s: ...%s...", i, g, w.at, w.path, w.msg)
		}
	}
}

func TestTolerance(t *testing.T) {
	cases := []struct {
		file  string
		opts  func(*Options)
		warns []wantWarn
		check func(t *testing.T, res *Result)
	}{
		{file: "yaml11-booleans.yml", warns: []wantWarn{
			{"yaml11-booleans.yml:8:15", "variables.admin_email.required", `"no" is read as false: use true/false (write false)`},
			{"yaml11-booleans.yml:9:12", "variables.admin_email.strip", `"Yes" is read as true: use true/false (write true)`},
			{"yaml11-booleans.yml:14:15", "services.db.stateful", `"yes" is read as true: use true/false (write true)`},
			{"yaml11-booleans.yml:15:17", "services.db.privileged", `"Off" is read as false: use true/false (write false)`},
			{"yaml11-booleans.yml:16:16", "services.db.read_only", `"on" is read as true: use true/false (write true)`},
			{"yaml11-booleans.yml:22:20", "services.db.hooks.post_start[0].oneshot", `"y" is read as true: use true/false (write true)`},
			{"yaml11-booleans.yml:32:15", "volumes.uploads.external", `"ON" is read as true: use true/false (write true)`},
			// web's true, false and True: nothing.
		}, check: func(t *testing.T, res *Result) {
			db := svc(t, res, "db")
			eq(t, "db stateful", db.Stateful, true)
			eq(t, "db privileged", db.Privileged, false)
			eq(t, "db read_only", db.ReadOnly, true)
			eq(t, "hook oneshot", db.Hooks.PostStart[0].Oneshot, true)
			web := svc(t, res, "web")
			eq(t, "web stateful", web.Stateful, true)
			eq(t, "web read_only", web.ReadOnly, true)
			eq(t, "required: no", variable(t, res, "admin_email").Required, false)
			eq(t, "strip: Yes", env(t, web, "ADMIN"), "ops@example.com")
			eq(t, "external: ON", res.Stack.Volume("uploads").External, "uploads")
		}},
		{file: "integer-fractions.yml", warns: []wantWarn{
			{"integer-fractions.yml:11:17", "variables.heap_mb", "819.2 is not a whole number: truncated to 819 (from the evaluate resolver); keep the calculation in whole numbers"},
			{"integer-fractions.yml:14:14", "variables.workers", "1.5 is not a whole number: truncated to 1 (from its default:); write 1"},
			// mem, half_mem (1024 * 0.5 = 512.0) and replicas are whole: nothing.
		}, check: func(t *testing.T, res *Result) {
			eq(t, "heap_mb", res.Variables["heap_mb"], any(819))
			eq(t, "workers", res.Variables["workers"], any(1))
			eq(t, "half_mem", res.Variables["half_mem"], any(512))
			app := svc(t, res, "app")
			eq(t, "JAVA_OPTS", env(t, app, "JAVA_OPTS"), "-Xmx819m")
			eq(t, "instances", app.Instances, 3)
		}},
		{file: "integer-fractions.yml", opts: func(o *Options) { o.Values = map[string]any{"workers": "2.7"} }, warns: []wantWarn{
			{"integer-fractions.yml:11:17", "variables.heap_mb", "truncated to 819"},
			{"integer-fractions.yml:12:3", "variables.workers", "2.7 is not a whole number: truncated to 2 (from the value given with -v workers); write 2"},
		}, check: func(t *testing.T, res *Result) {
			eq(t, "workers", res.Variables["workers"], any(2))
		}},
		{file: "service-names.yml", warns: []wantWarn{
			{"service-names.yml:5:3", "services.Frontend", `service name "Frontend" has upper-case letters: it is deployed as "frontend" (DNS names are case-insensitive); write frontend`},
			{"service-names.yml:13:3", "services.Backend", `it is deployed as "backend"`},
			{"service-names.yml:17:3", "services.Data", `it is deployed as "data"`},
		}, check: func(t *testing.T, res *Result) {
			var names []string
			for _, s := range res.Stack.Services {
				names = append(names, s.Name)
			}
			eq(t, "services", strings.Join(names, ","), "frontend,backend,data,worker")
			eq(t, "expose", res.Stack.Expose, "frontend")
			fe := svc(t, res, "frontend")
			eq(t, "link", fe.Links[0], Link{Service: "backend", Alias: "backend"})
			eq(t, "depends_on", fe.DependsOn[0], "backend")
			eq(t, "affinity", fe.Affinity[0], "service!=backend")
			eq(t, "volumes_from", svc(t, res, "backend").VolumesFrom[0], "data-%s")
			eq(t, "extends Backend", svc(t, res, "worker").Image, "acme/backend:3")
		}},
		{file: "unclosed-brace.yml", warns: []wantWarn{
			{"unclosed-brace.yml:9:12", "services.app.image", `unclosed ${ in "acme/app:${tag": read as ${tag}, as Kontena did; write ${tag}`},
		}, check: func(t *testing.T, res *Result) {
			app := svc(t, res, "app")
			eq(t, "image", app.Image, "acme/app:1.4")
			eq(t, "closed reference", env(t, app, "RELEASE"), "1.4")
			eq(t, "a lone $", env(t, app, "PRICE"), "5$")
		}},
		{file: "duplicate-keys.yml", warns: []wantWarn{
			{"duplicate-keys.yml:7:5", "services.web.image", `duplicate key "image": the value on line 7 is used, the one on line 5 is ignored; remove one of them`},
			{"duplicate-keys.yml:10:3", "services.worker", `duplicate key "worker": the value on line 10 is used, the one on line 8 is ignored`},
		}, check: func(t *testing.T, res *Result) {
			eq(t, "web image", svc(t, res, "web").Image, "nginx:1.13")
			eq(t, "web instances", svc(t, res, "web").Instances, 2)
			eq(t, "worker image", svc(t, res, "worker").Image, "acme/worker:2")
			eq(t, "worker instances", svc(t, res, "worker").Instances, 3)
			eq(t, "services, in the first one's place", len(res.Stack.Services), 2)
			eq(t, "order", res.Stack.Services[1].Name, "worker")
		}},
		{file: "grid.yml", opts: func(o *Options) { o.Grid = "" }, warns: []wantWarn{
			{"grid.yml:5:23", "GRID", `no grid was given, so GRID is "validate" (as in Kontena's offline stack validate); give --grid NAME`},
		}, check: func(t *testing.T, res *Result) {
			app := svc(t, res, "app")
			eq(t, "image", app.Image, "registry.validate.kontena.local/acme/app:1.0")
			eq(t, "PLATFORM", env(t, app, "PLATFORM"), "validate-platform")
		}},
		{file: "grid.yml", opts: func(o *Options) { o.Grid = "prod" }, check: func(t *testing.T, res *Result) {
			app := svc(t, res, "app")
			eq(t, "image", app.Image, "registry.prod.kontena.local/acme/app:1.0")
			eq(t, "PLATFORM", env(t, app, "PLATFORM"), "prod")
		}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			opts := baseOptions()
			if c.opts != nil {
				c.opts(&opts)
			}
			res, err := Load(context.Background(), toleranceFile(c.file), opts)
			if err != nil {
				t.Fatalf("a tolerated file must load:\n%v", err)
			}
			checkWarnings(t, res.Warnings, c.warns)
			c.check(t, res)
		})
	}
}

func TestToleranceErrors(t *testing.T) {
	cases := []struct {
		file string
		err  string // the whole list
	}{
		{"service-name-collision.yml", `testdata/tolerance/service-name-collision.yml:8:3: services.Web: services "web" (line 6) and "Web" (line 8) differ only in case: DNS names are case-insensitive, so both would be "web"; rename one of them`},
		// A service under services: indented by 3 where the one above is at 4.
		{"indent-service-by-3.yml", `testdata/tolerance/indent-service-by-3.yml:5:4: invalid YAML: did not find expected key; this line is indented less than the key above it (line 4) but more than the one on line 2; YAML nests by indentation: indent it by 4 spaces like line 3`},
		{"indent-list-item.yml", `testdata/tolerance/indent-list-item.yml:7:3: invalid YAML: did not find expected key; a list item ("- ") at the indentation of the key on line 3; YAML nests by indentation: indent it by 6 spaces like the list item on line 6`},
		{"indent-list-item-less.yml", `testdata/tolerance/indent-list-item-less.yml:7:6: invalid YAML: did not find expected key; this line is indented less than the list item above it (line 6) but more than the one on line 5; YAML nests by indentation: indent it by 6 spaces like line 6, or by 4 spaces like line 5`},
		{"indent-key-more.yml", `testdata/tolerance/indent-key-more.yml:5:7: invalid YAML: mapping values are not allowed in this context; this line is indented more than the key above it (line 4), which already has a value; YAML nests by indentation: indent it by 4 spaces like line 4`},
		{"indent-tab.yml", `testdata/tolerance/indent-tab.yml:5:1: invalid YAML: found a tab character that violates indentation; this line is indented with a tab; YAML indents with spaces only: replace the tab with spaces`},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			res, err := Load(context.Background(), toleranceFile(c.file), baseOptions())
			if err == nil {
				t.Fatalf("expected the error\n%s", c.err)
			}
			eq(t, "error", err.Error(), c.err)
			if res.Stack != nil {
				t.Errorf("a failed load returns no stack")
			}
		})
	}
}

// What is already the proper form stays silent.
func TestToleranceSilentForProperForms(t *testing.T) {
	src := `stack: me/app
variables:
  mem:
    type: integer
    default: 1000
  twice:
    type: integer
    from:
      evaluate: ${mem} * 2
  tenth:
    type: integer
    from:
      evaluate: ${mem} * 0.1
  flag:
    type: boolean
    default: "yes"
services:
  web:
    image: web:${mem}
    stateful: true
    privileged: "false"
    read_only: True
    instances: 2
`
	res := mustLoadString(t, src, baseOptions())
	checkWarnings(t, res.Warnings, nil)
	eq(t, "twice", res.Variables["twice"], any(2000))
	eq(t, "1000 * 0.1 is 100.0, whole", res.Variables["tenth"], any(100))
	eq(t, "a boolean variable's yes is its own truthy list, not YAML's", res.Variables["flag"], any("true"))
	eq(t, "stateful", svc(t, res, "web").Stateful, true)
	eq(t, "read_only", svc(t, res, "web").ReadOnly, true)
}

func TestToleranceLimits(t *testing.T) {
	cases := []struct {
		name, src, err string
	}{
		{"a word that is no boolean in any YAML", "stack: me/app\nservices:\n  web:\n    image: web\n    stateful: yep\n",
			`kontena.yml:5:15: services.web.stateful: expected true or false, found "yep"`},
		{"a truncated fraction is still checked against min", "stack: me/app\nvariables:\n  n:\n    type: integer\n    default: -1.5\nservices:\n  web:\n    image: web\n",
			"kontena.yml:3:3: variables.n: expected a number of at least 0, found -1 (from its default:)"},
		{"${ without a name stays an error", "stack: me/app\nservices:\n  web:\n    image: web\n    command: echo ${ x\n",
			`kontena.yml:5:14: services.web.command: unclosed ${ in "echo ${ x" (write $$ for a literal $)`},
		{"an unclosed ${ still needs a declared name", "stack: me/app\nservices:\n  web:\n    image: web:${tag\n",
			`kontena.yml:4:12: services.web.image: undeclared variable "tag" in ${tag`},
		{"upper-case names differing only in case collide too", "stack: me/app\nservices:\n  Web:\n    image: a\n  WEB:\n    image: b\n",
			`kontena.yml:5:3: services.WEB: services "Web" (line 3) and "WEB" (line 5) differ only in case`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := loadString(t, c.src, baseOptions())
			wantErr(t, err, c.err)
		})
	}
}

// An indentation error inside a Liquid loop points into the file as
// written, not into the longer rendered text.
func TestIndentationErrorAfterLiquid(t *testing.T) {
	src := `stack: me/app
variables:
  n:
    type: integer
    default: 3
services:
  # {% for i in (1..n) %}
  web{{ i }}:
    image: nginx
  # {% endfor %}
  db:
    image: postgres
      ports:
`
	_, err := loadString(t, src, baseOptions())
	wantErr(t, err, "kontena.yml:13:7: invalid YAML: mapping values are not allowed in this context; this line is indented more than the key above it (line 12)")
}

// `stack validate` without --grid renders GRID as Kontena's offline
// validate did, and says so on stderr.
func TestValidateOfflineGrid(t *testing.T) {
	req := ValidateRequest{File: toleranceFile("grid.yml")}
	req.Options.LookupEnv = envFrom(nil)
	var out, errOut bytes.Buffer
	if err := Validate(context.Background(), req, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "image: registry.validate.kontena.local/acme/app:1.0") {
		t.Errorf("GRID is not \"validate\":\n%s", out.String())
	}
	if !strings.Contains(errOut.String(), `warning: testdata/tolerance/grid.yml:5:23: GRID: no grid was given, so GRID is "validate"`) {
		t.Errorf("no warning about GRID:\n%s", errOut.String())
	}
}

// More indentation mistakes, each reported at the line that broke.
func TestIndentationHints(t *testing.T) {
	cases := []struct {
		name, src, err string
	}{
		{"a key under a list item's dash", "stack: me/app\nservices:\n  web:\n    image: nginx\n    hooks:\n      post_start:\n        - name: migrate\n        cmd: rake db:migrate\n",
			`kontena.yml:8:9: invalid YAML: did not find expected '-' indicator; a key among the list items of line 7; YAML nests by indentation: indent it by 10 spaces like line 7 to go on with that item, or start it with "- " for a new item`},
		{"a text block's line indented less than its first", "stack: me/app\nservices:\n  web:\n    image: nginx\n    command: >\n      a long\n     command\n    instances: 2\n",
			"kontena.yml:7:6: invalid YAML: did not find expected key; this line is indented less than the first line of the text block of line 5; YAML nests by indentation: indent it by 6 spaces like that first line"},
		{"no space after a colon", "stack: me/app\nservices:\n  web:\n    image:nginx\n    instances: 2\n",
			`kontena.yml:5:5: invalid YAML: mapping values are not allowed in this context; this line is indented more than the key above it (line 3), which already has a value: line 4 ("image:nginx") reads as its value, not as a key; YAML needs a space after the colon: image: nginx`},
		{"an unclosed quote is left to the YAML parser", "stack: me/app\nservices:\n  web:\n    image: \"nginx\n    instances: 2\n",
			"kontena.yml:4: invalid YAML: found unexpected end of stream"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := loadString(t, c.src, baseOptions())
			if err == nil {
				t.Fatalf("expected %s", c.err)
			}
			eq(t, "error", err.Error(), c.err)
		})
	}
}
