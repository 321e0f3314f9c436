package fsm

import (
	"fmt"
	"regexp"
	"strings"
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
		{Name: TableACMEChallenges, Indexes: map[string]*memdb.IndexSchema{"id": idIndex("Token")}},
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
	CertPEM   string    `json:"cert_pem"` // the certificate and its chain
	KeySealed []byte    `json:"key_sealed"`
	ExpiresAt time.Time `json:"expires_at"`
	// Source is how it came: import, or acme.
	Source string `json:"source,omitempty"`
	// IssuedAt and, for ACME certificates, the challenge type they were
	// validated with: http-01 ones renew by themselves.
	IssuedAt      time.Time `json:"issued_at,omitzero"`
	ChallengeType string    `json:"challenge_type,omitempty"`
	UpdatedAt     time.Time `json:"updated_at,omitzero"`
	ModifyIndex   uint64    `json:"modify_index,omitempty"`
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
	// Unchanged: the leader found the value equal to the stored one, so
	// nothing that uses it is redeployed (values are sealed with a fresh
	// nonce each time: the state machine cannot compare them).
	Unchanged bool `json:"unchanged,omitempty"`
}

// SecretChange is what a write or removal did: the secret (never its
// value) and the services it redeploys, rolling within their min_health.
type SecretChange struct {
	Secret  *Secret  `json:"secret"`
	Rolling []string `json:"rolling,omitempty"`
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
	ch := &SecretChange{Secret: s.Public()}
	if raw != nil && !c.Unchanged {
		if ch.Rolling, err = a.rollSecretUsers(c.Name, "its value changed"); err != nil {
			return nil, err
		}
	}
	return ch, a.event("secret.written", "secret/"+c.Name, "secret "+c.Name+" written"+rollingNote(ch.Rolling))
}

// ReasonSecret is why a deploy started when a secret it uses changed.
const ReasonSecret = "secret"

// secretUsers are the services whose spec injects secret name.
func secretUsers(txn *memdb.Txn, name string) ([]*Service, error) {
	all, err := list[*Service](txn, TableServices)
	if err != nil {
		return nil, err
	}
	var out []*Service
	for _, svc := range all {
		for _, ref := range svc.Spec.Secrets {
			if ref.Secret == name {
				out = append(out, svc)
				break
			}
		}
	}
	return out, nil
}

// rollSecretUsers gives every service that uses secret name a new
// revision: its containers are replaced, rolling as in an upgrade, and the
// new ones get the secret as it is now. It returns their IDs.
func (a *applier) rollSecretUsers(name, why string) ([]string, error) {
	users, err := secretUsers(a.txn, name)
	if err != nil {
		return nil, err
	}
	return a.rollServices(users, "service.secret", "secret "+name+" "+why)
}

// rollServices gives each deployed service of users a new revision with a
// deploy of reason secret (a rolling replacement) and an event of type typ
// saying why; it returns their IDs.
func (a *applier) rollServices(users []*Service, typ, why string) ([]string, error) {
	var ids []string
	for _, u := range users {
		svc := *u
		if svc.Undeployed {
			continue // nothing of it runs; its first deploy reads the vault
		}
		svc.Revision++
		svc.ModifyIndex = a.index
		if err := a.startDeploy(&svc, ReasonSecret); err != nil {
			return nil, err
		}
		if err := a.txn.Insert(TableServices, &svc); err != nil {
			return nil, err
		}
		if err := a.event(typ, serviceResource(svc.ID), fmt.Sprintf("%s redeploys, rolling: %s", svc.ID, why)); err != nil {
			return nil, err
		}
		ids = append(ids, svc.ID)
	}
	return ids, nil
}

func rollingNote(ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	return "; rolling " + strings.Join(ids, ", ")
}

// SecretRemove deletes a secret.
type SecretRemove struct {
	Name string `json:"name"`
	// Force removes a secret that services use; they redeploy without it.
	Force bool `json:"force,omitempty"`
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
	// Removing a secret a service injects would leave the service's next
	// container without it (a database with no password, an app with no
	// key): refused unless forced, and then every user rolls without it.
	users, err := secretUsers(a.txn, c.Name)
	if err != nil {
		return nil, err
	}
	if len(users) > 0 && !c.Force {
		ids := make([]string, len(users))
		for i, u := range users {
			ids[i] = u.ID
		}
		return nil, fmt.Errorf("secret %s is in use by %s: their containers would lose it; upgrade those stacks without it first, or remove it with --force to redeploy them without it: %w",
			c.Name, strings.Join(ids, ", "), ErrConflict)
	}
	if err := a.txn.Delete(TableSecrets, raw); err != nil {
		return nil, err
	}
	ch := &SecretChange{Secret: raw.(*Secret).Public()}
	if ch.Rolling, err = a.rollSecretUsers(c.Name, "was removed"); err != nil {
		return nil, err
	}
	return ch, a.event("secret.removed", "secret/"+c.Name, "secret "+c.Name+" removed"+rollingNote(ch.Rolling))
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
