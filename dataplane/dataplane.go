// Package dataplane is a node's share of the network: the WireGuard device
// and its peers (overlay), the container address allocator, the engine
// network containers join, and the DNS resolver (dns). It is fed by the
// node's network map (a blocking query on the node's own API, the node
// protocol) and never needs the masters to keep serving: the last map is
// cached on disk and a restarted node resumes from it.
package dataplane

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/kontena-ng/kontena/agent"
	"github.com/kontena-ng/kontena/agent/engine"
	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/dns"
	"github.com/kontena-ng/kontena/internal/atomicfile"
	"github.com/kontena-ng/kontena/overlay"
)

// Names of the node's overlay pieces on its host.
const (
	overlayIface   = "kontena0"    // the WireGuard interface
	overlayNetwork = "kontena"     // the engine network containers join
	overlayBridge  = "kontena-br0" // its Linux bridge
)

// dataPlane is a node's share of the network: the WireGuard device, the
// container address allocator and the DNS resolver. It is fed from the
// grid state but never needs it to keep serving: the last network map is
// cached on disk and a restarted node resumes from it.
type DataPlane struct {
	cfg Config
	key wgtypes.Key // set before the data plane is shared, never changed

	// applyMu serializes apply (which may take seconds to bring the device
	// up); mu guards the fields below for readers such as `node show`.
	// Fields are written with both held, so apply may read them with
	// applyMu alone.
	applyMu sync.Mutex
	mu      sync.Mutex
	enabled bool
	reason  string // why the overlay is off
	dev     *overlay.Device
	alloc   *overlay.Allocator
	res     *dns.Server
	self    api.NetNode
	nm      *api.NetMap
	ready   chan struct{} // closed once the agent may create containers
	once    sync.Once
	// fwd is what the forwarding rules were installed for (repaired
	// periodically, removed when the node leaves the grid).
	fwdSubnet, fwdGrid netip.Prefix
}

// Engine is the part of the node's container engine the data plane needs
// (*engine.Engine); nil: the node has no engine.
type Engine interface {
	EnsureNetwork(ctx context.Context, spec engine.NetworkSpec) error
	RemoveNetwork(ctx context.Context, name string) error
}

// Config is the data plane's narrow view of its node.
type Config struct {
	DataDir   string // netmap.json, wireguard.key, addresses.json live here
	NodeName  string
	Advertise string // the node's address: loopback means development mode
	Overlay   string // auto, on, off
	// WireGuardPort is the overlay's UDP port; DNSListen and DNSUpstreams
	// configure the resolver (see cluster.Config).
	WireGuardPort int
	DNSListen     string
	DNSUpstreams  []string
	NoContainers  bool
	// Engine is the node's container engine, nil for none.
	Engine Engine
	// Self is a client of the node's own API: the network map is watched
	// and the WireGuard key announced through it.
	Self *api.Client
	Log  *slog.Logger
}

// New makes the data plane of a node; Run runs it.
func New(cfg Config) *DataPlane {
	dp := &DataPlane{cfg: cfg, ready: make(chan struct{})}
	switch dp.cfg.Overlay {
	case "on":
		dp.enabled = true
	case "off":
		dp.reason = "--overlay off"
	default:
		if ip := net.ParseIP(dp.cfg.Advertise); ip != nil && ip.IsLoopback() {
			dp.reason = "the node advertises a loopback address (development mode: several nodes share this host's network); start with --overlay on to force it"
		} else {
			dp.enabled = true
		}
	}
	if dp.enabled {
		key, err := overlay.LoadOrCreateKey(filepath.Join(dp.cfg.DataDir, "wireguard.key"))
		if err != nil {
			dp.cfg.Log.Error("overlay off: WireGuard key", "err", err)
			dp.enabled, dp.reason = false, err.Error()
		} else {
			dp.key = key
		}
	}
	return dp
}

// isEnabled tells whether the node runs (or tries to run) the overlay.
func (dp *DataPlane) isEnabled() bool {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	return dp.enabled
}

func (dp *DataPlane) markReady() { dp.once.Do(func() { close(dp.ready) }) }

func (dp *DataPlane) cachePath() string { return filepath.Join(dp.cfg.DataDir, "netmap.json") }

// Run watches the node's network map and applies it until ctx ends.
func (dp *DataPlane) Run(ctx context.Context) {
	defer dp.close()
	if !dp.enabled {
		dp.cfg.Log.Warn("overlay network is off: containers use the engine's default bridge and cannot reach other nodes' containers", "reason", dp.reason)
	}
	if data, err := os.ReadFile(dp.cachePath()); err == nil {
		var nm api.NetMap
		if json.Unmarshal(data, &nm) == nil {
			if !dp.enabled {
				dp.dropStaleForwarding(nm)
			}
			dp.cfg.Log.Info("network: resuming from the cached network map", "peers", len(nm.Peers), "records", len(nm.Records))
			dp.apply(ctx, &nm)
		}
	}
	go dp.repairLoop(ctx)
	self := dp.cfg.Self
	var last [32]byte
	api.Watch(ctx, self, "/v1/nodes/"+url.PathEscape(dp.cfg.NodeName)+"/netmap", func(err error) { dp.cfg.Log.Debug("watch network map", "err", err) }, func(nm *api.NetMap) {
		dp.announce(ctx, self, nm)
		data, _ := json.Marshal(nm)
		dp.mu.Lock()
		retry := dp.enabled && dp.dev == nil // the device failed to start: try again
		dp.mu.Unlock()
		if sum := sha256.Sum256(data); sum != last || retry {
			last = sum
			dp.apply(ctx, nm)
			if err := atomicfile.Write(dp.cachePath(), data, 0o600); err != nil {
				dp.cfg.Log.Warn("cache network map", "err", err)
			}
		}
	})
}

// announce tells the grid this node's WireGuard key and port when the
// state has others.
func (dp *DataPlane) announce(ctx context.Context, self *api.Client, nm *api.NetMap) {
	want := api.OverlaySetRequest{}
	if dp.isEnabled() {
		want = api.OverlaySetRequest{PublicKey: dp.key.PublicKey().String(), Port: dp.cfg.WireGuardPort}
		dp.mu.Lock()
		if dp.dev != nil {
			want.Interface = dp.dev.Mode()
		}
		dp.mu.Unlock()
	}
	if nm.Self.PublicKey == want.PublicKey && nm.Self.Port == want.Port {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := self.Do(ctx, http.MethodPut, "/v1/nodes/"+url.PathEscape(dp.cfg.NodeName)+"/overlay", want, nil); err != nil {
		dp.cfg.Log.Warn("announce overlay key", "err", err)
	}
}

// apply brings the data plane to nm: device up once the node knows its
// subnet, peers reconciled, DNS records swapped.
func (dp *DataPlane) apply(ctx context.Context, nm *api.NetMap) {
	dp.applyMu.Lock()
	defer dp.applyMu.Unlock()
	log := dp.cfg.Log.With("component", "network")
	dp.mu.Lock()
	dp.nm = nm
	dp.mu.Unlock()
	if dp.enabled && dp.dev == nil && nm.Self.Subnet != "" {
		if err := dp.up(ctx, nm); err != nil {
			if dp.cfg.Overlay != "on" && (errors.Is(err, overlay.ErrNoTUN) || errors.Is(err, overlay.ErrUnsupported)) {
				// This machine cannot have the overlay at all: run the
				// containers without it rather than not at all.
				log.Error("overlay network is off: this machine cannot run it; start with --overlay on to insist", "err", err)
				dp.mu.Lock()
				dp.enabled, dp.reason = false, err.Error()
				dp.mu.Unlock()
			} else {
				log.Error("overlay network could not start; containers wait for it (tried again on the next network map change)", "err", err)
			}
		}
	}
	if !dp.enabled {
		dp.markReady()
	}
	if dp.res == nil {
		dp.startDNS(ctx, nm)
	}
	if dp.dev != nil {
		peers := make([]overlay.Peer, 0, len(nm.Peers))
		for _, p := range nm.Peers {
			op, err := toPeer(p)
			if err != nil {
				log.Warn("skip peer", "peer", p.Name, "err", err)
				continue
			}
			peers = append(peers, op)
		}
		if err := dp.dev.SetPeers(peers); err != nil {
			log.Warn("configure WireGuard peers", "err", err)
		}
	}
	if dp.res != nil {
		recs := make([]dns.Record, 0, len(nm.Records))
		for _, r := range nm.Records {
			ip, err := netip.ParseAddr(r.IP)
			if err != nil {
				continue
			}
			recs = append(recs, dns.Record{Grid: nm.Grid, Stack: r.Stack, Service: r.Service, Instance: r.Instance, IP: ip, Healthy: r.Healthy})
		}
		dp.res.Update(recs, nm.Exposes)
	}
}

func toPeer(p api.NetPeer) (overlay.Peer, error) {
	key, err := wgtypes.ParseKey(p.PublicKey)
	if err != nil {
		return overlay.Peer{}, fmt.Errorf("public key: %w", err)
	}
	op := overlay.Peer{PublicKey: key, Name: p.Name}
	if p.Endpoint != "" {
		ua, err := net.ResolveUDPAddr("udp", p.Endpoint)
		if err != nil {
			return overlay.Peer{}, fmt.Errorf("endpoint %s: %w", p.Endpoint, err)
		}
		op.Endpoint = ua
		// Keepalives hold NAT mappings open and make a handshake happen
		// before the first packet needs it.
		op.Keepalive = 25 * time.Second
	}
	for _, a := range p.AllowedIPs {
		pr, err := netip.ParsePrefix(a)
		if err != nil {
			return overlay.Peer{}, fmt.Errorf("allowed IP %s: %w", a, err)
		}
		op.AllowedIPs = append(op.AllowedIPs, pr)
	}
	return op, nil
}

// up starts the WireGuard device, the engine network and the forwarding
// rules, and opens the address allocator. Called with dp.applyMu held.
func (dp *DataPlane) up(ctx context.Context, nm *api.NetMap) error {
	subnet, err := netip.ParsePrefix(nm.Self.Subnet)
	if err != nil {
		return fmt.Errorf("node subnet %q: %w", nm.Self.Subnet, err)
	}
	grid, err := netip.ParsePrefix(nm.GridSubnet)
	if err != nil {
		return fmt.Errorf("grid subnet %q: %w", nm.GridSubnet, err)
	}
	addr := overlay.NodeAddr(subnet)
	// 128 MiB: the userspace device kept ~80 MB RSS under load with 96 MiB
	// at the same throughput (overlay package notes); Raft and the API
	// need ~25 MB.
	dev, err := overlay.Up(ctx, overlay.Config{Interface: overlayIface, ListenPort: dp.cfg.WireGuardPort, PrivateKey: dp.key, MemoryLimit: 128 << 20,
		Address: addr, Subnet: subnet, Grid: grid, Logger: dp.cfg.Log.With("component", "wireguard")})
	if err != nil {
		return err
	}
	if dp.cfg.NoContainers || dp.cfg.Engine == nil {
		// No containers here: the node still routes its VPN clients and
		// reaches the overlay itself, but has no container network.
		dp.mu.Lock()
		dp.dev, dp.self = dev, nm.Self
		dp.mu.Unlock()
		dp.cfg.Log.Info("overlay network up (no container engine: no container network)", "interface", dev.Name(), "mode", dev.Mode(), "address", addr)
		dp.markReady()
		return nil
	}
	if err := dp.cfg.Engine.EnsureNetwork(ctx, engine.NetworkSpec{Name: overlayNetwork, Bridge: overlayBridge, Subnet: subnet,
		Gateway: addr, Dynamic: dynamicRange(subnet)}); err != nil {
		dev.Close()
		return err
	}
	if err := overlay.EnsureForwarding(overlayIface, subnet, grid); err != nil {
		dev.Close()
		return err
	}
	alloc, err := overlay.OpenAllocator(filepath.Join(dp.cfg.DataDir, "addresses.json"), subnet, overlay.WithReserved(dynamicRange(subnet)))
	if err != nil {
		dev.Close()
		return err
	}
	dp.mu.Lock()
	dp.dev, dp.alloc = dev, alloc
	dp.self = nm.Self
	dp.fwdSubnet, dp.fwdGrid = subnet, grid
	dp.mu.Unlock()
	dp.cfg.Log.Info("overlay network up", "interface", dev.Name(), "mode", dev.Mode(), "address", addr, "subnet", subnet, "grid", grid)
	dp.markReady()
	return nil
}

// startDNS starts the resolver on the overlay address (where containers
// and VPN clients find it), or on the advertise address with the overlay off.
func (dp *DataPlane) startDNS(ctx context.Context, nm *api.NetMap) {
	listen := dp.cfg.DNSListen
	if listen == "off" {
		return
	}
	if listen == "" {
		switch {
		case dp.dev != nil:
			listen = net.JoinHostPort(nm.Self.Address, "53")
		case !dp.enabled:
			listen = net.JoinHostPort(dp.cfg.Advertise, "53")
		default:
			return // wait for the overlay address
		}
	}
	res := dns.New(dns.Config{Upstreams: dp.cfg.DNSUpstreams, Logger: dp.cfg.Log.With("component", "dns")})
	if err := res.Start(ctx, listen); err != nil {
		dp.cfg.Log.Warn("DNS resolver not started", "addr", listen, "err", err)
		res.Close()
		return
	}
	dp.mu.Lock()
	dp.res = res
	dp.mu.Unlock()
}

// containerDNS is the resolver containers are given: the node's own, when
// it answers on the overlay address at port 53 (what a container's
// resolv.conf can name); otherwise none, and containers use the engine's
// default (the host's resolvers) rather than an address nobody answers on.
func (dp *DataPlane) containerDNS() []string {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.res == nil {
		return nil
	}
	want := net.JoinHostPort(dp.self.Address, "53")
	for _, a := range dp.res.Addrs() {
		if a.String() == want {
			return []string{dp.self.Address}
		}
	}
	return nil
}

// forwardingRepair is how often the node checks its forwarding rules (an
// operator's iptables flush, a firewall reload).
const forwardingRepair = 30 * time.Second

// repairLoop puts back forwarding rules someone removed.
func (dp *DataPlane) repairLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(forwardingRepair):
		}
		dp.mu.Lock()
		subnet, grid := dp.fwdSubnet, dp.fwdGrid
		dp.mu.Unlock()
		if subnet.IsValid() {
			if err := overlay.EnsureForwarding(overlayIface, subnet, grid); err != nil {
				dp.cfg.Log.Warn("repair overlay forwarding rules", "err", err)
			}
		}
	}
}

// dropStaleForwarding removes the rules an earlier run with the overlay on
// left behind for the cached subnet, now that it is off.
func (dp *DataPlane) dropStaleForwarding(nm api.NetMap) {
	subnet, err1 := netip.ParsePrefix(nm.Self.Subnet)
	grid, err2 := netip.ParsePrefix(nm.GridSubnet)
	if err1 != nil || err2 != nil {
		return
	}
	if err := overlay.RemoveForwarding(overlayIface, subnet, grid); err != nil {
		dp.cfg.Log.Debug("remove forwarding rules of an earlier run", "err", err)
	}
}

// leave undoes what the data plane put on the host, for a node removed
// from the grid: the forwarding rules and the engine network (its
// containers are gone by then). Addresses and keys stay in the data dir,
// which the operator deletes to join again.
func (dp *DataPlane) Leave(ctx context.Context) {
	dp.mu.Lock()
	subnet, grid := dp.fwdSubnet, dp.fwdGrid
	dp.mu.Unlock()
	if subnet.IsValid() {
		if err := overlay.RemoveForwarding(overlayIface, subnet, grid); err != nil {
			dp.cfg.Log.Warn("remove overlay forwarding rules", "err", err)
		}
	}
	if dp.cfg.Engine == nil {
		return
	}
	if err := dp.cfg.Engine.RemoveNetwork(ctx, overlayNetwork); err != nil {
		dp.cfg.Log.Warn("remove the overlay's engine network", "err", err)
	}
}

func (dp *DataPlane) close() {
	dp.applyMu.Lock()
	defer dp.applyMu.Unlock()
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.res != nil {
		dp.res.Close()
	}
	// The device stays up across a node restart only with a kernel
	// interface; the userspace one dies with the process either way, so
	// close it cleanly (containers keep their addresses).
	if dp.dev != nil {
		dp.dev.Close()
	}
}

// status is the node's overlay as `node show` displays it.
func (dp *DataPlane) Status() *api.OverlayStatus {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	st := &api.OverlayStatus{Enabled: dp.enabled, Reason: dp.reason}
	if dp.res != nil {
		for _, a := range dp.res.Addrs() {
			st.DNS = append(st.DNS, a.String())
		}
	}
	if dp.dev == nil {
		return st
	}
	st.Interface, st.Mode, st.Address, st.Subnet = dp.dev.Name(), dp.dev.Mode(), dp.self.Address, dp.self.Subnet
	st.PublicKey = dp.key.PublicKey().String()
	names := map[string]string{}
	if dp.nm != nil {
		for _, p := range dp.nm.Peers {
			names[p.PublicKey] = p.Name
		}
	}
	peers, err := dp.dev.Peers()
	if err != nil {
		st.Error = err.Error()
	}
	for _, p := range peers {
		st.Peers = append(st.Peers, api.OverlayPeer{Name: names[p.PublicKey], PublicKey: p.PublicKey,
			Endpoint: p.Endpoint, AllowedIPs: p.AllowedIPs, LastHandshake: p.LastHandshake, RxBytes: p.RxBytes, TxBytes: p.TxBytes})
	}
	if dp.alloc != nil {
		st.Containers = len(dp.alloc.Owners())
	}
	return st
}

// network is what the agent attaches containers with, once ready.
func (dp *DataPlane) Network(ctx context.Context) (agent.Network, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-dp.ready:
	}
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.dev == nil || dp.alloc == nil {
		return nil, nil
	}
	return &overlayNet{alloc: dp.alloc, grid: dp.nm.Grid, dns: dp.containerDNS}, nil
}

// overlayNet attaches containers to the node's overlay network.
type overlayNet struct {
	alloc *overlay.Allocator
	grid  string
	dns   func() []string
}

func (o *overlayNet) Attach(s agent.ContainerSpec) (agent.Attachment, error) {
	ip, err := o.alloc.Allocate(s.Name)
	if err != nil {
		return agent.Attachment{}, err
	}
	at := o.Hook(s)
	at.IP = ip
	return at, nil
}

func (o *overlayNet) Hook(s agent.ContainerSpec) agent.Attachment {
	return agent.Attachment{Network: overlayNetwork, DNS: o.dns(),
		DNSSearch: []string{s.Stack + "." + o.grid + "." + dns.DefaultDomain, o.grid + "." + dns.DefaultDomain}}
}

func (o *overlayNet) Sync(live []string) error {
	_, err := o.alloc.Sync(live)
	return err
}

func (o *overlayNet) Lookup(name string) (netip.Addr, bool) { return o.alloc.Lookup(name) }

// dynamicRange is the top /28 of a node subnet: the engine picks hook
// containers' addresses there, the allocator never does.
func dynamicRange(subnet netip.Prefix) netip.Prefix {
	last := subnet.Masked().Addr().As4()
	host := 32 - subnet.Bits()
	mask := uint32(1)<<host - 1
	v := (uint32(last[0])<<24 | uint32(last[1])<<16 | uint32(last[2])<<8 | uint32(last[3])) | mask
	a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	return netip.PrefixFrom(a, 28).Masked()
}

// Voters are the grid's voters by the last network map (the state, as a
// voter built it): a worker trusts node-to-node calls only from these.
func (dp *DataPlane) Voters() []api.NetVoter {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.nm == nil {
		return nil
	}
	return dp.nm.Voters
}
