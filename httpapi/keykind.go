package httpapi

import (
	"encoding/base64"
	"errors"
	"strings"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/vault"
)

// keyKind is a key the API makes, hands out once and takes back later: an
// unlock key (`grid lock`), a backup key (`grid backup`). What it seals
// carries the kind's context as associated data, and its printed form a
// prefix, so a key pasted in the wrong place is recognised.
type keyKind struct {
	prefix    string // of the printed key
	name      string // "an unlock key", in errors
	printedBy string // the command that printed it, in errors
	context   string // associated data of what it seals
}

var (
	unlockKeys = keyKind{prefix: "KNTN-UNLOCK-", name: "an unlock key", printedBy: "kontena grid lock", context: "grid-lock:master-key"}
	backupKeys = keyKind{prefix: "KNTN-BACKUP-", name: "a backup key", printedBy: "kontena grid backup", context: "grid-backup:keys"}
)

// errWrongKey: the key is of the right kind but does not open what it was
// given (another grid's, another backup's, a rotated one).
var errWrongKey = errors.New("the key does not open it")

// seal seals plain under a new key of this kind, and returns the key as
// it is printed.
func (k keyKind) seal(plain []byte) (sealed []byte, printed string, err error) {
	key, err := vault.NewKey()
	if err != nil {
		return nil, "", err
	}
	s, err := vault.NewSealer(key)
	if err != nil {
		return nil, "", err
	}
	if sealed, err = s.Seal(plain, k.context); err != nil {
		return nil, "", err
	}
	return sealed, k.prefix + base64.RawURLEncoding.EncodeToString(key), nil
}

// open opens sealed with a printed key of this kind: anything else is an
// invalid-request error that says what was expected; a key that does not
// open sealed is errWrongKey.
func (k keyKind) open(printed string, sealed []byte) ([]byte, error) {
	printed = strings.TrimSpace(printed)
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(printed, k.prefix))
	if err != nil || !strings.HasPrefix(printed, k.prefix) {
		return nil, api.Errorf(api.CodeInvalid, "that is not %s (it starts with %s, as `%s` printed it)", k.name, k.prefix, k.printedBy)
	}
	s, err := vault.NewSealer(raw)
	if err != nil {
		return nil, api.Errorf(api.CodeInvalid, "that is not %s: %v", k.name, err)
	}
	plain, err := s.Open(sealed, k.context)
	if err != nil {
		return nil, errWrongKey
	}
	return plain, nil
}
