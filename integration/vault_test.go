package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/integration/harness"
	"github.com/kontena-ng/kontena/pki"
)

// vaultStack is the pattern real stacks use: the database password is made
// once (random_string → to: vault) and read back on every upgrade. The
// database takes it as a file (its HTTP basic auth), the app as env and as
// a file (it checks they agree), and the app connects with it.
const vaultStack = `stack: it/vlt
version: 1.0.0
variables:
  db_password:
    type: string
    from:
      vault: vlt-db-password
      random_string: 24
    to:
      vault: vlt-db-password
services:
  db:
    image: kontena-demo-busybox:latest
    affinity: ["node==v1"]
    stop_signal: SIGKILL
    command: sh -c 'mkdir -p /etc /www && echo ok > /www/index.html && echo "/:app:$$(cat /run/secrets/db_password)" > /etc/httpd.conf && exec httpd -f -p 8080 -h /www -c /etc/httpd.conf'
    secrets:
      - secret: vlt-db-password
        name: db_password
        type: file
      - secret: vlt-admin-note
        name: ADMIN_NOTE
        type: env
  app:
    image: kontena-demo-busybox:latest
    affinity: ["node==w1"]
    stop_signal: SIGKILL
    command: sh -c 'while true; do if [ "$$(cat /run/secrets/db_password)" != "$$DB_PASSWORD" ]; then echo "file and env differ"; elif wget -q -O /tmp/r "http://app:$$DB_PASSWORD@db:8080/"; then echo "connected $$(cat /tmp/r)"; else echo refused; fi; sleep 1; done'
    secrets:
      - secret: vlt-db-password
        name: DB_PASSWORD
        type: env
      - secret: vlt-db-password
        name: db_password
        type: file
`

// TestVault runs the vault on Docker-in-Docker nodes: a voter (v1, the
// database) and a worker (w1, the app).
func TestVault(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	tg := newDockerGrid(ctx, t, "vlt", "v1", "w1")
	tg.start(ctx, nil, nil)
	v1, w1 := tg.nodes["v1"], tg.nodes["w1"]
	file := filepath.Join(t.TempDir(), "kontena.yml")
	must(t, os.WriteFile(file, []byte(vaultStack), 0o644))
	note := "admin-note-" + pki.RandomHex(8)
	rotated := "rotated" + pki.RandomHex(12)
	var password string

	t.Run("install makes the password once; the app connects with it", func(t *testing.T) {
		tg.mustCLI(ctx, "vault", "write", "vlt-admin-note", note)
		out := tg.mustCLI(ctx, "stack", "install", file, "--timeout", "3m")
		if !strings.Contains(out, "Deployed.") {
			t.Fatalf("install:\n%s", out)
		}
		password = strings.TrimSpace(tg.mustCLI(ctx, "vault", "read", "vlt-db-password"))
		if len(password) != 24 {
			t.Fatalf("generated password %q", password)
		}
		waitConnected(ctx, t, w1, "vlt.app-1")
		if env := execIn(ctx, t, w1, "vlt.app-1", "env"); !strings.Contains(env, "DB_PASSWORD="+password+"\n") {
			t.Fatalf("app's environment lacks the password:\n%s", env)
		}
		if got := execIn(ctx, t, v1, "vlt.db-1", "cat", "/run/secrets/db_password"); got != password {
			t.Fatalf("db's /run/secrets/db_password = %q", got)
		}
		mounts, _, _, err := v1.Exec(ctx, "cat", "/proc/mounts")
		must(t, err)
		if fs := mountType(mounts, "/run/kontena/secrets"); fs != "tmpfs" {
			t.Fatalf("the secret files are on %q, not a tmpfs:\n%s", fs, mounts)
		}
	})

	t.Run("upgrade keeps the password", func(t *testing.T) {
		tg.mustCLI(ctx, "stack", "upgrade", "vlt", file, "--timeout", "3m")
		if got := strings.TrimSpace(tg.mustCLI(ctx, "vault", "read", "vlt-db-password")); got != password {
			t.Fatalf("upgrade changed the password: %q, was %q", got, password)
		}
	})

	t.Run("a worker's assignments hold only its own instances' secrets", func(t *testing.T) {
		cert, _ := stolenCert(ctx, t, w1)
		cl, err := api.NewClient([]string{v1.IP() + ":9700"}, tg.caPEM(t), "", cert)
		must(t, err)
		var raw json.RawMessage
		_, err = cl.Do(ctx, http.MethodGet, "/v1/nodes/w1/assignments", nil, &raw)
		must(t, err)
		if !strings.Contains(string(raw), password) || strings.Contains(string(raw), note) {
			t.Fatalf("w1's assignments (want the password, not the db's note): %s", raw)
		}
	})

	t.Run("vault update rolls both services; every new instance sees the value", func(t *testing.T) {
		out := tg.mustCLI(ctx, "vault", "update", "vlt-db-password", rotated, "--timeout", "3m")
		if !strings.Contains(out, "vlt/app") || !strings.Contains(out, "vlt/db") || !strings.Contains(out, "Redeploying") {
			t.Fatalf("vault update output:\n%s", out)
		}
		if env := execIn(ctx, t, w1, "vlt.app-1", "env"); !strings.Contains(env, "DB_PASSWORD="+rotated+"\n") {
			t.Fatalf("app after rotation:\n%s", env)
		}
		if got := execIn(ctx, t, v1, "vlt.db-1", "cat", "/run/secrets/db_password"); got != rotated {
			t.Fatalf("db after rotation: %q", got)
		}
		waitConnected(ctx, t, w1, "vlt.app-1")
	})

	t.Run("vault rm of a secret in use is refused, naming its users", func(t *testing.T) {
		_, errOut, code := tg.cli(ctx, "vault", "rm", "vlt-db-password")
		if code != 6 || !strings.Contains(errOut, "vlt/app") || !strings.Contains(errOut, "--force") {
			t.Fatalf("vault rm: exit %d %q", code, errOut)
		}
	})

	t.Run("no data dir, Raft log, snapshot or log holds a secret value", func(t *testing.T) {
		for _, n := range []*harness.Node{v1, w1} {
			for _, marker := range []string{password, rotated, note} {
				out, _, code, err := n.Exec(ctx, "grep", "-rlF", marker, dataDir, "/var/log/kontena.log")
				must(t, err)
				if code != 1 {
					t.Errorf("%s: %q found in the clear in: %s (grep exit %d)", n.Name(), marker, out, code)
				}
			}
		}
	})

	t.Run("grid lock: a restarted voter serves no secrets until unlocked; containers keep running", func(t *testing.T) {
		var key api.UnlockKey
		must(t, json.Unmarshal([]byte(tg.mustCLI(ctx, "grid", "lock", "-o", "json")), &key))
		eventually(t, 30*time.Second, "the master key leaves v1's disk", func() error {
			if _, _, code, _ := v1.Exec(ctx, "test", "-e", dataDir+"/master.key"); code == 0 {
				return fmt.Errorf("%s/master.key still there", dataDir)
			}
			return nil
		})
		must(t, v1.KillDaemon(ctx))
		must(t, v1.StartDaemon(ctx, "up", "--data-dir", dataDir, "--advertise", v1.IP()))
		tg.waitNode(ctx, "v1", "online", 60*time.Second)
		eventually(t, 60*time.Second, "the restarted voter refuses secrets", func() error {
			_, errOut, code := tg.cli(ctx, "vault", "read", "vlt-db-password")
			if code == 0 || !strings.Contains(errOut, "locked") {
				return fmt.Errorf("vault read on a locked grid: exit %d %q", code, errOut)
			}
			return nil
		})
		if len(containers(ctx, t, v1)) != 1 || len(containers(ctx, t, w1)) != 1 {
			t.Fatalf("containers stopped while the grid is locked: v1 %v w1 %v", containers(ctx, t, v1), containers(ctx, t, w1))
		}
		waitConnected(ctx, t, w1, "vlt.app-1")
		keyFile := filepath.Join(t.TempDir(), "unlock.key")
		must(t, os.WriteFile(keyFile, []byte(key.Key+"\n"), 0o600))
		if out := tg.mustCLI(ctx, "grid", "unlock", "--key-file", keyFile); !strings.Contains(out, "unlocked") {
			t.Fatalf("grid unlock:\n%s", out)
		}
		if got := strings.TrimSpace(tg.mustCLI(ctx, "vault", "read", "vlt-db-password")); got != rotated {
			t.Fatalf("vault read after unlock: %q", got)
		}
	})
	tg.removeStack(ctx, t, []string{"v1", "w1"}, "vlt")
}

// execIn runs a command in a container of node n and returns its output.
func execIn(ctx context.Context, t *testing.T, n *harness.Node, container string, args ...string) string {
	t.Helper()
	out, errOut, code, err := n.Exec(ctx, append([]string{"docker", "exec", container}, args...)...)
	if err != nil || code != 0 {
		t.Fatalf("docker exec %s %v on %s: %v %d %s", container, args, n.Name(), err, code, errOut)
	}
	return out
}

// waitConnected waits until the app's last log line says it connected to
// the database with its password.
func waitConnected(ctx context.Context, t *testing.T, n *harness.Node, container string) {
	t.Helper()
	eventually(t, 60*time.Second, container+" connects to the database", func() error {
		out, errOut, _, err := n.Exec(ctx, "docker", "logs", "--tail", "1", container)
		if err != nil {
			return err
		}
		if line := strings.TrimSpace(out + errOut); line != "connected ok" {
			return fmt.Errorf("last line %q", line)
		}
		return nil
	})
}

// mountType is the file system type of the mount that holds path, from
// /proc/mounts: the longest mount point that is path or a parent of it.
func mountType(procMounts, path string) string {
	best, typ := "", ""
	for _, line := range strings.Split(procMounts, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		mp := f[1]
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best, typ = mp, f[2]
		}
	}
	return typ
}
