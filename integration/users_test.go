package integration

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/pki"
)

const usersAppStack = `stack: usr-app
version: 1.0.0
services:
  web:
    image: kontena-demo-busybox:latest
    stop_signal: SIGKILL
    command: sleep 3600
`

const usersHostStack = `stack: usr-host
version: 1.0.0
services:
  agent:
    image: kontena-demo-busybox:latest
    stop_signal: SIGKILL
    affinity: ["node==v1"]
    command: sleep 3600
    volumes:
      - /var/run/docker.sock:/var/run/docker.sock
`

// userCLI is one user's CLI config on the test machine.
type userCLI struct {
	name, cfg string
}

func (u userCLI) run(ctx context.Context, args ...string) (string, string, int) {
	return runCLI(ctx, []string{"KONTENA_CONFIG=" + u.cfg}, args...)
}

// invite invites email with flags as the admin and logs them in with the
// printed code from a CLI config of their own.
func (tg *testGrid) invite(ctx context.Context, t *testing.T, email string, flags ...string) userCLI {
	t.Helper()
	out := tg.mustCLI(ctx, append([]string{"user", "invite", email, "-o", "json"}, flags...)...)
	var inv api.InviteResponse
	must(t, json.Unmarshal([]byte(out), &inv))
	ca, err := pki.ParseCert(tg.caPEM(t))
	must(t, err)
	u := userCLI{name: email, cfg: filepath.Join(t.TempDir(), "user.json")}
	if _, errOut, code := u.run(ctx, "grid", "login", "--ca-digest", pki.Digest(ca), "--code", inv.Code, tg.config(t).Grids[tg.name].Addresses[0]); code != 0 {
		t.Fatalf("%s logs in with the invite: %d %s", email, code, errOut)
	}
	return u
}

// TestUsersOnARealGrid: invite → login → each role does what it may and
// is refused the rest (exit code 3, a message naming the role); host
// access refused for a developer and deployed for a grid admin; the CLI
// renews its login; revoking a login revokes the tokens made from it on
// every node; the audit log has it all.
func TestUsersOnARealGrid(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	tg := newDockerGrid(ctx, t, "usr", "v1", "v2", "v3", "w1")
	tg.start(ctx, []string{"--initial-size", "3"}, nil)

	dev := tg.invite(ctx, t, "dev@example.com", "--role", "developer", "--stacks", "usr-*")
	ops := tg.invite(ctx, t, "ops@example.com", "--role", "grid_admin")
	viewer := tg.invite(ctx, t, "view@example.com", "--role", "viewer")
	app := filepath.Join(t.TempDir(), "app.yml")
	must(t, os.WriteFile(app, []byte(usersAppStack), 0o644))
	host := filepath.Join(t.TempDir(), "host.yml")
	must(t, os.WriteFile(host, []byte(usersHostStack), 0o644))

	steps := []struct {
		what   string
		u      userCLI
		args   []string
		code   int
		output string // in stdout+stderr
	}{
		{"developer deploys a stack", dev, []string{"stack", "install", app, "--timeout", "3m"}, 0, "Deployed."},
		{"developer execs", dev, []string{"service", "exec", "usr-app/web", "echo", "hello"}, 0, "hello"},
		{"developer reads logs", dev, []string{"service", "logs", "usr-app/web"}, 0, ""},
		{"developer writes a secret", dev, []string{"vault", "write", "usr-key", "s3cret"}, 0, ""},
		{"developer reads a secret", dev, []string{"vault", "read", "usr-key"}, 3, "needs the grid_admin role"},
		{"developer and host access", dev, []string{"stack", "install", host}, 3, "service agent: volumes (host path /var/run/docker.sock"},
		{"developer drains a node", dev, []string{"node", "update", "w1", "--availability", "drain"}, 3, "needs the grid_admin role"},
		{"developer and the join token", dev, []string{"grid", "token"}, 3, "needs the grid_admin role"},
		{"viewer lists stacks", viewer, []string{"stack", "ls"}, 0, "usr-app"},
		{"viewer lists secrets by name", viewer, []string{"vault", "ls"}, 0, "usr-key"},
		{"viewer reads a secret", viewer, []string{"vault", "read", "usr-key"}, 3, "needs the grid_admin role"},
		{"viewer execs", viewer, []string{"service", "exec", "usr-app/web", "id"}, 3, "needs the developer role"},
		{"viewer scales", viewer, []string{"service", "scale", "usr-app/web", "2"}, 3, "needs the developer role"},
		{"viewer invites", viewer, []string{"user", "invite", "x@example.com", "--role", "viewer"}, 3, "needs the user_admin role"},
		{"grid admin deploys host access", ops, []string{"stack", "install", host, "--timeout", "3m"}, 0, "Deployed."},
		{"grid admin reads the secret", ops, []string{"vault", "read", "usr-key"}, 0, "s3cret"},
		{"grid admin and users", ops, []string{"user", "ls"}, 3, "needs the user_admin role"},
	}
	for _, s := range steps {
		out, errOut, code := s.u.run(ctx, s.args...)
		if code != s.code || !strings.Contains(out+errOut, s.output) {
			t.Errorf("%s (%s): exit %d, want %d with %q:\n%s%s", s.what, strings.Join(s.args, " "), code, s.code, s.output, out, errOut)
		}
	}
	if got := execIn(ctx, t, tg.nodes["v1"], "usr-host.agent-1", "sh", "-c", "test -S /var/run/docker.sock && echo socket"); !strings.Contains(got, "socket") {
		t.Errorf("the grid admin's host-access service lacks the socket: %q", got)
	}

	t.Run("the CLI renews a login that is about to end", func(t *testing.T) {
		raw, err := os.ReadFile(dev.cfg)
		must(t, err)
		var cfg map[string]any
		must(t, json.Unmarshal(raw, &cfg))
		g := cfg["grids"].(map[string]any)["usr"].(map[string]any)
		old := g["token"]
		g["token_expires_at"] = time.Now().Add(time.Minute).UTC().Format(time.RFC3339)
		raw, _ = json.Marshal(cfg)
		must(t, os.WriteFile(dev.cfg, raw, 0o600))
		if _, errOut, code := dev.run(ctx, "stack", "ls"); code != 0 {
			t.Fatalf("stack ls with a token about to end: %s", errOut)
		}
		raw, _ = os.ReadFile(dev.cfg)
		if strings.Contains(string(raw), old.(string)) {
			t.Fatal("the access token was not renewed")
		}
	})

	t.Run("an API token ends at its expiry on every node", func(t *testing.T) {
		out, errOut, code := dev.run(ctx, "token", "create", "--expires-in", "3s", "-o", "json")
		if code != 0 {
			t.Fatal(errOut)
		}
		var short api.TokenCreateResponse
		must(t, json.Unmarshal([]byte(out), &short))
		time.Sleep(4 * time.Second)
		for _, name := range tg.order {
			cl, err := api.NewClient([]string{tg.nodes[name].IP() + ":9700"}, tg.caPEM(t), short.Value, nil)
			must(t, err)
			if _, err := cl.WhoAmI(ctx); !api.IsCode(err, api.CodeUnauthorized) || !strings.Contains(err.Error(), "expired") {
				t.Errorf("expired token at %s: %v", name, err)
			}
		}
	})

	t.Run("revoking a login revokes its tokens on every node", func(t *testing.T) {
		out, errOut, code := dev.run(ctx, "token", "create", "--role", "viewer", "-o", "json")
		if code != 0 {
			t.Fatal(errOut)
		}
		var child api.TokenCreateResponse
		must(t, json.Unmarshal([]byte(out), &child))
		clients := map[string]*api.Client{}
		for _, name := range tg.order {
			cl, err := api.NewClient([]string{tg.nodes[name].IP() + ":9700"}, tg.caPEM(t), child.Value, nil)
			must(t, err)
			if _, err := cl.WhoAmI(ctx); err != nil {
				t.Fatalf("child token at %s before the revocation: %v", name, err)
			}
			clients[name] = cl
		}
		var toks []fsm.Token
		must(t, json.Unmarshal([]byte(tg.mustCLI(ctx, "token", "ls", "-o", "json")), &toks))
		login := ""
		for _, tk := range toks {
			if tk.User == dev.name && tk.Kind == fsm.TokenKindRefresh {
				login = tk.ID
			}
		}
		tg.mustCLI(ctx, "token", "rm", login)
		revoked := time.Now()
		for _, name := range tg.order {
			eventually(t, 5*time.Second, "the child token refused at "+name, func() error {
				if _, err := clients[name].WhoAmI(ctx); !api.IsCode(err, api.CodeUnauthorized) {
					return err
				}
				return nil
			})
			t.Logf("child token refused at %s %s after the revocation returned", name, time.Since(revoked).Round(time.Millisecond))
		}
		if _, errOut, code := dev.run(ctx, "stack", "ls"); code != 3 {
			t.Errorf("the developer's own login after its revocation: %d %s", code, errOut)
		}
	})

	t.Run("the audit log holds each of the above", func(t *testing.T) {
		var recs []fsm.AuditRecord
		must(t, json.Unmarshal([]byte(tg.mustCLI(ctx, "audit-log", "--tail", "0", "-o", "json")), &recs))
		have := map[string]bool{}
		for _, r := range recs {
			have[r.User+" "+r.Action+" "+strings.SplitN(r.Result, ":", 2)[0]] = true
		}
		for _, want := range []string{
			"dev@example.com user.login ok", "dev@example.com stack.install ok", "dev@example.com container.exec ok",
			"dev@example.com denied POST /v1/stacks denied", "dev@example.com denied PATCH /v1/nodes/{name} denied",
			"view@example.com denied POST /v1/containers/{name}/exec denied", "ops@example.com secret.read ok",
			"ops@example.com stack.install ok", "admin token.remove ok", "dev@example.com user.refresh ok",
		} {
			if !have[want] {
				t.Errorf("audit log lacks %q", want)
			}
		}
	})
}
