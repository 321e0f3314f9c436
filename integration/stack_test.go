package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/integration/harness"
)

// demoImage is the ~2 MB busybox image of examples/demo, built on the host
// by the same script `make up` runs (no registry); every node's own engine
// gets it with docker save | docker load.
const demoImage = "kontena-demo-busybox"

var buildDockerImage = sync.OnceValues(func() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "bash", "../examples/demo/build-image.sh", demoImage).CombinedOutput(); err != nil {
		return "", fmt.Errorf("examples/demo/build-image.sh: %v: %s", err, out)
	}
	return harness.BuildNodeImage(ctx, harness.ImageOptions{KontenaBinary: kontenaBin, WithDocker: true})
})

const demoStack = `stack: it/shop
version: 1.0.0
variables:
  greeting:
    type: string
    default: hello
  tag:
    type: string
    default: latest
services:
  web:
    image: kontena-demo-busybox:${tag}
    command: sh -c 'echo started on $$KONTENA_NODE_NAME; exec httpd -f -p 8080'
    instances: 3
    stop_signal: SIGKILL
    environment:
      GREETING: ${greeting}
`

// containers lists the kontena containers a node's own engine runs, by name.
func containers(ctx context.Context, t *testing.T, n *harness.Node) map[string]string {
	t.Helper()
	out, errOut, code, err := n.Exec(ctx, "docker", "ps", "--filter", "label=io.kontena.managed=true", "--format", "{{.Names}} {{.ID}}")
	if err != nil || code != 0 {
		t.Fatalf("docker ps on %s: %v %s", n.Name(), err, errOut)
	}
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if name, id, ok := strings.Cut(line, " "); ok {
			m[name] = id
		}
	}
	return m
}

// TestStacks installs a stack on three nodes that each run their own Docker
// engine, and checks placement, scaling, replacement of a killed container,
// an agent restart that must not restart anything, and removal.
func TestStacks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	names := []string{"d1", "d2", "d3"}
	names3 := names
	tg := newDockerGrid(ctx, t, "shop", names...)
	// Instances of an offline node move after 5 s instead of ha's 2 min.
	tg.start(ctx, []string{"--offline-grace", "5s"}, nil)
	file := filepath.Join(t.TempDir(), "kontena.yml")
	must(t, os.WriteFile(file, []byte(demoStack), 0o644))

	running := func() map[string]map[string]string {
		all := map[string]map[string]string{}
		for _, name := range names {
			all[name] = containers(ctx, t, tg.nodes[name])
		}
		return all
	}

	t.Run("install spreads instances over the nodes", func(t *testing.T) {
		start := time.Now()
		out := tg.mustCLI(ctx, "stack", "install", file, "-v", "greeting=hi", "--timeout", "3m")
		t.Logf("MEASURED stack install of 3 instances on 3 nodes: %s", time.Since(start).Round(10*time.Millisecond))
		if !strings.Contains(out, "Deployed.") || !strings.Contains(out, "running: shop/web 3/3") {
			t.Fatalf("install output:\n%s", out)
		}
		for node, cs := range running() {
			if len(cs) != 1 {
				t.Fatalf("node %s runs %v, want one instance each (ha spreads over nodes)", node, cs)
			}
		}
		// The environment reached the containers, with Kontena's variables.
		for name := range containers(ctx, t, tg.nodes["d2"]) {
			out, _, _, err := tg.nodes["d2"].Exec(ctx, "docker", "exec", name, "sh", "-c", "echo $GREETING $KONTENA_STACK_NAME $KONTENA_NODE_NAME")
			must(t, err)
			if strings.TrimSpace(out) != "hi shop d2" {
				t.Fatalf("env in %s: %q", name, out)
			}
		}
		var svcs []api.ServiceInfo
		must(t, json.Unmarshal([]byte(tg.mustCLI(ctx, "service", "ls", "-o", "json")), &svcs))
		if len(svcs) != 1 || svcs[0].Running != 3 || svcs[0].Desired != 3 {
			t.Fatalf("service ls: %+v", svcs)
		}
	})

	t.Run("logs of instances on every node, merged", func(t *testing.T) {
		out := tg.mustCLI(ctx, "service", "logs", "shop/web")
		for _, node := range names3 {
			if !strings.Contains(out, "started on "+node) {
				t.Fatalf("service logs lacks the instance on %s:\n%s", node, out)
			}
		}
		if _, errOut, code := tg.cli(ctx, "service", "logs", "shop/nope"); code != 5 || !strings.Contains(errOut, "not found") {
			t.Fatalf("logs of an unknown service: exit %d %s", code, errOut)
		}
	})

	t.Run("service logs --follow streams new lines from every node", func(t *testing.T) {
		fctx, stop := context.WithCancel(ctx)
		defer stop()
		since := time.Now().UTC().Format(time.RFC3339Nano)
		cmd := exec.CommandContext(fctx, kontenaBin, "service", "logs", "shop/web", "--follow", "--since", since)
		cmd.Env = append(os.Environ(), "KONTENA_CONFIG="+tg.cfg)
		var out lockedBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		must(t, cmd.Start())
		defer func() { stop(); _ = cmd.Wait() }()
		time.Sleep(time.Second) // the stream is open on every node
		if s := out.String(); strings.Contains(s, "started on") {
			t.Fatalf("--since now printed old lines:\n%s", s)
		}
		// A restart makes every instance log again, each on its own node.
		tg.mustCLI(ctx, "service", "restart", "shop/web", "--timeout", "3m")
		eventually(t, 30*time.Second, "followed lines of the instances on d1, d2 and d3", func() error {
			s := out.String()
			for _, node := range names3 {
				if !strings.Contains(s, "started on "+node) {
					return fmt.Errorf("no line from %s yet:\n%s", node, s)
				}
			}
			return nil
		})
	})

	t.Run("scale up and down", func(t *testing.T) {
		tg.mustCLI(ctx, "service", "scale", "shop/web", "5", "--timeout", "3m")
		total := 0
		for _, cs := range running() {
			total += len(cs)
		}
		if total != 5 {
			t.Fatalf("%d containers after scaling to 5", total)
		}
		tg.mustCLI(ctx, "service", "scale", "shop/web", "3", "--timeout", "3m")
		eventually(t, 60*time.Second, "scaled down to 3 containers", func() error {
			var got []string
			for _, cs := range running() {
				for name := range cs {
					got = append(got, name)
				}
			}
			sort.Strings(got)
			if fmt.Sprint(got) != "[shop.web-1 shop.web-2 shop.web-3]" {
				return fmt.Errorf("containers %v", got)
			}
			return nil
		})
	})

	t.Run("upgrade of image and env rolls and never drops below min_health", func(t *testing.T) {
		// A new image tag, made on every node's own engine (no registry).
		for _, name := range names3 {
			_, errOut, code, err := tg.nodes[name].Exec(ctx, "docker", "tag", demoImage+":latest", demoImage+":v2")
			if err != nil || code != 0 {
				t.Fatalf("docker tag on %s: %v %s", name, err, errOut)
			}
		}
		// Sample the running instances on every node while the rollout runs.
		stopSampling := tg.sampleRunning(ctx, names3, "label=io.kontena.managed=true")
		dry := tg.mustCLI(ctx, "stack", "upgrade", "shop", file, "-v", "greeting=bye", "-v", "tag=v2", "--dry-run")
		if !strings.Contains(dry, "service web: environment, image changed") {
			t.Fatalf("dry run: %s", dry)
		}
		start := time.Now()
		out := tg.mustCLI(ctx, "stack", "upgrade", "shop", file, "-v", "greeting=bye", "-v", "tag=v2", "--timeout", "3m")
		took := time.Since(start)
		counts := stopSampling()
		low := slices.Min(counts)
		t.Logf("MEASURED rolling upgrade of 3 instances: %s; running instances sampled %d times, lowest %d", took.Round(10*time.Millisecond), len(counts), low)
		if !strings.Contains(out, "running: shop/web 3/3") {
			t.Fatalf("upgrade output:\n%s", out)
		}
		// min_health 0.8 of 3 instances: one at a time, so at least 2 run.
		if low < 2 {
			t.Fatalf("only %d instances ran at one point of the rollout (samples %v)", low, counts)
		}
		for _, node := range names3 {
			for name := range containers(ctx, t, tg.nodes[node]) {
				out, _, _, _ := tg.nodes[node].Exec(ctx, "docker", "exec", name, "sh", "-c", "echo $GREETING")
				img, _, _, _ := tg.nodes[node].Exec(ctx, "docker", "inspect", "-f", "{{.Config.Image}}", name)
				if strings.TrimSpace(out) != "bye" || strings.TrimSpace(img) != demoImage+":v2" {
					t.Fatalf("%s on %s after the upgrade: GREETING=%q image %q", name, node, out, img)
				}
			}
		}
	})

	t.Run("drain moves the instances away, one at a time", func(t *testing.T) {
		stopSampling := tg.sampleRunning(ctx, names3, "label=io.kontena.managed=true")
		tg.mustCLI(ctx, "node", "update", "d1", "--availability", "drain")
		eventually(t, 90*time.Second, "nothing on d1, 3 instances on d2 and d3", func() error {
			if cs := containers(ctx, t, tg.nodes["d1"]); len(cs) > 0 {
				return fmt.Errorf("d1 still runs %v", cs)
			}
			if n := len(containers(ctx, t, tg.nodes["d2"])) + len(containers(ctx, t, tg.nodes["d3"])); n != 3 {
				return fmt.Errorf("%d instances on d2 and d3", n)
			}
			return nil
		})
		counts := stopSampling()
		if low := slices.Min(counts); low < 2 {
			t.Fatalf("only %d instances ran at one point of the drain (samples %v)", low, counts)
		}
		tg.mustCLI(ctx, "node", "update", "d1", "--availability", "active")
		// ha spreads again once d1 takes work (no online grace: it never went offline).
		eventually(t, 90*time.Second, "one instance per node again", func() error {
			for _, node := range names3 {
				if n := len(containers(ctx, t, tg.nodes[node])); n != 1 {
					return fmt.Errorf("%s runs %d", node, n)
				}
			}
			return nil
		})
	})

	t.Run("a killed container is replaced", func(t *testing.T) {
		n := tg.nodes["d3"]
		var name string
		for c := range containers(ctx, t, n) {
			name = c
		}
		_, _, _, err := n.Exec(ctx, "docker", "kill", name)
		must(t, err)
		start := time.Now()
		eventually(t, 60*time.Second, name+" running again", func() error {
			if _, ok := containers(ctx, t, n)[name]; !ok {
				return fmt.Errorf("%s not running", name)
			}
			return nil
		})
		t.Logf("MEASURED killed container running again after %s", time.Since(start).Round(10*time.Millisecond))
	})

	t.Run("agent restart restarts no workload", func(t *testing.T) {
		n := tg.nodes["d2"]
		before := containers(ctx, t, n)
		started := func() string {
			out, _, _, err := n.Exec(ctx, "sh", "-c", "docker inspect -f '{{.Name}} {{.State.StartedAt}}' $(docker ps -q --filter label=io.kontena.managed=true)")
			must(t, err)
			return out
		}
		was := started()
		must(t, n.KillDaemon(ctx))
		must(t, n.StartDaemon(ctx, "up", "--data-dir", dataDir, "--advertise", n.IP()))
		tg.waitNode(ctx, "d2", "online", 60*time.Second)
		time.Sleep(5 * time.Second) // a few agent passes
		if after := containers(ctx, t, n); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatalf("containers changed across an agent restart: %v -> %v", before, after)
		}
		if now := started(); now != was {
			t.Fatalf("a container was restarted: %q -> %q", was, now)
		}
	})

	t.Run("a deploy whose container cannot run fails with the reason", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.yml")
		must(t, os.WriteFile(bad, []byte("stack: it/bad\nservices:\n  app:\n    image: kontena-no-such-image:1\n"), 0o644))
		out, errOut, code := tg.cli(ctx, "stack", "install", bad, "--timeout", "2m")
		if code != 1 || !strings.Contains(errOut, "deploy of bad/app failed") || !strings.Contains(errOut, "pulling it failed") {
			t.Fatalf("install of an image no node has and no registry serves: exit %d\n%s%s", code, out, errOut)
		}
		svc := tg.serviceInfo(ctx, t, "bad/app")
		if svc.Status != "failed" || !strings.Contains(svc.Deploy.Error, "kontena-no-such-image:1") {
			t.Fatalf("service after the failed deploy: status %s, error %q", svc.Status, svc.Deploy.Error)
		}
		tg.mustCLI(ctx, "stack", "rm", "bad", "--force")
	})

	t.Run("stateful data survives a redeploy, volumes_from shares it on the same node", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "data.yml")
		must(t, os.WriteFile(f, []byte(`stack: it/data
services:
  db:
    image: `+demoImage+`
    command: sleep 1000000
    stop_signal: SIGKILL
    stateful: true
    instances: 2
    volumes:
      - /data
  backup:
    image: `+demoImage+`
    command: sleep 1000000
    stop_signal: SIGKILL
    instances: 2
    volumes_from:
      - db-%s
`), 0o644))
		tg.mustCLI(ctx, "stack", "install", f, "--timeout", "3m")
		_, where := gridContainers(ctx, t, tg, names3, "data.")
		for _, n := range []string{"1", "2"} {
			if where["data.db-"+n] == "" || where["data.backup-"+n] != where["data.db-"+n] {
				t.Fatalf("backup-%s must run next to db-%s: %v", n, n, where)
			}
		}
		node := tg.nodes[where["data.db-1"]]
		_, errOut, code, err := node.Exec(ctx, "docker", "exec", "data.db-1", "sh", "-c", "echo precious > /data/file")
		if err != nil || code != 0 {
			t.Fatalf("write: %v %s", err, errOut)
		}
		before := engineContainers(ctx, t, node)["data.db-1"].ID
		tg.mustCLI(ctx, "service", "deploy", "data/db", "--force", "--timeout", "3m")
		if engineContainers(ctx, t, node)["data.db-1"].ID == before {
			t.Fatal("deploy --force did not replace data.db-1")
		}
		for _, ctr := range []string{"data.db-1", "data.backup-1"} {
			out, errOut, _, _ := node.Exec(ctx, "docker", "exec", ctr, "cat", "/data/file")
			if strings.TrimSpace(out) != "precious" {
				t.Fatalf("%s after the redeploy reads %q %s: the stateful volume was lost", ctr, out, errOut)
			}
		}
		tg.removeStack(ctx, t, names3, "data")
	})

	t.Run("the README's demo stack runs: the worker reaches web by name", func(t *testing.T) {
		tg.mustCLI(ctx, "stack", "install", "../examples/demo/kontena.yml", "-n", "demo", "--timeout", "3m")
		eventually(t, 60*time.Second, "the worker got a page from web", func() error {
			out := tg.mustCLI(ctx, "service", "logs", "demo/worker", "--tail", "20")
			if !regexpLine(out, `.* got hello from kontena from web-[123] on d[123]`) {
				return fmt.Errorf("worker logs:\n%s", out)
			}
			return nil
		})
		// depends_on: the worker started after web was up, so it never
		// logged a failed lookup.
		if out := tg.mustCLI(ctx, "service", "logs", "demo/worker", "--tail", "0"); strings.Contains(out, "bad address") {
			t.Fatalf("the worker ran before web was up:\n%s", out)
		}
		tg.removeStack(ctx, t, names3, "demo")
	})

	t.Run("a stopped node's instances run elsewhere after the grace", func(t *testing.T) {
		d3 := tg.nodes["d3"]
		moving := containers(ctx, t, d3)
		must(t, d3.Kill(ctx)) // the whole machine: engine, containers and kontena
		stopped := time.Now()
		eventually(t, 120*time.Second, "3 instances on d1 and d2", func() error {
			total, names := 0, []string{}
			for _, name := range []string{"d1", "d2"} {
				for c := range containers(ctx, t, tg.nodes[name]) {
					total++
					names = append(names, c)
				}
			}
			if total != 3 {
				return fmt.Errorf("running on d1, d2: %v", names)
			}
			return nil
		})
		t.Logf("MEASURED %v of stopped node d3 running elsewhere %s after the stop (grace 5 s)", moving, time.Since(stopped).Round(100*time.Millisecond))
		// The node comes back. Whether the spread later moves an instance
		// back to it or not, every instance must exist exactly once: the
		// stale container on d3 is removed or is the one that runs.
		must(t, d3.Start(ctx))
		must(t, d3.StartDaemon(ctx, "up", "--data-dir", dataDir, "--advertise", d3.IP()))
		tg.waitNode(ctx, "d3", "online", 60*time.Second)
		eventually(t, 90*time.Second, "each instance once across the grid, nothing stale on d3", func() error {
			var names []string
			for _, name := range names3 {
				out, _, _, err := tg.nodes[name].Exec(ctx, "docker", "ps", "-a", "--filter", "label=io.kontena.managed=true", "--format", "{{.Names}} {{.State}}")
				if err != nil {
					return err
				}
				for _, line := range strings.Fields(strings.ReplaceAll(strings.TrimSpace(out), "\n", " ")) {
					names = append(names, line)
				}
			}
			sort.Strings(names)
			if fmt.Sprint(names) != "[running running running shop.web-1 shop.web-2 shop.web-3]" {
				return fmt.Errorf("containers (name and state) across the grid: %v", names)
			}
			return nil
		})
	})

	t.Run("remove the stack", func(t *testing.T) {
		tg.mustCLI(ctx, "stack", "rm", "shop", "--force")
		eventually(t, 90*time.Second, "no containers left", func() error {
			for node, cs := range running() {
				if len(cs) > 0 {
					return fmt.Errorf("node %s still runs %v", node, cs)
				}
			}
			return nil
		})
		if out := tg.mustCLI(ctx, "stack", "ls", "-o", "json"); strings.TrimSpace(out) != "[]" {
			t.Fatalf("stack ls after rm: %s", out)
		}
	})
}
