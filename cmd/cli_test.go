package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/internal/testport"
)

func TestReorderArgs(t *testing.T) {
	app := App()
	tests := []struct{ in, want string }{
		{"kontena node show w1 -o json", "kontena node show -o json w1"},
		{"kontena --grid g node update w1 --availability drain --label a=b", "kontena --grid g node update --availability drain --label a=b w1"},
		{"kontena node rm w1 --force", "kontena node rm --force w1"},
		{"kontena node label add w1 az=a -o json", "kontena node label add -o json w1 az=a"},
		{"kontena node ls", "kontena node ls"},
		{"kontena node", "kontena node"},
		{"kontena nosuch x -y", "kontena nosuch x -y"},
		{"kontena node show -- -weird", "kontena node show -- -weird"},
	}
	for _, tc := range tests {
		got := strings.Join(reorderArgs(app, strings.Fields(tc.in)), " ")
		if got != tc.want {
			t.Errorf("reorderArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// freePort is a port for a node of this test (see testport).
func freePort(t *testing.T) int { return testport.Free(t) }

// startNode bootstraps a real one-node grid in this process and returns its
// CLI config path.
func startNode(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cli.json")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	var out, errOut bytes.Buffer
	go func() {
		done <- RunContext(ctx, []string{"kontena", "--config", cfg, "up", "--data-dir", filepath.Join(dir, "data"), "--name", "solo",
			"--grid", "unit", "--bind", "127.0.0.1", "--api-port", fmt.Sprint(freePort(t)), "--raft-port", fmt.Sprint(freePort(t)),
			"--gossip-port", fmt.Sprint(freePort(t)), "--log-level", "error"}, &out, &errOut)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("kontena up did not stop")
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(cfg); err == nil {
			return cfg
		}
		select {
		case code := <-done:
			t.Fatalf("kontena up exited %d: %s", code, errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("node did not start: %s", errOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func run(t *testing.T, env map[string]string, args ...string) (string, string, int) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out, errOut bytes.Buffer
	code := Run(append([]string{"kontena"}, args...), &out, &errOut)
	return out.String(), errOut.String(), code
}

func TestCLIErrorPaths(t *testing.T) {
	cfg := startNode(t)
	dir := t.TempDir()
	// A config whose only master does not answer.
	raw, _ := os.ReadFile(cfg)
	var c cliConfig
	_ = json.Unmarshal(raw, &c)
	c.Grids["unit"].Addresses = []string{fmt.Sprintf("https://127.0.0.1:%d", freePort(t))}
	deadCfg := filepath.Join(dir, "dead.json")
	c.path = deadCfg
	if err := c.save(); err != nil {
		t.Fatal(err)
	}
	// Same grid, wrong token.
	c.Grids["unit"].Addresses = nil
	_ = json.Unmarshal(raw, &c)
	c.Grids["unit"].Token = "ktn_wrong"
	badTokCfg := filepath.Join(dir, "badtok.json")
	c.path = badTokCfg
	_ = c.save()

	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"ok", []string{"--config", cfg, "node", "ls"}, ExitOK, ""},
		{"json", []string{"--config", cfg, "node", "ls", "-o", "json"}, ExitOK, ""},
		{"unknown command", []string{"--config", cfg, "frobnicate"}, ExitUsage, ""},
		{"unknown flag", []string{"--config", cfg, "node", "ls", "--frob"}, ExitUsage, "flag provided but not defined"},
		{"bad output", []string{"--config", cfg, "node", "ls", "-o", "yaml"}, ExitUsage, "expected table or json"},
		{"missing arg", []string{"--config", cfg, "node", "show"}, ExitUsage, "expected exactly one NODE"},
		{"too many args", []string{"--config", cfg, "node", "show", "a", "b"}, ExitUsage, "expected exactly one NODE"},
		{"not found", []string{"--config", cfg, "node", "show", "ghost"}, ExitNotFound, `node "ghost"`},
		{"nothing to update", []string{"--config", cfg, "node", "update", "solo"}, ExitUsage, "nothing to update"},
		{"bad availability", []string{"--config", cfg, "node", "update", "solo", "--availability", "x"}, ExitUsage, "expected active or drain"},
		{"bad label", []string{"--config", cfg, "node", "label", "add", "solo", "nokey"}, ExitUsage, "expected key=value"},
		{"label server-side validation", []string{"--config", cfg, "node", "update", "solo", "--label", "=v"}, ExitUsage, "empty key"},
		{"rm online node", []string{"--config", cfg, "node", "rm", "solo", "--force"}, ExitConflict, "cannot remove itself"},
		{"rm needs confirmation", []string{"--config", cfg, "node", "rm", "solo"}, ExitUsage, "add --force"},
		{"demote only voter", []string{"--config", cfg, "node", "demote", "solo"}, ExitConflict, "only voter"},
		{"promote a voter", []string{"--config", cfg, "node", "promote", "solo"}, ExitConflict, "already a voter"},
		{"health warning: 1 of 1 is ok", []string{"--config", cfg, "grid", "health"}, ExitOK, ""},
		{"bad token expiry", []string{"--config", cfg, "token", "create", "--expires-in", "soon"}, ExitUsage, "positive duration"},
		{"audit log", []string{"--config", cfg, "audit-log", "-o", "json"}, ExitOK, ""},
		{"rm unknown token", []string{"--config", cfg, "token", "rm", "nope"}, ExitNotFound, "token nope"},
		{"no config", []string{"--config", filepath.Join(dir, "none.json"), "node", "ls"}, ExitUsage, "no grid configured"},
		{"unknown grid", []string{"--config", cfg, "--grid", "elsewhere", "node", "ls"}, ExitUsage, `grid "elsewhere" is not in`},
		{"grid use unknown", []string{"--config", cfg, "grid", "use", "elsewhere"}, ExitNotFound, "not in the CLI config"},
		{"unreachable", []string{"--config", deadCfg, "node", "ls"}, ExitUnreachable, "no node of the grid answered"},
		{"bad token", []string{"--config", badTokCfg, "node", "ls"}, ExitAuth, "invalid or revoked token"},
		{"join needs token", []string{"--config", cfg, "up", "--data-dir", filepath.Join(dir, "x"), "--join", "127.0.0.1"}, ExitUsage, "--join needs --token"},
		{"bad initial size", []string{"--config", cfg, "up", "--data-dir", filepath.Join(dir, "y"), "--initial-size", "2"}, ExitUsage, "use 1, 3, 5 or 7"},
		{"grid update needs a change", []string{"--config", cfg, "grid", "update"}, ExitUsage, "nothing to change"},
		{"grid update bad affinity", []string{"--config", cfg, "grid", "update", "--default-affinity", "colour==red"}, ExitUsage, `unknown key "colour"`},
		{"grid update bad grace", []string{"--config", cfg, "grid", "update", "--offline-grace", "soon"}, ExitUsage, "expected a duration"},
		{"up bad default affinity", []string{"--config", cfg, "up", "--data-dir", filepath.Join(dir, "v"), "--default-affinity", "node=n1"}, ExitUsage, "expected key==value"},
		{"subnet outside supernet", []string{"--config", cfg, "up", "--data-dir", filepath.Join(dir, "z"), "--subnet", "192.168.0.0/16"}, ExitUsage, "must lie inside --supernet"},
		{"join unreachable", []string{"--config", cfg, "up", "--data-dir", filepath.Join(dir, "w"), "--bind", "127.0.0.1", "--api-port", fmt.Sprint(freePort(t)),
			"--join", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--token", "K1.g." + strings.Repeat("a", 64) + ".s"}, ExitUnreachable, "unreachable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := run(t, nil, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.msg) {
				t.Fatalf("exit %d stderr %q stdout %q; want exit %d with %q", code, errOut, out, tc.code, tc.msg)
			}
		})
	}
}

func TestGridUpdate(t *testing.T) {
	cfg := startNode(t)
	if out, errOut, code := run(t, nil, "--config", cfg, "grid", "update", "--default-affinity", "label==disk=ssd", "--offline-grace", "45s"); code != ExitOK ||
		!strings.Contains(out, "label==disk=ssd") || !strings.Contains(out, "45s") {
		t.Fatalf("update: exit %d %q %q", code, out, errOut)
	}
	out, _, _ := run(t, nil, "--config", cfg, "grid", "show", "-o", "json")
	var g api.GridInfo
	if err := json.Unmarshal([]byte(out), &g); err != nil || strings.Join(g.DefaultAffinity, ",") != "label==disk=ssd" || g.OfflineGrace != "45s" {
		t.Fatalf("grid show after update: %v %+v", err, g)
	}
	run(t, nil, "--config", cfg, "grid", "update", "--clear-default-affinity", "--offline-grace", "0s")
	out, _, _ = run(t, nil, "--config", cfg, "grid", "show")
	if !strings.Contains(out, "default affinity:  -") || !strings.Contains(out, "per strategy") {
		t.Fatalf("grid show after clearing:\n%s", out)
	}
	out, _, _ = run(t, nil, "--config", cfg, "grid", "events")
	if !strings.Contains(out, "grid settings changed") {
		t.Fatalf("no grid event for the update:\n%s", out)
	}
}

func TestTokenLifecycleAndContexts(t *testing.T) {
	cfg := startNode(t)
	out, errOut, code := run(t, nil, "--config", cfg, "token", "create", "--description", "ci", "-o", "json")
	if code != 0 {
		t.Fatalf("token create: %d %s", code, errOut)
	}
	var created struct {
		Token struct{ ID, Hash string }
		Value string
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.Value == "" || created.Token.Hash != "" {
		t.Fatalf("token create answer %q (hash must not be returned)", out)
	}
	if _, errOut, code := run(t, map[string]string{"KONTENA_TOKEN": created.Value}, "--config", cfg, "whoami"); code != 0 {
		t.Fatalf("whoami with new token: %d %s", code, errOut)
	}
	out, _, _ = run(t, map[string]string{"KONTENA_TOKEN": ""}, "--config", cfg, "token", "ls")
	if !strings.Contains(out, created.Token.ID) || strings.Contains(out, created.Value) {
		t.Fatalf("token ls shows %q", out)
	}
	if _, errOut, code := run(t, nil, "--config", cfg, "token", "rm", created.Token.ID); code != 0 {
		t.Fatalf("token rm: %s", errOut)
	}
	if _, errOut, code := run(t, map[string]string{"KONTENA_TOKEN": created.Value}, "--config", cfg, "whoami"); code != ExitAuth {
		t.Fatalf("revoked token: exit %d %s", code, errOut)
	}
	t.Setenv("KONTENA_TOKEN", "")
	// Every change is in the audit log with who made it; no secret is.
	out, _, _ = run(t, nil, "--config", cfg, "audit-log")
	for _, want := range []string{"token.create", "token.remove", "admin", "grid.init"} {
		if !strings.Contains(out, want) {
			t.Fatalf("audit-log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, created.Value) {
		t.Fatal("audit log shows a token value")
	}
	// The config file holds tokens: it must not be readable by others.
	if fi, err := os.Stat(cfg); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config mode = %v, %v", fi.Mode(), err)
	}
	out, _, code = run(t, nil, "--config", cfg, "grid", "ls", "-o", "json")
	if code != 0 || !strings.Contains(out, `"current": true`) {
		t.Fatalf("grid ls: %d %s", code, out)
	}
	if _, _, code := run(t, nil, "--config", cfg, "grid", "use", "unit"); code != 0 {
		t.Fatal("grid use unit failed")
	}
	// Join token rotation: the old token stops being the current one.
	old, _, _ := run(t, nil, "--config", cfg, "grid", "token")
	rotated, _, _ := run(t, nil, "--config", cfg, "grid", "token", "--rotate")
	now, _, _ := run(t, nil, "--config", cfg, "grid", "token")
	if old == rotated || rotated != now || !strings.HasPrefix(now, "K1.unit.") {
		t.Fatalf("join tokens: old %q rotated %q now %q", old, rotated, now)
	}
}
