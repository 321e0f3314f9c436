package fsm

import (
	"errors"
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
