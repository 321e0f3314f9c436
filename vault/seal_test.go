package vault

import (
	"bytes"
	"errors"
	"testing"
)

func TestSealRoundTrip(t *testing.T) {
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := s.Seal([]byte("hunter2"), "secret/db")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("hunter2")) {
		t.Fatal("sealed value contains the plaintext")
	}
	got, err := s.Open(sealed, "secret/db")
	if err != nil || string(got) != "hunter2" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := s.Open(sealed, "secret/other"); !errors.Is(err, ErrUnseal) {
		t.Fatalf("open with another context: err = %v, want ErrUnseal", err)
	}
	other, _ := NewKey()
	s2, _ := NewSealer(other)
	if _, err := s2.Open(sealed, "secret/db"); !errors.Is(err, ErrUnseal) {
		t.Fatalf("open with another key: err = %v, want ErrUnseal", err)
	}
	if _, err := NewSealer([]byte("short")); err == nil {
		t.Fatal("NewSealer accepted a short key")
	}
}

// TestKeyChain: each generation opens only from the one before; any
// generation derives the last; a wrong key or a tampered link fails.
func TestKeyChain(t *testing.T) {
	k0, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	keys, chain := [][]byte{k0}, [][]byte{}
	for gen := uint64(0); gen < 3; gen++ {
		next, link, err := NextKey(keys[gen], gen)
		if err != nil {
			t.Fatal(err)
		}
		keys, chain = append(keys, next), append(chain, link)
	}
	for gen := range keys {
		got, err := Derive(keys[gen], uint64(gen), chain)
		if err != nil || string(got) != string(keys[3]) {
			t.Fatalf("derive from generation %d: %v", gen, err)
		}
	}
	// A value sealed under generation 0 does not open under 3.
	s0, _ := NewSealer(keys[0])
	s3, _ := NewSealer(keys[3])
	sealed, _ := s0.Seal([]byte("v"), "secret:x")
	if _, err := s3.Open(sealed, "secret:x"); err == nil {
		t.Fatal("generation 3 opened a value of generation 0")
	}
	if _, err := Derive(keys[1], 0, chain); err == nil {
		t.Fatal("generation 1 posing as 0 derived a key")
	}
	bad := append([][]byte(nil), chain...)
	bad[1] = append([]byte(nil), chain[1]...)
	bad[1][len(bad[1])-1] ^= 1
	if _, err := Derive(keys[0], 0, bad); err == nil {
		t.Fatal("a tampered link derived a key")
	}
	if _, err := Derive(keys[3], 4, chain); err == nil {
		t.Fatal("a generation past the chain derived a key")
	}
}
