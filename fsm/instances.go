package fsm

import (
	"fmt"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// TableInstances holds the numbered instances of every service.
const TableInstances = "instances"

func instanceTables() []*memdb.TableSchema {
	return []*memdb.TableSchema{
		{Name: TableInstances, Indexes: map[string]*memdb.IndexSchema{
			"id":      idIndex("ID"),
			"service": {Name: "service", Indexer: &memdb.StringFieldIndex{Field: "ServiceID"}},
			"node":    {Name: "node", AllowMissing: true, Indexer: &memdb.StringFieldIndex{Field: "NodeID"}},
		}},
	}
}

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

// InstanceActual is a node's report on one instance. Its typed fields are
// shared by the node that writes them (cluster's agent loop converts the
// agent's statuses in one place) and every reader: leader, DNS, CLI.
type InstanceActual struct {
	State       InstanceState  `json:"state,omitempty"` // running, exited, unhealthy, failed, removed, stopped
	Health      InstanceHealth `json:"health,omitempty"`
	Error       string         `json:"error,omitempty"`
	ContainerID string         `json:"container_id,omitempty"`
	IP          string         `json:"ip,omitempty"` // overlay address; DNS answers with it
	Revision    uint64         `json:"revision,omitempty"`
	At          time.Time      `json:"at,omitempty"`
	// Restart is the restart generation the container has reached.
	Restart uint64 `json:"restart,omitempty"`
	// WaitPort is waiting or open for services with deploy.wait_for_port:
	// whether the port accepts TCP connections on the container's address.
	WaitPort WaitPortState `json:"wait_port,omitempty"`
	// Event is the last thing the node's agent did to the instance on its
	// own (died, unhealthy, restarted, started) and when; the FSM turns
	// each new one into a grid event.
	Event        InstanceEvent `json:"event,omitempty"`
	EventMessage string        `json:"event_message,omitempty"`
	EventAt      time.Time     `json:"event_at,omitzero"`
}

// InstanceState is the state a node reports of an instance.
type InstanceState string

// Instance states.
const (
	StateRunning   InstanceState = "running"
	StateExited    InstanceState = "exited"
	StateUnhealthy InstanceState = "unhealthy" // health check failed; the agent restarted it
	StateFailed    InstanceState = "failed"    // the agent could not run it; see Error
	StateRemoved   InstanceState = "removed"   // no longer desired; the agent removed it
	StateStopped   InstanceState = "stopped"   // its service is stopped; the container is kept, stopped
)

// InstanceHealth is the last health-check result of an instance.
type InstanceHealth string

// Instance health.
const (
	HealthNone      InstanceHealth = ""        // no health check
	HealthUnknown   InstanceHealth = "unknown" // not probed yet (initial delay)
	HealthHealthy   InstanceHealth = "healthy"
	HealthUnhealthy InstanceHealth = "unhealthy"
)

// InstanceEvent is what a node's agent did to an instance on its own, or on
// the leader's request.
type InstanceEvent string

// Instance events.
const (
	EventDied      InstanceEvent = "died"      // the container exited; the agent started it again
	EventUnhealthy InstanceEvent = "unhealthy" // its health check failed; the agent restarted it
	EventRestarted InstanceEvent = "restarted" // restarted in place on request (`service restart`)
	EventStarted   InstanceEvent = "started"   // started on request (`service start`)
)

// WaitPortState says whether the port of deploy.wait_for_port accepts
// connections yet ("" for services without one).
type WaitPortState string

// Wait-for-port states.
const (
	WaitPortWaiting WaitPortState = "waiting"
	WaitPortOpen    WaitPortState = "open"
)

// Instance command numbers (persisted: never renumber).
const (
	MsgInstancesPlace  MsgType = 13
	MsgInstancesReport MsgType = 14
)

var instanceCommands = []Command{(*InstancesPlace)(nil), (*InstancesReport)(nil)}

// Placement puts instance Number of a service on a node, at Revision (0:
// the command's revision). A rolling deploy keeps some instances at their
// old revision while others move on.
type Placement struct {
	Number   int    `json:"number"`
	NodeID   string `json:"node_id"`
	Revision uint64 `json:"revision,omitempty"`
	// Restart is the restart generation the instance must reach (rolling
	// `service restart`); 0 keeps the instance's current one.
	Restart uint64 `json:"restart,omitempty"`
}

// InstancesPlace is the leader's placement of a service's instances at a
// revision; Remove lists instance numbers that are no longer wanted.
type InstancesPlace struct {
	ServiceID string      `json:"service_id"`
	Revision  uint64      `json:"revision"`
	Place     []Placement `json:"place"`
	Remove    []int       `json:"remove,omitempty"`
}

func (*InstancesPlace) MsgType() MsgType   { return MsgInstancesPlace }
func (*InstancesPlace) name() string       { return "service.place" }
func (c *InstancesPlace) resource() string { return "service/" + c.ServiceID }

func (c *InstancesPlace) apply(a *applier) (any, error) {
	svc, err := a.getService(c.ServiceID)
	if err != nil {
		return nil, err
	}
	for _, p := range c.Place {
		if p.Number < 1 || p.NodeID == "" {
			return nil, fmt.Errorf("placement of %s instance %d on %q: %w", svc.ID, p.Number, p.NodeID, ErrInvalid)
		}
		if raw, _ := a.txn.First(TableNodes, "id", p.NodeID); raw == nil {
			return nil, fmt.Errorf("placement of %s-%d on node %s: %w", svc.ID, p.Number, p.NodeID, ErrNotFound)
		}
		id := InstanceID(svc.ID, p.Number)
		inst := &Instance{ID: id, ServiceID: svc.ID, Number: p.Number}
		if raw, _ := a.txn.First(TableInstances, "id", id); raw != nil {
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
		if err := a.txn.Insert(TableInstances, inst); err != nil {
			return nil, err
		}
	}
	for _, n := range c.Remove {
		raw, err := a.txn.First(TableInstances, "id", InstanceID(svc.ID, n))
		if err != nil {
			return nil, err
		}
		if raw != nil {
			if err := a.txn.Delete(TableInstances, raw); err != nil {
				return nil, err
			}
			if err := a.removeLifecycle(raw.(*Instance)); err != nil {
				return nil, err
			}
		}
	}
	return nil, nil
}

// InstanceReport is what a node says about one of its instances.
type InstanceReport struct {
	ID     string         `json:"id"`
	Actual InstanceActual `json:"actual"`
}

// InstancesReport carries a node's reports; only instances placed on that
// node are updated.
type InstancesReport struct {
	NodeID  string           `json:"node_id"`
	Reports []InstanceReport `json:"reports"`
}

func (*InstancesReport) MsgType() MsgType   { return MsgInstancesReport }
func (*InstancesReport) name() string       { return "instance.report" }
func (c *InstancesReport) resource() string { return "node/" + c.NodeID }

func (c *InstancesReport) apply(a *applier) (any, error) {
	for _, r := range c.Reports {
		raw, err := a.txn.First(TableInstances, "id", r.ID)
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
		if err := a.txn.Insert(TableInstances, &inst); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// placeLifecycle completes one placement of InstancesPlace: the instance
// follows its service's stopped state and the restart generation the leader
// gave, and the move is an event.
func (a *applier) placeLifecycle(svc *Service, inst *Instance, prevNode string, p Placement) error {
	inst.Stopped = svc.Stopped
	if p.Restart > 0 {
		inst.Restart = p.Restart
	}
	switch {
	case prevNode == "":
		return a.event("instance.placed", instanceResource(inst.ID), fmt.Sprintf("%s placed on %s", inst.ID, a.nodeName(p.NodeID)))
	case prevNode != p.NodeID:
		return a.event("instance.moved", instanceResource(inst.ID), fmt.Sprintf("%s moved from %s to %s", inst.ID, a.nodeName(prevNode), a.nodeName(p.NodeID)))
	}
	return nil
}

// removeLifecycle records that InstancesPlace dropped an instance.
func (a *applier) removeLifecycle(inst *Instance) error {
	return a.event("instance.removed", instanceResource(inst.ID), fmt.Sprintf("%s removed from %s", inst.ID, a.nodeName(inst.NodeID)))
}

// reportLifecycle merges a node's report into an instance's actual state:
// the time is the leader's (so it compares with deploy times), an event the
// agent reports for the first time becomes a grid event, and the last event
// stays known when a restarted agent no longer remembers it.
func (a *applier) reportLifecycle(inst *Instance, r InstanceActual) (InstanceActual, error) {
	old := inst.Actual
	if !a.now.IsZero() {
		r.At = a.now
	}
	if r.EventAt.IsZero() || r.Event == "" {
		r.Event, r.EventMessage, r.EventAt = old.Event, old.EventMessage, old.EventAt
		return r, nil
	}
	if r.EventAt.Equal(old.EventAt) && r.Event == old.Event {
		return r, nil
	}
	msg := fmt.Sprintf("%s on %s %s", inst.ID, a.nodeName(inst.NodeID), r.Event)
	if r.EventMessage != "" {
		msg += ": " + r.EventMessage
	}
	if err := a.event("instance."+string(r.Event), instanceResource(inst.ID), msg); err != nil {
		return r, err
	}
	if r.Event == EventDied {
		return r, a.diedWhileDeploying(inst, r, msg)
	}
	return r, nil
}

// diedWhileDeploying fails the deploy of the service when a container this
// deploy started dies: the new revision (or the restarted container) does
// not stay up. A scale only adds instances, so a crash of one it did not
// touch is not its failure.
func (a *applier) diedWhileDeploying(inst *Instance, r InstanceActual, msg string) error {
	svc, err := a.getService(inst.ServiceID)
	if err != nil {
		return nil
	}
	d := svc.Deploy
	if d.State != DeployDeploying || svc.Stopped || d.Reason == ReasonScale ||
		inst.Revision != svc.Revision || r.Revision != svc.Revision || inst.Restart < svc.RestartGen {
		return nil
	}
	d.State, d.Error, d.FinishedAt = DeployFailed, msg, a.now
	svc.Deploy, svc.ModifyIndex = d, a.index
	if err := a.txn.Insert(TableServices, svc); err != nil {
		return err
	}
	return a.event("service.deploy_failed", serviceResource(svc.ID),
		fmt.Sprintf("deploy of %s (%s, revision %d) failed: %s", svc.ID, d.Reason, d.Revision, msg))
}

// serviceInstances returns copies of a service's instances, to change.
func (a *applier) serviceInstances(id string) ([]*Instance, error) {
	insts, err := listBy[*Instance](a.txn, TableInstances, "service", id)
	if err != nil {
		return nil, err
	}
	out := make([]*Instance, len(insts))
	for i, in := range insts {
		cp := *in
		out[i] = &cp
	}
	return out, nil
}

// setInstancesStopped writes the stopped flag (and on start the restart
// generation) on every instance of a service.
func (a *applier) setInstancesStopped(svc *Service, stopped bool) error {
	insts, err := a.serviceInstances(svc.ID)
	if err != nil {
		return err
	}
	for _, in := range insts {
		in.Stopped, in.ModifyIndex = stopped, a.index
		if !stopped {
			// A start is not rolling: every container starts at once, and
			// the agent tells a requested start from a crash by this.
			in.Restart = svc.RestartGen
		}
		if err := a.txn.Insert(TableInstances, in); err != nil {
			return err
		}
	}
	return nil
}

// Instances lists a service's instances, or all with serviceID "".
func (v *View) Instances(serviceID string) ([]*Instance, error) {
	if serviceID == "" {
		return list[*Instance](v.txn, TableInstances)
	}
	return listBy[*Instance](v.txn, TableInstances, "service", serviceID)
}

// InstancesOnNode lists the instances placed on a node: its assignments.
func (v *View) InstancesOnNode(nodeID string) ([]*Instance, error) {
	return listBy[*Instance](v.txn, TableInstances, "node", nodeID)
}

// Instances lists a service's instances, or all with serviceID "".
func (s *Store) Instances(serviceID string) ([]*Instance, error) {
	return s.Snapshot().Instances(serviceID)
}

// InstancesOnNode lists the instances placed on a node: its assignments.
func (s *Store) InstancesOnNode(nodeID string) ([]*Instance, error) {
	return s.Snapshot().InstancesOnNode(nodeID)
}
