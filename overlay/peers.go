package overlay

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Peer is another node (or VPN client) the device exchanges traffic with.
type Peer struct {
	PublicKey  wgtypes.Key
	Endpoint   *net.UDPAddr // nil: wait for the peer to reach us first
	AllowedIPs []netip.Prefix
	// Keepalive sends an empty packet when the tunnel is idle for this
	// long, keeping NAT and stateful firewall mappings open. 0 disables it.
	Keepalive time.Duration
	Name      string // for logs and PeerStatus only
}

// PeerStatus is what the device reports about one peer, for `node show`.
type PeerStatus struct {
	Name          string    `json:"name,omitempty"`
	PublicKey     string    `json:"public_key"`
	Endpoint      string    `json:"endpoint,omitempty"`
	AllowedIPs    []string  `json:"allowed_ips"`
	LastHandshake time.Time `json:"last_handshake"` // zero: never
	RxBytes       int64     `json:"rx_bytes"`
	TxBytes       int64     `json:"tx_bytes"`
}

// diffPeers returns the changes that turn the device's peers (current) into
// exactly want. Unchanged peers get no entry at all: reconfiguring a peer
// keeps its session, but leaving it alone makes sure that a reconcile loop
// run every few seconds cannot disturb a tunnel. Removals come first so that
// allowed IPs a removed peer held (a node re-joined with a new key) are free
// before the new owner claims them.
func diffPeers(current []wgtypes.Peer, want []Peer) ([]wgtypes.PeerConfig, error) {
	wanted := make(map[wgtypes.Key]Peer, len(want))
	for _, p := range want {
		if p.PublicKey == (wgtypes.Key{}) {
			return nil, fmt.Errorf("overlay: peer %q has no public key", p.Name)
		}
		if _, dup := wanted[p.PublicKey]; dup {
			return nil, fmt.Errorf("overlay: peer %s (%q) is listed twice", p.PublicKey, p.Name)
		}
		for _, pfx := range p.AllowedIPs {
			if !pfx.IsValid() {
				return nil, fmt.Errorf("overlay: peer %q has an invalid allowed IP prefix", p.Name)
			}
		}
		if p.Keepalive < 0 {
			return nil, fmt.Errorf("overlay: peer %q has a negative keepalive", p.Name)
		}
		wanted[p.PublicKey] = p
	}

	have := make(map[wgtypes.Key]wgtypes.Peer, len(current))
	var removes []wgtypes.PeerConfig
	for _, c := range current {
		have[c.PublicKey] = c
		if _, ok := wanted[c.PublicKey]; !ok {
			removes = append(removes, wgtypes.PeerConfig{PublicKey: c.PublicKey, Remove: true})
		}
	}
	slices.SortFunc(removes, func(a, b wgtypes.PeerConfig) int { return cmp.Compare(a.PublicKey.String(), b.PublicKey.String()) })

	changes := removes
	for _, p := range want {
		allowed := normalizePrefixes(p.AllowedIPs)
		keepalive := p.Keepalive.Truncate(time.Second) // WireGuard counts in seconds
		c, exists := have[p.PublicKey]
		if !exists {
			pc := wgtypes.PeerConfig{
				PublicKey:         p.PublicKey,
				Endpoint:          p.Endpoint,
				ReplaceAllowedIPs: true,
				AllowedIPs:        toIPNets(allowed),
			}
			if keepalive > 0 {
				pc.PersistentKeepaliveInterval = &keepalive
			}
			changes = append(changes, pc)
			continue
		}
		pc := wgtypes.PeerConfig{PublicKey: p.PublicKey, UpdateOnly: true}
		changed := false
		if p.Endpoint != nil && !sameEndpoint(c.Endpoint, p.Endpoint) {
			pc.Endpoint = p.Endpoint
			changed = true
		}
		if !slices.Equal(normalizePrefixes(fromIPNets(c.AllowedIPs)), allowed) {
			pc.ReplaceAllowedIPs = true
			pc.AllowedIPs = toIPNets(allowed)
			changed = true
		}
		if c.PersistentKeepaliveInterval != keepalive {
			pc.PersistentKeepaliveInterval = &keepalive
			changed = true
		}
		if changed {
			changes = append(changes, pc)
		}
	}
	return changes, nil
}

// changeKind names a PeerConfig produced by diffPeers, for logs.
func changeKind(pc wgtypes.PeerConfig) string {
	switch {
	case pc.Remove:
		return "removed"
	case pc.UpdateOnly:
		return "updated"
	default:
		return "added"
	}
}

func sameEndpoint(a, b *net.UDPAddr) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.AddrPort().Addr().Unmap() == b.AddrPort().Addr().Unmap() && a.Port == b.Port
}

// normalizePrefixes masks, sorts and deduplicates, so that two spellings of
// the same set compare equal.
func normalizePrefixes(in []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(in))
	for _, p := range in {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Bits(), b.Bits())
	})
	return slices.Compact(out)
}

func toIPNets(in []netip.Prefix) []net.IPNet {
	out := make([]net.IPNet, 0, len(in))
	for _, p := range in {
		out = append(out, net.IPNet{
			IP:   net.IP(p.Addr().AsSlice()),
			Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
		})
	}
	return out
}

func fromIPNets(in []net.IPNet) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(in))
	for _, n := range in {
		addr, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ones, bits := n.Mask.Size()
		if bits == 0 {
			continue
		}
		if addr.Is4In6() && bits == 32 {
			addr = addr.Unmap()
		}
		out = append(out, netip.PrefixFrom(addr, ones))
	}
	return out
}

// peerStatus converts what wgctrl reports.
func peerStatus(p wgtypes.Peer, name string) PeerStatus {
	s := PeerStatus{
		Name:          name,
		PublicKey:     p.PublicKey.String(),
		AllowedIPs:    []string{},
		LastHandshake: p.LastHandshakeTime,
		RxBytes:       p.ReceiveBytes,
		TxBytes:       p.TransmitBytes,
	}
	if p.Endpoint != nil {
		s.Endpoint = p.Endpoint.String()
	}
	for _, pfx := range normalizePrefixes(fromIPNets(p.AllowedIPs)) {
		s.AllowedIPs = append(s.AllowedIPs, pfx.String())
	}
	// Userspace WireGuard reports "never" as the Unix epoch.
	if s.LastHandshake.Unix() == 0 {
		s.LastHandshake = time.Time{}
	}
	return s
}
