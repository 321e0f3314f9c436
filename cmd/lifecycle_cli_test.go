package cmd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

// Nothing here runs a container: stacks are installed with --no-deploy, or
// cannot be placed.
const lifecycleStack = `stack: test/shop
expose: web
services:
  web:
    image: kontena-test-never-pulled
    instances: 2
    links:
      - api
  api:
    image: kontena-test-never-pulled
    depends_on:
      - db
  db:
    image: kontena-test-never-pulled
    stateful: true
  cron:
    image: kontena-test-never-pulled
    deploy:
      interval: 1h
      wait_for_port: 8080
`

const unplaceableStack = `stack: test/far
services:
  app:
    image: kontena-test-never-pulled
    affinity:
      - node==nowhere
`

func TestServiceLifecycleCLI(t *testing.T) {
	cfg := startNode(t)
	dir := t.TempDir()
	shop := filepath.Join(dir, "shop.yml")
	far := filepath.Join(dir, "far.yml")
	if err := os.WriteFile(shop, []byte(lifecycleStack), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(far, []byte(unplaceableStack), 0o644); err != nil {
		t.Fatal(err)
	}
	k := func(args ...string) []string { return append([]string{"--config", cfg}, args...) }
	tests := []struct {
		name string
		args []string
		code int
		out  string // in stdout
		msg  string // in stderr
	}{
		{"install --no-deploy", k("stack", "install", "--no-deploy", shop), ExitOK, "not deployed: run `kontena stack deploy shop`", ""},
		{"ls says not deployed", k("service", "ls", "--stack", "shop"), ExitOK, "not deployed", ""},
		{"show", k("service", "show", "shop/cron"), ExitOK, "deploy.interval 1h", ""},
		{"show needs STACK/SERVICE", k("service", "show", "cron"), ExitUsage, "", "expected STACK/SERVICE"},
		{"show unknown", k("service", "show", "shop/nope"), ExitNotFound, "", `service "shop/nope"`},
		{"containers of an undeployed service", k("service", "containers", "shop/web", "-o", "json"), ExitOK, "[]", ""},
		{"restart before any deploy", k("service", "restart", "shop/web"), ExitConflict, "", "--no-deploy"},
		{"stack restart with nothing deployed", k("stack", "restart", "shop"), ExitConflict, "", "nothing to restart in stack shop"},
		{"rm needs confirmation", k("service", "rm", "shop/cron"), ExitUsage, "", "add --force"},
		{"rm of a dependency", k("service", "rm", "shop/db", "--force"), ExitConflict, "", "shop/api depend on it"},
		{"rm of a linked service", k("service", "rm", "shop/api", "--force"), ExitConflict, "", "shop/web depend on it"},
		{"rm of the exposed service", k("service", "rm", "shop/web", "--force"), ExitConflict, "", "exposes it"},
		{"rm unknown", k("service", "rm", "shop/nope", "--force"), ExitNotFound, "", "not found"},
		{"rm a free service", k("service", "rm", "shop/cron", "--force"), ExitOK, "Service shop/cron removed", ""},
		{"events of a removed service", k("service", "events", "shop/cron"), ExitOK, "service.removed", ""},
		{"events of an unknown service", k("service", "events", "shop/ghost"), ExitNotFound, "", "not found"},
		{"stop", k("service", "stop", "shop/web", "--no-wait"), ExitOK, "Stopping service shop/web: shop/web.", ""},
		{"stop again", k("service", "stop", "shop/web", "--no-wait"), ExitOK, "Left alone: shop/web: already stopped", ""},
		{"deploy a stopped service", k("service", "deploy", "shop/web", "--no-wait"), ExitConflict, "", "is stopped: start it"},
		{"restart a stopped service", k("service", "restart", "shop/web"), ExitConflict, "", "is stopped"},
		{"stack stop leaves the stopped one", k("stack", "stop", "shop", "--no-wait"), ExitOK, "Left alone: shop/web: already stopped", ""},
		{"ls says stopped", k("service", "ls", "--stack", "shop"), ExitOK, "stopped", ""},
		{"stack deploy of a stack whose services are all stopped", k("stack", "deploy", "shop"), ExitConflict, "", "nothing to deploy"},
		{"stack deploy unknown", k("stack", "deploy", "ghost"), ExitNotFound, "", `stack "ghost"`},
		{"stack logs unknown", k("stack", "logs", "ghost"), ExitNotFound, "", `stack "ghost"`},
		{"stack start needs one STACK", k("stack", "start"), ExitUsage, "", "expected exactly one STACK"},
		{"install unplaceable, no deploy", k("stack", "install", "--no-deploy", far), ExitOK, "not deployed", ""},
		{"deploy that cannot be placed fails with the reason", k("stack", "deploy", "far", "--timeout", "60s"), ExitConflict, "Deploying stack far", "far/app cannot be placed"},
		{"service ls shows the problem", k("service", "ls", "--stack", "far"), ExitOK, "failed", ""},
		{"the failed deploy is an event", k("service", "events", "far/app", "-o", "json"), ExitOK, "service.deploy_failed", ""},
		{"bad output", k("service", "events", "far/app", "-o", "yaml"), ExitUsage, "", "expected table or json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := run(t, nil, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.out) || !strings.Contains(errOut, tc.msg) {
				t.Fatalf("exit %d\nstdout %q\nstderr %q\nwant exit %d, stdout with %q, stderr with %q", code, out, errOut, tc.code, tc.out, tc.msg)
			}
		})
	}
	t.Run("show -o json has the lifecycle", func(t *testing.T) {
		out, errOut, code := run(t, nil, k("service", "show", "shop/web", "-o", "json")...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		var svc api.ServiceInfo
		if err := json.Unmarshal([]byte(out), &svc); err != nil {
			t.Fatal(err)
		}
		if svc.Status != "stopped" || !svc.Stopped || !svc.Undeployed || svc.Spec == nil || svc.Spec.Links[0].Service != "api" {
			t.Fatalf("show = %+v", svc)
		}
		out, _, _ = run(t, nil, k("service", "show", "far/app", "-o", "json")...)
		svc = api.ServiceInfo{}
		_ = json.Unmarshal([]byte(out), &svc)
		if svc.Deploy.State != fsm.DeployFailed || !strings.Contains(svc.Deploy.Error, "cannot place every instance") || !strings.Contains(svc.Error, "affinity") {
			t.Fatalf("far/app deploy = %+v, error %q", svc.Deploy, svc.Error)
		}
	})
	t.Run("start of a stopped service that was never deployed waits for nothing", func(t *testing.T) {
		out, errOut, code := run(t, nil, k("stack", "start", "shop", "--timeout", "20s")...)
		if code != 0 || !strings.Contains(out, "Starting stack shop") || !strings.Contains(out, "(not deployed)") {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
	})
}

func TestStackUpgradeWithDepends(t *testing.T) {
	cfg := startNode(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("cache.yml", "stack: test/cache\nvariables:\n  size:\n    type: integer\n    default: 1\nservices:\n  redis:\n    image: kontena-test-never-pulled\n    instances: ${size}\n")
	write("queue.yml", "stack: test/queue\nservices:\n  mq:\n    image: kontena-test-never-pulled\n")
	v1 := write("v1.yml", "stack: test/app\ndepends:\n  cache:\n    stack: cache.yml\nservices:\n  web:\n    image: kontena-test-never-pulled\n")
	v2 := write("v2.yml", "stack: test/app\ndepends:\n  cache:\n    stack: cache.yml\n    variables:\n      size: 2\n  queue:\n    stack: queue.yml\nservices:\n  web:\n    image: kontena-test-never-pulled\n    environment:\n      - MODE=v2\n")
	k := func(args ...string) []string { return append([]string{"--config", cfg}, args...) }
	if out, errOut, code := run(t, nil, k("stack", "install", "--no-deploy", v1)...); code != 0 || !strings.Contains(out, "Stack app-cache installed") {
		t.Fatalf("install: %d %s %s", code, out, errOut)
	}
	out, errOut, code := run(t, nil, k("stack", "upgrade", "app", v2, "--dry-run")...)
	for _, want := range []string{"stack app-cache: service redis: instances 1 -> 2", "stack app-queue: new dependency, installed", "stack app: service web: environment changed"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("dry run: exit %d, want %q in\n%s%s", code, want, out, errOut)
		}
	}
	if out, _, _ := run(t, nil, k("stack", "ls")...); strings.Contains(out, "app-queue") {
		t.Fatalf("a dry run installed the new dependency:\n%s", out)
	}
	if out, errOut, code := run(t, nil, k("stack", "upgrade", "app", v2, "--no-wait")...); code != 0 || !strings.Contains(out, "Stack app upgraded") {
		t.Fatalf("upgrade: %d %s %s", code, out, errOut)
	}
	out, _, _ = run(t, nil, k("service", "show", "app-cache/redis", "-o", "json")...)
	var svc api.ServiceInfo
	if err := json.Unmarshal([]byte(out), &svc); err != nil || svc.Desired != 2 {
		t.Fatalf("child not upgraded: %v %+v", err, svc)
	}
	if out, _, _ := run(t, nil, k("stack", "ls")...); !strings.Contains(out, "app-queue") {
		t.Fatalf("the new dependency was not installed:\n%s", out)
	}
	run(t, nil, k("stack", "rm", "app-queue", "--force")...)
}
