package cmd

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVaultCLI: write (argument, --file), read, ls, update, rm through a
// real in-process node; the values are nowhere in the node's data dir (the
// Raft log holds ciphertext only) nor in the audit log, and every read is
// audited.
func TestVaultCLI(t *testing.T) {
	cfg := startNode(t)
	marker := "s3cr3t-" + strings.Repeat("x", 12)
	if _, errOut, code := run(t, nil, "--config", cfg, "vault", "write", "db/password", marker); code != 0 {
		t.Fatalf("vault write: %d %s", code, errOut)
	}
	file := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(file, []byte(marker+"-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := run(t, nil, "--config", cfg, "vault", "write", "tls/key", "--file", file); code != 0 {
		t.Fatalf("vault write --file: %d %s", code, errOut)
	}
	if _, errOut, code := run(t, nil, "--config", cfg, "vault", "write", "db/password", "again"); code != ExitConflict || !strings.Contains(errOut, "vault update") {
		t.Fatalf("second write: exit %d %q", code, errOut)
	}
	out, _, code := run(t, nil, "--config", cfg, "vault", "read", "db/password")
	if code != 0 || strings.TrimSpace(out) != marker {
		t.Fatalf("vault read: %d %q", code, out)
	}
	out, _, _ = run(t, nil, "--config", cfg, "vault", "read", "tls/key", "-o", "json")
	var v struct{ Name, Value string }
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Name != "tls/key" || v.Value != marker+"-file\n" {
		t.Fatalf("vault read -o json: %q %v", out, err)
	}
	out, _, _ = run(t, nil, "--config", cfg, "vault", "ls", "-o", "json")
	if !strings.Contains(out, "db/password") || !strings.Contains(out, "tls/key") || strings.Contains(out, marker) {
		t.Fatalf("vault ls: %s", out)
	}
	if _, errOut, code := run(t, nil, "--config", cfg, "vault", "update", "nope", "x"); code != ExitNotFound || !strings.Contains(errOut, "--upsert") {
		t.Fatalf("update of a missing secret: exit %d %q", code, errOut)
	}
	if _, errOut, code := run(t, nil, "--config", cfg, "vault", "update", "--upsert", "nope", "x"); code != 0 {
		t.Fatalf("update --upsert: %d %s", code, errOut)
	}
	if _, errOut, code := run(t, nil, "--config", cfg, "vault", "write", "bad name", "x"); code != ExitUsage || !strings.Contains(errOut, "secret name") {
		t.Fatalf("bad name: exit %d %q", code, errOut)
	}
	if _, errOut, code := run(t, nil, "--config", cfg, "vault", "rm", "nope"); code != 0 {
		t.Fatalf("vault rm: %d %s", code, errOut)
	}
	out, _, _ = run(t, nil, "--config", cfg, "audit-log")
	if !strings.Contains(out, "secret.read") || strings.Contains(out, marker) {
		t.Fatalf("audit log:\n%s", out)
	}
	// Nothing under the node's data dir holds a value in the clear.
	data := filepath.Join(filepath.Dir(cfg), "data")
	_ = filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, []byte(marker)) {
			t.Errorf("%s holds a secret value in the clear", p)
		}
		return nil
	})
}

// TestVaultExportImport: export prints every value (each read audited);
// import creates new names, leaves a changed one alone without --force,
// removes on null, and round-trips what export printed.
func TestVaultExportImport(t *testing.T) {
	cfg := startNode(t)
	for name, value := range map[string]string{"a": "alpha", "b/c": "multi\nline", "gone": "x"} {
		if _, errOut, code := run(t, nil, "--config", cfg, "vault", "write", name, value); code != 0 {
			t.Fatalf("write %s: %s", name, errOut)
		}
	}
	out, errOut, code := run(t, nil, "--config", cfg, "vault", "export")
	if code != 0 {
		t.Fatalf("export: %d %s", code, errOut)
	}
	got, err := parseVaultImport([]byte(out))
	if err != nil || len(got) != 3 {
		t.Fatalf("export is not an import file: %v\n%s", err, out)
	}
	file := filepath.Join(t.TempDir(), "import.yml")
	must := func(data string) {
		if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	must("a: changed\nnew: fresh\ngone: null\n")
	_, errOut, code = run(t, nil, "--config", cfg, "vault", "import", file)
	if code != 0 || !strings.Contains(errOut, "left alone") || !strings.Contains(errOut, "a") {
		t.Fatalf("import without --force: %d %q", code, errOut)
	}
	read := func(name string) (string, int) {
		out, _, code := run(t, nil, "--config", cfg, "vault", "read", name)
		return strings.TrimSpace(out), code
	}
	if v, _ := read("a"); v != "alpha" {
		t.Fatalf("a without --force became %q", v)
	}
	if v, _ := read("new"); v != "fresh" {
		t.Fatalf("new: %q", v)
	}
	if _, code := read("gone"); code != ExitNotFound {
		t.Fatalf("gone after a null import: exit %d", code)
	}
	if _, errOut, code := run(t, nil, "--config", cfg, "vault", "import", "--force", file); code != 0 {
		t.Fatalf("import --force: %s", errOut)
	}
	if v, _ := read("a"); v != "changed" {
		t.Fatalf("a with --force: %q", v)
	}
	// Round trip through JSON: the exported file imports to the same vault.
	out, _, _ = run(t, nil, "--config", cfg, "vault", "export", "-o", "json")
	var m map[string]string
	if err := json.Unmarshal([]byte(out), &m); err != nil || m["b/c"] != "multi\nline" || m["a"] != "changed" || len(m) != 3 {
		t.Fatalf("export -o json: %v %q", err, out)
	}
	must(out)
	if out, errOut, code := run(t, nil, "--config", cfg, "vault", "import", file); code != 0 || strings.Contains(out+errOut, "saved") {
		t.Fatalf("re-import of an export changed something: %d %q %q", code, out, errOut)
	}
	for _, bad := range []string{"- a\n- b\n", "a: [1, 2]\n", "bad name: x\n"} {
		must(bad)
		if _, errOut, code := run(t, nil, "--config", cfg, "vault", "import", file); code != ExitUsage || !strings.Contains(errOut, "line") {
			t.Errorf("import of %q: exit %d %q", bad, code, errOut)
		}
	}
}

// TestStackVariablesFromTheVault: the pattern real stacks use makes a
// password once (random_string → to: vault) and reads it back on every
// upgrade; validate --online reads the vault, offline it falls through.
func TestStackVariablesFromTheVault(t *testing.T) {
	cfg := startNode(t)
	file := filepath.Join(t.TempDir(), "kontena.yml")
	src := `stack: test/app
version: 1.0.0
variables:
  db_password:
    type: string
    from:
      vault: app-db-password
      random_string: 24
    to:
      vault: app-db-password
  lb:
    type: string
    required: false
    from:
      service_link:
        image: haproxy
services:
  db:
    image: postgres:fake
    environment:
      - DB_URL=postgres://app:${db_password}@db/app
    secrets:
      - secret: app-db-password
        name: POSTGRES_PASSWORD
        type: env
`
	if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := run(t, nil, "--config", cfg, "stack", "install", "--no-deploy", file); code != 0 {
		t.Fatalf("install: %d %s", code, errOut)
	}
	out, _, code := run(t, nil, "--config", cfg, "vault", "read", "app-db-password")
	first := strings.TrimSpace(out)
	if code != 0 || len(first) != 24 {
		t.Fatalf("the generated password: %d %q", code, out)
	}
	if _, errOut, code := run(t, nil, "--config", cfg, "stack", "upgrade", "--no-wait", "app", file); code != 0 {
		t.Fatalf("upgrade: %d %s", code, errOut)
	}
	if out, _, _ := run(t, nil, "--config", cfg, "vault", "read", "app-db-password"); strings.TrimSpace(out) != first {
		t.Fatalf("upgrade changed the password: %q, was %q", out, first)
	}
	// Nothing of the password is stored with the stack: the environment
	// entry that holds it became a vault secret of its own.
	out, _, _ = run(t, nil, "--config", cfg, "stack", "show", "app", "-o", "json")
	if strings.Contains(out, first) {
		t.Fatalf("stack show holds the password: %s", out)
	}
	if out, _, _ := run(t, nil, "--config", cfg, "vault", "read", "stack/app/db/DB_URL"); strings.TrimSpace(out) != "postgres://app:"+first+"@db/app" {
		t.Fatalf("the sealed environment entry: %q", out)
	}
	data := filepath.Join(filepath.Dir(cfg), "data")
	_ = filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(first)) {
			t.Errorf("%s holds the password in the clear", p)
		}
		return nil
	})
	// validate --online uses the vault's value; offline a new one is made.
	tmpl := filepath.Join(t.TempDir(), "pw.yml")
	if err := os.WriteFile(tmpl, []byte(strings.Replace(src, "services:", "services:\n  app:\n    image: app:fake\n    environment:\n      - SHOWN={{ db_password }}\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := run(t, nil, "--config", cfg, "stack", "validate", "--online", tmpl)
	if code != 0 || !strings.Contains(out, "value: "+first) || !strings.Contains(out, "origin: vault") {
		t.Fatalf("validate --online: %d %q %q", code, out, errOut)
	}
	out, errOut, code = run(t, nil, "--config", cfg, "stack", "validate", tmpl)
	if code != 0 || strings.Contains(out, first) || !strings.Contains(out, "origin: random_string") {
		t.Fatalf("offline validate: %d %q %q", code, out, errOut)
	}
}

// TestGridLockCLI: grid lock shows the key once; unlock-key refuses to
// show it again and --rotate makes a new one; unlock takes it from a file.
func TestGridLockCLI(t *testing.T) {
	cfg := startNode(t)
	out, errOut, code := run(t, nil, "--config", cfg, "grid", "lock", "-o", "json")
	var key struct {
		Key string `json:"unlock_key"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &key) != nil || !strings.HasPrefix(key.Key, "KNTN-UNLOCK-") {
		t.Fatalf("grid lock: %d %q %q", code, out, errOut)
	}
	if _, errOut, code := run(t, nil, "--config", cfg, "grid", "lock"); code != ExitConflict || !strings.Contains(errOut, "--rotate") {
		t.Fatalf("second lock: %d %q", code, errOut)
	}
	if _, errOut, code := run(t, nil, "--config", cfg, "grid", "unlock-key"); code != ExitUsage || !strings.Contains(errOut, "cannot be shown again") {
		t.Fatalf("unlock-key: %d %q", code, errOut)
	}
	out, _, code = run(t, nil, "--config", cfg, "grid", "unlock-key", "--rotate")
	if code != 0 || !strings.Contains(out, "KNTN-UNLOCK-") || strings.Contains(out, key.Key) {
		t.Fatalf("rotate: %d %q", code, out)
	}
	file := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(file, []byte(key.Key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The running voter holds the key already, so the old key is not even
	// tried there: it says so.
	out, errOut, code = run(t, nil, "--config", cfg, "grid", "unlock", "--key-file", file)
	if code != 0 || !strings.Contains(out, "was not locked") {
		t.Fatalf("unlock of a running voter: %d %q %q", code, out, errOut)
	}
	out, _, _ = run(t, nil, "--config", cfg, "grid", "show", "-o", "json")
	if !strings.Contains(out, `"locked": true`) {
		t.Fatalf("grid show of a locked grid: %s", out)
	}
}

// TestVaultRotateKeyCLI: rotate-key re-seals the vault under a new key and
// waits for the voters to hold it; values read back unchanged.
func TestVaultRotateKeyCLI(t *testing.T) {
	cfg := startNode(t)
	if _, errOut, code := run(t, nil, "--config", cfg, "vault", "write", "k", "v1"); code != 0 {
		t.Fatal(errOut)
	}
	keyFile := filepath.Join(filepath.Dir(cfg), "data", "master.key")
	before, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := run(t, nil, "--config", cfg, "vault", "rotate-key", "--timeout", "20s")
	if code != 0 || !strings.Contains(out, "generation 1") || !strings.Contains(out, "Every voter holds the new key") {
		t.Fatalf("rotate-key: %d %q %q", code, out, errOut)
	}
	if after, _ := os.ReadFile(keyFile); string(after) == string(before) {
		t.Fatal("the master key on disk did not change")
	}
	if out, _, _ := run(t, nil, "--config", cfg, "vault", "read", "k"); strings.TrimSpace(out) != "v1" {
		t.Fatalf("read after rotation: %q", out)
	}
	if out, _, _ := run(t, nil, "--config", cfg, "grid", "show", "-o", "json"); !strings.Contains(out, `"key_generation": 1`) {
		t.Fatalf("grid show: %s", out)
	}
}
