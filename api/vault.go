package api

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// SecretInfo is a vault entry as listings show it: never its value.
type SecretInfo struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// SecretValue is what `vault read` gets.
type SecretValue struct {
	SecretInfo
	Value string `json:"value"`
}

// SecretWriteRequest writes a secret: mode create (default), update or
// upsert.
type SecretWriteRequest struct {
	Value string `json:"value"`
	Mode  string `json:"mode,omitempty"`
}

// Secrets lists the vault.
func (c *Client) Secrets(ctx context.Context) ([]SecretInfo, error) {
	var out []SecretInfo
	_, err := c.Do(ctx, http.MethodGet, "/v1/vault", nil, &out)
	return out, err
}

// ReadSecret reads one secret's value (the read is audited).
func (c *Client) ReadSecret(ctx context.Context, name string) (*SecretValue, error) {
	var out SecretValue
	_, err := c.Do(ctx, http.MethodGet, "/v1/vault/"+url.PathEscape(name), nil, &out)
	return &out, err
}

// SecretChange is what a write or removal did: the secret, and the
// services it redeploys (rolling) because they use it. Index is the Raft
// index of the change (wait for their deploys from there).
type SecretChange struct {
	SecretInfo
	Rolling []string `json:"rolling,omitempty"`
	Index   uint64   `json:"-"`
}

// WriteSecret creates, updates or upserts a secret.
func (c *Client) WriteSecret(ctx context.Context, name string, req SecretWriteRequest) (*SecretChange, error) {
	var out SecretChange
	idx, err := c.Do(ctx, http.MethodPut, "/v1/vault/"+url.PathEscape(name), req, &out)
	out.Index = idx
	return &out, err
}

// RemoveSecret deletes a secret; force removes one that services use (they
// redeploy without it).
func (c *Client) RemoveSecret(ctx context.Context, name string, force bool) (*SecretChange, error) {
	var out SecretChange
	path := "/v1/vault/" + url.PathEscape(name)
	if force {
		path += "?force=true"
	}
	idx, err := c.Do(ctx, http.MethodDelete, path, nil, &out)
	out.Index = idx
	return &out, err
}

// KeyRotation is the answer of `vault rotate-key`.
type KeyRotation struct {
	Generation uint64 `json:"generation"`
	Secrets    int    `json:"secrets"`
}
