package cmd

import (
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

// gridOf reads a CLI config's current grid context.
func gridOf(t *testing.T, path string) (*cliConfig, *gridContext) {
	t.Helper()
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	gc, err := cfg.context("")
	if err != nil {
		t.Fatal(err)
	}
	return cfg, gc
}

// inviteAndLogin invites email with the flags and logs them in with the
// printed code in a CLI config of their own, as another machine would.
func inviteAndLogin(t *testing.T, admin, email string, flags ...string) string {
	t.Helper()
	out, errOut, code := run(t, nil, append([]string{"--config", admin, "user", "invite", email, "-o", "json"}, flags...)...)
	if code != 0 {
		t.Fatalf("invite %s: %d %s", email, code, errOut)
	}
	var inv api.InviteResponse
	if err := json.Unmarshal([]byte(out), &inv); err != nil {
		t.Fatal(err)
	}
	_, gc := gridOf(t, admin)
	ca, _ := pki.ParseCert([]byte(gc.CACert))
	cfg := filepath.Join(t.TempDir(), strings.SplitN(email, "@", 2)[0]+".json")
	if _, errOut, code := run(t, nil, "--config", cfg, "grid", "login", "--ca-digest", pki.Digest(ca), "--code", inv.Code, gc.Addresses[0]); code != 0 {
		t.Fatalf("login %s: %d %s", email, code, errOut)
	}
	// The code works once.
	other := filepath.Join(t.TempDir(), "again.json")
	if _, errOut, code := run(t, nil, "--config", other, "grid", "login", "--ca-digest", pki.Digest(ca), "--code", inv.Code, gc.Addresses[0]); code != ExitAuth || !strings.Contains(errOut, "used already") {
		t.Fatalf("second login with one invite: %d %s", code, errOut)
	}
	return cfg
}

const plainStack = `stack: %s
version: 1.0.0
services:
  web:
    image: busybox:latest
    command: sleep 600
`

const hostStack = `stack: shop-host
version: 1.0.0
services:
  agent:
    image: busybox:latest
    command: sleep 600
    privileged: true
    volumes:
      - /var/run/docker.sock:/var/run/docker.sock
`

func writeStack(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name+".yml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRolesThroughTheCLI: invite, login, each role doing what it may and
// refused the rest with exit code 3 and a message naming the role needed.
func TestRolesThroughTheCLI(t *testing.T) {
	admin := startNode(t)
	dev := inviteAndLogin(t, admin, "dev@example.com", "--role", "developer", "--stacks", "shop-*")
	viewer := inviteAndLogin(t, admin, "view@example.com", "--role", "viewer")
	uadm := inviteAndLogin(t, admin, "ua@example.com", "--role", "user_admin")

	shop := writeStack(t, "shop-web", strings.ReplaceAll(plainStack, "%s", "shop-web"))
	billing := writeStack(t, "billing", strings.ReplaceAll(plainStack, "%s", "billing"))
	host := writeStack(t, "shop-host", hostStack)
	cases := []struct {
		name   string
		cfg    string
		args   []string
		code   int
		stderr string
	}{
		{"developer reads nodes", dev, []string{"node", "ls"}, 0, ""},
		{"developer installs a shop stack", dev, []string{"stack", "install", "--no-deploy", shop}, 0, ""},
		{"developer outside their stacks", dev, []string{"stack", "install", "--no-deploy", billing}, ExitAuth, `may act only on stacks matching [shop-*], not on stack "billing"`},
		{"developer and host access", dev, []string{"stack", "install", "--no-deploy", host}, ExitAuth, "service agent: privileged (true)"},
		{"developer writes a secret", dev, []string{"vault", "write", "shop/key", "v1"}, 0, ""},
		{"developer reads a secret", dev, []string{"vault", "read", "shop/key"}, ExitAuth, "needs the grid_admin role"},
		{"developer and the join token", dev, []string{"grid", "token"}, ExitAuth, "needs the grid_admin role"},
		{"developer and users", dev, []string{"user", "ls"}, ExitAuth, "needs the user_admin role"},
		{"viewer lists secrets", viewer, []string{"vault", "ls"}, 0, ""},
		{"viewer writes a secret", viewer, []string{"vault", "write", "x", "y"}, ExitAuth, "needs the developer role"},
		{"viewer removes a stack", viewer, []string{"stack", "rm", "--force", "shop-web"}, ExitAuth, "needs the developer role"},
		{"user admin lists users", uadm, []string{"user", "ls"}, 0, ""},
		{"user admin reads nodes", uadm, []string{"node", "ls"}, ExitAuth, "needs the viewer role"},
		{"user admin makes a master admin", uadm, []string{"user", "role", "add", "view@example.com", "master_admin"}, ExitAuth, "only a master_admin may give"},
		{"user admin gives a role", uadm, []string{"user", "role", "add", "view@example.com", "developer"}, 0, ""},
		{"admin installs host access", admin, []string{"stack", "install", "--no-deploy", host}, 0, ""},
	}
	for _, tc := range cases {
		_, errOut, code := run(t, nil, append([]string{"--config", tc.cfg}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.stderr) {
			t.Errorf("%s: exit %d %q, want %d %q", tc.name, code, errOut, tc.code, tc.stderr)
		}
	}
	// The grid may let developers install host access.
	run(t, nil, "--config", admin, "stack", "rm", "--force", "shop-host")
	if _, errOut, code := run(t, nil, "--config", admin, "grid", "update", "--allow-host-access"); code != 0 {
		t.Fatalf("allow host access: %s", errOut)
	}
	if _, errOut, code := run(t, nil, "--config", dev, "stack", "install", "--no-deploy", host); code != 0 {
		t.Errorf("developer with host access allowed: %d %s", code, errOut)
	}

	// The audit log holds the logins, the refusals and the changes.
	out, errOut, code := run(t, nil, "--config", admin, "audit-log", "--user", "dev@example.com", "-o", "json", "--tail", "0")
	if code != 0 {
		t.Fatal(errOut)
	}
	var recs []fsm.AuditRecord
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range recs {
		seen[r.Action+" "+strings.SplitN(r.Result, ":", 2)[0]] = true
		if r.User != "dev@example.com" {
			t.Errorf("--user filter let through %+v", r)
		}
	}
	for _, want := range []string{"user.login ok", "stack.install ok", "denied POST /v1/stacks denied", "secret.write ok", "denied GET /v1/vault/{name...} denied"} {
		if !seen[want] {
			t.Errorf("audit log of dev lacks %q; has %v", want, seen)
		}
	}
	out, _, _ = run(t, nil, "--config", admin, "audit-log", "--resource", "user", "-o", "jsonl", "--tail", "0")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) < 4 || !strings.HasPrefix(lines[0], "{") {
		t.Errorf("audit-log -o jsonl --resource user: %q", out)
	}
}

// TestTokensEndAndRefresh: the CLI renews an access token that is about to
// end by itself; an API token dies with the login it was made from.
func TestTokensEndAndRefresh(t *testing.T) {
	admin := startNode(t)
	dev := inviteAndLogin(t, admin, "dev@example.com", "--role", "developer")

	cfg, gc := gridOf(t, dev)
	old := gc.Token
	gc.TokenExpires = time.Now().Add(time.Minute) // about to end
	if err := cfg.save(); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := run(t, nil, "--config", dev, "whoami"); code != 0 {
		t.Fatalf("whoami with a token about to end: %s", errOut)
	}
	_, gc = gridOf(t, dev)
	if gc.Token == old || time.Until(gc.TokenExpires) < time.Hour {
		t.Fatalf("the access token was not renewed: same %v, expires %s", gc.Token == old, gc.TokenExpires)
	}

	// An API token with a role above the creator's is refused; one of
	// the creator's role works until its login is revoked.
	if _, errOut, code := run(t, nil, "--config", dev, "token", "create", "--role", "grid_admin"); code != ExitAuth || !strings.Contains(errOut, "above its creator's") {
		t.Fatalf("token above the creator's role: %d %s", code, errOut)
	}
	out, errOut, code := run(t, nil, "--config", dev, "token", "create", "--role", "viewer", "--expires-in", "1h", "-o", "json")
	if code != 0 {
		t.Fatal(errOut)
	}
	var created api.TokenCreateResponse
	_ = json.Unmarshal([]byte(out), &created)
	if created.Token.Role != "viewer" || time.Until(created.Token.ExpiresAt) > time.Hour {
		t.Fatalf("created token: %+v", created.Token)
	}
	if _, errOut, code := run(t, map[string]string{"KONTENA_TOKEN": created.Value}, "--config", dev, "vault", "write", "a", "b"); code != ExitAuth || !strings.Contains(errOut, "acts with [viewer]") {
		t.Fatalf("viewer token writing: %d %s", code, errOut)
	}
	if _, errOut, code := run(t, map[string]string{"KONTENA_TOKEN": created.Value}, "--config", dev, "node", "ls"); code != 0 {
		t.Fatalf("viewer token reading: %s", errOut)
	}
	// Token ls shows owner, role, expiry and last use.
	out, _, _ = run(t, nil, "--config", admin, "token", "ls")
	for _, want := range []string{"dev@example.com", "viewer", "refresh", "LAST USED"} {
		if !strings.Contains(out, want) {
			t.Errorf("token ls lacks %q:\n%s", want, out)
		}
	}
	// Revoking the dev's login (its refresh token) revokes the access
	// token and the API token made from it.
	var toks []fsm.Token
	out, _, _ = run(t, nil, "--config", admin, "token", "ls", "-o", "json")
	_ = json.Unmarshal([]byte(out), &toks)
	refresh := ""
	for _, tk := range toks {
		if tk.User == "dev@example.com" && tk.Kind == fsm.TokenKindRefresh {
			refresh = tk.ID
		}
	}
	if _, errOut, code := run(t, nil, "--config", admin, "token", "rm", refresh); code != 0 {
		t.Fatalf("revoke dev's login %q: %s", refresh, errOut)
	}
	if _, errOut, code := run(t, map[string]string{"KONTENA_TOKEN": created.Value}, "--config", dev, "node", "ls"); code != ExitAuth || !strings.Contains(errOut, "revoked") {
		t.Fatalf("API token after its login was revoked: %d %s", code, errOut)
	}
	if _, errOut, code := run(t, nil, "--config", dev, "node", "ls"); code != ExitAuth {
		t.Fatalf("access token after its login was revoked: %d %s", code, errOut)
	}
}

// TestRecoverAdmin: root of a voter machine logs in as admin with the
// voter's certificate, even after the admin user was removed.
func TestRecoverAdmin(t *testing.T) {
	admin := startNode(t)
	root := inviteAndLogin(t, admin, "root@example.com", "--role", "master_admin")
	if _, errOut, code := run(t, nil, "--config", root, "user", "rm", "admin"); code != 0 {
		t.Fatalf("remove admin: %s", errOut)
	}
	if _, _, code := run(t, nil, "--config", admin, "node", "ls"); code != ExitAuth {
		t.Fatalf("removed admin still in: %d", code)
	}
	_, gc := gridOf(t, admin)
	fresh := filepath.Join(t.TempDir(), "recovered.json")
	dataDir := filepath.Join(filepath.Dir(admin), "data")
	addr := strings.TrimPrefix(gc.Addresses[0], "https://")
	if out, errOut, code := run(t, nil, "--config", fresh, "grid", "recover-admin", "--data-dir", dataDir, "--api", addr); code != 0 {
		t.Fatalf("recover-admin: %d %s%s", code, out, errOut)
	}
	if who := whoami(t, fresh); who.User != "admin" || strings.Join(who.Roles, ",") != "master_admin" {
		t.Fatalf("recovered: %+v", who)
	}
	out, _, _ := run(t, nil, "--config", fresh, "audit-log", "--resource", "user/admin", "-o", "json")
	if !strings.Contains(out, "user.recover_admin") || !strings.Contains(out, `"node:solo"`) {
		t.Errorf("audit log lacks the recovery by node solo:\n%s", out)
	}
	if _, errOut, code := run(t, nil, "--config", fresh, "grid", "recover-admin", "--data-dir", t.TempDir(), "--api", addr); code != ExitUsage || !strings.Contains(errOut, "run on a voter") {
		t.Errorf("recover-admin without a voter's files: %d %s", code, errOut)
	}
}
