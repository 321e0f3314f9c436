package fsm

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// TableNodes holds the machines of the grid.
const TableNodes = "nodes"

func nodeTables() []*memdb.TableSchema {
	return []*memdb.TableSchema{
		{Name: TableNodes, Indexes: map[string]*memdb.IndexSchema{
			"id":   idIndex("ID"),
			"name": {Name: "name", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Name"}},
		}},
	}
}

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

// maxRemovedNodes bounds the tombstones of removed nodes.
const maxRemovedNodes = 1000

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

// NodeResources is what a node's container engine has.
type NodeResources struct {
	CPUs          float64   `json:"cpus,omitempty"`
	MemoryTotal   int64     `json:"memory_total,omitempty"` // bytes
	VolumeDrivers []string  `json:"volume_drivers,omitempty"`
	Engine        string    `json:"engine,omitempty"` // container engine and version
	At            time.Time `json:"at,omitempty"`
}

// Node command numbers (persisted: never renumber).
const (
	MsgNodeRegister  MsgType = 2
	MsgNodeUpdate    MsgType = 3
	MsgNodeStatus    MsgType = 4
	MsgNodeRole      MsgType = 5
	MsgNodeRemove    MsgType = 6
	MsgNodeResources MsgType = 26
)

var nodeCommands = []Command{(*NodeRegister)(nil), (*NodeUpdate)(nil), (*NodeStatus)(nil),
	(*NodeRole)(nil), (*NodeRemove)(nil), (*NodeResourcesSet)(nil)}

// NodeRegister adds a node that presented a valid join token.
type NodeRegister struct {
	Node Node `json:"node"`
}

func (*NodeRegister) MsgType() MsgType   { return MsgNodeRegister }
func (*NodeRegister) name() string       { return "node.register" }
func (c *NodeRegister) resource() string { return "node/" + c.Node.Name }

func (c *NodeRegister) apply(a *applier) (any, error) {
	n := c.Node
	if raw, _ := a.txn.First(TableNodes, "id", n.ID); raw != nil {
		return nil, fmt.Errorf("node ID %s is already registered as %q: %w", n.ID, raw.(*Node).Name, ErrConflict)
	}
	if raw, _ := a.txn.First(TableNodes, "name", n.Name); raw != nil {
		other := raw.(*Node)
		return nil, fmt.Errorf("node name %q is already in use by node %s (%s); pick another --name, or remove the old node with `kontena node rm %s`: %w",
			n.Name, other.ID, other.Status, n.Name, ErrConflict)
	}
	// Numbers are never reused: a number may live on in addresses derived
	// from it after its node is gone.
	rawGrid, err := a.txn.First(TableGrid, "id")
	if err != nil {
		return nil, err
	}
	if rawGrid == nil {
		return nil, fmt.Errorf("register node before the grid exists: %w", ErrInvalid)
	}
	g := *rawGrid.(*Grid)
	g.LastNodeNumber++
	n.Number = g.LastNodeNumber
	if err := a.allocateSubnet(&g, &n); err != nil {
		return nil, err
	}
	if err := a.txn.Insert(TableGrid, &g); err != nil {
		return nil, err
	}
	if n.Availability == "" {
		n.Availability = AvailabilityActive
	}
	if n.Status == "" {
		n.Status = StatusOnline
	}
	n.Labels = normalizeLabels(n.Labels)
	n.JoinedAt, n.StatusAt, n.LastSeen = a.now, a.now, a.now
	n.CreateIndex, n.ModifyIndex = a.index, a.index
	if err := a.txn.Insert(TableNodes, &n); err != nil {
		return nil, err
	}
	return &n, a.event("node.joined", "node/"+n.Name, fmt.Sprintf("node %s joined as %s (number %d)", n.Name, n.Role, n.Number))
}

// NodeUpdate changes what an operator may change on a node.
type NodeUpdate struct {
	ID           string    `json:"id"`
	Availability string    `json:"availability,omitempty"`
	SetLabels    *[]string `json:"set_labels,omitempty"`
	AddLabels    []string  `json:"add_labels,omitempty"`
	RemoveLabels []string  `json:"remove_labels,omitempty"` // keys, or whole key=value
}

func (*NodeUpdate) MsgType() MsgType   { return MsgNodeUpdate }
func (*NodeUpdate) name() string       { return "node.update" }
func (c *NodeUpdate) resource() string { return "node/" + c.ID }

func (c *NodeUpdate) apply(a *applier) (any, error) {
	n, err := a.getNode(c.ID)
	if err != nil {
		return nil, err
	}
	var changes []string
	switch c.Availability {
	case "":
	case AvailabilityActive, AvailabilityDrain:
		if n.Availability != c.Availability {
			changes = append(changes, "availability "+c.Availability)
		}
		n.Availability = c.Availability
	default:
		return nil, fmt.Errorf("availability %q: expected active or drain: %w", c.Availability, ErrInvalid)
	}
	labels := n.Labels
	if c.SetLabels != nil {
		labels = slices.Clone(*c.SetLabels)
	}
	for _, rm := range c.RemoveLabels {
		key, val, whole := strings.Cut(rm, "=")
		labels = slices.DeleteFunc(labels, func(l string) bool {
			k, v, _ := strings.Cut(l, "=")
			return k == key && (!whole || v == val)
		})
	}
	labels = append(labels, c.AddLabels...)
	for _, l := range labels {
		if err := ValidateLabel(l); err != nil {
			return nil, err
		}
	}
	labels = normalizeLabels(labels)
	if !slices.Equal(labels, n.Labels) {
		changes = append(changes, "labels "+strings.Join(labels, ","))
	}
	n.Labels = labels
	n.ModifyIndex = a.index
	if err := a.txn.Insert(TableNodes, n); err != nil {
		return nil, err
	}
	if len(changes) > 0 {
		if err := a.event("node.updated", "node/"+n.Name, "node "+n.Name+": "+strings.Join(changes, "; ")); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// ValidateLabel checks the key=value form of a node label.
func ValidateLabel(l string) error {
	k, _, ok := strings.Cut(l, "=")
	if !ok && l == "" {
		return fmt.Errorf("label is empty: expected key=value: %w", ErrInvalid)
	}
	if k == "" {
		return fmt.Errorf("label %q has an empty key: expected key=value: %w", l, ErrInvalid)
	}
	if strings.ContainsAny(k, " \t\n,") {
		return fmt.Errorf("label %q: key may not contain spaces or commas: %w", l, ErrInvalid)
	}
	return nil
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

// NodeStatusUpdate is the leader's view of one node through gossip.
type NodeStatusUpdate struct {
	ID         string    `json:"id"`
	Status     string    `json:"status"`
	At         time.Time `json:"at"`
	LastSeen   time.Time `json:"last_seen"`
	Addr       string    `json:"addr,omitempty"`
	APIPort    int       `json:"api_port,omitempty"`
	RaftPort   int       `json:"raft_port,omitempty"`
	GossipPort int       `json:"gossip_port,omitempty"`
	Version    string    `json:"version,omitempty"`
	// PublicAddr, when SetPublicAddr, is the node's --public-address now
	// ("" = none): it may change across restarts.
	PublicAddr    string `json:"public_addr,omitempty"`
	SetPublicAddr bool   `json:"set_public_addr,omitempty"`
}

// NodeStatus carries a batch of status changes found in one membership pass.
type NodeStatus struct {
	Updates []NodeStatusUpdate `json:"updates"`
}

func (*NodeStatus) MsgType() MsgType { return MsgNodeStatus }
func (*NodeStatus) name() string     { return "node.status" }
func (*NodeStatus) resource() string { return "" }

func (c *NodeStatus) apply(a *applier) (any, error) {
	for _, u := range c.Updates {
		n, err := a.getNode(u.ID)
		if err != nil {
			continue // removed meanwhile: nothing to report on
		}
		changed := n.Status != u.Status
		if u.Status != "" {
			n.Status = u.Status
		}
		if changed {
			n.StatusAt = u.At
		}
		if !u.LastSeen.IsZero() {
			n.LastSeen = u.LastSeen
		}
		if u.Addr != "" {
			n.Addr, n.APIPort, n.RaftPort, n.GossipPort = u.Addr, u.APIPort, u.RaftPort, u.GossipPort
		}
		if u.Version != "" {
			n.Version = u.Version
		}
		if u.SetPublicAddr {
			n.PublicAddr = u.PublicAddr
		}
		n.ModifyIndex = a.index
		if err := a.txn.Insert(TableNodes, n); err != nil {
			return nil, err
		}
		if changed {
			if err := a.event("node."+n.Status, "node/"+n.Name, fmt.Sprintf("node %s is %s", n.Name, n.Status)); err != nil {
				return nil, err
			}
		}
	}
	return nil, nil
}

// NodeRole promotes a worker to voter or demotes a voter.
type NodeRole struct {
	ID   string `json:"id"`
	Role string `json:"role"`
}

func (*NodeRole) MsgType() MsgType   { return MsgNodeRole }
func (*NodeRole) name() string       { return "node.role" }
func (c *NodeRole) resource() string { return "node/" + c.ID }

func (c *NodeRole) apply(a *applier) (any, error) {
	if c.Role != RoleVoter && c.Role != RoleWorker {
		return nil, fmt.Errorf("role %q: expected voter or worker: %w", c.Role, ErrInvalid)
	}
	n, err := a.getNode(c.ID)
	if err != nil {
		return nil, err
	}
	if n.Role == c.Role {
		return n, nil
	}
	n.Role = c.Role
	n.ModifyIndex = a.index
	if err := a.txn.Insert(TableNodes, n); err != nil {
		return nil, err
	}
	return n, a.event("node.role", "node/"+n.Name, fmt.Sprintf("node %s is now a %s", n.Name, n.Role))
}

// NodeRemove forgets a node; only offline nodes may be removed.
type NodeRemove struct {
	ID string `json:"id"`
}

func (*NodeRemove) MsgType() MsgType   { return MsgNodeRemove }
func (*NodeRemove) name() string       { return "node.remove" }
func (c *NodeRemove) resource() string { return "node/" + c.ID }

func (c *NodeRemove) apply(a *applier) (any, error) {
	n, err := a.getNode(c.ID)
	if err != nil {
		return nil, err
	}
	if n.Status == StatusOnline {
		return nil, fmt.Errorf("node %s is online: stop it first (only offline nodes can be removed): %w", n.Name, ErrConflict)
	}
	if err := a.txn.Delete(TableNodes, n); err != nil {
		return nil, err
	}
	// Remember the ID so a removed node that comes back can be told to stop.
	// VPN clients whose tunnel ended on it have nowhere to go: they are
	// revoked with it (their addresses freed).
	var revoked []string
	if raw, _ := a.txn.First(TableGrid, "id"); raw != nil {
		g := *raw.(*Grid)
		g.RemovedNodes = append(slices.Clone(g.RemovedNodes), n.ID)
		if len(g.RemovedNodes) > maxRemovedNodes {
			g.RemovedNodes = g.RemovedNodes[len(g.RemovedNodes)-maxRemovedNodes:]
		}
		g.VPNPeers = slices.DeleteFunc(slices.Clone(g.VPNPeers), func(p VPNPeer) bool {
			if p.NodeID == n.ID {
				revoked = append(revoked, p.Name)
				return true
			}
			return false
		})
		g.ModifyIndex = a.index
		if err := a.txn.Insert(TableGrid, &g); err != nil {
			return nil, err
		}
	}
	msg := fmt.Sprintf("node %s removed", n.Name)
	if len(revoked) > 0 {
		msg += fmt.Sprintf("; VPN clients %s revoked with it (create them again through another node)", strings.Join(revoked, ", "))
	}
	return n, a.event("node.removed", "node/"+n.Name, msg)
}

// NodeResourcesSet is sent by a node when its engine's resources differ
// from the state (first start, more memory, a new volume plugin).
type NodeResourcesSet struct {
	ID        string        `json:"id"`
	Resources NodeResources `json:"resources"`
}

func (*NodeResourcesSet) MsgType() MsgType { return MsgNodeResources }
func (*NodeResourcesSet) name() string     { return "node.resources" }
func (*NodeResourcesSet) resource() string { return "" }

func (c *NodeResourcesSet) apply(a *applier) (any, error) {
	n, err := a.getNode(c.ID)
	if err != nil {
		return nil, err
	}
	r := c.Resources
	r.VolumeDrivers = slices.Clone(r.VolumeDrivers)
	slices.Sort(r.VolumeDrivers)
	r.At = a.now
	n.Resources, n.ModifyIndex = r, a.index
	if err := a.txn.Insert(TableNodes, n); err != nil {
		return nil, err
	}
	return n, nil
}

// getNode returns a copy of a node, to change.
func (a *applier) getNode(id string) (*Node, error) {
	raw, err := a.txn.First(TableNodes, "id", id)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("node %s: %w", id, ErrNotFound)
	}
	cp := *raw.(*Node)
	cp.Labels = slices.Clone(cp.Labels)
	return &cp, nil
}

func (a *applier) nodeName(id string) string {
	if n, err := a.getNode(id); err == nil {
		return n.Name
	}
	return id
}

func sortNodes(ns []*Node) {
	sort.Slice(ns, func(i, j int) bool { return ns[i].Number < ns[j].Number })
}

// Nodes lists all nodes ordered by number.
func (v *View) Nodes() ([]*Node, error) {
	out, err := list[*Node](v.txn, TableNodes)
	if err != nil {
		return nil, err
	}
	sortNodes(out)
	return out, nil
}

// Node finds a node by ID or by name.
func (v *View) Node(idOrName string) (*Node, error) {
	for _, idx := range []string{"id", "name"} {
		raw, err := v.txn.First(TableNodes, idx, idOrName)
		if err != nil {
			return nil, err
		}
		if raw != nil {
			return raw.(*Node), nil
		}
	}
	return nil, fmt.Errorf("node %q: %w", idOrName, ErrNotFound)
}

// Nodes lists all nodes ordered by number.
func (s *Store) Nodes() ([]*Node, error) { return s.Snapshot().Nodes() }

// Node finds a node by ID or by name.
func (s *Store) Node(idOrName string) (*Node, error) { return s.Snapshot().Node(idOrName) }
