// Package integration runs real grids: every node is its own `kontena`
// process in its own container with its own address (integration/harness),
// driven through the CLI exactly as a user would.
package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/integration/harness"
)

// Built once in TestMain and shared by every test of the package.
var (
	kontenaBin string // static binary on the host, for the admin's CLI
	nodeImage  string // node image with the same binary inside
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kontena-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kontenaBin = filepath.Join(dir, "kontena")
	build := exec.Command("go", "build", "-o", kontenaBin, "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build kontena:", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	nodeImage, err = harness.BuildNodeImage(ctx, harness.ImageOptions{KontenaBinary: kontenaBin})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "build node image:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testGrid is a grid of real nodes plus an admin CLI on the host.
type testGrid struct {
	t     *testing.T
	g     *harness.Grid
	nodes map[string]*harness.Node
	cfg   string // the admin's CLI config on the host
	token string // join token
	name  string
	order []string // node names, bootstrap node first (newDockerGrid)
}

const dataDir = "/var/lib/kontena"

// upArgs is the `kontena up` command line of a node. Gossip probes a little
// faster than the default so the suite runs quicker; detection logic is the
// production one.
func upArgs(name, ip string, extra ...string) []string {
	return append([]string{"up", "--name", name, "--data-dir", dataDir, "--advertise", ip, "--log-level", "debug"}, extra...)
}

// newGrid bootstraps a grid on a first node with the given initial size
// and joins the other names to it, all through `kontena up`.
func newGrid(t *testing.T, gridName string, initialSize int, names ...string) *testGrid {
	t.Helper()
	return newGridWith(t, gridName, initialSize, nil, names...)
}

// newGridWith is newGrid with setup applied to the harness grid before
// any node is added (e.g. data dirs on small file systems).
func newGridWith(t *testing.T, gridName string, initialSize int, setup func(g *harness.Grid), names ...string) *testGrid {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tg := &testGrid{t: t, g: harness.NewGrid(t, nodeImage), nodes: map[string]*harness.Node{}, name: gridName,
		cfg: filepath.Join(t.TempDir(), "cli.json")}
	if setup != nil {
		setup(tg.g)
	}
	first := tg.addNode(ctx, names[0])
	must(t, first.StartDaemon(ctx, upArgs(names[0], first.IP(), "--grid", gridName, "--initial-size", fmt.Sprint(initialSize))...))
	// The bootstrap wrote the admin's CLI config inside the first node;
	// take it to the host as an admin would copy it to a laptop.
	var raw []byte
	eventually(t, 30*time.Second, "bootstrap node writes the CLI config", func() error {
		var err error
		raw, err = first.ReadFile(ctx, "/root/.kontena/config.json")
		return err
	})
	must(t, os.WriteFile(tg.cfg, raw, 0o600))
	tg.token = strings.TrimSpace(tg.mustCLI(ctx, "grid", "token"))
	for _, name := range names[1:] {
		n := tg.addNode(ctx, name)
		must(t, n.StartDaemon(ctx, upArgs(name, n.IP(), "--join", first.IP(), "--token", tg.token)...))
		// Joining one at a time keeps the voter order deterministic.
		tg.waitNode(ctx, name, fsm.StatusOnline, 60*time.Second)
	}
	return tg
}

func (tg *testGrid) addNode(ctx context.Context, name string) *harness.Node {
	n, err := tg.g.AddNode(ctx, name)
	must(tg.t, err)
	tg.nodes[name] = n
	return n
}

// cli runs the host CLI with the admin's config.
func (tg *testGrid) cli(ctx context.Context, args ...string) (stdout, stderr string, code int) {
	return runCLI(ctx, []string{"KONTENA_CONFIG=" + tg.cfg}, args...)
}

func runCLI(ctx context.Context, env []string, args ...string) (stdout, stderr string, code int) {
	cmd := exec.CommandContext(ctx, kontenaBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return out.String(), errb.String(), code
}

func (tg *testGrid) mustCLI(ctx context.Context, args ...string) string {
	tg.t.Helper()
	out, errOut, code := tg.cli(ctx, args...)
	if code != 0 {
		tg.t.Fatalf("kontena %s: exit %d: %s%s", strings.Join(args, " "), code, errOut, out)
	}
	return out
}

// nodeList returns `kontena node ls -o json` by node name.
func (tg *testGrid) nodeList(ctx context.Context) (map[string]*fsm.Node, error) {
	out, errOut, code := tg.cli(ctx, "node", "ls", "-o", "json")
	if code != 0 {
		return nil, fmt.Errorf("node ls: exit %d: %s", code, errOut)
	}
	var nodes []*fsm.Node
	if err := json.Unmarshal([]byte(out), &nodes); err != nil {
		return nil, fmt.Errorf("node ls -o json: %w: %q", err, out)
	}
	m := map[string]*fsm.Node{}
	for _, n := range nodes {
		m[n.Name] = n
	}
	return m, nil
}

// waitNode waits until the grid reports node name with status, and returns
// how long that took.
func (tg *testGrid) waitNode(ctx context.Context, name, status string, limit time.Duration) time.Duration {
	tg.t.Helper()
	start := time.Now()
	eventually(tg.t, limit, "node "+name+" "+status, func() error {
		nodes, err := tg.nodeList(ctx)
		if err != nil {
			return err
		}
		n, ok := nodes[name]
		if !ok {
			return fmt.Errorf("node %s not listed", name)
		}
		if n.Status != status {
			return fmt.Errorf("node %s is %s", name, n.Status)
		}
		return nil
	})
	return time.Since(start)
}

type health struct {
	Status   string   `json:"status"`
	Leader   string   `json:"leader"`
	Messages []string `json:"messages"`
	Voters   []struct {
		Name      string `json:"name"`
		Lag       uint64 `json:"lag"`
		Reachable bool   `json:"reachable"`
	} `json:"voters"`
}

// waitLevel waits until health is ok and every voter has applied the whole
// log, so that a fault injected next hits a voter that is fully caught up.
func (tg *testGrid) waitLevel(ctx context.Context) {
	tg.t.Helper()
	eventually(tg.t, 60*time.Second, "health ok with every voter level", func() error {
		h, code := tg.health(ctx)
		if code != 0 || h.Status != "ok" {
			return fmt.Errorf("health %+v exit %d", h, code)
		}
		for _, v := range h.Voters {
			if !v.Reachable || v.Lag > 0 {
				return fmt.Errorf("voter %+v", v)
			}
		}
		return nil
	})
}

func (tg *testGrid) health(ctx context.Context) (health, int) {
	out, _, code := tg.cli(ctx, "grid", "health", "-o", "json")
	var h health
	_ = json.Unmarshal([]byte(out), &h)
	return h, code
}

// eventually retries f until it succeeds or limit passes. Limits are
// generous on purpose: they catch hangs, not slowness; measured durations
// are logged and reported in bench/RESULTS.md instead.
func eventually(t *testing.T, limit time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached after %s: %v", what, limit, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
