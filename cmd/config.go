package cmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"
)

// cliConfig is the CLI's file of grids, like a kubeconfig: one context per
// grid with the addresses of its masters, an API token and the grid CA.
type cliConfig struct {
	Current string                  `json:"current"`
	Grids   map[string]*gridContext `json:"grids"`

	path string
}

type gridContext struct {
	Name      string   `json:"name"`
	Addresses []string `json:"addresses"`
	// Token is the access (or API) token; a login's expires at
	// TokenExpires and Refresh gets the next one.
	Token        string    `json:"token"`
	TokenExpires time.Time `json:"token_expires_at,omitzero"`
	Refresh      string    `json:"refresh_token,omitempty"`
	User         string    `json:"user,omitempty"`
	CACert       string    `json:"ca_cert"`
}

func defaultConfigPath() string {
	if p := os.Getenv("KONTENA_CONFIG"); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "."
	}
	return filepath.Join(home, ".kontena", "config.json")
}

func loadConfig(path string) (*cliConfig, error) {
	cfg := &cliConfig{Grids: map[string]*gridContext{}, path: path}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return cfg, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read CLI config: %w", err)
	}
	if err := json.Unmarshal(data, cfg); err != nil {
		return nil, fmt.Errorf("CLI config %s is not valid JSON: %w", path, err)
	}
	if cfg.Grids == nil {
		cfg.Grids = map[string]*gridContext{}
	}
	return cfg, nil
}

// save writes the file 0600: it holds API tokens.
func (c *cliConfig) save() error {
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return fmt.Errorf("save CLI config: %w", err)
	}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	tmp := c.path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("save CLI config: %w", err)
	}
	return os.Rename(tmp, c.path)
}

// context picks the grid named by --grid, else the current one.
func (c *cliConfig) context(name string) (*gridContext, error) {
	if name == "" {
		name = c.Current
	}
	if name == "" {
		return nil, errors.New("no grid configured: start one with `kontena up`, or add one with `kontena grid login`")
	}
	g, ok := c.Grids[name]
	if !ok {
		return nil, fmt.Errorf("grid %q is not in %s (known: %v); add it with `kontena grid login`", name, c.path, c.names())
	}
	return g, nil
}

func (c *cliConfig) names() []string {
	out := make([]string, 0, len(c.Grids))
	for n := range c.Grids {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// mergeAddresses puts fresh master addresses first and keeps the old ones
// after them, so a stale list still has something to try.
func mergeAddresses(fresh, old []string) []string {
	var out []string
	for _, a := range append(slices.Clone(fresh), old...) {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	if len(out) > 16 {
		out = out[:16]
	}
	return out
}
