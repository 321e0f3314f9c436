package httpapi

import (
	"errors"
	"strings"
	"testing"

	"github.com/kontena-ng/kontena/api"
)

// A key opens what it sealed; a key of the other kind, garbage, or another
// key of the same kind does not, each with its own answer.
func TestKeyKindSealsAndOpens(t *testing.T) {
	sealed, printed, err := unlockKeys.seal([]byte("master key"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(printed, "KNTN-UNLOCK-") {
		t.Fatalf("printed key %q lacks its prefix", printed)
	}
	if plain, err := unlockKeys.open("  "+printed+"\n", sealed); err != nil || string(plain) != "master key" {
		t.Fatalf("open with its key: %q, %v", plain, err)
	}
	_, other, err := unlockKeys.seal([]byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unlockKeys.open(other, sealed); !errors.Is(err, errWrongKey) {
		t.Fatalf("open with another unlock key: %v, want errWrongKey", err)
	}
	_, backup, err := backupKeys.seal([]byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{backup, "KNTN-UNLOCK-!!!", ""} {
		_, err := unlockKeys.open(bad, sealed)
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Code != api.CodeInvalid || !strings.Contains(ae.Message, "that is not an unlock key") {
			t.Errorf("open with %q: %v, want an invalid-request error naming an unlock key", bad, err)
		}
	}
	// The same plaintext sealed as a backup does not open as an unlock key's.
	bsealed, bkey, err := backupKeys.seal([]byte("master key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backupKeys.open(bkey, sealed); !errors.Is(err, errWrongKey) {
		t.Fatalf("a backup key opened an unlock key's seal: %v", err)
	}
	if plain, err := backupKeys.open(bkey, bsealed); err != nil || string(plain) != "master key" {
		t.Fatalf("backup key: %q, %v", plain, err)
	}
}
