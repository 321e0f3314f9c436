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
