package fsm

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/kontena-ng/kontena/stack"
)

// Apply runs one command at Raft index, atomically with its audit record and
// events. It is deterministic: every voter reaches the same state.
func (s *Store) Apply(index uint64, cmd Command, audit *AuditInfo) (any, error) {
	txn := s.txn(true)
	defer txn.Abort()
	a := applier{txn: txn, index: index, now: commandTime(audit), counts: s.counts, added: map[string]int{}}
	var (
		res any
		err error
	)
	switch c := cmd.(type) {
	case *GridInit:
		res, err = a.gridInit(c)
	case *NodeRegister:
		res, err = a.nodeRegister(c)
	case *NodeUpdate:
		res, err = a.nodeUpdate(c)
	case *NodeStatus:
		res, err = a.nodeStatus(c)
	case *NodeRole:
		res, err = a.nodeRole(c)
	case *NodeRemove:
		res, err = a.nodeRemove(c)
	case *TokenCreate:
		res, err = a.tokenCreate(c)
	case *TokenRemove:
		res, err = a.tokenRemove(c)
	case *JoinTokenSet:
		res, err = a.joinTokenSet(c)
	case *StackInstall:
		res, err = a.stackInstall(c)
	case *StackRemove:
		res, err = a.stackRemove(c)
	case *ServiceScale:
		res, err = a.serviceScale(c)
	case *InstancesPlace:
		res, err = a.instancesPlace(c)
	case *InstancesReport:
		res, err = a.instancesReport(c)
	case *ServicePlacementError:
		res, err = a.servicePlacementError(c)
	case *StackUpgrade:
		res, err = a.stackUpgrade(c)
	case *NodeOverlaySet:
		res, err = a.nodeOverlaySet(c)
	case *VPNCreate:
		res, err = a.vpnCreate(c)
	case *VPNRemove:
		res, err = a.vpnRemove(c)
	case *NodeResourcesSet:
		res, err = a.nodeResourcesSet(c)
	case *ServiceStop:
		res, err = a.serviceStop(c)
	case *ServiceStart:
		res, err = a.serviceStart(c)
	case *ServiceRestart:
		res, err = a.serviceRestart(c)
	case *ServiceRedeploy:
		res, err = a.serviceRedeploy(c)
	case *ServiceRemove:
		res, err = a.serviceRemove(c)
	case *GridUpdate:
		res, err = a.gridUpdate(c)
	case *ServiceDeployState:
		res, err = a.serviceDeployState(c)
	default:
		err = fmt.Errorf("apply: unknown command %T", cmd)
	}
	if err != nil {
		return nil, err
	}
	if audit != nil && audit.User != "" {
		if err := a.audit(cmd, audit); err != nil {
			return nil, err
		}
	}
	txn.Commit()
	for table, n := range a.added {
		s.counts[table] += n
	}
	s.commit(index)
	return res, nil
}

// commandTime is the time the leader stamped on the command; the FSM never
// reads the clock so that replays give the same state.
func commandTime(audit *AuditInfo) time.Time {
	if audit != nil {
		return audit.Time
	}
	return time.Time{}
}

// maxRemovedNodes bounds the tombstones of removed nodes.
const maxRemovedNodes = 1000

type applier struct {
	txn    *memdb.Txn
	index  uint64
	now    time.Time
	counts map[string]int // rows of capped tables before this command
	added  map[string]int // rows this command added (negative: removed)
}

func (a *applier) event(typ, resource, msg string) error {
	// Several events may come from one command; keep their keys unique and
	// ordered by giving each the next free slot after the log index.
	idx := a.index << 8
	for {
		raw, err := a.txn.First(tableEvents, "id", idx)
		if err != nil {
			return err
		}
		if raw == nil {
			break
		}
		idx++
	}
	if err := a.txn.Insert(tableEvents, &Event{Index: idx, Time: a.now, Type: typ, Resource: resource, Message: msg}); err != nil {
		return err
	}
	return a.trim(tableEvents, maxEvents)
}

func (a *applier) audit(cmd Command, info *AuditInfo) error {
	rec := &AuditRecord{Index: a.index, Time: info.Time, User: info.User, SourceIP: info.SourceIP,
		UserAgent: info.UserAgent, Action: cmd.MsgType().String(), Resource: resourceOf(cmd)}
	if err := a.txn.Insert(tableAudit, rec); err != nil {
		return err
	}
	return a.trim(tableAudit, maxAudit)
}

// resourceOf names what a command touched, without any secret in it.
func resourceOf(cmd Command) string {
	switch c := cmd.(type) {
	case *GridInit:
		return "grid/" + c.Grid.Name
	case *NodeRegister:
		return "node/" + c.Node.Name
	case *NodeUpdate:
		return "node/" + c.ID
	case *NodeRole:
		return "node/" + c.ID
	case *NodeRemove:
		return "node/" + c.ID
	case *TokenCreate:
		return "token/" + c.Token.ID
	case *TokenRemove:
		return "token/" + c.ID
	case *JoinTokenSet:
		return "grid/join-token"
	case *GridUpdate:
		return "grid/settings"
	case *StackInstall:
		return "stack/" + c.Stack.Name
	case *StackRemove:
		return "stack/" + c.Name
	case *StackUpgrade:
		return "stack/" + c.Stack.Name
	case *ServiceScale:
		return "service/" + c.ID
	case *InstancesPlace:
		return "service/" + c.ServiceID
	case *InstancesReport:
		return "node/" + c.NodeID
	case *ServiceStop:
		return servicesResource(c.IDs)
	case *ServiceStart:
		return servicesResource(c.IDs)
	case *ServiceRestart:
		return servicesResource(c.IDs)
	case *ServiceRedeploy:
		return servicesResource(c.IDs)
	case *ServiceRemove:
		return "service/" + c.ID
	case *NodeOverlaySet:
		return "node/" + c.ID
	case *VPNCreate:
		return "vpn/" + c.Name
	case *VPNRemove:
		return "vpn/" + c.Name
	}
	return ""
}

// trim records one row added to a capped table and deletes the oldest rows
// beyond max. The oldest rows come first in the table's index.
func (a *applier) trim(table string, max int) error {
	a.added[table]++
	over := a.counts[table] + a.added[table] - max
	if over <= 0 {
		return nil
	}
	it, err := a.txn.Get(table, "id")
	if err != nil {
		return err
	}
	var oldest []any
	for raw := it.Next(); raw != nil && len(oldest) < over; raw = it.Next() {
		oldest = append(oldest, raw)
	}
	for _, raw := range oldest {
		if err := a.txn.Delete(table, raw); err != nil {
			return err
		}
	}
	a.added[table] -= len(oldest)
	return nil
}

func (a *applier) gridInit(c *GridInit) (any, error) {
	if raw, _ := a.txn.First(tableGrid, "id"); raw != nil {
		return nil, fmt.Errorf("grid already initialised: %w", ErrConflict)
	}
	g := c.Grid
	g.ModifyIndex = a.index
	if err := a.txn.Insert(tableGrid, &g); err != nil {
		return nil, err
	}
	if err := a.txn.Insert(tableUsers, &c.Admin); err != nil {
		return nil, err
	}
	tok := c.AdminToken
	if err := a.txn.Insert(tableTokens, &tok); err != nil {
		return nil, err
	}
	if _, err := a.nodeRegister(&NodeRegister{Node: c.Node}); err != nil {
		return nil, err
	}
	return &g, a.event("grid.created", "grid/"+g.Name, fmt.Sprintf("grid %s created with initial size %d", g.Name, g.InitialSize))
}

func (a *applier) nodeRegister(c *NodeRegister) (any, error) {
	n := c.Node
	if raw, _ := a.txn.First(tableNodes, "id", n.ID); raw != nil {
		return nil, fmt.Errorf("node ID %s is already registered as %q: %w", n.ID, raw.(*Node).Name, ErrConflict)
	}
	if raw, _ := a.txn.First(tableNodes, "name", n.Name); raw != nil {
		other := raw.(*Node)
		return nil, fmt.Errorf("node name %q is already in use by node %s (%s); pick another --name, or remove the old node with `kontena node rm %s`: %w",
			n.Name, other.ID, other.Status, n.Name, ErrConflict)
	}
	// Numbers are never reused: a number may live on in addresses derived
	// from it after its node is gone.
	rawGrid, err := a.txn.First(tableGrid, "id")
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
	if err := a.txn.Insert(tableGrid, &g); err != nil {
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
	if err := a.txn.Insert(tableNodes, &n); err != nil {
		return nil, err
	}
	return &n, a.event("node.joined", "node/"+n.Name, fmt.Sprintf("node %s joined as %s (number %d)", n.Name, n.Role, n.Number))
}

func (a *applier) getNode(id string) (*Node, error) {
	raw, err := a.txn.First(tableNodes, "id", id)
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

func (a *applier) nodeUpdate(c *NodeUpdate) (any, error) {
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
	if err := a.txn.Insert(tableNodes, n); err != nil {
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

func (a *applier) nodeStatus(c *NodeStatus) (any, error) {
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
		if err := a.txn.Insert(tableNodes, n); err != nil {
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

func (a *applier) nodeRole(c *NodeRole) (any, error) {
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
	if err := a.txn.Insert(tableNodes, n); err != nil {
		return nil, err
	}
	return n, a.event("node.role", "node/"+n.Name, fmt.Sprintf("node %s is now a %s", n.Name, n.Role))
}

func (a *applier) nodeRemove(c *NodeRemove) (any, error) {
	n, err := a.getNode(c.ID)
	if err != nil {
		return nil, err
	}
	if n.Status == StatusOnline {
		return nil, fmt.Errorf("node %s is online: stop it first (only offline nodes can be removed): %w", n.Name, ErrConflict)
	}
	if err := a.txn.Delete(tableNodes, n); err != nil {
		return nil, err
	}
	// Remember the ID so a removed node that comes back can be told to stop.
	// VPN clients whose tunnel ended on it have nowhere to go: they are
	// revoked with it (their addresses freed).
	var revoked []string
	if raw, _ := a.txn.First(tableGrid, "id"); raw != nil {
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
		if err := a.txn.Insert(tableGrid, &g); err != nil {
			return nil, err
		}
	}
	msg := fmt.Sprintf("node %s removed", n.Name)
	if len(revoked) > 0 {
		msg += fmt.Sprintf("; VPN clients %s revoked with it (create them again through another node)", strings.Join(revoked, ", "))
	}
	return n, a.event("node.removed", "node/"+n.Name, msg)
}

func (a *applier) tokenCreate(c *TokenCreate) (any, error) {
	if raw, _ := a.txn.First(tableTokens, "id", c.Token.ID); raw != nil {
		return nil, fmt.Errorf("token %s exists: %w", c.Token.ID, ErrConflict)
	}
	if raw, _ := a.txn.First(tableUsers, "id", c.Token.User); raw == nil {
		return nil, fmt.Errorf("user %q: %w", c.Token.User, ErrNotFound)
	}
	t := c.Token
	if err := a.txn.Insert(tableTokens, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

func (a *applier) tokenRemove(c *TokenRemove) (any, error) {
	raw, err := a.txn.First(tableTokens, "id", c.ID)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("token %s: %w", c.ID, ErrNotFound)
	}
	if err := a.txn.Delete(tableTokens, raw); err != nil {
		return nil, err
	}
	return raw, a.event("token.revoked", "token/"+c.ID, "token "+c.ID+" revoked")
}

func (a *applier) joinTokenSet(c *JoinTokenSet) (any, error) {
	g, err := a.grid()
	if err != nil {
		return nil, err
	}
	g.JoinTokenSealed = c.Sealed
	g.ModifyIndex = a.index
	if err := a.txn.Insert(tableGrid, g); err != nil {
		return nil, err
	}
	return g, a.event("grid.join_token", "grid/"+g.Name, "join token rotated")
}

func (a *applier) gridUpdate(c *GridUpdate) (any, error) {
	g, err := a.grid()
	if err != nil {
		return nil, err
	}
	var changes []string
	if c.DefaultAffinity != nil {
		g.DefaultAffinity = append([]string(nil), (*c.DefaultAffinity)...)
		changes = append(changes, fmt.Sprintf("default affinity %v", g.DefaultAffinity))
	}
	if c.OfflineGrace != nil {
		if *c.OfflineGrace < 0 {
			return nil, fmt.Errorf("offline grace %s is negative: %w", *c.OfflineGrace, ErrInvalid)
		}
		g.OfflineGrace = *c.OfflineGrace
		changes = append(changes, fmt.Sprintf("offline grace %s", g.OfflineGrace))
	}
	g.ModifyIndex = a.index
	if err := a.txn.Insert(tableGrid, g); err != nil {
		return nil, err
	}
	return g, a.event("grid.update", "grid/"+g.Name, "grid settings changed: "+strings.Join(changes, ", "))
}

func sortNodes(ns []*Node) {
	sort.Slice(ns, func(i, j int) bool { return ns[i].Number < ns[j].Number })
}

func (a *applier) stackInstall(c *StackInstall) (any, error) {
	st := c.Stack
	if raw, _ := a.txn.First(tableStacks, "id", st.Name); raw != nil {
		return nil, fmt.Errorf("stack %q is already installed; install under another name with -n, or remove it first with `kontena stack rm %s`: %w", st.Name, st.Name, ErrConflict)
	}
	if st.Name == "" || len(st.Spec.Services) == 0 {
		return nil, fmt.Errorf("stack %q has no name or no services: %w", st.Name, ErrInvalid)
	}
	st.Revision = 1
	st.CreatedAt, st.UpdatedAt, st.ModifyIndex = a.now, a.now, a.index
	if err := a.txn.Insert(tableStacks, &st); err != nil {
		return nil, err
	}
	for _, spec := range st.Spec.Services {
		svc := &Service{ID: ServiceID(st.Name, spec.Name), Stack: st.Name, Name: spec.Name, Revision: 1,
			Instances: spec.Instances, Spec: *spec, ModifyIndex: a.index}
		if err := a.installLifecycle(svc, c.NoDeploy); err != nil {
			return nil, err
		}
		if err := a.txn.Insert(tableServices, svc); err != nil {
			return nil, err
		}
	}
	return &st, a.event("stack.installed", "stack/"+st.Name, fmt.Sprintf("stack %s installed with %d services", st.Name, len(st.Spec.Services)))
}

func (a *applier) stackRemove(c *StackRemove) (any, error) {
	raw, err := a.txn.First(tableStacks, "id", c.Name)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("stack %q: %w", c.Name, ErrNotFound)
	}
	svcs, err := listBy[*Service](a.txn, tableServices, "stack", c.Name)
	if err != nil {
		return nil, err
	}
	for _, svc := range svcs {
		if _, err := a.txn.DeleteAll(tableInstances, "service", svc.ID); err != nil {
			return nil, err
		}
		if err := a.txn.Delete(tableServices, svc); err != nil {
			return nil, err
		}
	}
	if err := a.txn.Delete(tableStacks, raw); err != nil {
		return nil, err
	}
	return raw, a.event("stack.removed", "stack/"+c.Name, "stack "+c.Name+" removed")
}

func (a *applier) getService(id string) (*Service, error) {
	raw, err := a.txn.First(tableServices, "id", id)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("service %q: %w", id, ErrNotFound)
	}
	cp := *raw.(*Service)
	return &cp, nil
}

func (a *applier) serviceScale(c *ServiceScale) (any, error) {
	if c.Instances < 0 {
		return nil, fmt.Errorf("instances %d: expected 0 or more: %w", c.Instances, ErrInvalid)
	}
	svc, err := a.getService(c.ID)
	if err != nil {
		return nil, err
	}
	// For daemon services the count is per node, as in Kontena; the
	// scheduler reads it that way.
	old := svc.Instances
	svc.Instances, svc.ModifyIndex = c.Instances, a.index
	if err := a.startDeploy(svc, ReasonScale); err != nil {
		return nil, err
	}
	if err := a.txn.Insert(tableServices, svc); err != nil {
		return nil, err
	}
	return svc, a.event("service.scaled", "service/"+svc.ID, fmt.Sprintf("service %s scaled from %d to %d", svc.ID, old, c.Instances))
}

func (a *applier) instancesPlace(c *InstancesPlace) (any, error) {
	svc, err := a.getService(c.ServiceID)
	if err != nil {
		return nil, err
	}
	for _, p := range c.Place {
		if p.Number < 1 || p.NodeID == "" {
			return nil, fmt.Errorf("placement of %s instance %d on %q: %w", svc.ID, p.Number, p.NodeID, ErrInvalid)
		}
		if raw, _ := a.txn.First(tableNodes, "id", p.NodeID); raw == nil {
			return nil, fmt.Errorf("placement of %s-%d on node %s: %w", svc.ID, p.Number, p.NodeID, ErrNotFound)
		}
		id := InstanceID(svc.ID, p.Number)
		inst := &Instance{ID: id, ServiceID: svc.ID, Number: p.Number}
		if raw, _ := a.txn.First(tableInstances, "id", id); raw != nil {
			*inst = *raw.(*Instance)
		}
		if err := a.placeLifecycle(svc, inst, inst.NodeID, p); err != nil {
			return nil, err
		}
		if inst.NodeID != p.NodeID {
			inst.Actual = InstanceActual{} // a new node has reported nothing yet
		}
		rev := p.Revision
		if rev == 0 {
			rev = c.Revision
		}
		inst.NodeID, inst.Revision, inst.ModifyIndex = p.NodeID, rev, a.index
		if err := a.txn.Insert(tableInstances, inst); err != nil {
			return nil, err
		}
	}
	for _, n := range c.Remove {
		raw, err := a.txn.First(tableInstances, "id", InstanceID(svc.ID, n))
		if err != nil {
			return nil, err
		}
		if raw != nil {
			if err := a.txn.Delete(tableInstances, raw); err != nil {
				return nil, err
			}
			if err := a.removeLifecycle(raw.(*Instance)); err != nil {
				return nil, err
			}
		}
	}
	return nil, nil
}

func (a *applier) instancesReport(c *InstancesReport) (any, error) {
	for _, r := range c.Reports {
		raw, err := a.txn.First(tableInstances, "id", r.ID)
		if err != nil {
			return nil, err
		}
		if raw == nil || raw.(*Instance).NodeID != c.NodeID {
			continue // moved or removed meanwhile: the report is stale
		}
		inst := *raw.(*Instance)
		actual, err := a.reportLifecycle(&inst, r.Actual)
		if err != nil {
			return nil, err
		}
		inst.Actual, inst.ModifyIndex = actual, a.index
		if err := a.txn.Insert(tableInstances, &inst); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

func (a *applier) servicePlacementError(c *ServicePlacementError) (any, error) {
	svc, err := a.getService(c.ID)
	if err != nil {
		return nil, err
	}
	if svc.PlacementError == c.Error {
		return svc, nil
	}
	svc.PlacementError, svc.ModifyIndex = c.Error, a.index
	if err := a.txn.Insert(tableServices, svc); err != nil {
		return nil, err
	}
	if c.Error == "" {
		return svc, a.event("service.placed", "service/"+svc.ID, "all instances of "+svc.ID+" placed")
	}
	return svc, a.event("service.unplaced", "service/"+svc.ID, c.Error)
}

func (a *applier) stackUpgrade(c *StackUpgrade) (any, error) {
	raw, err := a.txn.First(tableStacks, "id", c.Stack.Name)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("stack %q is not installed; install it with `kontena stack install`: %w", c.Stack.Name, ErrNotFound)
	}
	old := raw.(*Stack)
	if len(c.Stack.Spec.Services) == 0 {
		return nil, fmt.Errorf("stack %q has no services: %w", c.Stack.Name, ErrInvalid)
	}
	st := c.Stack
	st.Revision, st.CreatedAt, st.UpdatedAt, st.ModifyIndex = old.Revision+1, old.CreatedAt, a.now, a.index
	if err := a.txn.Insert(tableStacks, &st); err != nil {
		return nil, err
	}
	current, err := listBy[*Service](a.txn, tableServices, "stack", st.Name)
	if err != nil {
		return nil, err
	}
	keep := map[string]bool{}
	var changed []string
	for _, spec := range st.Spec.Services {
		id := ServiceID(st.Name, spec.Name)
		keep[id] = true
		svc := &Service{ID: id, Stack: st.Name, Name: spec.Name, Revision: 1, Instances: spec.Instances, Spec: *spec, ModifyIndex: a.index}
		if prev, err := a.getService(id); err == nil {
			svc.Revision, svc.PlacementError = prev.Revision, prev.PlacementError
			if !SameSpec(prev.Spec, *spec) {
				svc.Revision++
				changed = append(changed, spec.Name)
			}
		} else {
			changed = append(changed, spec.Name+" (new)")
		}
		if err := a.upgradeLifecycle(svc, current); err != nil {
			return nil, err
		}
		if err := a.txn.Insert(tableServices, svc); err != nil {
			return nil, err
		}
	}
	for _, svc := range current {
		if keep[svc.ID] {
			continue
		}
		if _, err := a.txn.DeleteAll(tableInstances, "service", svc.ID); err != nil {
			return nil, err
		}
		if err := a.txn.Delete(tableServices, svc); err != nil {
			return nil, err
		}
		changed = append(changed, svc.Name+" (removed)")
	}
	return &st, a.event("stack.upgraded", "stack/"+st.Name, fmt.Sprintf("stack %s upgraded to revision %d: %s", st.Name, st.Revision, strings.Join(changed, ", ")))
}

// UpgradeChanges lists, for `stack upgrade --dry-run`, what an upgrade to
// spec would change in the services current: new and removed services and,
// for changed ones, which keys change (a scale-only change is not listed).
func UpgradeChanges(current []*Service, spec stack.Stack) []string {
	var out []string
	have := map[string]*Service{}
	for _, svc := range current {
		have[svc.Name] = svc
	}
	for _, ns := range spec.Services {
		old, ok := have[ns.Name]
		delete(have, ns.Name)
		if !ok {
			out = append(out, fmt.Sprintf("service %s: new (%d instances of %s)", ns.Name, ns.Instances, ns.Image))
			continue
		}
		if old.Instances != ns.Instances {
			out = append(out, fmt.Sprintf("service %s: instances %d -> %d", ns.Name, old.Instances, ns.Instances))
		}
		if keys := changedKeys(old.Spec, *ns); len(keys) > 0 {
			out = append(out, fmt.Sprintf("service %s: %s changed; its instances are replaced, rolling", ns.Name, strings.Join(keys, ", ")))
		}
	}
	for name := range have {
		out = append(out, fmt.Sprintf("service %s: removed with its instances", name))
	}
	sort.Strings(out)
	return out
}

func changedKeys(a, b stack.Service) []string {
	a.Instances, b.Instances = 0, 0
	var ma, mb map[string]any
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	_ = json.Unmarshal(ja, &ma)
	_ = json.Unmarshal(jb, &mb)
	var keys []string
	for k := range mergeKeys(ma, mb) {
		x, _ := json.Marshal(ma[k])
		y, _ := json.Marshal(mb[k])
		if string(x) != string(y) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

func mergeKeys(a, b map[string]any) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// SameSpec tells whether two service definitions run the same containers.
// The instance count is left out: scaling is not a redeploy.
func SameSpec(a, b stack.Service) bool {
	a.Instances, b.Instances = 0, 0
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
