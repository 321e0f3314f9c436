package fsm

import (
	"fmt"
	"regexp"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// The vault tables.
const (
	TableSecrets      = "secrets"
	TableCertificates = "certificates"
)

func secretTables() []*memdb.TableSchema {
	return []*memdb.TableSchema{
		{Name: TableSecrets, Indexes: map[string]*memdb.IndexSchema{"id": idIndex("Name")}},
		{Name: TableCertificates, Indexes: map[string]*memdb.IndexSchema{"id": idIndex("Subject")}},
	}
}

// Secret is a vault entry, sealed with the grid master key.
type Secret struct {
	Name        string    `json:"name"`
	Sealed      []byte    `json:"sealed,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	ModifyIndex uint64    `json:"modify_index"`
}

// Certificate is a TLS certificate for services; its key is sealed.
type Certificate struct {
	Subject   string    `json:"subject"`
	AltNames  []string  `json:"alt_names,omitempty"`
	CertPEM   string    `json:"cert_pem"`
	KeySealed []byte    `json:"key_sealed"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Vault command numbers (persisted: never renumber).
const (
	MsgSecretWrite  MsgType = 28
	MsgSecretRemove MsgType = 29
	MsgSecretRead   MsgType = 30
)

var secretCommands = []Command{(*SecretWrite)(nil), (*SecretRemove)(nil), (*SecretRead)(nil)}

// Ways a secret is written.
const (
	SecretCreate = "create" // only a new name
	SecretUpdate = "update" // only an existing one
	SecretUpsert = "upsert" // either
)

// MaxSecretSealed bounds a sealed value (a secret of at most 64 KiB).
const MaxSecretSealed = 64<<10 + 64

// secretNameRE is a vault name: letters, digits, and . _ - /.
var secretNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$`)

// CheckSecretName says why name is not a vault name, or nil.
func CheckSecretName(name string) error {
	if !secretNameRE.MatchString(name) {
		return fmt.Errorf("secret name %q: use letters, digits and . _ - / (at most 128, starting with a letter or digit): %w", name, ErrInvalid)
	}
	return nil
}

// SecretWrite stores a secret's value, sealed by the leader before the
// command enters the Raft log: the log, snapshots and backups hold only
// ciphertext.
type SecretWrite struct {
	Name   string `json:"name"`
	Sealed []byte `json:"sealed,omitempty"`
	Mode   string `json:"mode"`
}

func (*SecretWrite) MsgType() MsgType   { return MsgSecretWrite }
func (*SecretWrite) name() string       { return "secret.write" }
func (c *SecretWrite) resource() string { return "secret/" + c.Name }

func (c *SecretWrite) apply(a *applier) (any, error) {
	if err := CheckSecretName(c.Name); err != nil {
		return nil, err
	}
	if len(c.Sealed) == 0 || len(c.Sealed) > MaxSecretSealed {
		return nil, fmt.Errorf("secret %s: sealed value of %d bytes: expected 1 to %d: %w", c.Name, len(c.Sealed), MaxSecretSealed, ErrInvalid)
	}
	raw, err := a.txn.First(TableSecrets, "id", c.Name)
	if err != nil {
		return nil, err
	}
	s := &Secret{Name: c.Name, Sealed: c.Sealed, CreatedAt: a.now, UpdatedAt: a.now, ModifyIndex: a.index}
	switch {
	case raw != nil && c.Mode == SecretCreate:
		return nil, fmt.Errorf("secret %s exists: use `kontena vault update` to change it: %w", c.Name, ErrConflict)
	case raw == nil && c.Mode == SecretUpdate:
		return nil, fmt.Errorf("secret %s: %w (use --upsert to create it)", c.Name, ErrNotFound)
	case c.Mode != SecretCreate && c.Mode != SecretUpdate && c.Mode != SecretUpsert:
		return nil, fmt.Errorf("secret write mode %q: expected create, update or upsert: %w", c.Mode, ErrInvalid)
	case raw != nil:
		s.CreatedAt = raw.(*Secret).CreatedAt
	}
	if err := a.txn.Insert(TableSecrets, s); err != nil {
		return nil, err
	}
	return s.Public(), a.event("secret.written", "secret/"+c.Name, "secret "+c.Name+" written")
}

// SecretRemove deletes a secret.
type SecretRemove struct {
	Name string `json:"name"`
}

func (*SecretRemove) MsgType() MsgType   { return MsgSecretRemove }
func (*SecretRemove) name() string       { return "secret.remove" }
func (c *SecretRemove) resource() string { return "secret/" + c.Name }

func (c *SecretRemove) apply(a *applier) (any, error) {
	raw, err := a.txn.First(TableSecrets, "id", c.Name)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("secret %s: %w", c.Name, ErrNotFound)
	}
	if err := a.txn.Delete(TableSecrets, raw); err != nil {
		return nil, err
	}
	return nil, a.event("secret.removed", "secret/"+c.Name, "secret "+c.Name+" removed")
}

// SecretRead changes nothing: it is committed so that every read of a
// secret's value has its audit record (who, from where, when).
type SecretRead struct {
	Name string `json:"name"`
}

func (*SecretRead) MsgType() MsgType   { return MsgSecretRead }
func (*SecretRead) name() string       { return "secret.read" }
func (c *SecretRead) resource() string { return "secret/" + c.Name }

func (c *SecretRead) apply(a *applier) (any, error) {
	raw, err := a.txn.First(TableSecrets, "id", c.Name)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("secret %s: %w", c.Name, ErrNotFound)
	}
	return raw.(*Secret), nil
}

// Public is the secret without its value: what listings show.
func (s *Secret) Public() *Secret {
	p := *s
	p.Sealed = nil
	return &p
}

// Secret is the vault entry name.
func (v *View) Secret(name string) (*Secret, error) {
	raw, err := v.txn.First(TableSecrets, "id", name)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("secret %q: %w", name, ErrNotFound)
	}
	return raw.(*Secret), nil
}

// Secrets are every vault entry, by name.
func (v *View) Secrets() ([]*Secret, error) { return list[*Secret](v.txn, TableSecrets) }
