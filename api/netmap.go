package api

import "time"

// NetMap is what one node needs to run its share of the data plane: its own
// overlay subnet, the WireGuard peers it must have, and the names its DNS
// resolver answers. Nodes watch it with a blocking query and cache the last
// one on disk, so the overlay and DNS keep working without the masters.
type NetMap struct {
	Grid       string      `json:"grid"`
	GridSubnet string      `json:"grid_subnet"`
	Self       NetNode     `json:"self"`
	Peers      []NetPeer   `json:"peers"`
	Records    []DNSRecord `json:"records"`
	// Exposes maps "<grid>/<stack>" to the service the stack exposes.
	Exposes map[string]string `json:"exposes,omitempty"`
	// Voters are the grid's voters by the state: a worker, which has no
	// state, accepts node-to-node calls only from these.
	Voters []NetVoter `json:"voters,omitempty"`
}

// NetVoter is one voter of the grid.
type NetVoter struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// NetNode is a node's own overlay settings as the grid state has them.
type NetNode struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Subnet    string `json:"subnet"`
	Address   string `json:"address"`
	PublicKey string `json:"public_key,omitempty"`
	Port      int    `json:"port,omitempty"`
}

// NetPeer is one WireGuard peer of a node: another node, or a VPN client
// whose tunnel ends on this node.
type NetPeer struct {
	Name       string   `json:"name"`
	PublicKey  string   `json:"public_key"`
	Endpoint   string   `json:"endpoint,omitempty"` // host:port; "" for VPN clients (they dial in)
	AllowedIPs []string `json:"allowed_ips"`
	VPN        bool     `json:"vpn,omitempty"`
}

// DNSRecord is one running instance the resolver answers for.
type DNSRecord struct {
	Stack    string `json:"stack"`
	Service  string `json:"service"`
	Instance int    `json:"instance"`
	IP       string `json:"ip"`
	Healthy  bool   `json:"healthy"`
}

// OverlaySetRequest is a node telling the grid its WireGuard key and port.
type OverlaySetRequest struct {
	PublicKey string `json:"public_key"`
	Port      int    `json:"port"`
	Interface string `json:"interface,omitempty"`
}

// VPNCreateRequest admits an admin machine's public key through a node.
type VPNCreateRequest struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
	Node      string `json:"node,omitempty"` // name; "" = the leader's choice
}

// VPNInfo is one VPN peer and what its configuration needs.
type VPNInfo struct {
	Name       string `json:"name"`
	Address    string `json:"address"`
	Node       string `json:"node"`
	Endpoint   string `json:"endpoint"`    // host:port of the node's WireGuard
	PublicKey  string `json:"public_key"`  // the client's
	NodeKey    string `json:"node_key"`    // the node's public key
	GridSubnet string `json:"grid_subnet"` // AllowedIPs of the client
	DNS        string `json:"dns"`         // the node's resolver
	Domain     string `json:"domain"`      // <grid>.kontena.local
	CreatedAt  string `json:"created_at"`
}

// OverlayStatus is a node's overlay as it runs (in `node show`).
type OverlayStatus struct {
	Enabled    bool          `json:"enabled"`
	Reason     string        `json:"reason,omitempty"` // why it is off
	Interface  string        `json:"interface,omitempty"`
	Mode       string        `json:"mode,omitempty"` // kernel or userspace
	Address    string        `json:"address,omitempty"`
	Subnet     string        `json:"subnet,omitempty"`
	PublicKey  string        `json:"public_key,omitempty"`
	DNS        []string      `json:"dns,omitempty"`
	Containers int           `json:"containers"` // addresses allocated
	Peers      []OverlayPeer `json:"peers,omitempty"`
	Error      string        `json:"error,omitempty"`
}

// OverlayPeer is one WireGuard peer as the device sees it.
type OverlayPeer struct {
	Name          string    `json:"name"`
	PublicKey     string    `json:"public_key"`
	Endpoint      string    `json:"endpoint,omitempty"`
	AllowedIPs    []string  `json:"allowed_ips"`
	LastHandshake time.Time `json:"last_handshake,omitempty"`
	RxBytes       int64     `json:"rx_bytes"`
	TxBytes       int64     `json:"tx_bytes"`
}
