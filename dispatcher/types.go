package dispatcher

import (
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/stack"
)

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

// Assignment is one instance a node must run, with its service spec.
type Assignment struct {
	Instance fsm.Instance  `json:"instance"`
	Stack    string        `json:"stack"`
	Service  stack.Service `json:"service"`
	// Volumes are the stack's declarations of the named volumes the
	// service mounts (scope, driver, external name).
	Volumes []*stack.Volume `json:"volumes,omitempty"`
	// Drained: the node is drained and the service is stateful, so the
	// instance stays (its data is here) but its container is stopped
	// until the node is active again.
	Drained bool `json:"drained,omitempty"`
	// Routed: the service is linked to a load balancer; its containers
	// drain before they stop (the load balancers stop routing to them
	// first).
	Routed bool `json:"routed,omitempty"`
	// SecretEnv are the service's vault secrets of type env, opened by
	// the voter that answers, by environment variable (several secrets on
	// one name joined by a newline, as Kontena bundled SSL_CERTS). Only the
	// node that runs the instance gets them, over mutual TLS.
	SecretEnv map[string]string `json:"secret_env,omitempty"`
	// SecretFiles are its secrets of type file, by file name under
	// /run/secrets: the node keeps them on a tmpfs, never on its disk.
	SecretFiles map[string]string `json:"secret_files,omitempty"`
}

// Assignments is what a node's agent watches.
type Assignments struct {
	Grid  string       `json:"grid"`
	Items []Assignment `json:"items"`
}
