package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/pki"
)

const backupStack = `stack: it/keep
version: 1.0.0
services:
  web:
    image: kontena-demo-busybox:latest
    instances: 2
    stop_signal: SIGKILL
    command: sh -c 'echo "$$KEEP" > /tmp/k; exec httpd -f -p 8080'
    secrets:
      - secret: keep-secret
        name: KEEP
        type: env
`

// TestBackupRestore backs up a grid with a stack and a secret, loses its
// only master, restores the backup on a fresh machine at another address,
// and has the old worker re-join with its identity: same CA, tokens,
// stacks and vault, and the services run again at their count.
func TestBackupRestore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tg := newDockerGrid(ctx, t, "keep", "b1", "b2")
	tg.start(ctx, []string{"--offline-grace", "5s"}, nil)
	marker := "kept-" + pki.RandomHex(8)
	tg.mustCLI(ctx, "vault", "write", "keep-secret", marker)
	file := filepath.Join(t.TempDir(), "kontena.yml")
	must(t, os.WriteFile(file, []byte(backupStack), 0o644))
	tg.mustCLI(ctx, "stack", "install", file, "--timeout", "3m")
	stacksBefore := tg.mustCLI(ctx, "stack", "ls")
	var before api.GridInfo
	must(t, json.Unmarshal([]byte(tg.mustCLI(ctx, "grid", "show", "-o", "json")), &before))

	dir := t.TempDir()
	backup, keyFile := filepath.Join(dir, "backup.json"), filepath.Join(dir, "backup.key")
	out := tg.mustCLI(ctx, "grid", "backup", backup, "--key-file", keyFile)
	if !strings.Contains(out, "written to") {
		t.Fatalf("grid backup: %s", out)
	}
	if data, _ := os.ReadFile(backup); strings.Contains(string(data), marker) {
		t.Fatal("the backup holds a secret value in the clear")
	}

	// The master's machine is lost.
	must(t, tg.nodes["b1"].Kill(ctx))
	r1 := tg.addNode(ctx, "r1")
	must(t, r1.LoadImage(ctx, demoImage))
	must(t, r1.CopyIn(ctx, backup, "/root/backup.json"))
	must(t, r1.CopyIn(ctx, keyFile, "/root/backup.key"))
	must(t, r1.StartDaemon(ctx, "up", "--data-dir", dataDir, "--advertise", r1.IP(), "--name", "b1",
		"--restore", "/root/backup.json", "--restore-key-file", "/root/backup.key"))
	tg.pointCLIAt(t, r1.IP()+":9700")
	eventually(t, 60*time.Second, "the restored grid answers the old admin token", func() error {
		_, errOut, code := tg.cli(ctx, "grid", "show")
		if code != 0 {
			return fmt.Errorf("exit %d: %s", code, errOut)
		}
		return nil
	})
	var after api.GridInfo
	must(t, json.Unmarshal([]byte(tg.mustCLI(ctx, "grid", "show", "-o", "json")), &after))
	if after.Name != before.Name || after.CADigest != before.CADigest {
		t.Fatalf("restored grid %s %s, was %s %s", after.Name, after.CADigest, before.Name, before.CADigest)
	}
	if got := tg.mustCLI(ctx, "stack", "ls"); got != stacksBefore {
		t.Fatalf("stacks after restore:\n%s\nbefore:\n%s", got, stacksBefore)
	}
	if got := strings.TrimSpace(tg.mustCLI(ctx, "vault", "read", "keep-secret")); got != marker {
		t.Fatalf("vault after restore: %q", got)
	}
	if tok := strings.TrimSpace(tg.mustCLI(ctx, "grid", "token")); tok != tg.token {
		t.Fatal("the join token changed across the restore")
	}

	// The worker re-joins with its identity, told where the grid is now.
	b2 := tg.nodes["b2"]
	must(t, b2.KillDaemon(ctx))
	must(t, b2.StartDaemon(ctx, "up", "--data-dir", dataDir, "--advertise", b2.IP(), "--join", r1.IP()))
	tg.waitNode(ctx, "b2", "online", 90*time.Second)
	eventually(t, 3*time.Minute, "the stack runs again at its count", func() error {
		n := len(containers(ctx, t, r1)) + len(containers(ctx, t, b2))
		var svcs []api.ServiceInfo
		if err := json.Unmarshal([]byte(tg.mustCLI(ctx, "service", "ls", "-o", "json")), &svcs); err != nil {
			return err
		}
		if len(svcs) != 1 || svcs[0].Running != 2 || n != 2 {
			return fmt.Errorf("services %+v, %d containers on r1 and b2", svcs, n)
		}
		return nil
	})
	for _, name := range []string{"r1", "b2"} {
		for c := range containers(ctx, t, tg.nodes[name]) {
			if got := execIn(ctx, t, tg.nodes[name], c, "cat", "/tmp/k"); strings.TrimSpace(got) != marker {
				t.Fatalf("%s on %s got secret %q", c, name, got)
			}
		}
	}
	nodes, err := tg.nodeList(ctx)
	must(t, err)
	var names []string
	for name := range nodes {
		names = append(names, name)
	}
	slices.Sort(names)
	if fmt.Sprint(names) != "[b1 b2]" || nodes["b1"].Addr != r1.IP() || nodes["b1"].Role != "voter" {
		t.Fatalf("nodes after restore: %v, b1 %+v", names, nodes["b1"])
	}
}

// pointCLIAt makes the admin's CLI config talk to addr (the grid moved).
func (tg *testGrid) pointCLIAt(t *testing.T, addr string) {
	t.Helper()
	raw, err := os.ReadFile(tg.cfg)
	must(t, err)
	var cfg map[string]any
	must(t, json.Unmarshal(raw, &cfg))
	grids := cfg["grids"].(map[string]any)
	g := grids[tg.name].(map[string]any)
	g["addresses"] = []string{addr}
	raw, err = json.Marshal(cfg)
	must(t, err)
	must(t, os.WriteFile(tg.cfg, raw, 0o600))
}
