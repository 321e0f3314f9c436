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
