package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/integration/harness"
)

const chaosStack = `stack: it/churn
version: 1.0.0
variables:
  rev:
    type: string
    default: "0"
services:
  web:
    image: kontena-demo-busybox:latest
    instances: 3
    stop_signal: SIGKILL
    command: sh -c 'exec httpd -f -p 8080'
    environment:
      REV: ${rev}
  db:
    image: kontena-demo-busybox:latest
    stateful: true
    instances: 1
    stop_signal: SIGKILL
    command: sleep 1000000
    volumes:
      - /data
`

// TestChaosDeploy installs, scales and upgrades stacks on three voters with
// their own engines while a nemesis kills, freezes and cuts off nodes at
// random; once healed, the grid must converge: every service at its count,
// no stateful instance running twice, no container of a removed stack or
// beyond a service's count left behind, no overlay address used twice.
// KONTENA_CHAOS_SECONDS sets how long the chaos lasts (bench/chaos.sh
// --minutes N runs it long).
func TestChaosDeploy(t *testing.T) {
	seconds := 45
	if s := os.Getenv("KONTENA_CHAOS_SECONDS"); s != "" {
		seconds, _ = strconv.Atoi(s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds)*time.Second+12*time.Minute)
	defer cancel()
	names := []string{"x1", "x2", "x3"}
	tg := newDockerGrid(ctx, t, "churn", names...)
	tg.start(ctx, []string{"--initial-size", "3", "--offline-grace", "5s"}, nil)
	file := filepath.Join(t.TempDir(), "kontena.yml")
	must(t, os.WriteFile(file, []byte(chaosStack), 0o644))
	tg.mustCLI(ctx, "stack", "install", file, "--timeout", "3m")

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	var mu sync.Mutex // the operations and the nemesis pick with one rng
	pick := func(n int) int { mu.Lock(); defer mu.Unlock(); return rng.IntN(n) }
	deadline := time.Now().Add(time.Duration(seconds) * time.Second)
	var wg sync.WaitGroup
	var ops, opErrs, faults int
	wg.Add(2)
	go func() { // the operator: scale, upgrade, install and remove a stack
		defer wg.Done()
		for i := 0; time.Now().Before(deadline); i++ {
			var args []string
			switch pick(4) {
			case 0:
				args = []string{"service", "scale", "churn/web", strconv.Itoa(1 + pick(5)), "--no-wait"}
			case 1:
				args = []string{"stack", "upgrade", "churn", file, "-v", "rev=" + strconv.Itoa(i), "--no-wait"}
			case 2:
				args = []string{"stack", "install", file, "-n", "extra", "--no-wait"}
			case 3:
				args = []string{"stack", "rm", "extra", "--force"}
			}
			octx, cancel := context.WithTimeout(ctx, 20*time.Second)
			_, _, code := runCLI(octx, []string{"KONTENA_CONFIG=" + tg.cfg}, args...)
			cancel()
			ops++
			if code != 0 {
				opErrs++ // refused or unreachable while a node is down: retried by later steps
			}
			time.Sleep(time.Duration(500+pick(1500)) * time.Millisecond)
		}
	}()
	go func() { // the nemesis: one fault at a time, healed after a few seconds
		defer wg.Done()
		for time.Now().Before(deadline) {
			n := tg.nodes[names[pick(len(names))]]
			heal, err := chaosFault(ctx, n, pick(3))
			if err != nil {
				t.Errorf("nemesis on %s: %v", n.Name(), err)
				return
			}
			time.Sleep(time.Duration(3+pick(5)) * time.Second)
			if err := heal(); err != nil {
				t.Errorf("heal %s: %v", n.Name(), err)
				return
			}
			faults++
			time.Sleep(time.Duration(2+pick(4)) * time.Second)
		}
	}()
	wg.Wait()
	t.Logf("MEASURED chaos for %ds: %d operations (%d refused or failed while nodes were down), %d faults", seconds, ops, opErrs, faults)

	// Healed: the last word of the operator is a known state.
	tg.mustCLI(ctx, "service", "scale", "churn/web", "4", "--no-wait")
	_, _, _ = tg.cli(ctx, "stack", "rm", "extra", "--force")
	start := time.Now()
	eventually(t, 5*time.Minute, "the grid converges", func() error { return converged(ctx, t, tg, names) })
	t.Logf("MEASURED converged %s after the chaos ended", time.Since(start).Round(100*time.Millisecond))
}

// chaosFault breaks node n one way (kill -9 its daemon, freeze it, cut it
// off) and returns how to heal it.
func chaosFault(ctx context.Context, n *harness.Node, kind int) (heal func() error, err error) {
	switch kind {
	case 0:
		return func() error { return n.StartDaemon(ctx, "up", "--data-dir", dataDir, "--advertise", n.IP()) }, n.KillDaemon(ctx)
	case 1:
		return func() error { return n.Unpause(ctx) }, n.Pause(ctx)
	default:
		return func() error { return n.Reconnect(ctx) }, n.Disconnect(ctx)
	}
}

// converged checks the grid against what was asked of it last.
func converged(ctx context.Context, t *testing.T, tg *testGrid, names []string) error {
	out, errOut, code := tg.cli(ctx, "service", "ls", "-o", "json")
	if code != 0 {
		return fmt.Errorf("service ls: %s", errOut)
	}
	var svcs []api.ServiceInfo
	if err := json.Unmarshal([]byte(out), &svcs); err != nil {
		return err
	}
	want := map[string]int{}
	for _, s := range svcs {
		if s.Stack == "extra" {
			return fmt.Errorf("stack extra is still there")
		}
		if s.Running != s.Desired {
			return fmt.Errorf("%s runs %d of %d", s.ID, s.Running, s.Desired)
		}
		want[s.Stack+"."+s.Name] = s.Desired
	}
	if want["churn.web"] != 4 || want["churn.db"] != 1 {
		return fmt.Errorf("desired counts %v", want)
	}
	running := map[string][]string{} // container name -> nodes
	ips := map[string]string{}
	for _, name := range names {
		n := tg.nodes[name]
		out, errOut, code, err := n.Exec(ctx, "sh", "-c",
			"ids=$(docker ps -q --filter label=io.kontena.managed=true); [ -z \"$ids\" ] || docker inspect -f '{{.Name}} {{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' $ids")
		if err != nil || code != 0 {
			return fmt.Errorf("docker on %s: %v %s", name, err, errOut)
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			c := strings.TrimPrefix(f[0], "/")
			running[c] = append(running[c], name)
			for _, ip := range f[1:] {
				if other, dup := ips[ip]; dup {
					return fmt.Errorf("overlay address %s is used by %s and %s", ip, other, c)
				}
				ips[ip] = c
			}
		}
	}
	per := map[string]int{}
	var all []string
	for c, where := range running {
		if len(where) > 1 {
			return fmt.Errorf("%s runs on %v at once", c, where)
		}
		svc := c
		if i := strings.LastIndexByte(c, '-'); i > 0 {
			svc = c[:i]
		}
		per[svc]++
		all = append(all, c)
	}
	sort.Strings(all)
	for svc, n := range per {
		if n != want[svc] {
			return fmt.Errorf("%d containers of %s, want %d (running: %v)", n, svc, want[svc], all)
		}
	}
	return nil
}
