package stack

import (
	"strings"
	"testing"
	"time"
)

// oneService wraps service keys (indented 4) in a minimal stack.
func oneService(keys string) string {
	return "stack: user/svc\nservices:\n  web:\n    image: web\n" + keys + "  other:\n    image: other\nvolumes:\n  data:\n    driver: local\n"
}

func TestServiceKeys(t *testing.T) {
	cases := []struct {
		name  string
		keys  string
		err   string
		check func(t *testing.T, s *Service)
	}{
		{name: "defaults", check: func(t *testing.T, s *Service) {
			eq(t, "instances", s.Instances, 1)
			eq(t, "strategy", s.Deploy.Strategy, "ha")
			eq(t, "min_health", s.Deploy.MinHealth, 0.8)
			eq(t, "stop_grace_period", s.StopGracePeriod, Duration(10*time.Second))
			eq(t, "stateful", s.Stateful, false)
		}},
		{name: "build string", keys: "    build: ./app\n", check: func(t *testing.T, s *Service) {
			eq(t, "context", s.Build.Context, "app")
		}},
		{name: "build unknown key", keys: "    build:\n      context: .\n      target: x\n", err: `services.web.build.target: unknown build key "target"`},
		{name: "command list", keys: "    command: [echo, 'a b']\n", check: func(t *testing.T, s *Service) {
			eq(t, "command", strings.Join(s.Command, "|"), "echo|a b")
		}},
		{name: "command quotes", keys: "    command: echo \"a  b\" 'c' d\\ e\n", check: func(t *testing.T, s *Service) {
			eq(t, "command", strings.Join(s.Command, "|"), "echo|a  b|c|d e")
		}},
		{name: "command unterminated quote", keys: "    command: echo 'a\n", err: "services.web.command: expected a command line, found \"echo 'a\" (unterminated single quote)"},
		{name: "booleans and strings", keys: "    user: nobody\n    privileged: true\n    read_only: true\n    stateful: true\n    pid: host\n    cap_add: [NET_ADMIN]\n    cap_drop: [ALL]\n", check: func(t *testing.T, s *Service) {
			eq(t, "user", s.User, "nobody")
			eq(t, "privileged", s.Privileged, true)
			eq(t, "read_only", s.ReadOnly, true)
			eq(t, "stateful", s.Stateful, true)
			eq(t, "pid", s.Pid, "host")
			eq(t, "cap_add", s.CapAdd[0], "NET_ADMIN")
			eq(t, "cap_drop", s.CapDrop[0], "ALL")
		}},
		{name: "boolean type error", keys: "    privileged: sure\n", err: `services.web.privileged: expected true or false, found "sure"`},
		{name: "instances", keys: "    instances: 0\n", check: func(t *testing.T, s *Service) { eq(t, "instances", s.Instances, 0) }},
		{name: "instances negative", keys: "    instances: -1\n", err: "services.web.instances: expected a number of instances (0 to 10000), found -1"},
		{name: "environment map", keys: "    environment:\n      A: 1\n      B: true\n      C:\n", check: func(t *testing.T, s *Service) {
			eq(t, "A", env(t, s, "A"), "1")
			eq(t, "B", env(t, s, "B"), "true")
			eq(t, "C", env(t, s, "C"), "")
		}},
		{name: "environment list needs =", keys: "    environment:\n      - JUSTNAME\n", err: `services.web.environment[0]: expected KEY=VALUE, found "JUSTNAME"`},
		{name: "environment first wins", keys: "    environment:\n      - A=1\n      - A=2\n", check: func(t *testing.T, s *Service) {
			eq(t, "A", env(t, s, "A"), "1")
			eq(t, "count", len(s.Environment), 1)
		}},
		{name: "ports", keys: "    ports:\n      - 80:8080\n      - 1.2.3.4:53:53/udp\n", check: func(t *testing.T, s *Service) {
			eq(t, "p0", s.Ports[0], Port{NodePort: 80, ContainerPort: 8080, Protocol: "tcp"})
			eq(t, "p1", s.Ports[1], Port{IP: "1.2.3.4", NodePort: 53, ContainerPort: 53, Protocol: "udp"})
		}},
		{name: "port format", keys: "    ports:\n      - 8080\n", err: `services.web.ports[0]: expected "[ip:]node_port:container_port[/tcp|udp]" like "80:8080", found 8080`},
		{name: "port range", keys: "    ports:\n      - 70000:80\n", err: "expected ports between 1 and 65535"},
		{name: "port twice", keys: "    ports:\n      - 80:80\n      - 80:81\n", err: "node port 80/tcp is published twice"},
		{name: "links", keys: "    links:\n      - other\n      - other:alias\n      - lbstack/lb\n      - lbstack/lb:front\n", check: func(t *testing.T, s *Service) {
			eq(t, "l0", s.Links[0], Link{Service: "other", Alias: "other"})
			eq(t, "l1", s.Links[1], Link{Service: "other", Alias: "alias"})
			eq(t, "l2", s.Links[2], Link{Stack: "lbstack", Service: "lb", Alias: "lb"})
			eq(t, "l3", s.Links[3], Link{Stack: "lbstack", Service: "lb", Alias: "front"})
		}},
		{name: "link to itself", keys: "    links:\n      - web\n", err: "services.web.links: a service cannot link to itself"},
		{name: "depends_on unknown", keys: "    depends_on:\n      - ghost\n", err: `services.web.depends_on: expected a service of this stack, found "ghost"`},
		{name: "volumes", keys: "    volumes:\n      - data:/data\n      - /host:/host:ro\n      - /anon\n", check: func(t *testing.T, s *Service) {
			eq(t, "v0", s.Volumes[0], Mount{Volume: "data", Path: "/data"})
			eq(t, "v1", s.Volumes[1], Mount{HostPath: "/host", Path: "/host", Flags: "ro"})
			eq(t, "v2", s.Volumes[2], Mount{Path: "/anon"})
		}},
		{name: "volume not declared", keys: "    volumes:\n      - nope:/data\n", err: `services.web.volumes: volume "nope" is not declared under the top-level volumes`},
		{name: "duplicate mount point", keys: "    volumes:\n      - data:/data\n      - /x:/data\n", err: "services.web.volumes: mount point /data is used twice"},
		{name: "volume format", keys: "    volumes:\n      - data\n", err: `services.web.volumes[0]: expected "volume:/path[:ro]"`},
		{name: "volume flags", keys: "    volumes:\n      - data:/data:rox\n", err: "expected mount flags among ro, rw"},
		{name: "volumes_from and external_links", keys: "    volumes_from: [other-%s]\n    external_links: [x/y]\n", check: func(t *testing.T, s *Service) {
			eq(t, "volumes_from", s.VolumesFrom[0], "other-%s")
			eq(t, "external_links", s.ExternalLinks[0], "x/y")
		}},
		{name: "affinity", keys: "    affinity:\n      - node==n1\n      - label!=az=1a\n      - service==~db\n", check: func(t *testing.T, s *Service) {
			eq(t, "affinity", len(s.Affinity), 3)
		}},
		{name: "affinity format", keys: "    affinity:\n      - node=n1\n", err: `services.web.affinity[0]: expected "key==value" or "key!=value"`},
		{name: "deploy", keys: "    deploy:\n      strategy: daemon\n      wait_for_port: 80\n      min_health: 0.5\n      interval: 7d\n", check: func(t *testing.T, s *Service) {
			eq(t, "deploy", s.Deploy, Deploy{Strategy: "daemon", WaitForPort: 80, MinHealth: 0.5, Interval: Duration(7 * 24 * time.Hour)})
		}},
		{name: "deploy interval forms", keys: "    deploy:\n      interval: 30min\n", check: func(t *testing.T, s *Service) {
			eq(t, "interval", s.Deploy.Interval, Duration(30*time.Minute))
		}},
		{name: "min_health zero is kept", keys: "    deploy:\n      min_health: 0\n", check: func(t *testing.T, s *Service) {
			eq(t, "min_health", s.Deploy.MinHealth, 0.0)
		}},
		{name: "min_health range", keys: "    deploy:\n      min_health: abc\n", err: `kontena.yml:6:19: services.web.deploy.min_health: expected a number between 0.0 and 1.0, found "abc"`},
		{name: "deploy strategy", keys: "    deploy:\n      strategy: best\n", err: `services.web.deploy.strategy: expected ha, daemon or random, found "best"`},
		{name: "health_check defaults", keys: "    health_check:\n      protocol: http\n      port: 80\n", check: func(t *testing.T, s *Service) {
			eq(t, "hc", *s.HealthCheck, HealthCheck{Protocol: "http", Port: 80, URI: "/", Timeout: 10, Interval: 60, InitialDelay: 10})
		}},
		{name: "health_check tcp", keys: "    health_check:\n      protocol: tcp\n      port: 5432\n      timeout: 2\n", check: func(t *testing.T, s *Service) {
			eq(t, "hc", *s.HealthCheck, HealthCheck{Protocol: "tcp", Port: 5432, Timeout: 2, Interval: 60, InitialDelay: 10})
		}},
		{name: "health_check missing port", keys: "    health_check:\n      protocol: http\n", err: "services.web.health_check.port: expected a port number, found nothing"},
		{name: "health_check uri", keys: "    health_check:\n      protocol: http\n      port: 80\n      uri: health\n", err: `services.web.health_check.uri: expected a path starting with "/"`},
		{name: "hooks", keys: "    hooks:\n      pre_build:\n        - name: npm\n          cmd: npm install\n      post_start:\n        - name: init\n          cmd: init.sh\n          instances: 1\n          oneshot: true\n      pre_stop:\n        - name: drain\n          cmd: drain.sh\n", check: func(t *testing.T, s *Service) {
			eq(t, "pre_build", s.Hooks.PreBuild[0], Hook{Name: "npm", Cmd: "npm install"})
			eq(t, "post_start", s.Hooks.PostStart[0], Hook{Name: "init", Cmd: "init.sh", Instances: "1", Oneshot: true})
			eq(t, "pre_stop instances default", s.Hooks.PreStop[0].Instances, "*")
		}},
		{name: "hook unknown", keys: "    hooks:\n      post_stop: []\n", err: `kontena.yml:6:7: services.web.hooks.post_stop: unknown hook "post_stop"`},
		{name: "hook missing cmd", keys: "    hooks:\n      pre_start:\n        - name: x\n", err: "services.web.hooks.pre_start[0].cmd: expected a command, found nothing"},
		{name: "secrets", keys: "    secrets:\n      - secret: A\n        name: B\n        type: env\n", check: func(t *testing.T, s *Service) {
			eq(t, "secret", s.Secrets[0], Secret{Secret: "A", Name: "B", Type: "env"})
		}},
		{name: "secret type", keys: "    secrets:\n      - secret: A\n        name: B\n        type: volume\n", err: `services.web.secrets[0].type: expected env or file, found "volume"`},
		{name: "secret file name is one path element", keys: "    secrets:\n      - secret: A\n        type: file\n        name: ../etc/passwd\n", err: `services.web.secrets[0].name: expected a file name under /run/secrets`},
		{name: "certificate type is env only", keys: "    certificates:\n      - subject: a.example.com\n        name: SSL_CERTS\n        type: file\n", err: `services.web.certificates[0].type: expected env, found "file"`},
		{name: "resources", keys: "    cpus: 1.5\n    cpu_shares: 512\n    mem_limit: 512m\n    memswap_limit: 1g\n    shm_size: 64000\n", check: func(t *testing.T, s *Service) {
			eq(t, "cpus", s.CPUs, 1.5)
			eq(t, "cpu_shares", s.CPUShares, 512)
			eq(t, "mem_limit", s.MemLimit, int64(512<<20))
			eq(t, "memswap_limit", s.MemswapLimit, int64(1<<30))
			eq(t, "shm_size", s.ShmSize, int64(64000))
		}},
		{name: "mem_limit format", keys: "    mem_limit: lots\n", err: `services.web.mem_limit: expected a size like "512m", "1g" or a number of bytes, found "lots"`},
		{name: "network_mode", keys: "    network_mode: overlay\n", err: `services.web.network_mode: expected host, bridge or container:<service>, found "overlay"`},
		{name: "logging", keys: "    logging:\n      driver: syslog\n      options:\n        tag: web\n", check: func(t *testing.T, s *Service) {
			eq(t, "driver", s.Logging.Driver, "syslog")
			eq(t, "tag", s.Logging.Options["tag"], "web")
		}},
		{name: "stop_signal", keys: "    stop_signal: kill\n", err: `services.web.stop_signal: expected a signal like SIGTERM, SIGINT or 15, found "kill"`},
		{name: "stop_grace_period seconds", keys: "    stop_grace_period: 30\n", check: func(t *testing.T, s *Service) {
			eq(t, "stop_grace_period", s.StopGracePeriod, Duration(30*time.Second))
		}},
		{name: "stop_grace_period duration", keys: "    stop_grace_period: 1m30s\n", check: func(t *testing.T, s *Service) {
			eq(t, "stop_grace_period", s.StopGracePeriod, Duration(90*time.Second))
		}},
		{name: "stop_grace_period format", keys: "    stop_grace_period: soon\n", err: `expected a duration like "10s"`},
		{name: "unknown key with a suggestion", keys: "    imagee: x\n", err: `kontena.yml:5:5: services.web.imagee: unknown service key "imagee" (did you mean "image"?)`},
		{name: "networks in a service is unknown", keys: "    networks: [front]\n", err: `unknown service key "networks"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := loadString(t, oneService(c.keys), baseOptions())
			if c.err != "" {
				wantErr(t, err, c.err)
				return
			}
			if err != nil {
				t.Fatalf("unexpected error:\n%v", err)
			}
			c.check(t, svc(t, res, "web"))
		})
	}
}

func TestTopLevel(t *testing.T) {
	cases := []struct {
		name  string
		src   string
		err   string
		warn  string
		check func(t *testing.T, res *Result)
	}{
		{name: "defaults", src: "stack: me/app\nservices:\n  a:\n    image: a\n", check: func(t *testing.T, res *Result) {
			eq(t, "version", res.Stack.Version, "0.0.1")
			eq(t, "user", res.Stack.User, "me")
			eq(t, "name", res.Name, "app")
		}},
		{name: "version in the stack key", src: "stack: me/app:1.2.3\nservices:\n  a:\n    image: a\n", check: func(t *testing.T, res *Result) {
			eq(t, "version", res.Stack.Version, "1.2.3")
		}},
		{name: "bad stack name", src: "stack: Me/App\nservices:\n  a:\n    image: a\n", err: `kontena.yml:1:8: stack: expected "user/name" (name: lowercase letters, digits and -), found "Me/App"`},
		{name: "compose-style file", src: "version: '2'\nservices:\n  a:\n    image: a\n", err: `kontena.yml:1:1: stack: stack is required: add a line "stack: <user>/<name>"`},
		{name: "compose version without stack says so", src: "version: '3.7'\nservices:\n  a:\n    image: a\n", err: "this looks like a docker-compose file"},
		{name: "unknown top-level key is a warning", src: "stack: me/app\nservise:\n  a: {}\nservices:\n  a:\n    image: a\n", warn: `kontena.yml:2:1: servise: unknown top-level key "servise" (did you mean "services"?); ignored`},
		{name: "networks is a notice", src: "stack: me/app\nnetworks:\n  front: {}\nservices:\n  a:\n    image: a\n", warn: "networks are not supported"},
		{name: "expose must be a service", src: "stack: me/app\nexpose: b\nservices:\n  a:\n    image: a\n", err: `kontena.yml:2:9: expose: expected a service of this stack, found "b"`},
		{name: "labels", src: "stack: me/app\nlabels: [a=1, 'b=x=y']\nservices:\n  a:\n    image: a\n", check: func(t *testing.T, res *Result) {
			eq(t, "a", res.Stack.Labels["a"], "1")
			eq(t, "b", res.Stack.Labels["b"], "x=y")
		}},
		{name: "label format", src: "stack: me/app\nlabels: [novalue]\nservices:\n  a:\n    image: a\n", err: `labels[0]: expected key=value, found "novalue"`},
		{name: "no services or volumes", src: "stack: me/app\n", err: "the file does not list any services or volumes"},
		{name: "volume scope", src: "stack: me/app\nvolumes:\n  v:\n    driver: local\n    scope: cluster\n", err: `volumes.v.scope: expected instance, stack or grid, found "cluster"`},
		{name: "only volumes", src: "stack: me/app\nvolumes:\n  v:\n    driver: local\n    scope: grid\n", check: func(t *testing.T, res *Result) {
			eq(t, "scope", res.Stack.Volume("v").Scope, "grid")
		}},
		{name: "dependency and service share a name", src: "stack: me/app\ndepends:\n  a:\n    stack: me/other\nservices:\n  a:\n    image: a\n", err: `depends.a: "a" is both a service and a dependency`},
		{name: "service name", src: "stack: me/app\nservices:\n  Web_1:\n    image: a\n  we.b:\n    image: a\n", err: `services.we.b: expected a service name of lowercase letters, digits, - and _, found "we.b"`},
		{name: "upper-case service name is lowered", src: "stack: me/app\nservices:\n  Web:\n    image: a\n", warn: `kontena.yml:3:3: services.Web: service name "Web" has upper-case letters: it is deployed as "web"`, check: func(t *testing.T, res *Result) {
			eq(t, "name", svc(t, res, "web").Name, "web")
		}},
		{name: "anchors and merge keys, own keys win", src: "stack: me/app\ndata:\n  base: &base\n    image: base\n    instances: 2\nservices:\n  a:\n    <<: *base\n    instances: 3\n", check: func(t *testing.T, res *Result) {
			eq(t, "image", svc(t, res, "a").Image, "base")
			eq(t, "instances", svc(t, res, "a").Instances, 3)
		}},
		{name: "duplicate keys: the last wins", src: "stack: me/app\nservices:\n  a:\n    image: a\n    image: b\n", warn: `kontena.yml:5:5: services.a.image: duplicate key "image": the value on line 5 is used, the one on line 4 is ignored`, check: func(t *testing.T, res *Result) {
			eq(t, "image", svc(t, res, "a").Image, "b")
		}},
		{name: "two documents", src: "stack: me/app\nservices:\n  a:\n    image: a\n---\nstack: x\n", err: "a stack file is one YAML document"},
		{name: "not a mapping", src: "- a\n- b\n", err: "expected a mapping of stack keys"},
		{name: "meta", src: "stack: me/app\nmeta:\n  tags: [x]\n  license: MIT\n  color: red\nservices:\n  a:\n    image: a\n", warn: `meta.color: unknown meta key "color"`, check: func(t *testing.T, res *Result) {
			eq(t, "license", res.Stack.Meta.License, "MIT")
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := loadString(t, c.src, baseOptions())
			if c.err != "" {
				wantErr(t, err, c.err)
				return
			}
			if err != nil {
				t.Fatalf("unexpected error:\n%v", err)
			}
			if c.warn != "" {
				wantErr(t, res.Warnings, c.warn)
			}
			if c.check != nil {
				c.check(t, res)
			}
		})
	}
}

// A file with several mistakes reports all of them, in file order.
func TestAllErrorsAtOnce(t *testing.T) {
	src := `stack: user/many
variables:
  port:
    type: integer
    min: 1000
    value: 80
services:
  web:
    image: web
    instances: many
    deploy:
      min_health: abc
    ports:
      - nope
    links:
      - ghost
  db:
    imag: postgres
`
	_, err := loadString(t, src, baseOptions())
	var list Errors
	if err == nil {
		t.Fatal("expected errors")
	}
	list = err.(Errors)
	want := []string{
		"kontena.yml:3:3: variables.port: expected a number of at least 1000, found 80 (from its value:)",
		`kontena.yml:10:16: services.web.instances: expected a number of instances (0 to 10000), found "many"`,
		`kontena.yml:12:19: services.web.deploy.min_health: expected a number between 0.0 and 1.0, found "abc"`,
		`kontena.yml:14:9: services.web.ports[0]: expected "[ip:]node_port:container_port[/tcp|udp]" like "80:8080", found "nope"`,
		`kontena.yml:16:9: services.web.links: expected a service of this stack (or stack/service for another stack), found "ghost"`,
		`kontena.yml:18:5: services.db.imag: unknown service key "imag" (did you mean "image"?)`,
	}
	if len(list) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(list), len(want), err)
	}
	for i, w := range want {
		eq(t, "error", list[i].Error(), w)
	}
}

func TestErrorFormat(t *testing.T) {
	cases := []struct {
		e    Error
		want string
	}{
		{Error{File: "kontena.yml", Line: 12, Col: 5, Path: "services.web.deploy.min_health", Expected: "a number between 0.0 and 1.0", Found: `"abc"`},
			`kontena.yml:12:5: services.web.deploy.min_health: expected a number between 0.0 and 1.0, found "abc"`},
		{Error{File: "a.yml", Line: 3, Msg: "invalid YAML: x"}, "a.yml:3: invalid YAML: x"},
		{Error{File: "a.yml", Msg: "cannot read"}, "a.yml: cannot read"},
		{Error{Path: "stack", Msg: "stack is required"}, "stack: stack is required"},
		{Error{Msg: "m", Expected: "e", Found: "f"}, "m: expected e, found f"},
	}
	for _, c := range cases {
		eq(t, "Error()", c.e.Error(), c.want)
	}
	list := Errors{{File: "a", Line: 1, Msg: "x"}, {File: "a", Line: 2, Msg: "y"}}
	eq(t, "Errors.Error()", list.Error(), "a:1: x\na:2: y")
}
