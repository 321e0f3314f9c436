package overlay

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "wireguard.key")
	k1, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v; want 0600", fi.Mode().Perm())
	}
	k2, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if k1 != k2 {
		t.Fatal("second load returned a different key")
	}
	if k1.PublicKey() == k1 {
		t.Fatal("public key equals private key")
	}

	// A key written by `wg genkey` with loose permissions is accepted and
	// tightened.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(path); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("loose key file left at %v", fi.Mode().Perm())
	}
}

func TestLoadOrCreateKeyCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wireguard.key")
	secret := "not-a-key-but-a-secret"
	if err := os.WriteFile(path, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadOrCreateKey(path)
	if err == nil {
		t.Fatal("corrupt key accepted")
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("error leaks the file content: %v", err)
	}
	if data, _ := os.ReadFile(path); string(data) != secret {
		t.Fatal("corrupt key file was overwritten")
	}
}
