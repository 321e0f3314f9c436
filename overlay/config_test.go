package overlay

import (
	"net/netip"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func TestConfigDefaults(t *testing.T) {
	key, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Config{
		PrivateKey: key,
		Address:    netip.MustParseAddr("10.81.1.1"),
		Subnet:     netip.MustParsePrefix("10.81.1.0/24"),
		Grid:       netip.MustParsePrefix(DefaultGridPrefix),
	}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Interface != DefaultInterface || cfg.ListenPort != DefaultListenPort || cfg.MTU != DefaultMTU ||
		cfg.Mode != ModeAuto || cfg.Logger == nil || cfg.MemoryLimit != DefaultMemoryLimit {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
}

func TestConfigInvalid(t *testing.T) {
	key, _ := wgtypes.GeneratePrivateKey()
	good := Config{
		PrivateKey: key,
		Address:    netip.MustParseAddr("10.81.1.1"),
		Subnet:     netip.MustParsePrefix("10.81.1.0/24"),
		Grid:       netip.MustParsePrefix(DefaultGridPrefix),
	}
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"long interface name", func(c *Config) { c.Interface = "kontena-overlay0" }, "interface name"},
		{"slash in interface name", func(c *Config) { c.Interface = "a/b" }, "interface name"},
		{"port", func(c *Config) { c.ListenPort = 70000 }, "listen port"},
		{"mtu", func(c *Config) { c.MTU = 500 }, "MTU"},
		{"mode", func(c *Config) { c.Mode = "fast" }, "mode"},
		{"no key", func(c *Config) { c.PrivateKey = wgtypes.Key{} }, "private key"},
		{"no grid", func(c *Config) { c.Grid = netip.Prefix{} }, "grid prefix"},
		{"no address", func(c *Config) { c.Address = netip.Addr{} }, "overlay address"},
		{"address outside grid", func(c *Config) { c.Address = netip.MustParseAddr("10.82.1.1") }, "outside the grid"},
		{"address outside subnet", func(c *Config) { c.Address = netip.MustParseAddr("10.81.2.1") }, "outside the node subnet"},
		{"subnet outside grid", func(c *Config) {
			c.Subnet = netip.MustParsePrefix("10.82.1.0/24")
			c.Address = netip.MustParseAddr("10.82.1.1")
		}, "node subnet 10.82.1.0/24 is outside"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.mutate(&cfg)
			_, err := cfg.withDefaults()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("withDefaults = %v; want error containing %q", err, tt.wantErr)
			}
		})
	}
}
