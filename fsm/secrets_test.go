package fsm

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestSecrets(t *testing.T) {
	s := newStore(t)
	steps := []struct {
		cmd  Command
		want error
	}{
		{&SecretWrite{Name: "db/password", Sealed: []byte("c1"), Mode: SecretUpdate}, ErrNotFound},
		{&SecretWrite{Name: "db/password", Sealed: []byte("c1"), Mode: SecretCreate}, nil},
		{&SecretWrite{Name: "db/password", Sealed: []byte("c2"), Mode: SecretCreate}, ErrConflict},
		{&SecretWrite{Name: "db/password", Sealed: []byte("c2"), Mode: SecretUpdate}, nil},
		{&SecretWrite{Name: "api", Sealed: []byte("c3"), Mode: SecretUpsert}, nil},
		{&SecretWrite{Name: "-bad", Sealed: []byte("c"), Mode: SecretUpsert}, ErrInvalid},
		{&SecretWrite{Name: "empty", Mode: SecretUpsert}, ErrInvalid},
		{&SecretWrite{Name: "huge", Sealed: make([]byte, MaxSecretSealed+1), Mode: SecretUpsert}, ErrInvalid},
		{&SecretWrite{Name: "mode", Sealed: []byte("c"), Mode: "overwrite"}, ErrInvalid},
		{&SecretRead{Name: "nope"}, ErrNotFound},
		{&SecretRemove{Name: "api"}, nil},
		{&SecretRemove{Name: "api"}, ErrNotFound},
	}
	for i, st := range steps {
		_, err := s.Apply(uint64(10+i), st.cmd, audit("admin"))
		if (st.want == nil) != (err == nil) || (st.want != nil && !errors.Is(err, st.want)) {
			t.Fatalf("step %d %T: %v, want %v", i, st.cmd, err, st.want)
		}
	}
	v := s.Snapshot()
	sec, err := v.Secret("db/password")
	if err != nil || string(sec.Sealed) != "c2" || sec.CreatedAt.IsZero() || sec.UpdatedAt.Before(sec.CreatedAt) {
		t.Fatalf("db/password: %+v %v", sec, err)
	}
	all, _ := v.Secrets()
	if len(all) != 1 || all[0].Public().Sealed != nil {
		t.Fatalf("secrets %+v", all)
	}
	res, err := s.Apply(30, &SecretRead{Name: "db/password"}, audit("admin"))
	if err != nil || string(res.(*Secret).Sealed) != "c2" {
		t.Fatalf("read: %+v %v", res, err)
	}
	recs, _ := s.Audit(0)
	last := recs[len(recs)-1]
	if last.Resource != "secret/db/password" || last.User != "admin" {
		t.Fatalf("the read is not audited: %+v", last)
	}
}

// TestMasterKeyRotate: one entry replaces every secret's sealed value and
// the join token and extends the chain; a rotation built from a state that
// changed since (a secret written, another rotation) is refused whole.
func TestMasterKeyRotate(t *testing.T) {
	s := newStore(t)
	mustApply(t, s, 10, &SecretWrite{Name: "a", Sealed: []byte("a0"), Mode: SecretCreate})
	mustApply(t, s, 11, &SecretWrite{Name: "b", Sealed: []byte("b0"), Mode: SecretCreate})
	link := make([]byte, 60)
	refused := []struct {
		what string
		cmd  *MasterKeyRotate
		want error
	}{
		{"a secret missing", &MasterKeyRotate{Generation: 1, Link: link, JoinTokenSealed: []byte("j"),
			Secrets: map[string]Resealed{"a": {Sealed: []byte("a1"), Index: 10}}}, ErrConflict},
		{"a secret changed since", &MasterKeyRotate{Generation: 1, Link: link, JoinTokenSealed: []byte("j"),
			Secrets: map[string]Resealed{"a": {Sealed: []byte("a1"), Index: 10}, "b": {Sealed: []byte("b1"), Index: 9}}}, ErrConflict},
		{"a generation skipped", &MasterKeyRotate{Generation: 2, Link: link, JoinTokenSealed: []byte("j"),
			Secrets: map[string]Resealed{"a": {Sealed: []byte("a1"), Index: 10}, "b": {Sealed: []byte("b1"), Index: 11}}}, ErrConflict},
		{"no link", &MasterKeyRotate{Generation: 1, JoinTokenSealed: []byte("j"),
			Secrets: map[string]Resealed{"a": {Sealed: []byte("a1"), Index: 10}, "b": {Sealed: []byte("b1"), Index: 11}}}, ErrInvalid},
	}
	for i, c := range refused {
		if _, err := s.Apply(uint64(20+i), c.cmd, audit("admin")); !errors.Is(err, c.want) {
			t.Fatalf("%s: %v, want %v", c.what, err, c.want)
		}
	}
	if sec, _ := s.Snapshot().Secret("a"); string(sec.Sealed) != "a0" {
		t.Fatalf("a refused rotation changed secret a: %q", sec.Sealed)
	}
	ok := &MasterKeyRotate{Generation: 1, Link: link, JoinTokenSealed: []byte("j1"),
		Secrets: map[string]Resealed{"a": {Sealed: []byte("a1"), Index: 10}, "b": {Sealed: []byte("b1"), Index: 11}}}
	mustApply(t, s, 30, ok)
	v := s.Snapshot()
	g, _ := v.Grid()
	a, _ := v.Secret("a")
	b, _ := v.Secret("b")
	if g.KeyGeneration != 1 || len(g.MasterKeyChain) != 1 || string(g.JoinTokenSealed) != "j1" || string(a.Sealed) != "a1" || string(b.Sealed) != "b1" {
		t.Fatalf("after rotation: grid %d %d %q, a %q, b %q", g.KeyGeneration, len(g.MasterKeyChain), g.JoinTokenSealed, a.Sealed, b.Sealed)
	}
	// Locking seals the current generation only.
	if _, err := s.Apply(31, &GridLock{MasterKeyLocked: link, Generation: 0}, audit("admin")); !errors.Is(err, ErrConflict) {
		t.Fatalf("lock with an old generation: %v", err)
	}
	mustApply(t, s, 32, &GridLock{MasterKeyLocked: link, Generation: 1})
	if g, _ := s.Snapshot().Grid(); g.LockedGeneration != 1 {
		t.Fatalf("locked generation %d", g.LockedGeneration)
	}
}

// TestPrepareRestore: the named node (or the first voter) becomes the only
// voter with its new addresses; every other node an offline worker; an
// unknown name is refused with the backup's nodes.
func TestPrepareRestore(t *testing.T) {
	s := newStore(t)
	mustApply(t, s, 10, &NodeRegister{Node: Node{ID: "v2", Name: "v2", Role: RoleVoter, Status: StatusOnline}})
	mustApply(t, s, 11, &NodeRegister{Node: Node{ID: "w1", Name: "w1", Role: RoleWorker, Status: StatusOnline}})
	state, err := ExportState(s.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	res, err := PrepareRestore(state, "v2", func(n *Node) { n.Addr = "10.0.0.9" })
	if err != nil {
		t.Fatal(err)
	}
	if res.Self.ID != "v2" || res.Index != 11 || res.Grid == nil {
		t.Fatalf("restored %+v", res)
	}
	restored, err := NewStore()
	if err != nil {
		t.Fatal(err)
	}
	if err := New(restored, nil).Restore(io.NopCloser(bytes.NewReader(res.State))); err != nil {
		t.Fatal(err)
	}
	nodes, _ := restored.Nodes()
	for _, n := range nodes {
		switch {
		case n.ID == "v2" && (n.Role != RoleVoter || n.Status != StatusOnline || n.Addr != "10.0.0.9"):
			t.Errorf("the restored node: %+v", n)
		case n.ID != "v2" && (n.Role != RoleWorker || n.Status != StatusOffline):
			t.Errorf("another node: %+v", n)
		}
	}
	if restored.Index() != 11 {
		t.Errorf("restored index %d", restored.Index())
	}
	if _, err := PrepareRestore(state, "nope", func(*Node) {}); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "w1") {
		t.Errorf("unknown node: %v", err)
	}
	if _, err := PrepareRestore([]byte(`{"grid":[]}`), "", func(*Node) {}); !errors.Is(err, ErrInvalid) {
		t.Errorf("no grid: %v", err)
	}
}
