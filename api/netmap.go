package api

import (
	"time"

	"github.com/kontena-ng/kontena/dispatcher"
)

// The node protocol's answers are the dispatcher's types (it builds them
// from the state); the API serves them as they are.
type (
	NetMap    = dispatcher.NetMap
	NetVoter  = dispatcher.NetVoter
	NetNode   = dispatcher.NetNode
	NetPeer   = dispatcher.NetPeer
	DNSRecord = dispatcher.DNSRecord
)

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
