package stack

import (
	"context"
	"io/fs"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// fixtureCase says how to load one corpus file and what must come out.
type fixtureCase struct {
	name   string            // install name (-n); "" = the file's
	values map[string]any    // -v
	env    map[string]string // environment
	grid   GridResolver
	err    []string // expected error parts; nil = must load
	check  func(t *testing.T, res *Result)
}

// mustFail is the corpus rule: these names are meant to be rejected.
var mustFailRe = regexp.MustCompile(`invalid|malformed|broken|missing-driver|not-hash`)

// fixtureCases covers every file of the corpus (TestFixtures fails on a file
// missing here). Files are keyed by their path below kontena-fixtures/.
var fixtureCases = map[string]fixtureCase{
	"cli/kontena-malformed-yaml.yml": {err: []string{"kontena-malformed-yaml.yml:5:", "invalid YAML: mapping values are not allowed"}},
	"cli/kontena-not-hash-service-config.yml": {err: []string{"kontena-not-hash-service-config.yml:4:14: services.wordpress: expected a mapping of service keys",
		`found "service config cannot be string"`}},
	"cli/stack-invalid.yml": {err: []string{"stack-invalid.yml:1:1: stack: stack is required: add a line \"stack: <user>/<name>\"",
		"the file does not list any services or volumes"}},
	"cli/stack-with-invalid-liquid.yml": {err: []string{"stack-with-invalid-liquid.yml:15:5: Liquid: unknown tag \"forx\" (did you mean \"for\"?)"}},
	// Not in the corpus's list of failing names, but Kontena's own spec
	// expects this one to raise, and strict undefined variables are the
	// point of the file (see the reference's "user pain").
	"cli/stack-with-liquid-undefined.yml":  {err: []string{"stack-with-liquid-undefined.yml:12:16: Liquid: undefined variable \"asdflol\""}},
	"e2e/stack/simple/invalid.yml":         {err: []string{"invalid.yml:5:5: services.redis.omg: unknown service key \"omg\""}},
	"e2e/stack/links/broken.yml":           {err: []string{"broken.yml:6:9: services.a.links: expected a service of this stack", `found "nope"`}},
	"e2e/stack/volumes/missing-driver.yml": {err: []string{"missing-driver.yml:12:3: volumes.redis-data: expected \"driver: <name>\" (like driver: local) or \"external: true\", found neither"}},
	// docker-compose files, not stack files: alone they are rejected with the
	// hint to add `stack:`; TestComposeFixturesExtended loads them through
	// extends, which is how a stack uses them.
	"e2e/app/simple/kontena.yml":                       {err: []string{"kontena.yml:1:1: stack: stack is required", "this looks like a docker-compose file"}},
	"e2e/stack/keywords/docker-compose-entrypoint.yml": {err: []string{"stack is required", "docker-compose"}},

	"cli/kontena_build_v3.yml": {check: func(t *testing.T, res *Result) {
		eq(t, "stack", res.Stack.Stack, "user/stackname")
		eq(t, "name", res.Name, "stackname")
		eq(t, "version", res.Stack.Version, "0.1.1")
		mysql := svc(t, res, "mysql")
		eq(t, "mysql stateful", mysql.Stateful, true)
		eq(t, "MYSQL_ROOT_PASSWORD", env(t, mysql, "MYSQL_ROOT_PASSWORD"), "stackname_secret")
		web := svc(t, res, "webapp")
		eq(t, "webapp build context", web.Build.Context, fx("cli"))
		eq(t, "webapp arg foo", *web.Build.Args["foo"], "bar")
		eq(t, "webapp arg baz", *web.Build.Args["baz"], "baf")
		app := svc(t, res, "some_app")
		eq(t, "some_app arg foo", *app.Build.Args["foo"], "bar")
		if v, ok := app.Build.Args["baz"]; !ok || v != nil {
			t.Errorf("some_app arg baz should be present without a value, got %v %v", v, ok)
		}
	}},
	"cli/kontena_v3.yml": {check: func(t *testing.T, res *Result) {
		eq(t, "label fqdn", res.Stack.Labels["fqdn"], "nist.wer.omg")
		wp := svc(t, res, "wordpress")
		eq(t, "wordpress image (extended)", wp.Image, "wordpress:4.6")
		eq(t, "wordpress ports (extended)", len(wp.Ports), 1)
		eq(t, "wordpress port", wp.Ports[0], Port{NodePort: 80, ContainerPort: 80, Protocol: "tcp"})
		eq(t, "wordpress depends_on (extended)", strings.Join(wp.DependsOn, ","), "mysql")
		eq(t, "wordpress instances", wp.Instances, 2)
		eq(t, "wordpress stateful", wp.Stateful, true)
		eq(t, "wordpress strategy", wp.Deploy.Strategy, "ha")
		eq(t, "WORDPRESS_DB_PASSWORD", env(t, wp, "WORDPRESS_DB_PASSWORD"), "stackname_secret")
		eq(t, "WORDPRESS_DB_HOST (extended env)", env(t, wp, "WORDPRESS_DB_HOST"), "mysql")
		mysql := svc(t, res, "mysql")
		eq(t, "mysql image", mysql.Image, "mysql:5.7")
		eq(t, "mysql instances default", mysql.Instances, 1)
		eq(t, "MYSQL_ROOT_PASSWORD", env(t, mysql, "MYSQL_ROOT_PASSWORD"), "stackname_secret")
		warned := false
		for _, w := range res.Warnings {
			warned = warned || strings.Contains(w.Error(), `docker-compose key "container_name" is not used by Kontena`)
		}
		eq(t, "container_name warning", warned, true)
	}},
	"cli/kontena_v3_with_compose_variables.yml": {check: func(t *testing.T, res *Result) {
		mysql := svc(t, res, "mysql")
		eq(t, "ENV_VAR from the stack variable", env(t, mysql, "ENV_VAR"), "abcd")
		eq(t, "image", mysql.Image, "mysql:5.7")
	}},
	"cli/kontena_v3_with_metadata.yml": {check: func(t *testing.T, res *Result) {
		m := res.Stack.Meta
		eq(t, "tags", strings.Join(m.Tags, ","), "tag1,tag2")
		eq(t, "readme", m.Readme, "Text goes\nhere\n")
		eq(t, "required_kontena_version", m.RequiredKontenaVersion, ">= 0.5.0")
	}},
	"cli/kontena_v3_with_registry_extends.yml": {check: func(t *testing.T, res *Result) {
		wp := svc(t, res, "wordpress")
		eq(t, "image from registry stack", wp.Image, "wordpress:4.6")
		eq(t, "instances", wp.Instances, 2)
		eq(t, "mysql image", svc(t, res, "mysql").Image, "mysql:5.7")
	}},
	"cli/stack-internal-extend.yml": {check: func(t *testing.T, res *Result) {
		app := svc(t, res, "app")
		eq(t, "image", app.Image, "base")
		eq(t, "instances", app.Instances, 2)
		eq(t, "stateful", app.Stateful, true)
		eq(t, "strategy", app.Deploy.Strategy, "ha")
		eq(t, "TEST1 inherited", env(t, app, "TEST1"), "test1")
		eq(t, "TEST2 overridden", env(t, app, "TEST2"), "changed")
		eq(t, "base TEST2 untouched", env(t, svc(t, res, "base"), "TEST2"), "test2")
	}},
	"cli/stack-with-anchors.yml": {check: func(t *testing.T, res *Result) {
		for _, name := range []string{"wordpress", "mysql"} {
			s := svc(t, res, name)
			eq(t, name+" affinity", strings.Join(s.Affinity, ","), "abc==dfg")
			eq(t, name+" image", s.Image, name)
		}
	}},
	"cli/stack-with-dependencies-dep-1-1.yml": {values: map[string]any{"dep_var": "3"}, check: func(t *testing.T, res *Result) {
		eq(t, "image", svc(t, res, "monitor").Image, "image:3")
		eq(t, "stored value", res.Variables["dep_var"], any(3))
	}},
	"cli/stack-with-dependencies-dep-1.yml": {check: func(t *testing.T, res *Result) {
		eq(t, "name", res.Name, "depstack1child1")
		db := svc(t, res, "db")
		if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(db.Image) {
			t.Errorf("db image should be the random hex test_var, got %q", db.Image)
		}
		c := child(t, res, "depstack1child1-dep_1")
		eq(t, "child parent", c.ParentName, "depstack1child1")
		eq(t, "child image (depends variables)", svc(t, c, "monitor").Image, "image:2")
	}},
	"cli/stack-with-dependencies-dep-2.yml": {values: map[string]any{"dep_var": 1}, check: func(t *testing.T, res *Result) {
		eq(t, "image", svc(t, res, "cache").Image, "image:1")
	}},
	"cli/stack-with-dependencies-dep-3.yml": {check: func(t *testing.T, res *Result) {
		eq(t, "image", svc(t, res, "logger").Image, "logger")
	}},
	"cli/stack-with-dependencies.yml": {values: map[string]any{"dep_2.dep_var": "7"}, check: func(t *testing.T, res *Result) {
		checkDependencies(t, res)
		eq(t, "-v dep_2.dep_var beats depends variables", svc(t, child(t, res, "depstack1-dep_2"), "cache").Image, "image:7")
		all := res.AllValues()
		eq(t, "AllValues dep_2.dep_var", all["dep_2.dep_var"], any(7))
		eq(t, "AllValues dep_1.dep_1.dep_var", all["dep_1.dep_1.dep_var"], any(2))
	}},
	"cli/stack-with-dependencies-dep_2-removed.yml": {check: func(t *testing.T, res *Result) {
		eq(t, "children", len(res.Children), 1)
		eq(t, "TEST", env(t, svc(t, res, "app"), "TEST"), "depstack1-dep_1")
	}},
	"cli/stack-with-dependencies-dep_3-added.yml": {check: func(t *testing.T, res *Result) {
		checkDependencies(t, res)
		eq(t, "children", len(res.Children), 3)
		eq(t, "dep_3", svc(t, child(t, res, "depstack1-dep_3"), "logger").Image, "logger")
	}},
	"cli/stack-with-env-file.yml": {check: func(t *testing.T, res *Result) {
		wp := svc(t, res, "wordpress")
		eq(t, "environment beats env_file", env(t, wp, "WORDPRESS_DB_PASSWORD"), "stackname_secret")
		eq(t, "EXTRA from env_file", env(t, wp, "EXTRA"), "1")
		eq(t, "export prefix", env(t, wp, "SECOND"), "two")
		eq(t, "compose environment kept", env(t, wp, "WORDPRESS_DB_HOST"), "mysql")
		var names []string
		for _, e := range wp.Environment {
			names = append(names, e.Name)
		}
		eq(t, "order: extended, environment, env_file", strings.Join(names, ","), "WORDPRESS_DB_HOST,WORDPRESS_DB_PASSWORD,EXTRA,SECOND")
		noEnv(t, svc(t, res, "mysql"), "EXTRA")
	}},
	"cli/stack-with-ifs.yml": {values: map[string]any{"db": "mysql", "no_wp": "false"}, check: func(t *testing.T, res *Result) {
		var names []string
		for _, s := range res.Stack.Services {
			names = append(names, s.Name)
		}
		eq(t, "services", strings.Join(names, ","), "wordpress,mysql")
		eq(t, "mysql image", svc(t, res, "mysql").Image, "mysql")
		if _, stored := res.Variables["GALERA_NODES"]; stored {
			t.Errorf("GALERA_NODES is skipped by only_if and must not be stored")
		}
	}},
	"cli/stack-with-labels.yml": {check: func(t *testing.T, res *Result) {
		eq(t, "labels", len(res.Stack.Labels), 1)
		eq(t, "fqdn", res.Stack.Labels["fqdn"], "oobe.broom.def")
		eq(t, "stateful", svc(t, res, "wordpress-stateful").Stateful, true)
		eq(t, "stateless", svc(t, res, "wordpress-stateless").Stateful, false)
	}},
	"cli/stack-without-labels.yml": {check: func(t *testing.T, res *Result) {
		eq(t, "labels", len(res.Stack.Labels), 0)
	}},
	"cli/stack-with-liquid-optional.yml": {check: func(t *testing.T, res *Result) {
		s := svc(t, res, "test")
		eq(t, "environment", len(s.Environment), 0)
		if v, ok := res.Variables["asdf"]; ok {
			t.Errorf("asdf has no value and must not be stored, got %v", v)
		}
	}},
	"cli/stack-with-liquid.yml": {name: "test", check: func(t *testing.T, res *Result) {
		eq(t, "services", len(res.Stack.Services), 5)
		for i := 1; i <= 5; i++ {
			s := svc(t, res, "service-"+itoa(i))
			eq(t, s.Name+" image", s.Image, "foo:"+itoa(i))
			// Liquid in a variable's value is data, not a template (Kontena's
			// own spec): the value keeps {{ GRID }}; ${STACK} is the installed name.
			eq(t, s.Name+" TEST_VAR", env(t, s, "TEST_VAR"), `"{{ GRID }} test"`)
		}
		eq(t, "grid_name", res.Variables["grid_name"], any("{{ GRID }} test"))
		eq(t, "copies", res.Variables["copies"], any(5))
	}},
	"cli/stack-with-prompted-variables.yml": {
		values: map[string]any{"enum_test": "Bar"},
		env:    map[string]string{"TAG": "4.7", "TEST_ENV_VAR": "from-env", "MYSQL_IMAGE": "mysql:8"},
		check: func(t *testing.T, res *Result) {
			eq(t, "enum_test", res.Variables["enum_test"], any("Bar"))
			wp := svc(t, res, "wordpress")
			eq(t, "image via to: env TAG", wp.Image, "wordpress:4.7")
			eq(t, "secrets", len(wp.Secrets), 2)
			eq(t, "secret", wp.Secrets[0], Secret{Secret: "WP_ADMIN_PASSWORD", Name: "WORDPRESS_PASSWORD", Type: "env"})
			mysql := svc(t, res, "mysql")
			eq(t, "mysql image", mysql.Image, "mysql:8")
			eq(t, "$$ is a literal $", env(t, mysql, "INTERNAL_VAR"), "$INTERNAL_VAR")
			eq(t, "TEST_VAR", env(t, mysql, "TEST_VAR"), "from-env")
			eq(t, "RANDOM_VAR", env(t, mysql, "RANDOM_VAR"), res.Variables["test_var"].(string))
			if p, _ := res.Variables["wp_pass"].(string); len(p) != 10 {
				t.Errorf("wp_pass should be a random 10-character string (no terminal, no env), got %q", p)
			}
		}},
	"cli/stack-with-variables.yml": {
		name: "installed",
		env:  map[string]string{"TAG": "4.7", "TEST_ENV_VAR": "from-env", "MYSQL_IMAGE": "mysql:8", "WORDPRESS_DB_PASSWORD": "supersecretpw"},
		check: func(t *testing.T, res *Result) {
			wp := svc(t, res, "wordpress")
			eq(t, "STACK is the installed name", env(t, wp, "STACK"), "installed")
			eq(t, "WORDPRESS_DB_PASSWORD", env(t, wp, "WORDPRESS_DB_PASSWORD"), "installed_secret")
			eq(t, "GRID", env(t, wp, "GRID"), "testgrid")
			eq(t, "PLATFORM defaults to the grid", env(t, wp, "PLATFORM"), "testgrid")
			eq(t, "wp_pass from env", res.Variables["wp_pass"], any("supersecretpw"))
			eq(t, "image", wp.Image, "wordpress:4.7")
			eq(t, "instances", wp.Instances, 2)
		}},
	"cli/stack-with-volumes.yml": {check: func(t *testing.T, res *Result) {
		checkVolumes(t, res)
	}},
	"e2e/stack/certificates/kontena-lb.yml": {values: map[string]any{"certificate": "www.example.com"}, check: func(t *testing.T, res *Result) {
		lb := svc(t, res, "lb")
		eq(t, "certificates", len(lb.Certificates), 1)
		eq(t, "certificate", lb.Certificates[0], Certificate{Subject: "www.example.com", Name: "SSL_CERTS", Type: "env"})
		eq(t, "wait_for_port", lb.Deploy.WaitForPort, 443)
		eq(t, "whoami links lb", svc(t, res, "whoami").Links[0], Link{Service: "lb", Alias: "lb"})
	}},
	"e2e/stack/depends/kontena.yml": {check: func(t *testing.T, res *Result) {
		eq(t, "expose", res.Stack.Expose, "twemproxy")
		tw := svc(t, res, "twemproxy")
		eq(t, "REDIS1", env(t, tw, "REDIS1_PORT_6379_TCP_ADDR"), "twemproxy-redis_from_registry")
		eq(t, "REDIS2", env(t, tw, "REDIS2_PORT_6379_TCP_ADDR"), "twemproxy-redis_from_yml")
		eq(t, "STACKNAME", env(t, tw, "STACKNAME"), "twemproxy")
		eq(t, "port", tw.Ports[0].NodePort, 6000)
		reg := child(t, res, "twemproxy-redis_from_registry")
		eq(t, "registry child image", svc(t, reg, "redis").Image, "redis:3.2-alpine")
		eq(t, "registry child file", reg.File, "kontena/redis:0.1.0")
		yml := child(t, res, "twemproxy-redis_from_yml")
		eq(t, "yml child image", svc(t, yml, "redis").Image, "redis:3.2-alpine")
		eq(t, "yml child stateful", svc(t, yml, "redis").Stateful, false)
	}},
	"e2e/stack/depends/monitor_added/kontena.yml": {check: func(t *testing.T, res *Result) {
		yml := child(t, res, "twemproxy-redis_from_yml")
		mon := child(t, yml, "twemproxy-redis_from_yml-monitor")
		eq(t, "PARENT_STACK in a grandchild", strings.Join(svc(t, mon, "monitor").Command, " "), "--server redis.twemproxy-redis_from_yml")
		eq(t, "tree depth", len(res.DependencyTree().Depends[1].Depends), 1)
	}},
	"e2e/stack/depends/monitor_added/redis_stat.yml": {check: func(t *testing.T, res *Result) {
		eq(t, "PARENT_STACK is empty at the top", strings.Join(svc(t, res, "monitor").Command, " "), "--server redis.")
	}},
	"e2e/stack/depends/second_redis_replaced/kontena.yml": {check: func(t *testing.T, res *Result) {
		eq(t, "children", len(res.Children), 2)
		eq(t, "second from registry", child(t, res, "twemproxy-redis_from_yml").File, "kontena/redis:0.1.0")
	}},
	"e2e/stack/depends/redis.yml": {env: map[string]string{"VERSION": "4.0"}, check: func(t *testing.T, res *Result) {
		eq(t, "image from env", svc(t, res, "redis").Image, "redis:4.0")
		eq(t, "expose", res.Stack.Expose, "redis")
	}},
	"e2e/stack/healthcheck/kontena.yml": {check: func(t *testing.T, res *Result) {
		hc := svc(t, res, "server").HealthCheck
		eq(t, "health check", *hc, HealthCheck{Protocol: "http", Port: 8000, URI: "/health?status=200", Timeout: 10, Interval: 60, InitialDelay: 2})
		eq(t, "lb stop_grace_period", svc(t, res, "lb").StopGracePeriod, Duration(0))
		eq(t, "server stop_grace_period default", svc(t, res, "server").StopGracePeriod, Duration(10*time.Second))
	}},
	"e2e/stack/keywords/entrypoint.yml": {check: func(t *testing.T, res *Result) {
		eq(t, "redis entrypoint", strings.Join(svc(t, res, "redis").Entrypoint, " "), "foo")
		r2 := svc(t, res, "redis2")
		eq(t, "redis2 entrypoint (compose)", strings.Join(r2.Entrypoint, " "), "foo2")
		eq(t, "redis2 image (compose)", r2.Image, "redis")
	}},
	"e2e/stack/links/links.yml": {check: func(t *testing.T, res *Result) {
		eq(t, "bar links", svc(t, res, "bar").Links[0], Link{Service: "foo", Alias: "foo"})
		eq(t, "foo links", len(svc(t, res, "foo").Links), 0)
	}},
	"e2e/stack/metadata/future.yml": {check: func(t *testing.T, res *Result) {
		eq(t, "required version kept for install to check", res.Stack.Meta.RequiredKontenaVersion, ">= 99.0.0")
	}},
	"e2e/stack/read_only/redis.yml": {check: func(t *testing.T, res *Result) {
		eq(t, "read_only", svc(t, res, "redis").ReadOnly, true)
		eq(t, "stack without user", res.Stack.User, "")
	}},
	"e2e/stack/read_only/redis_read_only_false.yml": {check: func(t *testing.T, res *Result) {
		eq(t, "read_only", svc(t, res, "redis").ReadOnly, false)
	}},
	"e2e/stack/service_instances_resolver/kontena.yml": {name: "simple", grid: &fakeGrid{instances: map[string]int{"simple/redis": 3}}, check: func(t *testing.T, res *Result) {
		eq(t, "INSTANCE_COUNT from the grid", env(t, svc(t, res, "redis"), "INSTANCE_COUNT"), "3")
	}},
	"e2e/stack/service_link/kontena.yml": {grid: &fakeGrid{services: []GridService{{Stack: "db", Name: "redis", Image: "redis:3.2"}, {Stack: "web", Name: "nginx", Image: "nginx"}}},
		check: func(t *testing.T, res *Result) {
			eq(t, "link from service_link", svc(t, res, "nginx").Links[0], Link{Stack: "db", Service: "redis", Alias: "redis"})
		}},
	"e2e/stack/shutdown-test/kontena.yml": {check: func(t *testing.T, res *Result) {
		server := svc(t, res, "server")
		if server.HealthCheck != nil {
			t.Errorf("healthcheck is false: no health_check expected (a boolean is a real boolean in Liquid)")
		}
		eq(t, "TRAP (default true)", env(t, server, "TRAP"), "true")
		noEnv(t, server, "SHUTDOWN")
		eq(t, "build dockerfile", server.Build.Dockerfile, "Dockerfile.server")
		eq(t, "client depends_on", svc(t, res, "client").DependsOn[0], "server")
	}},
	"e2e/stack/simple/stop-period.yml": {check: func(t *testing.T, res *Result) {
		eq(t, "stop_grace_period", svc(t, res, "redis").StopGracePeriod, Duration(23*time.Second))
	}},
	"e2e/stack/stop_signal/kontena.yml": {check: func(t *testing.T, res *Result) {
		app := svc(t, res, "app")
		eq(t, "stop_signal", app.StopSignal, "SIGINT")
		eq(t, "command words", len(app.Command), 3)
		eq(t, "shell-split command", app.Command[2], `trap "exit 0" SIGINT;trap "exit 1" SIGTERM;while true; do :; done`)
	}},
	"e2e/stack/entrypoint/etcdctl-watch.yml": {check: func(t *testing.T, res *Result) {
		e := svc(t, res, "etcdctl")
		eq(t, "network_mode", e.NetworkMode, "host")
		eq(t, "command", strings.Join(e.Command, "|"), "watch|--forever|--recursive|/")
	}},
	"e2e/stack/upgrade/version2.yml": {check: func(t *testing.T, res *Result) {
		eq(t, "version", res.Stack.Version, "3.2.8")
	}},
	"e2e/stack/volumes/redis-simple.yml": {check: func(t *testing.T, res *Result) {
		v := res.Stack.Volume("redis-data")
		eq(t, "external", v.External, "redis-data")
		eq(t, "mount", svc(t, res, "redis").Volumes[0], Mount{Volume: "redis-data", Path: "/data"})
	}},
	"e2e/stack/volumes/redis-with-volume.yml": {check: func(t *testing.T, res *Result) {
		v := res.Stack.Volume("redis-data")
		eq(t, "driver", v.Driver, "local")
		eq(t, "scope", v.Scope, "instance")
		eq(t, "external", v.External, "")
	}},
}

func itoa(i int) string { return string(rune('0' + i)) }

func checkDependencies(t *testing.T, res *Result) {
	t.Helper()
	app := svc(t, res, "app")
	eq(t, "TEST", env(t, app, "TEST"), "depstack1-dep_1")
	eq(t, "TEST2", env(t, app, "TEST2"), "depstack1-dep_2")
	d1 := child(t, res, "depstack1-dep_1")
	eq(t, "dep_1 parent", d1.ParentName, "depstack1")
	d11 := child(t, d1, "depstack1-dep_1-dep_1")
	eq(t, "nested child gets its depends variables", svc(t, d11, "monitor").Image, "image:2")
	eq(t, "dep_1 stack key", d1.Stack.Stack, "user/depstack1child1")
	deps := res.Stack.Depends
	eq(t, "depends[0]", deps[0].InstalledName, "depstack1-dep_1")
	eq(t, "depends[0].stack", deps[0].Stack, "stack-with-dependencies-dep-1.yml")
}

func checkVolumes(t *testing.T, res *Result) {
	t.Helper()
	eq(t, "volumes", len(res.Stack.Volumes), 3)
	v := res.Stack.Volume("wp-data")
	eq(t, "wp-data driver", v.Driver, "local")
	eq(t, "wp-data scope", v.Scope, "instance")
	eq(t, "wp-data driver_opts", v.DriverOpts["foo"], "bar")
	eq(t, "external: true", res.Stack.Volume("wp-data-ext").External, "wp-data-ext")
	eq(t, "external: {name: $foo}", res.Stack.Volume("wp-data-ext-2").External, "foofoo")
	st := svc(t, res, "wordpress_stateful")
	eq(t, "mount", st.Volumes[0], Mount{Volume: "wp-data", Path: "/var"})
	sl := svc(t, res, "wordpress_stateless")
	eq(t, "mounts", len(sl.Volumes), 2)
	eq(t, "mount 2", sl.Volumes[1], Mount{Volume: "wp-data-ext-2", Path: "/var/lib"})
}

// TestFixtures loads every file of the compatibility corpus.
func TestFixtures(t *testing.T) {
	requireFixtures(t)
	var files []string
	err := filepath.WalkDir(fixturesDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(fixturesDir, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	if len(files) < 60 {
		t.Fatalf("expected the whole corpus (64 files), found %d in %s", len(files), fixturesDir)
	}
	for _, rel := range files {
		t.Run(rel, func(t *testing.T) {
			c, known := fixtureCases[rel]
			if mustFailRe.MatchString(filepath.Base(rel)) && c.err == nil {
				t.Fatalf("%s is meant to fail: add its expected message to fixtureCases", rel)
			}
			opts := baseOptions()
			opts.Name = c.name
			opts.Values = c.values
			opts.LookupEnv = envFrom(c.env)
			opts.GridResolver = c.grid
			res, err := Load(context.Background(), fx(rel), opts)
			if c.err != nil {
				wantErr(t, err, c.err...)
				return
			}
			if err != nil {
				t.Fatalf("must load, render and validate:\n%v", err)
			}
			if res.Stack == nil || len(res.Stack.Services)+len(res.Stack.Volumes) == 0 {
				t.Fatalf("empty result")
			}
			if res.Source == "" || res.Rendered() == "" {
				t.Errorf("source and rendered text must be kept")
			}
			if !known {
				return // loads; nothing more to assert for this file
			}
			if c.check != nil {
				c.check(t, res)
			}
		})
	}
}

// TestFixtureVariants loads corpus files again with other answers.
func TestFixtureVariants(t *testing.T) {
	requireFixtures(t)
	cases := []struct {
		file   string
		values map[string]any
		check  func(t *testing.T, res *Result)
	}{
		{"cli/stack-with-ifs.yml", map[string]any{"db": "galera", "GALERA_NODES": "3", "no_wp": "yes"}, func(t *testing.T, res *Result) {
			eq(t, "services", len(res.Stack.Services), 1)
			g := svc(t, res, "galera")
			eq(t, "galera instances", g.Instances, 3)
			eq(t, "galera image", g.Image, "galera")
		}},
		{"cli/stack-with-liquid-optional.yml", map[string]any{"asdf": "set"}, func(t *testing.T, res *Result) {
			eq(t, "ASDF", env(t, svc(t, res, "test"), "ASDF"), "set")
		}},
		{"e2e/stack/healthcheck/kontena.yml", map[string]any{"health_location": "/x", "health_status": "503"}, func(t *testing.T, res *Result) {
			eq(t, "uri", svc(t, res, "server").HealthCheck.URI, "/health?status=503&location=/x")
		}},
		{"e2e/stack/shutdown-test/kontena.yml", map[string]any{"healthcheck": "true", "graceful_shutdown": "true"}, func(t *testing.T, res *Result) {
			server := svc(t, res, "server")
			eq(t, "health check port", server.HealthCheck.Port, 8000)
			eq(t, "SHUTDOWN", env(t, server, "SHUTDOWN"), "true")
		}},
		{"cli/stack-with-liquid.yml", map[string]any{"copies": 2}, func(t *testing.T, res *Result) {
			eq(t, "services", len(res.Stack.Services), 2)
		}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			opts := baseOptions()
			opts.Values = c.values
			res, err := Load(context.Background(), fx(c.file), opts)
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, res)
		})
	}
}

// A required variable of a fixture left without a value fails with the -v hint.
func TestFixtureMissingValue(t *testing.T) {
	requireFixtures(t)
	_, err := Load(context.Background(), fx("cli/stack-with-ifs.yml"), baseOptions())
	wantErr(t, err, "stack-with-ifs.yml:4:3: variables.db: no value: this variable is asked with a prompt, but there is no terminal; pass it with -v db=VALUE")
}
