package fsm

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/kontena-ng/kontena/overlay"
)

// NodeOverlay is a node's place in the grid's WireGuard mesh. The node sets
// its public key and port; the FSM allocates the subnet once, when the node
// registers, so container addresses never need a quorum afterwards.
type NodeOverlay struct {
	PublicKey string `json:"public_key,omitempty"`
	Port      int    `json:"port,omitempty"`      // WireGuard UDP port; 0 = the overlay is off on that node
	Subnet    string `json:"subnet,omitempty"`    // the node's container subnet, e.g. 10.81.3.0/24
	Address   string `json:"address,omitempty"`   // the node's own overlay address, first host of Subnet
	Interface string `json:"interface,omitempty"` // informational: kernel or userspace device
}

// VPNPeer is an admin machine that may reach the overlay through one node.
type VPNPeer struct {
	Name      string    `json:"name"`
	PublicKey string    `json:"public_key"`
	Address   string    `json:"address"` // /32 inside the grid's VPN prefix
	NodeID    string    `json:"node_id"` // the node its tunnel ends on
	CreatedAt time.Time `json:"created_at"`
}

// Overlay and VPN command numbers (persisted: never renumber). The VPN
// peers are rows of the grid table (Grid.VPNPeers), the overlay of a node
// part of its row.
const (
	MsgNodeOverlay MsgType = 17
	MsgVPNCreate   MsgType = 18
	MsgVPNRemove   MsgType = 19
)

var overlayCommands = []Command{(*NodeOverlaySet)(nil), (*VPNCreate)(nil), (*VPNRemove)(nil)}

// overlayBits is the size of each node's subnet.
const overlayBits = overlay.DefaultSubnetBits

// allocateSubnet gives n the lowest free subnet of the grid prefix unless it
// has one. Subnets of removed nodes become free again.
func (a *applier) allocateSubnet(g *Grid, n *Node) error {
	if n.Overlay.Subnet != "" {
		return nil
	}
	grid, err := netip.ParsePrefix(g.Subnet)
	if err != nil {
		return fmt.Errorf("grid subnet %q: %w", g.Subnet, ErrInvalid)
	}
	var used []netip.Prefix
	it, err := a.txn.Get(TableNodes, "id")
	if err != nil {
		return err
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		other := raw.(*Node)
		if other.ID == n.ID {
			continue
		}
		if p, err := netip.ParsePrefix(other.Overlay.Subnet); err == nil {
			used = append(used, p)
		}
	}
	sub, err := overlay.AllocateSubnet(grid, used, overlayBits)
	if err != nil {
		return fmt.Errorf("node %s: %v: %w", n.Name, err, ErrConflict)
	}
	n.Overlay.Subnet = sub.String()
	n.Overlay.Address = overlay.NodeAddr(sub).String()
	return nil
}

// NodeOverlaySet is sent by a node when its WireGuard key or port differs
// from the state (first start after an upgrade, data dir restored...).
type NodeOverlaySet struct {
	ID        string `json:"id"`
	PublicKey string `json:"public_key"`
	Port      int    `json:"port"`
	Interface string `json:"interface,omitempty"`
}

func (*NodeOverlaySet) MsgType() MsgType   { return MsgNodeOverlay }
func (*NodeOverlaySet) name() string       { return "node.overlay" }
func (c *NodeOverlaySet) resource() string { return "node/" + c.ID }

func (c *NodeOverlaySet) apply(a *applier) (any, error) {
	n, err := a.getNode(c.ID)
	if err != nil {
		return nil, err
	}
	g, err := a.grid()
	if err != nil {
		return nil, err
	}
	if err := a.allocateSubnet(g, n); err != nil {
		return nil, err
	}
	changed := n.Overlay.PublicKey != c.PublicKey || n.Overlay.Port != c.Port
	n.Overlay.PublicKey, n.Overlay.Port, n.Overlay.Interface = c.PublicKey, c.Port, c.Interface
	n.ModifyIndex = a.index
	if err := a.txn.Insert(TableNodes, n); err != nil {
		return nil, err
	}
	if changed {
		msg := fmt.Sprintf("node %s: overlay %s, subnet %s", n.Name, n.Overlay.Address, n.Overlay.Subnet)
		if c.Port == 0 {
			msg = fmt.Sprintf("node %s: overlay off (subnet %s kept)", n.Name, n.Overlay.Subnet)
		}
		if err := a.event("node.overlay", "node/"+n.Name, msg); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// VPNCreate admits an admin machine's public key; the FSM picks its address.
type VPNCreate struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
	NodeID    string `json:"node_id"`
}

func (*VPNCreate) MsgType() MsgType   { return MsgVPNCreate }
func (*VPNCreate) name() string       { return "vpn.create" }
func (c *VPNCreate) resource() string { return "vpn/" + c.Name }

func (c *VPNCreate) apply(a *applier) (any, error) {
	g, err := a.grid()
	if err != nil {
		return nil, err
	}
	if !nameOK(c.Name) {
		return nil, fmt.Errorf("vpn name %q: use lowercase letters, digits and dashes: %w", c.Name, ErrInvalid)
	}
	if c.PublicKey == "" {
		return nil, fmt.Errorf("vpn %s: a public key is required: %w", c.Name, ErrInvalid)
	}
	n, err := a.getNode(c.NodeID)
	if err != nil {
		return nil, err
	}
	if n.Overlay.Port == 0 {
		return nil, fmt.Errorf("node %s has the overlay off; pick a node whose `kontena node show` lists an overlay address: %w", n.Name, ErrInvalid)
	}
	for _, p := range g.VPNPeers {
		if p.Name == c.Name {
			return nil, fmt.Errorf("vpn %s exists (through node %s); remove it with `kontena vpn rm %s` first: %w", c.Name, p.NodeID, c.Name, ErrConflict)
		}
		if p.PublicKey == c.PublicKey {
			return nil, fmt.Errorf("that public key is already vpn %s: %w", p.Name, ErrConflict)
		}
	}
	grid, err := netip.ParsePrefix(g.Subnet)
	if err != nil {
		return nil, fmt.Errorf("grid subnet %q: %w", g.Subnet, ErrInvalid)
	}
	vpn := overlay.VPNPrefix(grid, overlayBits)
	taken := map[netip.Addr]bool{}
	for _, p := range g.VPNPeers {
		if ad, err := netip.ParseAddr(p.Address); err == nil {
			taken[ad] = true
		}
	}
	var addr netip.Addr
	for ad := vpn.Addr().Next(); vpn.Contains(ad) && ad != lastAddr(vpn); ad = ad.Next() {
		if !taken[ad] {
			addr = ad
			break
		}
	}
	if !addr.IsValid() {
		return nil, fmt.Errorf("no free VPN address in %s; remove an unused one (`kontena vpn ls`): %w", vpn, ErrConflict)
	}
	peer := VPNPeer{Name: c.Name, PublicKey: c.PublicKey, Address: addr.String(), NodeID: n.ID, CreatedAt: a.now}
	g.VPNPeers = append(g.VPNPeers, peer)
	g.ModifyIndex = a.index
	if err := a.txn.Insert(TableGrid, g); err != nil {
		return nil, err
	}
	return &peer, a.event("vpn.created", "vpn/"+c.Name, fmt.Sprintf("vpn %s (%s) through node %s", c.Name, addr, n.Name))
}

// VPNRemove revokes a VPN peer.
type VPNRemove struct {
	Name string `json:"name"`
}

func (*VPNRemove) MsgType() MsgType   { return MsgVPNRemove }
func (*VPNRemove) name() string       { return "vpn.remove" }
func (c *VPNRemove) resource() string { return "vpn/" + c.Name }

func (c *VPNRemove) apply(a *applier) (any, error) {
	g, err := a.grid()
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(g.VPNPeers, func(p VPNPeer) bool { return p.Name == c.Name })
	if i < 0 {
		return nil, fmt.Errorf("vpn %s: %w", c.Name, ErrNotFound)
	}
	g.VPNPeers = slices.Delete(g.VPNPeers, i, i+1)
	g.ModifyIndex = a.index
	if err := a.txn.Insert(TableGrid, g); err != nil {
		return nil, err
	}
	return nil, a.event("vpn.removed", "vpn/"+c.Name, "vpn "+c.Name+" revoked")
}

// lastAddr is the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func nameOK(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' && i > 0 && i < len(s)-1) {
			return false
		}
	}
	return true
}
