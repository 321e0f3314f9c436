package overlay

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// LoadOrCreateKey returns the node's WireGuard private key, generating it
// (file mode 0600) on first start. The key is the node's identity on the
// overlay: peers know the node by its public key, so it must survive
// restarts, and it must never be logged or shown.
func LoadOrCreateKey(path string) (wgtypes.Key, error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		key, err := wgtypes.ParseKey(strings.TrimSpace(string(data)))
		if err != nil {
			// The parse error would echo nothing secret, but say only what
			// to do: a new key changes the node's overlay identity.
			return wgtypes.Key{}, fmt.Errorf("overlay: %s does not hold a WireGuard private key; remove it to generate a new one (peers learn the new public key when the node re-registers)", path)
		}
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(path, 0o600); err != nil {
				return wgtypes.Key{}, fmt.Errorf("overlay: restrict permissions of %s to 0600: %w", path, err)
			}
		}
		return key, nil
	case errors.Is(err, fs.ErrNotExist):
		key, err := wgtypes.GeneratePrivateKey()
		if err != nil {
			return wgtypes.Key{}, fmt.Errorf("overlay: generate WireGuard key: %w", err)
		}
		if err := writeFileAtomic(path, []byte(key.String()+"\n"), 0o600); err != nil {
			return wgtypes.Key{}, fmt.Errorf("overlay: save WireGuard key: %w", err)
		}
		return key, nil
	default:
		return wgtypes.Key{}, fmt.Errorf("overlay: read WireGuard key: %w", err)
	}
}
