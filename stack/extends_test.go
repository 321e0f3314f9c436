package stack

import (
	"context"
	"strings"
	"testing"
)

func TestExtends(t *testing.T) {
	files := MapFS{
		"dir/compose.yml": `version: '2'
services:
  base:
    image: base:1
    environment:
      - A=compose
      - HOME_DIR=$HOME
    env_file: base.env
    secrets:
      - secret: S1
        name: S1
        type: env
  child:
    extends:
      service: base
    command: run
  loop1:
    extends:
      service: loop2
  loop2:
    extends:
      service: loop1
`,
		"dir/base.env": "FROM_ENV_FILE=1\nA=env-file-loses\n",
		"dir/compose-v1.yml": `web:
  image: v1
  ports:
    - "8080:80"
`,
		"dir/other-stack.yml": `stack: user/other
variables:
  tag:
    type: string
    default: from-other
services:
  tpl:
    image: tpl:${tag}
    instances: 4
    build:
      context: ./src
      args:
        A: "1"
        B: "2"
`,
	}
	cases := []struct {
		name  string
		svcs  string
		vars  string
		err   string
		check func(t *testing.T, res *Result)
	}{
		{name: "compose file, its env_file and environment", svcs: `
  web:
    extends:
      file: compose.yml
      service: base
    environment:
      - B=stack
`, check: func(t *testing.T, res *Result) {
			web := svc(t, res, "web")
			eq(t, "image", web.Image, "base:1")
			eq(t, "A (compose environment beats its env_file)", env(t, web, "A"), "compose")
			eq(t, "B", env(t, web, "B"), "stack")
			eq(t, "FROM_ENV_FILE", env(t, web, "FROM_ENV_FILE"), "1")
			eq(t, "compose ${HOME} from the environment", env(t, web, "HOME_DIR"), "/home/u")
			eq(t, "secret", web.Secrets[0].Secret, "S1")
		}},
		{name: "secrets merge by secret, the extending service wins", svcs: `
  web:
    extends:
      file: compose.yml
      service: base
    secrets:
      - secret: S2
        name: S2
        type: env
`, check: func(t *testing.T, res *Result) {
			web := svc(t, res, "web")
			eq(t, "secrets", len(web.Secrets), 2)
			eq(t, "first", web.Secrets[0].Secret, "S2")
		}},
		{name: "extends inside the compose file", svcs: `
  web:
    extends:
      file: compose.yml
      service: child
`, check: func(t *testing.T, res *Result) {
			web := svc(t, res, "web")
			eq(t, "image from base", web.Image, "base:1")
			eq(t, "command from child", strings.Join(web.Command, " "), "run")
		}},
		{name: "loop inside the compose file", svcs: `
  web:
    extends:
      file: compose.yml
      service: loop1
`, err: "extends loops"},
		{name: "compose version 1", svcs: `
  web:
    extends:
      file: compose-v1.yml
      service: web
`, check: func(t *testing.T, res *Result) {
			eq(t, "port", svc(t, res, "web").Ports[0].NodePort, 8080)
		}},
		{name: "another stack file gets this stack's values", vars: "  tag:\n    type: string\n    value: mine\n", svcs: `
  web:
    extends:
      file: other-stack.yml
      service: tpl
    build:
      args:
        B: "3"
`, check: func(t *testing.T, res *Result) {
			web := svc(t, res, "web")
			eq(t, "image", web.Image, "tpl:mine")
			eq(t, "instances", web.Instances, 4)
			eq(t, "arg A merged", *web.Build.Args["A"], "1")
			eq(t, "arg B overridden", *web.Build.Args["B"], "3")
		}},
		{name: "registry stack", svcs: `
  web:
    extends:
      stack: registrystack/compose:1.0.0
      service: mysql
`, check: func(t *testing.T, res *Result) {
			eq(t, "image", svc(t, res, "web").Image, "mysql:5.7")
		}},
		{name: "missing file", svcs: `
  web:
    extends:
      file: nope.yml
      service: x
`, err: "kontena.yml:5:7: services.web.extends: cannot read nope.yml"},
		{name: "missing service", svcs: `
  web:
    extends:
      file: compose.yml
      service: nope
`, err: `services.web.extends: service "nope" is not defined in dir/compose.yml`},
		{name: "internal chain", svcs: `
  a:
    image: a
    instances: 3
  b:
    extends: a
  c:
    extends: b
    image: c
`, check: func(t *testing.T, res *Result) {
			c := svc(t, res, "c")
			eq(t, "image", c.Image, "c")
			eq(t, "instances through b", c.Instances, 3)
		}},
		{name: "internal loop", svcs: `
  a:
    extends: b
  b:
    extends: a
`, err: "extends loops back"},
		{name: "extends itself", svcs: `
  a:
    extends: a
`, err: "a service cannot extend itself"},
		{name: "unknown internal service", svcs: `
  a:
    extends: ghost
`, err: `services.a.extends: service "ghost" is not defined in this file`},
		{name: "extends format", svcs: `
  a:
    extends:
      file: compose.yml
`, err: "services.a.extends.service: expected the name of the service to extend, found nothing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := baseOptions()
			opts.FS = files
			opts.LookupEnv = envFrom(map[string]string{"HOME": "/home/u"})
			src := "stack: user/ext\n"
			if c.vars != "" {
				src += "variables:\n" + c.vars
			}
			src += "services:" + c.svcs
			res, err := LoadBytes(context.Background(), "dir/kontena.yml", []byte(src), opts)
			if c.err != "" {
				wantErr(t, err, c.err)
				return
			}
			if err != nil {
				t.Fatalf("unexpected error:\n%v", err)
			}
			c.check(t, res)
		})
	}
}

// The corpus's docker-compose files are used the way a stack uses them.
func TestComposeFixturesExtended(t *testing.T) {
	requireFixtures(t)
	opts := baseOptions()
	opts.FS = OverlayFS{Upper: MapFS{fx("e2e/app/simple/stack.yml"): `stack: test/simple
services:
  redis:
    extends:
      file: kontena.yml
      service: redis
  nginx:
    extends:
      file: kontena.yml
      service: nginx
  lb:
    extends:
      file: kontena.yml
      service: lb
`}, Lower: OSFS{}}
	res, err := Load(context.Background(), fx("e2e/app/simple/stack.yml"), opts)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "redis image", svc(t, res, "redis").Image, "redis:3.0")
	eq(t, "nginx links lb", svc(t, res, "nginx").Links[0], Link{Service: "lb", Alias: "lb"})
	eq(t, "lb port", svc(t, res, "lb").Ports[0], Port{NodePort: 80, ContainerPort: 80, Protocol: "tcp"})
}

func TestDepends(t *testing.T) {
	files := MapFS{
		"a.yml": "stack: user/a\ndepends:\n  b:\n    stack: b.yml\nservices:\n  a:\n    image: a\n",
		"b.yml": "stack: user/b\ndepends:\n  a:\n    stack: a.yml\nservices:\n  b:\n    image: b\n",
		"child.yml": `stack: user/child
variables:
  size:
    type: integer
  secret:
    type: string
    from:
      vault: CHILD_SECRET
services:
  c:
    image: c
    instances: ${size}
    environment:
      - PARENT=${PARENT_STACK}
      - ME=${STACK}
`,
		"bad-child.yml": "stack: user/bad\nservices:\n  c:\n    image: c\n    instances: lots\n",
	}
	load := func(src string, values map[string]any, grid GridResolver) (*Result, error) {
		opts := baseOptions()
		opts.FS = files
		opts.Values = values
		opts.GridResolver = grid
		opts.Name = "top"
		return LoadBytes(context.Background(), "top.yml", []byte(src), opts)
	}
	t.Run("circular", func(t *testing.T) {
		_, err := load(files["a.yml"], nil, nil)
		wantErr(t, err, "circular dependency")
	})
	t.Run("child variables from depends and -v", func(t *testing.T) {
		src := "stack: user/top\ndepends:\n  kid:\n    stack: child.yml\n    variables:\n      size: 2\nservices:\n  web:\n    image: web\n    environment:\n      - KID=${kid}\n"
		res, err := load(src, map[string]any{"kid.secret": "given"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		kid := child(t, res, "top-kid")
		c := svc(t, kid, "c")
		eq(t, "instances", c.Instances, 2)
		eq(t, "PARENT_STACK", env(t, c, "PARENT"), "top")
		eq(t, "STACK", env(t, c, "ME"), "top-kid")
		eq(t, "${kid}", env(t, svc(t, res, "web"), "KID"), "top-kid")
		all := res.AllValues()
		eq(t, "kid.size stored", all["kid.size"], any(2))
		if _, ok := all["kid.secret"]; ok {
			t.Errorf("vault-backed child values are not stored")
		}
		tree := res.DependencyTree()
		eq(t, "tree", tree.Depends[0].Name, "top-kid")
	})
	t.Run("child errors name the child file and how to pass values", func(t *testing.T) {
		src := "stack: user/top\ndepends:\n  kid:\n    stack: child.yml\nservices:\n  web:\n    image: web\n"
		_, err := load(src, nil, nil)
		wantErr(t, err, "child.yml:3:3: variables.size: required variable has no value; pass it with -v kid.size=VALUE",
			"child.yml:5:3: variables.secret: from vault: the vault resolver needs a grid (connect to a grid, or pass the value with -v kid.secret=VALUE)")
	})
	t.Run("errors of several files at once", func(t *testing.T) {
		src := "stack: user/top\ndepends:\n  bad:\n    stack: bad-child.yml\nservices:\n  web:\n    image: web\n    privileged: maybe\n"
		_, err := load(src, nil, nil)
		wantErr(t, err, "bad-child.yml:5:16: services.c.instances", "top.yml:8:17: services.web.privileged")
	})
	t.Run("missing stack", func(t *testing.T) {
		_, err := load("stack: user/top\ndepends:\n  x:\n    stack: nope.yml\nservices:\n  web:\n    image: web\n", nil, nil)
		wantErr(t, err, "top.yml:4:12: depends.x.stack: cannot read nope.yml")
	})
	t.Run("registry without a registry", func(t *testing.T) {
		opts := baseOptions()
		opts.Registry = nil
		_, err := loadString(t, "stack: user/top\ndepends:\n  x:\n    stack: kontena/redis:0.1.0\nservices:\n  web:\n    image: web\n", opts)
		wantErr(t, err, "needs a stack registry")
	})
	t.Run("depth limit", func(t *testing.T) {
		fs := MapFS{}
		for i := 0; i < 15; i++ {
			fs["d"+itoa2(i)+".yml"] = "stack: user/d" + itoa2(i) + "\ndepends:\n  n:\n    stack: d" + itoa2(i+1) + ".yml\nservices:\n  s:\n    image: s\n"
		}
		opts := baseOptions()
		opts.FS = fs
		_, err := Load(context.Background(), "d0.yml", opts)
		wantErr(t, err, "nested more than 10 levels")
	})
}

func itoa2(i int) string {
	if i < 10 {
		return itoa(i)
	}
	return itoa(i/10) + itoa(i%10)
}

func TestAliasBomb(t *testing.T) {
	src := `stack: user/bomb
data:
  a: &a ["x","x","x","x","x","x","x","x","x","x"]
  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]
services:
  web:
    image: web
    command: *g
`
	_, err := loadString(t, src, baseOptions())
	wantErr(t, err, "too many YAML nodes")
}

func TestRegistryStacksCannotReadLocalFiles(t *testing.T) {
	opts := baseOptions()
	opts.FS = MapFS{"secrets.env": "A=1\n", "local.yml": "stack: user/local\nservices:\n  l:\n    image: l\n"}
	opts.Registry = fakeRegistry{"evil/stack:1.0.0": `stack: evil/stack
variables:
  x:
    type: string
    from:
      file: /etc/passwd
depends:
  l:
    stack: local.yml
services:
  s:
    image: s
    env_file: secrets.env
`}
	_, err := Load(context.Background(), "evil/stack:1.0.0", opts)
	wantErr(t, err,
		"evil/stack:1.0.0:3:3: variables.x: from file: a stack from a registry cannot read the local file /etc/passwd",
		"depends.l.stack: cannot read local.yml: a stack from a registry can only refer to registry stacks",
		"services.s.env_file: a stack from a registry cannot read the local file secrets.env")
}
