// Package fsm is the grid's replicated state: a go-memdb state store, the
// typed commands that change it (one message per change), and the raft.FSM
// that applies them in log order on every voter.
//
// One file per domain (grid.go, nodes.go, tokens.go, stacks.go,
// services.go, instances.go, overlay.go, events.go) holds the domain's
// types, its memdb tables, its commands with their apply methods, and its
// reads (on View, with Store wrappers).
package fsm

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// TableGrid holds the one row of grid settings.
const TableGrid = "grid"

func gridTables() []*memdb.TableSchema {
	return []*memdb.TableSchema{
		{Name: TableGrid, Indexes: map[string]*memdb.IndexSchema{"id": idIndex("Name")}},
	}
}

// Grid holds the grid-wide settings fixed at bootstrap plus the few that
// operators may change later.
type Grid struct {
	Name            string   `json:"name"`
	Subnet          string   `json:"subnet"`
	Supernet        string   `json:"supernet"`
	InitialSize     int      `json:"initial_size"`
	CACert          string   `json:"ca_cert"`
	CADigest        string   `json:"ca_digest"`
	JoinTokenSealed []byte   `json:"join_token_sealed"` // vault-sealed; never plaintext
	DefaultAffinity []string `json:"default_affinity,omitempty"`
	LastNodeNumber  int      `json:"last_node_number"`
	RemovedNodes    []string `json:"removed_nodes,omitempty"` // IDs, newest last, bounded
	// OfflineGrace, when set, replaces every strategy's grace before the
	// instances of an offline node move (tests, impatient grids).
	OfflineGrace time.Duration `json:"offline_grace,omitempty"`
	// VPNPeers are the admin machines `kontena vpn create` let into the
	// overlay, each through one node.
	VPNPeers []VPNPeer `json:"vpn_peers,omitempty"`
	// MasterKeyLocked is the grid master key sealed with the unlock key of
	// `kontena grid lock` (nil: not locked). Voters of a locked grid keep
	// the master key only in memory; one restarted opens this with the
	// key an operator gives `kontena grid unlock`.
	MasterKeyLocked []byte    `json:"master_key_locked,omitempty"`
	LockedAt        time.Time `json:"locked_at,omitzero"`
	// LockedGeneration is the generation of the key MasterKeyLocked holds.
	LockedGeneration uint64 `json:"locked_generation,omitempty"`
	// KeyGeneration counts master key rotations (`kontena vault
	// rotate-key`); MasterKeyChain[i] is generation i+1 sealed with
	// generation i, so a voter holding an older key derives the current one.
	KeyGeneration  uint64   `json:"key_generation,omitempty"`
	MasterKeyChain [][]byte `json:"master_key_chain,omitempty"`
	// AllowHostAccess lets developers install services that can take
	// over their host (privileged, host namespaces, host paths, devices).
	AllowHostAccess bool `json:"allow_host_access,omitempty"`
	// OIDC is the single sign-on provider users may log in with.
	OIDC *OIDCConfig `json:"oidc,omitempty"`
	// ACME is the grid's account at an ACME CA (certificate register).
	ACME        *ACMEAccount `json:"acme,omitempty"`
	CreatedAt   time.Time    `json:"created_at"`
	ModifyIndex uint64       `json:"modify_index"`
}

// Grid command numbers (persisted: never renumber).
const (
	MsgGridInit        MsgType = 1
	MsgJoinTokenSet    MsgType = 9
	MsgGridUpdate      MsgType = 27
	MsgGridLock        MsgType = 31
	MsgMasterKeyRotate MsgType = 32
)

var gridCommands = []Command{(*GridInit)(nil), (*JoinTokenSet)(nil), (*GridUpdate)(nil), (*GridLock)(nil), (*MasterKeyRotate)(nil)}

// MasterKeyRotate moves the grid to a new master key: the key itself,
// sealed with the current one, joins the chain, and everything sealed
// with the master key (every vault secret, the join token) is replaced by
// the leader's re-sealing under the new key, in this one entry.
type MasterKeyRotate struct {
	Generation      uint64              `json:"generation"` // the new one: current + 1
	Link            []byte              `json:"link"`
	Secrets         map[string]Resealed `json:"secrets"`
	JoinTokenSealed []byte              `json:"join_token_sealed"`
	// OIDCSecretSealed is the single sign-on client secret re-sealed.
	OIDCSecretSealed []byte `json:"oidc_secret_sealed,omitempty"`
	// Certificates are the certificates' private keys re-sealed.
	Certificates map[string]Resealed `json:"certificates,omitempty"`
	// ACMEKeySealed is the ACME account key re-sealed.
	ACMEKeySealed []byte `json:"acme_key_sealed,omitempty"`
	// IdPRefresh are single sign-on logins' provider refresh tokens
	// re-sealed, by token ID; Was is the SHA-256 of the sealed value the
	// leader re-sealed (one renewed meanwhile keeps its own).
	IdPRefresh map[string]ResealedToken `json:"idp_refresh,omitempty"`
}

// ResealedToken is a provider refresh token under the new key.
type ResealedToken struct {
	Sealed []byte `json:"sealed"`
	Was    string `json:"was"`
}

// SealedDigest names a sealed value (ResealedToken.Was).
func SealedDigest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Resealed is one secret under the new key, with the index of the version
// the leader re-sealed: a secret changed since is not overwritten.
type Resealed struct {
	Sealed []byte `json:"sealed"`
	Index  uint64 `json:"index"`
}

func (*MasterKeyRotate) MsgType() MsgType { return MsgMasterKeyRotate }
func (*MasterKeyRotate) name() string     { return "vault.rotate_key" }
func (*MasterKeyRotate) resource() string { return "grid/master-key" }

func (c *MasterKeyRotate) apply(a *applier) (any, error) {
	g, err := a.grid()
	if err != nil {
		return nil, err
	}
	if c.Generation != g.KeyGeneration+1 {
		return nil, fmt.Errorf("master key generation %d: the grid is at %d (rotated meanwhile): retry: %w", c.Generation, g.KeyGeneration, ErrConflict)
	}
	if len(c.Link) < 32 || len(c.Link) > 256 || len(c.JoinTokenSealed) == 0 {
		return nil, fmt.Errorf("master key rotation without its sealed key or join token: %w", ErrInvalid)
	}
	all, err := list[*Secret](a.txn, TableSecrets)
	if err != nil {
		return nil, err
	}
	// Every secret must be re-sealed, none invented: one written since the
	// leader read them would otherwise stay under the old key.
	if len(all) != len(c.Secrets) {
		return nil, fmt.Errorf("rotation re-sealed %d secrets, the vault holds %d (written meanwhile): retry: %w", len(c.Secrets), len(all), ErrConflict)
	}
	for _, s := range all {
		r, ok := c.Secrets[s.Name]
		if !ok || r.Index != s.ModifyIndex {
			return nil, fmt.Errorf("rotation did not re-seal secret %s as it is now (written meanwhile): retry: %w", s.Name, ErrConflict)
		}
		if len(r.Sealed) == 0 || len(r.Sealed) > MaxSecretSealed {
			return nil, fmt.Errorf("secret %s: re-sealed value of %d bytes: %w", s.Name, len(r.Sealed), ErrInvalid)
		}
		cp := *s
		cp.Sealed = r.Sealed // ModifyIndex stays: the value did not change
		if err := a.txn.Insert(TableSecrets, &cp); err != nil {
			return nil, err
		}
	}
	certs, err := list[*Certificate](a.txn, TableCertificates)
	if err != nil {
		return nil, err
	}
	if len(certs) != len(c.Certificates) {
		return nil, fmt.Errorf("rotation re-sealed %d certificate keys, the grid holds %d (stored meanwhile): retry: %w", len(c.Certificates), len(certs), ErrConflict)
	}
	for _, cert := range certs {
		r, ok := c.Certificates[cert.Subject]
		if !ok || r.Index != cert.ModifyIndex || len(r.Sealed) == 0 || len(r.Sealed) > MaxCertificatePEM {
			return nil, fmt.Errorf("rotation did not re-seal the key of certificate %s as it is now: retry: %w", cert.Subject, ErrConflict)
		}
		cp := *cert
		cp.KeySealed = r.Sealed
		if err := a.txn.Insert(TableCertificates, &cp); err != nil {
			return nil, err
		}
	}
	for _, id := range slices.Sorted(maps.Keys(c.IdPRefresh)) {
		raw, _ := a.txn.First(TableTokens, "id", id)
		r := c.IdPRefresh[id]
		if raw == nil || SealedDigest(raw.(*Token).IdPRefresh) != r.Was || len(r.Sealed) == 0 {
			continue // revoked, expired or renewed meanwhile
		}
		t := *raw.(*Token)
		t.IdPRefresh = r.Sealed
		if err := a.txn.Insert(TableTokens, &t); err != nil {
			return nil, err
		}
	}
	g.KeyGeneration = c.Generation
	g.MasterKeyChain = append(slices.Clone(g.MasterKeyChain), c.Link)
	g.JoinTokenSealed, g.ModifyIndex = c.JoinTokenSealed, a.index
	if g.ACME != nil {
		if len(c.ACMEKeySealed) == 0 {
			return nil, fmt.Errorf("rotation did not re-seal the ACME account key (registered meanwhile): retry: %w", ErrConflict)
		}
		acct := *g.ACME
		acct.KeySealed = c.ACMEKeySealed
		g.ACME = &acct
	}
	if g.OIDC != nil && len(g.OIDC.ClientSecretSealed) > 0 {
		if len(c.OIDCSecretSealed) == 0 {
			return nil, fmt.Errorf("rotation did not re-seal the single sign-on client secret (set meanwhile): retry: %w", ErrConflict)
		}
		oc := *g.OIDC
		oc.ClientSecretSealed = c.OIDCSecretSealed
		g.OIDC = &oc
	}
	if err := a.txn.Insert(TableGrid, g); err != nil {
		return nil, err
	}
	return g, a.event("vault.rotate_key", "grid/"+g.Name, fmt.Sprintf("master key rotated to generation %d: %d secrets and the join token re-sealed", g.KeyGeneration, len(all)))
}

// GridLock locks the grid (its master key sealed with an unlock key), or
// with Rotate replaces the unlock key of a locked grid.
type GridLock struct {
	MasterKeyLocked []byte `json:"master_key_locked"`
	Rotate          bool   `json:"rotate,omitempty"`
	// Generation of the master key sealed: the current one.
	Generation uint64 `json:"generation"`
}

func (*GridLock) MsgType() MsgType { return MsgGridLock }
func (*GridLock) name() string     { return "grid.lock" }
func (*GridLock) resource() string { return "grid/lock" }

func (c *GridLock) apply(a *applier) (any, error) {
	g, err := a.grid()
	if err != nil {
		return nil, err
	}
	if n := len(c.MasterKeyLocked); n < 32 || n > 256 {
		return nil, fmt.Errorf("locked master key of %d bytes: expected 32 to 256: %w", n, ErrInvalid)
	}
	switch locked := g.MasterKeyLocked != nil; {
	case locked && !c.Rotate:
		return nil, fmt.Errorf("the grid is locked already: `kontena grid unlock-key --rotate` makes a new unlock key: %w", ErrConflict)
	case !locked && c.Rotate:
		return nil, fmt.Errorf("the grid is not locked, so it has no unlock key to rotate: `kontena grid lock` locks it: %w", ErrConflict)
	case c.Generation != g.KeyGeneration:
		return nil, fmt.Errorf("master key generation %d sealed, but the grid is at %d (rotated meanwhile): retry: %w", c.Generation, g.KeyGeneration, ErrConflict)
	}
	g.MasterKeyLocked, g.LockedGeneration, g.LockedAt, g.ModifyIndex = c.MasterKeyLocked, c.Generation, a.now, a.index
	if err := a.txn.Insert(TableGrid, g); err != nil {
		return nil, err
	}
	msg := "grid locked: a voter that restarts serves no secrets until `kontena grid unlock`"
	if c.Rotate {
		msg = "unlock key rotated: the old one no longer unlocks the grid"
	}
	return g, a.event("grid.lock", "grid/"+g.Name, msg)
}

// GridInit is the first entry of every grid: settings, the bootstrap node
// and the bootstrap admin with its token.
type GridInit struct {
	Grid       Grid  `json:"grid"`
	Node       Node  `json:"node"`
	Admin      User  `json:"admin"`
	AdminToken Token `json:"admin_token"`
	// AdminRefresh, when set, is the refresh token of the admin's first
	// login, which AdminToken (an access token) was made from.
	AdminRefresh *Token `json:"admin_refresh,omitempty"`
}

func (*GridInit) MsgType() MsgType   { return MsgGridInit }
func (*GridInit) name() string       { return "grid.init" }
func (c *GridInit) resource() string { return "grid/" + c.Grid.Name }

func (c *GridInit) apply(a *applier) (any, error) {
	if raw, _ := a.txn.First(TableGrid, "id"); raw != nil {
		return nil, fmt.Errorf("grid already initialised: %w", ErrConflict)
	}
	g := c.Grid
	g.ModifyIndex = a.index
	if err := a.txn.Insert(TableGrid, &g); err != nil {
		return nil, err
	}
	if err := a.txn.Insert(TableUsers, &c.Admin); err != nil {
		return nil, err
	}
	if c.AdminRefresh != nil {
		if _, err := a.insertToken(*c.AdminRefresh); err != nil {
			return nil, err
		}
	}
	if _, err := a.insertToken(c.AdminToken); err != nil {
		return nil, err
	}
	if _, err := (&NodeRegister{Node: c.Node}).apply(a); err != nil {
		return nil, err
	}
	return &g, a.event("grid.created", "grid/"+g.Name, fmt.Sprintf("grid %s created with initial size %d", g.Name, g.InitialSize))
}

// JoinTokenSet replaces the grid join token (rotation).
type JoinTokenSet struct {
	Sealed []byte `json:"sealed"`
}

func (*JoinTokenSet) MsgType() MsgType { return MsgJoinTokenSet }
func (*JoinTokenSet) name() string     { return "grid.join_token" }
func (*JoinTokenSet) resource() string { return "grid/join-token" }

func (c *JoinTokenSet) apply(a *applier) (any, error) {
	g, err := a.grid()
	if err != nil {
		return nil, err
	}
	g.JoinTokenSealed = c.Sealed
	g.ModifyIndex = a.index
	if err := a.txn.Insert(TableGrid, g); err != nil {
		return nil, err
	}
	return g, a.event("grid.join_token", "grid/"+g.Name, "join token rotated")
}

// GridUpdate changes the grid settings operators may change after
// bootstrap; nil fields are left as they are.
type GridUpdate struct {
	DefaultAffinity *[]string      `json:"default_affinity,omitempty"`
	OfflineGrace    *time.Duration `json:"offline_grace,omitempty"`
	AllowHostAccess *bool          `json:"allow_host_access,omitempty"`
	// OIDC replaces the single sign-on settings; one with no issuer turns
	// single sign-on off.
	OIDC *OIDCConfig `json:"oidc,omitempty"`
}

// OIDCConfig is an OpenID Connect provider users log in with.
type OIDCConfig struct {
	Issuer   string `json:"issuer"`
	ClientID string `json:"client_id"`
	// ClientSecretSealed is sealed with the grid master key.
	ClientSecretSealed []byte `json:"client_secret_sealed,omitempty"`
	// RoleClaim names the ID token claim (a string or a list of them)
	// that RoleMap turns into roles: {"ops": "grid_admin"}.
	RoleClaim string            `json:"role_claim"`
	RoleMap   map[string]string `json:"role_map"`
	// Scopes are asked for besides openid, email and profile (groups,
	// offline_access: what the provider needs to give the role claim and
	// a refresh token).
	Scopes []string `json:"scopes,omitempty"`
}

// Validate checks the settings before they are stored.
func (o *OIDCConfig) Validate() error {
	if o.Issuer == "" {
		return nil
	}
	if !strings.HasPrefix(o.Issuer, "https://") && !strings.HasPrefix(o.Issuer, "http://127.0.0.1") && !strings.HasPrefix(o.Issuer, "http://localhost") {
		return fmt.Errorf("OIDC issuer %q: expected an https:// URL (plain http only on loopback): %w", o.Issuer, ErrInvalid)
	}
	if o.ClientID == "" || o.RoleClaim == "" || len(o.RoleMap) == 0 {
		return fmt.Errorf("OIDC needs a client ID, a role claim and a role map (group=role,...): %w", ErrInvalid)
	}
	for group, role := range o.RoleMap {
		if !ValidRole(role) {
			return fmt.Errorf("OIDC role map %s=%s: expected one of %s: %w", group, role, strings.Join(Roles, ", "), ErrInvalid)
		}
	}
	return nil
}

func (*GridUpdate) MsgType() MsgType { return MsgGridUpdate }
func (*GridUpdate) name() string     { return "grid.update" }
func (*GridUpdate) resource() string { return "grid/settings" }

func (c *GridUpdate) apply(a *applier) (any, error) {
	g, err := a.grid()
	if err != nil {
		return nil, err
	}
	var changes []string
	if c.DefaultAffinity != nil {
		g.DefaultAffinity = append([]string(nil), (*c.DefaultAffinity)...)
		changes = append(changes, fmt.Sprintf("default affinity %v", g.DefaultAffinity))
	}
	if c.OfflineGrace != nil {
		if *c.OfflineGrace < 0 {
			return nil, fmt.Errorf("offline grace %s is negative: %w", *c.OfflineGrace, ErrInvalid)
		}
		g.OfflineGrace = *c.OfflineGrace
		changes = append(changes, fmt.Sprintf("offline grace %s", g.OfflineGrace))
	}
	if c.AllowHostAccess != nil {
		g.AllowHostAccess = *c.AllowHostAccess
		changes = append(changes, fmt.Sprintf("host access for developers %t", g.AllowHostAccess))
	}
	if c.OIDC != nil {
		if err := c.OIDC.Validate(); err != nil {
			return nil, err
		}
		g.OIDC = c.OIDC
		if c.OIDC.Issuer == "" {
			g.OIDC = nil
		}
		changes = append(changes, fmt.Sprintf("single sign-on %q", c.OIDC.Issuer))
	}
	g.ModifyIndex = a.index
	if err := a.txn.Insert(TableGrid, g); err != nil {
		return nil, err
	}
	return g, a.event("grid.update", "grid/"+g.Name, "grid settings changed: "+strings.Join(changes, ", "))
}

// grid returns a copy of the grid settings, to change.
func (a *applier) grid() (*Grid, error) {
	raw, err := a.txn.First(TableGrid, "id")
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("no grid yet: %w", ErrInvalid)
	}
	g := *raw.(*Grid)
	g.VPNPeers = slices.Clone(g.VPNPeers)
	return &g, nil
}

// Grid returns the grid settings, or ErrNotFound before bootstrap.
func (v *View) Grid() (*Grid, error) {
	it, err := v.txn.Get(TableGrid, "id")
	if err != nil {
		return nil, err
	}
	if raw := it.Next(); raw != nil {
		return raw.(*Grid), nil
	}
	return nil, fmt.Errorf("grid settings: %w (grid not bootstrapped yet)", ErrNotFound)
}

// Grid returns the grid settings, or ErrNotFound before bootstrap.
func (s *Store) Grid() (*Grid, error) { return s.Snapshot().Grid() }

// WasRemoved tells whether node id was removed from the grid (`node rm`):
// its certificate is refused everywhere and its ID is never reused.
func (g *Grid) WasRemoved(id string) bool { return slices.Contains(g.RemovedNodes, id) }
