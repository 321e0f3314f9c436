package fsm

import (
	"fmt"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// The user and API token tables.
const (
	TableUsers  = "users"
	TableTokens = "tokens"
)

func tokenTables() []*memdb.TableSchema {
	return []*memdb.TableSchema{
		{Name: TableUsers, Indexes: map[string]*memdb.IndexSchema{"id": idIndex("Name")}},
		{Name: TableTokens, Indexes: map[string]*memdb.IndexSchema{
			"id":   idIndex("ID"),
			"hash": {Name: "hash", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Hash"}},
			"user": {Name: "user", Indexer: &memdb.StringFieldIndex{Field: "User"}},
		}},
	}
}

// User is an account that may hold API tokens.
type User struct {
	Name      string    `json:"name"`
	Roles     []string  `json:"roles"`
	CreatedAt time.Time `json:"created_at"`
}

// Token is an API bearer token. Only its SHA-256 hash is stored.
type Token struct {
	ID          string    `json:"id"`
	Hash        string    `json:"hash"`
	User        string    `json:"user"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at,omitempty"`
}

// Expired tells whether the token may no longer be used at time now.
func (t *Token) Expired(now time.Time) bool {
	return !t.ExpiresAt.IsZero() && now.After(t.ExpiresAt)
}

// Token command numbers (persisted: never renumber).
const (
	MsgTokenCreate MsgType = 7
	MsgTokenRemove MsgType = 8
)

var tokenCommands = []Command{(*TokenCreate)(nil), (*TokenRemove)(nil)}

// TokenCreate stores a new API token (hash only).
type TokenCreate struct {
	Token Token `json:"token"`
}

func (*TokenCreate) MsgType() MsgType   { return MsgTokenCreate }
func (*TokenCreate) name() string       { return "token.create" }
func (c *TokenCreate) resource() string { return "token/" + c.Token.ID }

func (c *TokenCreate) apply(a *applier) (any, error) {
	if raw, _ := a.txn.First(TableTokens, "id", c.Token.ID); raw != nil {
		return nil, fmt.Errorf("token %s exists: %w", c.Token.ID, ErrConflict)
	}
	if raw, _ := a.txn.First(TableUsers, "id", c.Token.User); raw == nil {
		return nil, fmt.Errorf("user %q: %w", c.Token.User, ErrNotFound)
	}
	t := c.Token
	if err := a.txn.Insert(TableTokens, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// TokenRemove revokes an API token.
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
	if err := a.txn.Delete(TableTokens, raw); err != nil {
		return nil, err
	}
	return raw, a.event("token.revoked", "token/"+c.ID, "token "+c.ID+" revoked")
}

// User finds a user by name.
func (v *View) User(name string) (*User, error) {
	raw, err := v.txn.First(TableUsers, "id", name)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	return raw.(*User), nil
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
	all, err := list[*Token](v.txn, TableTokens)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, t := range all {
		if user == "" || t.User == user {
			out = append(out, t)
		}
	}
	return out, nil
}

// User finds a user by name.
func (s *Store) User(name string) (*User, error) { return s.Snapshot().User(name) }

// TokenByHash finds the token whose SHA-256 hash is hash.
func (s *Store) TokenByHash(hash string) (*Token, error) { return s.Snapshot().TokenByHash(hash) }

// Tokens lists tokens; with user set, only that user's.
func (s *Store) Tokens(user string) ([]*Token, error) { return s.Snapshot().Tokens(user) }
