package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/integration/harness"
)

// lifecycleStack has a web service with an http health check (the file
// httpd serves is its health), a daemon worker, and a db that opens its
// port only after 5 s and is deployed with wait_for_port. The image has
// few applet links: other applets run as `busybox <applet>`.
const lifecycleStack = `stack: it/life
version: 1.0.0
services:
  web:
    image: kontena-demo-busybox
    command: sh -c 'busybox mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www'
    instances: 3
    stop_signal: SIGKILL
    health_check:
      protocol: http
      port: 8080
      uri: /index.html
      interval: 2
      timeout: 2
      initial_delay: 2
  worker:
    image: kontena-demo-busybox
    command: sh -c 'while true; do echo "tick $$KONTENA_SERVICE_INSTANCE_NUMBER on $$KONTENA_NODE_NAME"; sleep 2; done'
    instances: 1
    stop_signal: SIGKILL
    deploy:
      strategy: daemon
  db:
    image: kontena-demo-busybox
    command: sh -c 'sleep 5; exec httpd -f -p 5432'
    instances: 1
    stop_signal: SIGKILL
    affinity:
      - node!=l1
    deploy:
      strategy: random
      wait_for_port: 5432
`

// lifeContainer is one managed container as a node's engine sees it.
type lifeContainer struct {
	ID, State, StartedAt string
}

// engineContainers lists every kontena container of a node's engine, running
// or not, by name.
func engineContainers(ctx context.Context, t *testing.T, n *harness.Node) map[string]lifeContainer {
	t.Helper()
	out, errOut, code, err := n.Exec(ctx, "sh", "-c",
		"ids=$(docker ps -aq --filter label=io.kontena.managed=true); [ -z \"$ids\" ] || docker inspect -f '{{.Name}} {{.Id}} {{.State.Status}} {{.State.StartedAt}}' $ids 2>/dev/null || true")
	if err != nil || code != 0 {
		t.Fatalf("docker inspect on %s: %v %s", n.Name(), err, errOut)
	}
	m := map[string]lifeContainer{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 4 {
			m[strings.TrimPrefix(f[0], "/")] = lifeContainer{ID: f[1], State: f[2], StartedAt: f[3]}
		}
	}
	return m
}

// gridContainers merges engineContainers of every node: name -> node.
func gridContainers(ctx context.Context, t *testing.T, tg *testGrid, names []string, prefix string) (map[string]lifeContainer, map[string]string) {
	t.Helper()
	all, where := map[string]lifeContainer{}, map[string]string{}
	for _, node := range names {
		for name, c := range engineContainers(ctx, t, tg.nodes[node]) {
			if strings.HasPrefix(name, prefix) {
				all[name], where[name] = c, node
			}
		}
	}
	return all, where
}

func (tg *testGrid) serviceInfo(ctx context.Context, t *testing.T, id string) api.ServiceInfo {
	t.Helper()
	var svc api.ServiceInfo
	must(t, json.Unmarshal([]byte(tg.mustCLI(ctx, "service", "show", id, "-o", "json")), &svc))
	return svc
}

func (tg *testGrid) serviceEventTypes(ctx context.Context, t *testing.T, id string) ([]*fsm.Event, map[string]int) {
	t.Helper()
	var evs []*fsm.Event
	must(t, json.Unmarshal([]byte(tg.mustCLI(ctx, "service", "events", id, "--tail", "0", "-o", "json")), &evs))
	types := map[string]int{}
	for _, ev := range evs {
		types[ev.Type]++
	}
	return evs, types
}

// TestLifecycle runs a 3-service stack on three nodes with their own Docker
// engines through install --no-deploy, stack deploy (with wait_for_port),
// stop/start across an agent restart, a rolling restart sampled on the
// engines, a failing health check, service rm, stack restart and events.
func TestLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	names := []string{"l1", "l2", "l3"}
	tg := newDockerGrid(ctx, t, "life", names...)
	tg.start(ctx, nil, nil)
	file := filepath.Join(t.TempDir(), "kontena.yml")
	must(t, os.WriteFile(file, []byte(lifecycleStack), 0o644))

	t.Run("install --no-deploy runs nothing", func(t *testing.T) {
		out := tg.mustCLI(ctx, "stack", "install", "--no-deploy", file)
		if !strings.Contains(out, "not deployed") {
			t.Fatalf("install output:\n%s", out)
		}
		time.Sleep(3 * time.Second) // several leader passes
		if all, _ := gridContainers(ctx, t, tg, names, "life."); len(all) > 0 {
			t.Fatalf("containers of a stack installed with --no-deploy: %v", all)
		}
		if out := tg.mustCLI(ctx, "service", "ls", "--stack", "life"); strings.Count(out, "not deployed") != 3 {
			t.Fatalf("service ls:\n%s", out)
		}
	})

	t.Run("stack deploy places by strategy and waits for the db port", func(t *testing.T) {
		start := time.Now()
		out := tg.mustCLI(ctx, "stack", "deploy", "life", "--timeout", "3m")
		t.Logf("MEASURED stack deploy of web x3, worker daemon x3, db x1 (port opens after 5 s): %s", time.Since(start).Round(10*time.Millisecond))
		if !strings.Contains(out, "Deployed.") || !strings.Contains(out, "waiting for port 5432: life.db-1") {
			t.Fatalf("deploy output (must show the wait for the db port):\n%s", out)
		}
		all, where := gridContainers(ctx, t, tg, names, "life.")
		perNode := map[string][]string{}
		for name, c := range all {
			if c.State != "running" {
				t.Fatalf("%s is %s after the deploy", name, c.State)
			}
			perNode[where[name]] = append(perNode[where[name]], name)
		}
		for _, node := range names {
			var web, worker int
			for _, name := range perNode[node] {
				web += b2i(strings.HasPrefix(name, "life.web-"))
				worker += b2i(strings.HasPrefix(name, "life.worker-"))
			}
			// ha spreads 3 over 3 nodes; daemon runs one on every node.
			if web != 1 || worker != 1 {
				t.Fatalf("node %s runs %v: want one web (ha) and one worker (daemon)", node, perNode[node])
			}
		}
		db := tg.serviceInfo(ctx, t, "life/db")
		if db.Status != "running" || len(db.Instances) != 1 || db.Instances[0].Actual.WaitPort != "open" {
			t.Fatalf("db after the deploy: %+v", db)
		}
		// random, with affinity node!=l1: l2 or l3.
		if n := db.Instances[0].Node; n != "l2" && n != "l3" {
			t.Fatalf("db (random, node!=l1) placed on %s", n)
		}
	})

	t.Run("random keeps its node across a forced redeploy", func(t *testing.T) {
		before, where := gridContainers(ctx, t, tg, names, "life.db-")
		out := tg.mustCLI(ctx, "service", "deploy", "life/db", "--force", "--timeout", "3m")
		if !strings.Contains(out, "Deployed.") {
			t.Fatalf("deploy --force output:\n%s", out)
		}
		after, whereNow := gridContainers(ctx, t, tg, names, "life.db-")
		if whereNow["life.db-1"] != where["life.db-1"] || after["life.db-1"].ID == before["life.db-1"].ID {
			t.Fatalf("db-1 was on %s (%s), now on %s (%s): want a new container on the same node",
				where["life.db-1"], before["life.db-1"].ID, whereNow["life.db-1"], after["life.db-1"].ID)
		}
	})

	t.Run("stop keeps the containers stopped, across an agent restart; start brings them back", func(t *testing.T) {
		before, where := gridContainers(ctx, t, tg, names, "life.worker-")
		start := time.Now()
		out := tg.mustCLI(ctx, "service", "stop", "life/worker", "--timeout", "2m")
		t.Logf("MEASURED service stop of 3 daemon instances: %s", time.Since(start).Round(10*time.Millisecond))
		if !strings.Contains(out, "Stopped.") {
			t.Fatalf("stop output:\n%s", out)
		}
		check := func(what, state string) {
			t.Helper()
			now, _ := gridContainers(ctx, t, tg, names, "life.worker-")
			if len(now) != 3 {
				t.Fatalf("%s: worker containers %v, want the same 3 %v", what, now, before)
			}
			for name, c := range now {
				if c.ID != before[name].ID || c.State != state {
					t.Fatalf("%s: %s on %s is %s (id %s), want %s with id %s", what, name, where[name], c.State, c.ID[:12], state, before[name].ID[:12])
				}
			}
		}
		check("after stop", "exited")
		if out := tg.mustCLI(ctx, "service", "ls", "--stack", "life"); !regexpLine(out, `life/worker\s.*\sstopped\s`) {
			t.Fatalf("service ls does not say stopped:\n%s", out)
		}
		// An agent restart must not start a stopped service.
		n := tg.nodes["l2"]
		must(t, n.KillDaemon(ctx))
		must(t, n.StartDaemon(ctx, "up", "--data-dir", dataDir, "--advertise", n.IP()))
		tg.waitNode(ctx, "l2", "online", 60*time.Second)
		time.Sleep(5 * time.Second) // a few agent passes
		check("after an agent restart", "exited")
		start = time.Now()
		out = tg.mustCLI(ctx, "service", "start", "life/worker", "--timeout", "2m")
		t.Logf("MEASURED service start of 3 stopped instances: %s", time.Since(start).Round(10*time.Millisecond))
		if !strings.Contains(out, "Deployed.") {
			t.Fatalf("start output:\n%s", out)
		}
		check("after start", "running")
	})

	t.Run("restart is rolling and never drops below min_health", func(t *testing.T) {
		before, _ := gridContainers(ctx, t, tg, names, "life.web-")
		stopSampling := tg.sampleRunning(ctx, names, "name=life.web-")
		start := time.Now()
		out := tg.mustCLI(ctx, "service", "restart", "life/web", "--timeout", "3m")
		took := time.Since(start)
		counts := stopSampling()
		low := slices.Min(counts)
		t.Logf("MEASURED rolling restart of 3 web instances: %s; running web containers sampled %d times, lowest %d", took.Round(10*time.Millisecond), len(counts), low)
		if !strings.Contains(out, "Deployed.") {
			t.Fatalf("restart output:\n%s", out)
		}
		if low < 2 {
			t.Fatalf("only %d web instances ran at one point of the restart (samples %v)", low, counts)
		}
		after, _ := gridContainers(ctx, t, tg, names, "life.web-")
		for name, c := range after {
			if c.ID != before[name].ID || c.StartedAt == before[name].StartedAt || c.State != "running" {
				t.Fatalf("%s: %+v before %+v: want the same container, started again", name, c, before[name])
			}
		}
	})

	t.Run("a failing http health check restarts the container", func(t *testing.T) {
		before, where := gridContainers(ctx, t, tg, names, "life.web-1")
		c := before["life.web-1"]
		node := tg.nodes[where["life.web-1"]]
		// DNS answers for healthy instances only: watch web's name on a
		// node while web-1 fails and comes back.
		webIP := ""
		for _, in := range tg.serviceInfo(ctx, t, "life/web").Instances {
			if in.Number == 1 {
				webIP = in.Actual.IP
			}
		}
		resolver := tg.overlayAddress(ctx, t, "l1")
		inDNS := func() bool {
			out, _, _, _ := tg.nodes["l1"].Exec(ctx, "dig", "+short", "+time=1", "+tries=1", "@"+resolver, "web.life.life.kontena.local")
			return slices.Contains(strings.Fields(out), webIP)
		}
		if !inDNS() {
			t.Fatalf("web-1 (%s) not in DNS before its health check fails", webIP)
		}
		dropped := make(chan time.Time, 1)
		go func() {
			for i := 0; i < 600; i++ {
				if !inDNS() {
					dropped <- time.Now()
					return
				}
			}
			dropped <- time.Time{}
		}()
		_, errOut, code, err := node.Exec(ctx, "docker", "exec", "life.web-1", "busybox", "rm", "/www/index.html")
		if err != nil || code != 0 {
			t.Fatalf("rm index.html: %v %s", err, errOut)
		}
		broke := time.Now()
		eventually(t, 60*time.Second, "life.web-1 restarted by its health check", func() error {
			now := engineContainers(ctx, t, node)["life.web-1"]
			if now.ID != c.ID {
				return fmt.Errorf("container replaced (%s), want a restart in place", now.ID)
			}
			if now.StartedAt == c.StartedAt || now.State != "running" {
				return fmt.Errorf("not restarted yet: %+v", now)
			}
			return nil
		})
		t.Logf("MEASURED health check (interval 2 s) failure to container restarted: %s", time.Since(broke).Round(10*time.Millisecond))
		eventually(t, 30*time.Second, "an unhealthy event for life/web-1", func() error {
			evs, _ := tg.serviceEventTypes(ctx, t, "life/web")
			for _, ev := range evs {
				if ev.Type == "instance.unhealthy" && strings.Contains(ev.Message, "life/web-1") {
					return nil
				}
			}
			return fmt.Errorf("events %v", evs)
		})
		// The restart put the file back: healthy again.
		eventually(t, 30*time.Second, "life.web-1 healthy again", func() error {
			for _, in := range tg.serviceInfo(ctx, t, "life/web").Instances {
				if in.Number == 1 && in.Actual.Health != "healthy" {
					return fmt.Errorf("web-1 %+v", in.Actual)
				}
			}
			return nil
		})
		healthy := time.Now()
		gone := <-dropped
		if gone.IsZero() {
			t.Fatal("web-1 never left DNS while its health check failed")
		}
		eventually(t, 10*time.Second, "web-1 back in DNS", func() error {
			if !inDNS() {
				return fmt.Errorf("%s not in DNS", webIP)
			}
			return nil
		})
		t.Logf("MEASURED health check failure in DNS: web-1 out of DNS %s after its page was removed (checks every 2 s), back %s after the grid saw it healthy",
			gone.Sub(broke).Round(time.Millisecond), time.Since(healthy).Round(time.Millisecond))
	})

	t.Run("service rm removes the service and its containers", func(t *testing.T) {
		tg.mustCLI(ctx, "service", "rm", "life/db", "--force")
		eventually(t, 60*time.Second, "no db container left", func() error {
			if all, _ := gridContainers(ctx, t, tg, names, "life.db-"); len(all) > 0 {
				return fmt.Errorf("left: %v", all)
			}
			return nil
		})
		if _, errOut, code := tg.cli(ctx, "service", "show", "life/db"); code != 5 {
			t.Fatalf("show of a removed service: exit %d %s", code, errOut)
		}
		var st api.StackInfo
		must(t, json.Unmarshal([]byte(tg.mustCLI(ctx, "stack", "show", "life", "-o", "json")), &st))
		if len(st.Services) != 2 {
			t.Fatalf("stack after service rm: %+v", st.Services)
		}
	})

	t.Run("stack restart restarts every service, stack logs merge them", func(t *testing.T) {
		before, _ := gridContainers(ctx, t, tg, names, "life.")
		start := time.Now()
		out := tg.mustCLI(ctx, "stack", "restart", "life", "--timeout", "3m")
		t.Logf("MEASURED stack restart (web x3, worker x3): %s", time.Since(start).Round(10*time.Millisecond))
		if !strings.Contains(out, "Deployed.") {
			t.Fatalf("stack restart output:\n%s", out)
		}
		after, _ := gridContainers(ctx, t, tg, names, "life.")
		if len(after) != 6 {
			t.Fatalf("containers after stack restart: %v", after)
		}
		for name, c := range after {
			if c.ID != before[name].ID || c.StartedAt == before[name].StartedAt || c.State != "running" {
				t.Fatalf("%s was not restarted in place: %+v (before %+v)", name, c, before[name])
			}
		}
		logs := tg.mustCLI(ctx, "stack", "logs", "life", "--tail", "500")
		for _, node := range names {
			if !strings.Contains(logs, "on "+node) {
				t.Fatalf("stack logs lack the worker on %s:\n%s", node, logs)
			}
		}
	})

	t.Run("service events list what happened", func(t *testing.T) {
		evs, types := tg.serviceEventTypes(ctx, t, "life/web")
		for _, want := range []string{"service.deploying", "service.deployed", "instance.placed", "service.restarting", "instance.restarted", "instance.unhealthy"} {
			if types[want] == 0 {
				var lines []string
				for _, ev := range evs {
					lines = append(lines, ev.Type+": "+ev.Message)
				}
				t.Fatalf("no %s event for life/web:\n%s", want, strings.Join(lines, "\n"))
			}
		}
		if types["instance.restarted"] < 6 {
			t.Fatalf("%d restarted events, want 3 per restart (service restart, stack restart)", types["instance.restarted"])
		}
		_, wtypes := tg.serviceEventTypes(ctx, t, "life/worker")
		for _, want := range []string{"service.stopped", "service.started"} {
			if wtypes[want] == 0 {
				t.Fatalf("no %s event for life/worker: %v", want, wtypes)
			}
		}
		out := tg.mustCLI(ctx, "service", "events", "life/web")
		t.Logf("service events life/web:\n%s", out)
		_, dtypes := tg.serviceEventTypes(ctx, t, "life/db")
		if dtypes["service.removed"] != 1 {
			t.Fatalf("db events %v", dtypes)
		}
		keys := make([]string, 0, len(types))
		for k := range types {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		t.Logf("event types of life/web: %v", keys)
	})

	t.Run("remove the stack", func(t *testing.T) {
		tg.mustCLI(ctx, "stack", "rm", "life", "--force")
		eventually(t, 90*time.Second, "no containers left", func() error {
			if all, _ := gridContainers(ctx, t, tg, names, "life."); len(all) > 0 {
				return fmt.Errorf("left: %v", all)
			}
			return nil
		})
	})
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
