package fsm

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// ExportState is the whole state of v as one document, in the snapshot
// format: a backup (`kontena grid backup`). Every secret in it is sealed,
// as in the state.
func ExportState(v *View) ([]byte, error) {
	d, err := snapshotOf(v)
	if err != nil {
		return nil, err
	}
	return json.Marshal(d)
}

// Restored is a backup's state made ready to seed a restored grid.
type Restored struct {
	State []byte // snapshot document
	Index uint64 // the backup's index: the restored log continues after it
	Grid  *Grid
	Self  *Node // the node the grid is restored on
}

// PrepareRestore makes an exported state the first state of a grid
// restored on one machine: the node named name (the backup's first voter
// when name is "") is that machine, now the only voter (update sets its
// new addresses); every other node becomes an offline worker, since it is
// not in the new Raft configuration: workers re-join with their
// identities, former voters can be promoted again once they are back.
func PrepareRestore(state []byte, name string, update func(n *Node)) (*Restored, error) {
	var d snapshotData
	if err := json.Unmarshal(state, &d); err != nil {
		return nil, fmt.Errorf("read the backup's state: %w", err)
	}
	if len(d.Grid) != 1 || d.Grid[0] == nil {
		return nil, fmt.Errorf("the backup holds %d grids, expected 1: %w", len(d.Grid), ErrInvalid)
	}
	self := pickRestoreNode(d.Nodes, name)
	if self == nil {
		var names []string
		for _, n := range d.Nodes {
			if n != nil {
				names = append(names, n.Name)
			}
		}
		return nil, fmt.Errorf("node %q is not in the backup (its nodes: %s): restore with --name of one of them: %w", name, strings.Join(names, ", "), ErrNotFound)
	}
	for _, n := range d.Nodes {
		if n == nil {
			return nil, fmt.Errorf("the backup holds a null node: %w", ErrInvalid)
		}
		if n == self {
			n.Role, n.Status = RoleVoter, StatusOnline
			update(n)
			continue
		}
		if n.Role == RoleVoter {
			n.Role = RoleWorker
		}
		n.Status = StatusOffline
	}
	out, err := json.Marshal(&d)
	if err != nil {
		return nil, err
	}
	return &Restored{State: out, Index: d.Index, Grid: d.Grid[0], Self: self}, nil
}

func pickRestoreNode(nodes []*Node, name string) *Node {
	if name != "" {
		for _, n := range nodes {
			if n != nil && n.Name == name {
				return n
			}
		}
		return nil
	}
	var voters []*Node
	for _, n := range nodes {
		if n != nil && n.Role == RoleVoter {
			voters = append(voters, n)
		}
	}
	if len(voters) == 0 {
		return nil
	}
	slices.SortFunc(voters, func(a, b *Node) int { return a.Number - b.Number })
	return voters[0]
}
