// Package cluster runs a grid node: its identity, Raft (on voters), gossip
// (on every node), the leader's membership reconciler, and the HTTPS API that
// answers the CLI and other nodes.
package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/kontena-ng/kontena/agent"
	"github.com/kontena-ng/kontena/scheduler"
	"github.com/kontena-ng/kontena/stack"
)

// Default ports; every one can be changed so several nodes share a host.
const (
	DefaultAPIPort    = 9700
	DefaultRaftPort   = 9701
	DefaultGossipPort = 9702
	// DefaultWireGuardPort is the overlay's UDP port.
	DefaultWireGuardPort = 9703
)

// Version is the node software version, set by the build.
var Version = "0.1.0-dev"

// Config is everything `kontena up` is told.
type Config struct {
	DataDir     string
	Name        string
	Grid        string
	InitialSize int
	Subnet      string
	Supernet    string
	Join        []string
	Token       string
	Labels      []string

	BindAddr      string
	AdvertiseAddr string
	PublicAddr    string
	APIPort       int
	RaftPort      int
	GossipPort    int

	// OfflineGrace overrides the per-strategy grace before instances of an
	// offline node move (bootstrap only; 0 = Kontena's defaults).
	OfflineGrace time.Duration
	// DefaultAffinity is a new grid's default affinity (see `grid update`).
	DefaultAffinity []string

	// Overlay is "auto" (on unless the node advertises a loopback address:
	// several nodes on one host share its network namespace), "on" or "off".
	Overlay string
	// WireGuardPort is the overlay's UDP port.
	WireGuardPort int
	// DNSListen is where the node resolver listens ("" = the overlay
	// address, or the advertise address with the overlay off; "off" = no
	// resolver); DNSUpstreams replace /etc/resolv.conf's nameservers.
	DNSListen    string
	DNSUpstreams []string

	// NoContainers turns the container agent off (a node that only takes
	// part in Raft and gossip).
	NoContainers bool
	// Restore starts a grid from a backup in a fresh data dir (`kontena up
	// --restore`); Name picks the backup's node this machine becomes.
	Restore *Restore
	// SecretsDir holds the secret files of this node's containers (type
	// file); it is put on a tmpfs. "" = /run/kontena/secrets.
	SecretsDir string
	// Runtime replaces the node's Docker engine (in-process test grids run
	// agenttest.Runtime); nil is the engine the environment names.
	Runtime agent.Runtime

	// Timing lets tests shorten gossip and Raft timers; zero values mean
	// the production defaults.
	Timing Timing

	Log *slog.Logger

	// OnReady is called once the node serves its API. On bootstrap it
	// carries the admin token, the only time that value exists in clear.
	OnReady func(ReadyInfo)

	// onNode lets in-process tests reach the node they started.
	onNode func(*Node)
}

// Timing holds failure-detection timers.
type Timing struct {
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	SuspicionMult int
	Reconcile     time.Duration
}

func (t Timing) withDefaults() Timing {
	// Probing every 500 ms with a suspicion of 3 probe intervals (scaled by
	// log10 of the grid size) finds a dead node in about 2-3 s on small
	// grids; memberlist's Lifeguard widens timeouts on an overloaded node
	// before it accuses others.
	if t.ProbeInterval == 0 {
		t.ProbeInterval = 500 * time.Millisecond
	}
	if t.ProbeTimeout == 0 {
		t.ProbeTimeout = 300 * time.Millisecond
	}
	if t.SuspicionMult == 0 {
		t.SuspicionMult = 3
	}
	if t.Reconcile == 0 {
		t.Reconcile = time.Second
	}
	return t
}

// ReadyInfo tells the caller of Run how to reach and extend the grid.
type ReadyInfo struct {
	Bootstrapped bool
	Grid         string
	NodeName     string
	Role         string
	APIAddr      string
	CACert       []byte
	CADigest     string
	AdminToken   string // only on bootstrap: the admin's access token
	AdminRefresh string // and the refresh token that renews it
	AdminExpires time.Time
	JoinToken    string // only on bootstrap
}

// validate checks the config before anything is written to disk.
func (c *Config) validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("--data-dir is required"))
	}
	if !stack.IsDNSLabel(c.Grid) {
		errs = append(errs, fmt.Errorf("--grid %q: use lowercase letters, digits and dashes", c.Grid))
	}
	if c.Name != "" && !stack.IsDNSLabel(c.Name) {
		errs = append(errs, fmt.Errorf("--name %q: use lowercase letters, digits and dashes (a DNS label)", c.Name))
	}
	switch c.InitialSize {
	case 1, 3, 5, 7:
	default:
		errs = append(errs, fmt.Errorf("--initial-size %d: use 1, 3, 5 or 7 (an odd number of voters keeps a majority)", c.InitialSize))
	}
	sub, err1 := netip.ParsePrefix(c.Subnet)
	super, err2 := netip.ParsePrefix(c.Supernet)
	if err1 != nil {
		errs = append(errs, fmt.Errorf("--subnet %q: %w", c.Subnet, err1))
	}
	if err2 != nil {
		errs = append(errs, fmt.Errorf("--supernet %q: %w", c.Supernet, err2))
	}
	if err1 == nil && err2 == nil && (!super.Contains(sub.Addr()) || sub.Bits() < super.Bits()) {
		errs = append(errs, fmt.Errorf("--subnet %s must lie inside --supernet %s", c.Subnet, c.Supernet))
	}
	switch c.Overlay {
	case "", "auto", "on", "off":
	default:
		errs = append(errs, fmt.Errorf("--overlay %q: use auto, on or off", c.Overlay))
	}
	if c.WireGuardPort == 0 {
		c.WireGuardPort = DefaultWireGuardPort
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"--api-port", c.APIPort}, {"--raft-port", c.RaftPort}, {"--gossip-port", c.GossipPort}, {"--wireguard-port", c.WireGuardPort}} {
		if p.v <= 0 || p.v > 65535 {
			errs = append(errs, fmt.Errorf("%s %d: out of range", p.name, p.v))
		}
	}
	if c.BindAddr != "" && net.ParseIP(c.BindAddr) == nil {
		errs = append(errs, fmt.Errorf("--bind %q: not an IP address", c.BindAddr))
	}
	if c.AdvertiseAddr != "" && net.ParseIP(c.AdvertiseAddr) == nil {
		errs = append(errs, fmt.Errorf("--advertise %q: not an IP address", c.AdvertiseAddr))
	}
	if len(c.Join) > 0 && c.Token == "" {
		errs = append(errs, errors.New("--join needs --token or --token-file (print one on a master with `kontena grid token`)"))
	}
	for _, rule := range c.DefaultAffinity {
		if err := scheduler.CheckAffinity(rule); err != nil {
			errs = append(errs, fmt.Errorf("--default-affinity: %w", err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}
	return nil
}
