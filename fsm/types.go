// Package fsm is the grid's replicated state: a go-memdb state store, the
// typed commands that change it (one message per change), and the raft.FSM
// that applies them in log order on every voter.
package fsm

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kontena-ng/kontena/stack"
)

// Node roles. Voters hold the Raft log; workers only gossip and run work.
const (
	RoleVoter  = "voter"
	RoleWorker = "worker"
)

// Node status as seen by the leader through gossip.
const (
	StatusOnline  = "online"
	StatusOffline = "offline"
)

// Node availability as set by an operator.
const (
	AvailabilityActive = "active"
	AvailabilityDrain  = "drain"
)

// Grid holds the grid-wide settings fixed at bootstrap plus the few that
// operators may change later.
type Grid struct {
	Name            string   `json:"name"`
	Subnet          string   `json:"subnet"`
	Supernet        string   `json:"supernet"`
	InitialSize     int      `json:"initial_size"`
	CACert          string   `json:"ca_cert"`
	CADigest        string   `json:"ca_digest"`
	JoinTokenSealed []byte   `json:"join_token_sealed"` // vault-sealed; never plaintext
	DefaultAffinity []string `json:"default_affinity,omitempty"`
	LastNodeNumber  int      `json:"last_node_number"`
	RemovedNodes    []string `json:"removed_nodes,omitempty"` // IDs, newest last, bounded
	// OfflineGrace, when set, replaces every strategy's grace before the
	// instances of an offline node move (tests, impatient grids).
	OfflineGrace time.Duration `json:"offline_grace,omitempty"`
	// VPNPeers are the admin machines `kontena vpn create` let into the
	// overlay, each through one node.
	VPNPeers    []VPNPeer `json:"vpn_peers,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	ModifyIndex uint64    `json:"modify_index"`
}

// Node is one machine of the grid.
type Node struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	Number       int       `json:"number"` // 1-based, never reused; later the overlay address
	Role         string    `json:"role"`
	Status       string    `json:"status"`
	Availability string    `json:"availability"`
	Labels       []string  `json:"labels"`
	Addr         string    `json:"addr"`
	PublicAddr   string    `json:"public_addr,omitempty"`
	APIPort      int       `json:"api_port"`
	RaftPort     int       `json:"raft_port"`
	GossipPort   int       `json:"gossip_port"`
	Version      string    `json:"version"`
	JoinedAt     time.Time `json:"joined_at"`
	StatusAt     time.Time `json:"status_at"`
	LastSeen     time.Time `json:"last_seen"`
	// Overlay is the node's place in the WireGuard mesh: its public key
	// (set by the node itself) and its subnet (allocated once, at join).
	Overlay NodeOverlay `json:"overlay"`
	// Resources are what the node's container engine reported; the
	// scheduler's cpus, memory and volume driver filters read them.
	Resources   NodeResources `json:"resources"`
	CreateIndex uint64        `json:"create_index"`
	ModifyIndex uint64        `json:"modify_index"`
}

// Label returns the value of label key and whether it is set.
func (n *Node) Label(key string) (string, bool) {
	for _, l := range n.Labels {
		k, v, _ := strings.Cut(l, "=")
		if k == key {
			return v, true
		}
	}
	return "", false
}

// User is an account that may hold API tokens.
type User struct {
	Name      string    `json:"name"`
	Roles     []string  `json:"roles"`
	CreatedAt time.Time `json:"created_at"`
}

// Token is an API bearer token. Only its SHA-256 hash is stored.
type Token struct {
	ID          string    `json:"id"`
	Hash        string    `json:"hash"`
	User        string    `json:"user"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at,omitempty"`
}

// Expired tells whether the token may no longer be used at time now.
func (t *Token) Expired(now time.Time) bool {
	return !t.ExpiresAt.IsZero() && now.After(t.ExpiresAt)
}

// Event records something that happened to the grid, for operators.
type Event struct {
	Index    uint64    `json:"index"`
	Time     time.Time `json:"time"`
	Type     string    `json:"type"`
	Resource string    `json:"resource"`
	Message  string    `json:"message"`
}

// AuditRecord is written in the same transaction as every mutating command.
type AuditRecord struct {
	Index     uint64    `json:"index"`
	Time      time.Time `json:"time"`
	User      string    `json:"user"`
	SourceIP  string    `json:"source_ip,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
	Action    string    `json:"action"`
	Resource  string    `json:"resource"`
}

// Stack is an installed stack: the source as the user gave it, the values
// it was rendered with (so `upgrade --reuse-values` can reuse them; never
// vault-backed ones) and the validated definition.
type Stack struct {
	Name        string         `json:"name"`
	FileName    string         `json:"file_name,omitempty"`
	Source      string         `json:"source"`
	Values      map[string]any `json:"values,omitempty"`
	Spec        stack.Stack    `json:"spec"`
	Revision    uint64         `json:"revision"`
	CreatedAt   time.Time      `json:"created_at"`
	UpdatedAt   time.Time      `json:"updated_at"`
	ModifyIndex uint64         `json:"modify_index"`
}

// Service is the desired state of one service of a stack.
type Service struct {
	ID        string        `json:"id"` // "<stack>/<service>"
	Stack     string        `json:"stack"`
	Name      string        `json:"name"`
	Revision  uint64        `json:"revision"`  // bumped when what its containers run changes
	Instances int           `json:"instances"` // desired count; `service scale` changes it
	Spec      stack.Service `json:"spec"`
	// PlacementError says why the leader could not place every instance
	// ("" when it could): which filter rejected which nodes.
	PlacementError string `json:"placement_error,omitempty"`
	// Stopped: `service stop` keeps the instances and their placement but
	// their containers are stopped (not removed) until `service start`.
	Stopped bool `json:"stopped,omitempty"`
	// Undeployed: installed with --no-deploy; nothing is placed until
	// `stack deploy` or `service deploy`.
	Undeployed bool `json:"undeployed,omitempty"`
	// RestartGen is bumped by `service restart`: instances whose Restart is
	// behind it are restarted in place, rolling (see service_ops.go).
	RestartGen uint64 `json:"restart_gen,omitempty"`
	// Deploy is the state of the service's last deploy.
	Deploy      DeployState `json:"deploy,omitzero"`
	ModifyIndex uint64      `json:"modify_index"`
}

// ServiceID is the ID of service svc of stack st.
func ServiceID(st, svc string) string { return st + "/" + svc }

// Instance is one numbered instance of a service, placed on a node by the
// leader; Actual is what that node last reported about it.
type Instance struct {
	ID          string         `json:"id"` // "<stack>/<service>-<n>"
	ServiceID   string         `json:"service_id"`
	Number      int            `json:"number"`
	NodeID      string         `json:"node_id"`
	Revision    uint64         `json:"revision"`          // service revision the node must run
	Restart     uint64         `json:"restart,omitempty"` // restart generation the node must reach
	Stopped     bool           `json:"stopped,omitempty"` // its service is stopped: keep the container, stopped
	Actual      InstanceActual `json:"actual"`
	ModifyIndex uint64         `json:"modify_index"`
}

// InstanceID is the ID of instance n of a service.
func InstanceID(serviceID string, n int) string { return fmt.Sprintf("%s-%d", serviceID, n) }

// InstanceActual is a node's report on one instance.
type InstanceActual struct {
	State       string    `json:"state,omitempty"` // running, exited, unhealthy, failed, removed
	Health      string    `json:"health,omitempty"`
	Error       string    `json:"error,omitempty"`
	ContainerID string    `json:"container_id,omitempty"`
	IP          string    `json:"ip,omitempty"` // overlay address; DNS answers with it
	Revision    uint64    `json:"revision,omitempty"`
	At          time.Time `json:"at,omitempty"`
	// Restart is the restart generation the container has reached.
	Restart uint64 `json:"restart,omitempty"`
	// WaitPort is "waiting" or "open" for services with deploy.wait_for_port:
	// whether the port accepts TCP connections on the container's address.
	WaitPort string `json:"wait_port,omitempty"`
	// Event is the last thing the node's agent did to the instance on its
	// own ("died", "unhealthy", "restarted", "started") and when; the FSM
	// turns each new one into a grid event.
	Event        string    `json:"event,omitempty"`
	EventMessage string    `json:"event_message,omitempty"`
	EventAt      time.Time `json:"event_at,omitzero"`
}

// Secret is a vault entry, sealed with the grid master key.
type Secret struct {
	Name        string    `json:"name"`
	Sealed      []byte    `json:"sealed"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	ModifyIndex uint64    `json:"modify_index"`
}

// Certificate is a TLS certificate for services; its key is sealed.
type Certificate struct {
	Subject   string    `json:"subject"`
	AltNames  []string  `json:"alt_names,omitempty"`
	CertPEM   string    `json:"cert_pem"`
	KeySealed []byte    `json:"key_sealed"`
	ExpiresAt time.Time `json:"expires_at"`
}

// normalizeLabels keeps one entry per key (the last one wins) in key order so
// that equal label sets compare equal.
func normalizeLabels(labels []string) []string {
	byKey := map[string]string{}
	for _, l := range labels {
		k, _, _ := strings.Cut(l, "=")
		byKey[k] = l
	}
	out := make([]string, 0, len(byKey))
	for _, l := range byKey {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}
