package scheduler

import (
	"cmp"
	"slices"
)

// State is the grid as placement sees it: nodes, every current instance and
// the grid's default affinity, with the indexes the filters need built once
// (instances per node and service, containers by name, ports per node,
// zones). Place only reads a State, so several Place calls may share one;
// Apply changes it and must not run concurrently with them.
type State struct {
	nodes           []Node // sorted by Number, Name, ID: the tie-break order
	byID            map[string]int32
	zoneOf          []int32 // node → index into zones
	zones           []string
	defaultAffinity []string

	instances      map[string][]Instance // service ID → instances by Number
	containers     map[string]string     // "stack/svc-N" → node ID (any node, known or not)
	nodeServices   []map[string]int32    // node → service ID → instances there
	nodeContainers [][]string            // node → container names there (a slice: cheap to grow)
	nodePorts      []map[portKey][]portUse
	nodeTotal      []int32 // instances per node, all services
	memUsed        []int64 // MemoryUsed plus what Apply has placed since
}

type portKey struct {
	proto string
	port  int
}

type portUse struct {
	service, container, ip string
}

// NewState indexes a snapshot. Nodes with a duplicate ID are ignored after
// the first; instances on unknown nodes are kept (a stateful instance whose
// node is gone must be reported, not silently re-placed).
func NewState(nodes []Node, instances []Instance, defaultAffinity []string) *State {
	s := &State{
		byID:            make(map[string]int32, len(nodes)),
		defaultAffinity: append([]string(nil), defaultAffinity...),
		instances:       make(map[string][]Instance),
		containers:      make(map[string]string, len(instances)),
	}
	for _, n := range nodes {
		if _, dup := s.byID[n.ID]; dup {
			continue
		}
		s.byID[n.ID] = -1
		s.nodes = append(s.nodes, n)
	}
	slices.SortStableFunc(s.nodes, func(a, b Node) int {
		return cmp.Or(cmp.Compare(a.Number, b.Number), cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	k := len(s.nodes)
	s.zoneOf = make([]int32, k)
	s.nodeServices = make([]map[string]int32, k)
	s.nodeContainers = make([][]string, k)
	s.nodePorts = make([]map[portKey][]portUse, k)
	s.nodeTotal = make([]int32, k)
	s.memUsed = make([]int64, k)
	zoneIdx := map[string]int32{}
	for i := range s.nodes {
		n := &s.nodes[i]
		s.byID[n.ID] = int32(i)
		z := n.Zone()
		zi, ok := zoneIdx[z]
		if !ok {
			zi = int32(len(s.zones))
			zoneIdx[z] = zi
			s.zones = append(s.zones, z)
		}
		s.zoneOf[i] = zi
		s.memUsed[i] = n.MemoryUsed
	}
	for _, in := range instances {
		s.instances[in.Service] = append(s.instances[in.Service], in)
		s.index(in)
	}
	for _, l := range s.instances {
		slices.SortStableFunc(l, func(a, b Instance) int { return cmp.Compare(a.Number, b.Number) })
	}
	return s
}

// SetHolds sets every node's Hold: holds maps node IDs to the reason, and
// nodes not in it are not held. Call it between Place calls, never during.
func (s *State) SetHolds(holds map[string]string) {
	for i := range s.nodes {
		s.nodes[i].Hold = holds[s.nodes[i].ID]
	}
}

// Instances returns the current instances of service "stack/name".
func (s *State) Instances(service string) []Instance {
	return slices.Clone(s.instances[service])
}

// node returns the index of node id, or -1.
func (s *State) node(id string) int32 {
	if i, ok := s.byID[id]; ok {
		return i
	}
	return -1
}

func (s *State) index(in Instance) {
	name := in.Name()
	s.containers[name] = in.NodeID
	n := s.node(in.NodeID)
	if n < 0 {
		return
	}
	if s.nodeServices[n] == nil {
		s.nodeServices[n] = map[string]int32{}
	}
	s.nodeServices[n][in.Service]++
	s.nodeContainers[n] = append(s.nodeContainers[n], name)
	s.nodeTotal[n]++
	for _, p := range in.Ports {
		if s.nodePorts[n] == nil {
			s.nodePorts[n] = map[portKey][]portUse{}
		}
		k := portKey{p.proto(), p.HostPort}
		s.nodePorts[n][k] = append(s.nodePorts[n][k], portUse{in.Service, name, p.HostIP})
	}
}

func (s *State) unindex(in Instance) {
	if s.containers[in.Name()] == in.NodeID {
		delete(s.containers, in.Name())
	}
	n := s.node(in.NodeID)
	if n < 0 || s.nodeServices[n] == nil {
		return
	}
	if s.nodeServices[n][in.Service]--; s.nodeServices[n][in.Service] <= 0 {
		delete(s.nodeServices[n], in.Service)
	}
	if i := slices.Index(s.nodeContainers[n], in.Name()); i >= 0 {
		s.nodeContainers[n] = slices.Delete(s.nodeContainers[n], i, i+1)
	}
	s.nodeTotal[n]--
	for _, p := range in.Ports {
		k := portKey{p.proto(), p.HostPort}
		s.nodePorts[n][k] = slices.DeleteFunc(s.nodePorts[n][k], func(u portUse) bool { return u.container == in.Name() })
		if len(s.nodePorts[n][k]) == 0 {
			delete(s.nodePorts[n], k)
		}
	}
}

// Apply records a plan of svc as done, so the next Place in the same pass
// sees its ports, containers and memory. Instances the plan could not place
// (stateful ones whose node is gone or rejected) stay as they were.
func (s *State) Apply(svc Service, p Plan) {
	id := svc.ID()
	old := s.instances[id]
	for _, in := range old {
		s.unindex(in)
	}
	placed := make(map[int]bool, len(p.Placements))
	next := make([]Instance, 0, len(p.Placements))
	for _, pl := range p.Placements {
		placed[pl.Number] = true
		vol := svc.Stateful
		if !vol {
			for _, in := range old {
				if in.Number == pl.Number && in.NodeID == pl.NodeID && in.Volumes {
					vol = true
				}
			}
		}
		next = append(next, Instance{Service: id, Number: pl.Number, NodeID: pl.NodeID, Ports: slices.Clone(svc.Ports), Volumes: vol})
		if pl.Previous != pl.NodeID {
			s.addMem(pl.NodeID, svc.Memory)
			s.addMem(pl.Previous, -svc.Memory)
		}
	}
	type key struct {
		number int
		node   string
	}
	removed := make(map[key]bool, len(p.Remove))
	for _, r := range p.Remove {
		removed[key{r.Number, r.NodeID}] = true
	}
	for _, in := range old {
		switch {
		case removed[key{in.Number, in.NodeID}]:
			s.addMem(in.NodeID, -svc.Memory)
		case placed[in.Number]:
		default:
			next = append(next, in)
		}
	}
	slices.SortStableFunc(next, func(a, b Instance) int { return cmp.Compare(a.Number, b.Number) })
	for _, in := range next {
		s.index(in)
	}
	if len(next) == 0 {
		delete(s.instances, id)
	} else {
		s.instances[id] = next
	}
}

func (s *State) addMem(nodeID string, delta int64) {
	if n := s.node(nodeID); n >= 0 && nodeID != "" {
		s.memUsed[n] = max(0, s.memUsed[n]+delta)
	}
}
