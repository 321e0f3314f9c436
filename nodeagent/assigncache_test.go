package nodeagent

import (
	"bytes"
	"os"
	"testing"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/stack"
)

func TestAssignmentCache(t *testing.T) {
	dir := t.TempDir()
	c := newAssignmentCache(dir)
	if as, err := c.load(); as != nil || err != nil {
		t.Fatalf("empty cache: %v %v", as, err)
	}
	in := &api.Assignments{Grid: "g", Items: []api.Assignment{{Stack: "shop", Instance: fsm.Instance{ID: "shop/db-1", Number: 1},
		Service: stack.Service{Name: "db", Image: "db:1", Environment: []stack.EnvVar{{Name: "PASSWORD", Value: "hunter2-secret"}}}}}}
	if err := c.save(in); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(c.path)
	if bytes.Contains(raw, []byte("hunter2-secret")) || bytes.Contains(raw, []byte("PASSWORD")) {
		t.Fatal("the cache holds the environment in plaintext")
	}
	if fi, _ := os.Stat(c.keyPath); fi == nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v", fi)
	}
	out, err := c.load()
	if err != nil || len(out.Items) != 1 || out.Items[0].Service.Environment[0].Value != "hunter2-secret" {
		t.Fatalf("round trip: %+v %v", out, err)
	}
	raw[len(raw)-1] ^= 1
	if err := os.WriteFile(c.path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.load(); err == nil {
		t.Fatal("a tampered cache must not load")
	}
}
