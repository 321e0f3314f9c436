package scheduler

import (
	"strings"

	"github.com/kontena-ng/kontena/fsm"
)

// Node is what placement knows about a machine of the grid.
type Node struct {
	ID           string
	Name         string
	Number       int    // order of joining; daemon numbering and ties follow it
	Status       string // fsm.StatusOnline or fsm.StatusOffline
	Availability string // fsm.AvailabilityActive (or "") or fsm.AvailabilityDrain
	Labels       []string
	// Resources as the node's agent last reported them; zero means not
	// reported yet, which fails services that ask for cpus or memory.
	CPUs          float64
	MemoryTotal   int64
	MemoryUsed    int64
	VolumeDrivers []string // "name" or "name:version"
	// Hold, when set, says why the node keeps the instances it runs but
	// takes no new ones: offline for less than the strategy's grace, or
	// back online for less than the online grace. Set per service with
	// State.SetHolds, since the grace depends on the strategy.
	Hold string
}

// NodeFromFSM copies the grid record of a node. Resources and volume
// drivers come from the node's agent and are left for the caller to fill.
func NodeFromFSM(n *fsm.Node) Node {
	return Node{
		ID:           n.ID,
		Name:         n.Name,
		Number:       n.Number,
		Status:       n.Status,
		Availability: n.Availability,
		Labels:       append([]string(nil), n.Labels...),
	}
}

// Label returns the value of label key and whether the node has it.
func (n *Node) Label(key string) (string, bool) {
	for _, l := range n.Labels {
		k, v, _ := strings.Cut(l, "=")
		if k == key {
			return v, true
		}
	}
	return "", false
}

// Ephemeral nodes (label "ephemeral", or "ephemeral=<v>" unless v is false,
// no or 0) may disappear with their disks, so they never get stateful
// instances.
func (n *Node) Ephemeral() bool {
	v, ok := n.Label("ephemeral")
	if !ok {
		return false
	}
	switch strings.ToLower(v) {
	case "false", "no", "0":
		return false
	}
	return true
}

// Zone is the availability zone ha spreads over: the "az" label, "" if none.
func (n *Node) Zone() string {
	v, _ := n.Label("az")
	return v
}

func (n *Node) display() string {
	if n.Name != "" {
		return n.Name
	}
	return n.ID
}

// schedulable tells whether the node may take a new instance.
func (n *Node) schedulable() bool {
	return n.Status == fsm.StatusOnline && n.Availability != fsm.AvailabilityDrain && n.Hold == ""
}

// keeps tells whether a held node may keep an instance that runs on it.
func (n *Node) keeps() bool {
	return n.Hold != "" && n.Availability != fsm.AvailabilityDrain
}
