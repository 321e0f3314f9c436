package stack

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestVaultFixtures loads the vault fixtures of testdata/vault as install
// does: online, then sealed for storage.
func TestVaultFixtures(t *testing.T) {
	load := func(name string, g *fakeGrid) (*Result, error) {
		data, err := os.ReadFile("testdata/vault/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return LoadBytes(context.Background(), "testdata/vault/"+name, data, Options{GridResolver: g})
	}
	t.Run("password made once, then read back", func(t *testing.T) {
		g := &fakeGrid{vault: map[string]string{}}
		res, err := load("password-once.yml", g)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.VaultWrites) != 1 || len(res.VaultWrites[0].Value) != 32 {
			t.Fatalf("first install writes %+v", res.VaultWrites)
		}
		g.vault["wordpress-db-password"] = "from-the-vault-0123456789abcdef0"
		res, err = load("password-once.yml", g)
		if err != nil {
			t.Fatal(err)
		}
		if res.VaultWrites[0].Value != "from-the-vault-0123456789abcdef0" {
			t.Fatalf("an upgrade made a new password: %+v", res.VaultWrites)
		}
		web := res.Stack.Services[1]
		if len(web.Secrets) != 2 || web.Secrets[1].Type != "file" || web.Secrets[1].Name != "db_password" {
			t.Fatalf("web's secrets %+v", web.Secrets)
		}
		if _, err := res.SealSpec(); err != nil {
			t.Fatal(err)
		}
		if data, _ := json.Marshal(res.Stack); strings.Contains(string(data), "from-the-vault") {
			t.Fatalf("the stored spec holds the password: %s", data)
		}
	})
	t.Run("secret variable", func(t *testing.T) {
		res, err := load("secret-variable.yml", &fakeGrid{vault: map[string]string{}})
		if err != nil {
			t.Fatal(err)
		}
		writes, err := res.SealSpec()
		if err != nil {
			t.Fatal(err)
		}
		if len(writes) != 1 || writes[0].Secret != "stack/api/api/AUTH_HEADER" || !strings.HasPrefix(writes[0].Value, "Bearer ") {
			t.Fatalf("sealed env %+v", writes)
		}
		if len(res.VaultWrites) != 1 || res.VaultWrites[0].Secret != "stack/api/api_token" {
			t.Fatalf("variable writes %+v", res.VaultWrites)
		}
	})
	t.Run("a file secret's name is one path element", func(t *testing.T) {
		_, err := load("bad-file-name.yml", &fakeGrid{})
		if err == nil || !strings.Contains(err.Error(), "testdata/vault/bad-file-name.yml:8:") || !strings.Contains(err.Error(), "services.web.secrets[0].name") {
			t.Fatalf("bad file name: %v", err)
		}
	})
}
