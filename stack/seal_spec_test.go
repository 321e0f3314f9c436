package stack

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestSealSpec: values from the vault or marked secret leave the stored
// spec; an environment entry that holds one becomes a vault secret of its
// own; one anywhere else is refused.
func TestSealSpec(t *testing.T) {
	const src = `stack: t/app
version: 1.0.0
variables:
  pw:
    type: string
    from:
      vault: db-pw
  api_key:
    type: string
    secret: true
    value: key-1234567
  plain:
    type: string
    value: visible
services:
  web:
    image: web
    environment:
      - DATABASE_URL=postgres://app:${pw}@db/app
      - API_KEY=${api_key}
      - PLAIN=${plain}
`
	g := &fakeGrid{vault: map[string]string{"db-pw": "hunter22"}}
	res, err := LoadBytes(context.Background(), "kontena.yml", []byte(src), Options{GridResolver: g})
	if err != nil {
		t.Fatal(err)
	}
	writes, err := res.SealSpec()
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(res.Stack)
	for _, secret := range []string{"hunter22", "key-1234567"} {
		if strings.Contains(string(data), secret) {
			t.Errorf("the stored spec holds %q: %s", secret, data)
		}
	}
	if !strings.Contains(string(data), "PLAIN") || !strings.Contains(string(data), "visible") {
		t.Errorf("a plain value was removed: %s", data)
	}
	want := map[string]string{
		"stack/app/web/DATABASE_URL": "postgres://app:hunter22@db/app",
		"stack/app/web/API_KEY":      "key-1234567",
	}
	if len(writes) != len(want) {
		t.Fatalf("writes %+v", writes)
	}
	for _, w := range writes {
		if want[w.Secret] != w.Value {
			t.Errorf("write %s = %q, want %q", w.Secret, w.Value, want[w.Secret])
		}
	}
	svc := res.Stack.Services[0]
	if len(svc.Secrets) != 2 || svc.Secrets[0].Name != "DATABASE_URL" || svc.Secrets[1].Secret != "stack/app/web/API_KEY" {
		t.Errorf("secrets %+v", svc.Secrets)
	}
	// secret: true keeps the value in the vault like from/to vault.
	if res.Variables["api_key"] != nil || len(res.VaultWrites) != 1 || res.VaultWrites[0].Secret != "stack/app/api_key" {
		t.Errorf("stored %v, vault writes %+v", res.Variables, res.VaultWrites)
	}

	bad := strings.Replace(src, "    environment:", "    command: run --key ${api_key}\n    environment:", 1)
	res, err = LoadBytes(context.Background(), "kontena.yml", []byte(bad), Options{GridResolver: g})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := res.SealSpec(); err == nil || !strings.Contains(err.Error(), "api_key") || !strings.Contains(err.Error(), "outside environment") {
		t.Fatalf("a secret in the command: %v", err)
	}
}

// TestStripSensitive is the server's half: whatever a client sends, a
// sensitive variable's value is not kept.
func TestStripSensitive(t *testing.T) {
	st := &Stack{Variables: []*Variable{
		{Name: "a", Value: "keep"},
		{Name: "b", Value: "drop", Secret: true},
		{Name: "c", Value: "drop", From: []Resolver{{Name: "vault", Hint: "x"}}},
	}}
	orig := st.Variables[1]
	StripSensitive(st)
	if st.Variables[0].Value != "keep" || st.Variables[1].Value != nil || st.Variables[2].Value != nil {
		t.Fatalf("%+v %+v %+v", st.Variables[0], st.Variables[1], st.Variables[2])
	}
	if orig.Value != "drop" {
		t.Fatal("StripSensitive changed the caller's variable in place")
	}
}
