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

// WriteSecret creates, updates or upserts a secret.
func (c *Client) WriteSecret(ctx context.Context, name string, req SecretWriteRequest) (*SecretInfo, error) {
	var out SecretInfo
	_, err := c.Do(ctx, http.MethodPut, "/v1/vault/"+url.PathEscape(name), req, &out)
	return &out, err
}

// RemoveSecret deletes a secret.
func (c *Client) RemoveSecret(ctx context.Context, name string) error {
	_, err := c.Do(ctx, http.MethodDelete, "/v1/vault/"+url.PathEscape(name), nil, nil)
	return err
}
