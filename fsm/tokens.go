package fsm

import (
	"fmt"
	"slices"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// The API token table (users and invites are in users.go).
const TableTokens = "tokens"

func tokenTables() []*memdb.TableSchema {
	return []*memdb.TableSchema{
		usersTable(), invitesTable(),
		{Name: TableTokens, Indexes: map[string]*memdb.IndexSchema{
			"id":   idIndex("ID"),
			"hash": {Name: "hash", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Hash"}},
			"user": {Name: "user", Indexer: &memdb.StringFieldIndex{Field: "User"}},
			// Every token made from a token names it: revoking one revokes
			// all that descend from it, however far down.
			"ancestor": {Name: "ancestor", AllowMissing: true, Indexer: &memdb.StringSliceFieldIndex{Field: "Ancestors"}},
		}},
	}
}

// Token kinds.
const (
	// TokenKindAPI: a token for automation, made with `kontena token create`
	// (or the bootstrap admin token of a grid made before logins).
	TokenKindAPI = "api"
	// TokenKindAccess: the short-lived token a login or a refresh gives.
	TokenKindAccess = "access"
	// TokenKindRefresh: the token the CLI trades for new access tokens; it is
	// accepted only by the login route, never as a bearer token.
	TokenKindRefresh = "refresh"
)

// Token is a bearer token. Only its SHA-256 hash is stored.
type Token struct {
	ID          string `json:"id"`
	Hash        string `json:"hash"`
	User        string `json:"user"`
	Kind        string `json:"kind,omitempty"` // "" is an API token
	Description string `json:"description,omitempty"`
	// Role, when set, is the one role the token acts with; it must be
	// one its user holds (or one below it) at the time of each call.
	Role string `json:"role,omitempty"`
	// Ancestors are the tokens this one was made from, nearest last.
	Ancestors  []string  `json:"ancestors,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	// IdPRefresh is, on the refresh token of a single sign-on login, the
	// identity provider's refresh token sealed with the grid master key:
	// each refresh asks the provider again who the user is.
	IdPRefresh []byte `json:"idp_refresh,omitempty"`
}

// KindOrAPI is the token's kind ("" is an API token).
func (t *Token) KindOrAPI() string {
	if t.Kind == "" {
		return TokenKindAPI
	}
	return t.Kind
}

// Expired tells whether the token may no longer be used at time now.
func (t *Token) Expired(now time.Time) bool {
	return !t.ExpiresAt.IsZero() && now.After(t.ExpiresAt)
}

// Validate checks what a token must hold before it is stored.
func (t *Token) Validate() error {
	switch {
	case t.ID == "" || t.Hash == "" || t.User == "":
		return fmt.Errorf("token needs an ID, a hash and a user: %w", ErrInvalid)
	case !slices.Contains([]string{"", TokenKindAPI, TokenKindAccess, TokenKindRefresh}, t.Kind):
		return fmt.Errorf("token kind %q: expected api, access or refresh: %w", t.Kind, ErrInvalid)
	case t.Role != "" && !ValidRole(t.Role):
		return fmt.Errorf("token role %q: expected one of %v: %w", t.Role, Roles, ErrInvalid)
	case slices.Contains(t.Ancestors, t.ID):
		return fmt.Errorf("token %s names itself as its ancestor: %w", t.ID, ErrInvalid)
	}
	return nil
}

// Token command numbers (persisted: never renumber).
const (
	MsgTokenCreate  MsgType = 7
	MsgTokenRemove  MsgType = 8
	MsgTokensExpire MsgType = 33
	MsgTokensTouch  MsgType = 34
	MsgTokenRefresh MsgType = 35
)

var tokenCommands = []Command{(*TokenCreate)(nil), (*TokenRemove)(nil), (*TokensExpire)(nil), (*TokensTouch)(nil),
	(*TokenRefresh)(nil), (*UserRemove)(nil), (*UserRoles)(nil), (*InviteCreate)(nil), (*InviteRedeem)(nil),
	(*UserLogin)(nil), (*AdminRecover)(nil)}

// TokenCreate stores a new token (hash only).
type TokenCreate struct {
	Token Token `json:"token"`
}

func (*TokenCreate) MsgType() MsgType   { return MsgTokenCreate }
func (*TokenCreate) name() string       { return "token.create" }
func (c *TokenCreate) resource() string { return "token/" + c.Token.ID }

func (c *TokenCreate) apply(a *applier) (any, error) {
	return a.insertToken(c.Token)
}

// insertToken stores t after checking it: its user exists, and the token
// it was made from (its nearest ancestor) was not revoked meanwhile.
func (a *applier) insertToken(t Token) (*Token, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	if raw, _ := a.txn.First(TableTokens, "id", t.ID); raw != nil {
		return nil, fmt.Errorf("token %s exists: %w", t.ID, ErrConflict)
	}
	if raw, _ := a.txn.First(TableUsers, "id", t.User); raw == nil {
		return nil, fmt.Errorf("user %q: %w", t.User, ErrNotFound)
	}
	if n := len(t.Ancestors); n > 0 {
		if raw, _ := a.txn.First(TableTokens, "id", t.Ancestors[n-1]); raw == nil {
			return nil, fmt.Errorf("token %s it would be made from was revoked or expired: %w", t.Ancestors[n-1], ErrNotFound)
		}
	}
	t.Ancestors = slices.Clone(t.Ancestors)
	if err := a.txn.Insert(TableTokens, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// TokenRemove revokes a token and every token made from it.
type TokenRemove struct {
	ID string `json:"id"`
}

func (*TokenRemove) MsgType() MsgType   { return MsgTokenRemove }
func (*TokenRemove) name() string       { return "token.remove" }
func (c *TokenRemove) resource() string { return "token/" + c.ID }

func (c *TokenRemove) apply(a *applier) (any, error) {
	raw, err := a.txn.First(TableTokens, "id", c.ID)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("token %s: %w", c.ID, ErrNotFound)
	}
	n, err := a.revokeTokens(raw.(*Token))
	if err != nil {
		return nil, err
	}
	msg := "token " + c.ID + " revoked"
	if n > 1 {
		msg += fmt.Sprintf(" with the %d tokens made from it", n-1)
	}
	return raw, a.event("token.revoked", "token/"+c.ID, msg)
}

// revokeTokens deletes t and its descendants; it returns how many.
func (a *applier) revokeTokens(t *Token) (int, error) {
	it, err := a.txn.Get(TableTokens, "ancestor", t.ID)
	if err != nil {
		return 0, err
	}
	rows := []any{t}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		rows = append(rows, raw)
	}
	for _, raw := range rows {
		if err := a.txn.Delete(TableTokens, raw); err != nil {
			return 0, err
		}
	}
	return len(rows), nil
}

// TokensExpire removes the tokens and invites that expired before Before
// (the leader's clock, stamped into the command).
type TokensExpire struct {
	Before time.Time `json:"before"`
}

func (*TokensExpire) MsgType() MsgType { return MsgTokensExpire }
func (*TokensExpire) name() string     { return "token.expire" }
func (*TokensExpire) resource() string { return "tokens" }

func (c *TokensExpire) apply(a *applier) (any, error) {
	toks, err := deleteExpired(a, TableTokens, func(t *Token) time.Time { return t.ExpiresAt }, c.Before)
	if err != nil {
		return nil, err
	}
	invs, err := deleteExpired(a, TableInvites, func(i *Invite) time.Time { return i.ExpiresAt }, c.Before)
	return toks + invs, err
}

// deleteExpired deletes the rows of table whose expiry (zero: none) is
// before before; it returns how many.
func deleteExpired[T any](a *applier, table string, expiry func(T) time.Time, before time.Time) (int, error) {
	all, err := list[T](a.txn, table)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, row := range all {
		if exp := expiry(row); !exp.IsZero() && exp.Before(before) {
			if err := a.txn.Delete(table, row); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// TokensTouch records when tokens were last used (coarsely: voters
// collect uses and the leader commits them in one entry now and then).
type TokensTouch struct {
	Used map[string]time.Time `json:"used"`
}

func (*TokensTouch) MsgType() MsgType { return MsgTokensTouch }
func (*TokensTouch) name() string     { return "token.touch" }
func (*TokensTouch) resource() string { return "tokens" }

func (c *TokensTouch) apply(a *applier) (any, error) {
	ids := make([]string, 0, len(c.Used))
	for id := range c.Used {
		ids = append(ids, id)
	}
	slices.Sort(ids) // deterministic order of writes
	for _, id := range ids {
		raw, err := a.txn.First(TableTokens, "id", id)
		if err != nil {
			return nil, err
		}
		if raw == nil || !c.Used[id].After(raw.(*Token).LastUsedAt) {
			continue // revoked or expired meanwhile, or nothing newer
		}
		t := *raw.(*Token)
		t.LastUsedAt = c.Used[id]
		if err := a.txn.Insert(TableTokens, &t); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// TokenRefresh trades a refresh token for a new access token: the refresh
// token's end moves to ExpiresAt (a session lives while it is used), and a
// single sign-on login's user gets the roles the provider gives now.
type TokenRefresh struct {
	RefreshID  string    `json:"refresh_id"`
	ExpiresAt  time.Time `json:"expires_at"`
	IdPRefresh []byte    `json:"idp_refresh,omitempty"`
	// Roles, when not nil, replace the user's roles (single sign-on).
	Roles  *[]string `json:"roles,omitempty"`
	Access Token     `json:"access"`
}

func (*TokenRefresh) MsgType() MsgType   { return MsgTokenRefresh }
func (*TokenRefresh) name() string       { return "user.refresh" }
func (c *TokenRefresh) resource() string { return "user/" + c.Access.User }

func (c *TokenRefresh) apply(a *applier) (any, error) {
	raw, err := a.txn.First(TableTokens, "id", c.RefreshID)
	if err != nil {
		return nil, err
	}
	if raw == nil || raw.(*Token).Kind != TokenKindRefresh {
		return nil, fmt.Errorf("refresh token %s was revoked: %w", c.RefreshID, ErrNotFound)
	}
	rt := *raw.(*Token)
	if rt.Expired(a.now) {
		return nil, fmt.Errorf("refresh token %s expired at %s: %w", rt.ID, rt.ExpiresAt.Format(time.RFC3339), ErrInvalid)
	}
	if c.Access.User != rt.User || c.Access.Kind != TokenKindAccess {
		return nil, fmt.Errorf("a refresh gives an access token of the same user: %w", ErrInvalid)
	}
	if c.Roles != nil {
		if err := a.setRoles(rt.User, *c.Roles); err != nil {
			return nil, err
		}
	}
	rt.ExpiresAt, rt.LastUsedAt = c.ExpiresAt, a.now
	if c.IdPRefresh != nil {
		rt.IdPRefresh = c.IdPRefresh
	}
	if err := a.txn.Insert(TableTokens, &rt); err != nil {
		return nil, err
	}
	return a.insertToken(c.Access)
}

// TokenByHash finds the token whose SHA-256 hash is hash.
func (v *View) TokenByHash(hash string) (*Token, error) {
	raw, err := v.txn.First(TableTokens, "hash", hash)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("token: %w", ErrNotFound)
	}
	return raw.(*Token), nil
}

// Tokens lists tokens; with user set, only that user's.
func (v *View) Tokens(user string) ([]*Token, error) {
	if user == "" {
		return list[*Token](v.txn, TableTokens)
	}
	it, err := v.txn.Get(TableTokens, "user", user)
	if err != nil {
		return nil, err
	}
	var out []*Token
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Token))
	}
	return out, nil
}

// Token finds a token by ID.
func (v *View) Token(id string) (*Token, error) {
	raw, err := v.txn.First(TableTokens, "id", id)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("token %s: %w", id, ErrNotFound)
	}
	return raw.(*Token), nil
}

// TokenByHash finds the token whose SHA-256 hash is hash.
func (s *Store) TokenByHash(hash string) (*Token, error) { return s.Snapshot().TokenByHash(hash) }

// Tokens lists tokens; with user set, only that user's.
func (s *Store) Tokens(user string) ([]*Token, error) { return s.Snapshot().Tokens(user) }

// Token finds a token by ID.
func (s *Store) Token(id string) (*Token, error) { return s.Snapshot().Token(id) }
