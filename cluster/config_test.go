package cluster

import (
	"errors"
	"strings"
	"testing"
)

func TestParseJoinToken(t *testing.T) {
	digest := strings.Repeat("ab", 32)
	good := joinToken{Grid: "prod", CADigest: digest, Secret: "s3cret"}
	got, err := parseJoinToken(" " + good.String() + "\n")
	if err != nil || got != good {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for _, bad := range []string{"", "hello", "K2.prod." + digest + ".s", "K1.prod.short.s", "K1.prod." + digest + ".", "K1.prod." + digest} {
		if _, err := parseJoinToken(bad); err == nil || !strings.Contains(err.Error(), "malformed join token") {
			t.Errorf("parseJoinToken(%q) = %v", bad, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	base := func() Config {
		return Config{DataDir: "/d", Grid: "g", InitialSize: 1, Subnet: "10.81.0.0/16", Supernet: "10.80.0.0/12",
			APIPort: 1, RaftPort: 2, GossipPort: 3}
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"ok", func(*Config) {}, ""},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "--data-dir is required"},
		{"bad grid", func(c *Config) { c.Grid = "Prod_1" }, "--grid"},
		{"bad name", func(c *Config) { c.Name = "-x" }, "--name"},
		{"even size", func(c *Config) { c.InitialSize = 4 }, "use 1, 3, 5 or 7"},
		{"bad subnet", func(c *Config) { c.Subnet = "nope" }, "--subnet"},
		{"subnet outside", func(c *Config) { c.Subnet = "192.168.0.0/16" }, "inside --supernet"},
		{"subnet wider", func(c *Config) { c.Subnet = "10.0.0.0/8" }, "inside --supernet"},
		{"port", func(c *Config) { c.APIPort = 70000 }, "--api-port"},
		{"bind", func(c *Config) { c.BindAddr = "host" }, "--bind"},
		{"join without token", func(c *Config) { c.Join = []string{"a"} }, "--join needs --token"},
	}
	for _, tc := range tests {
		c := base()
		tc.mutate(&c)
		err := c.validate()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v, want %q (ErrConfig)", tc.name, err, tc.want)
		}
	}
	// Several mistakes are reported together.
	c := base()
	c.DataDir, c.InitialSize = "", 2
	if err := c.validate(); err == nil || !strings.Contains(err.Error(), "--data-dir") || !strings.Contains(err.Error(), "--initial-size") {
		t.Fatalf("multiple errors: %v", err)
	}
}
