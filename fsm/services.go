package fsm

import (
	"fmt"
	"slices"
	"strings"
	"time"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/kontena-ng/kontena/stack"
)

// TableServices holds the services of every stack.
const TableServices = "services"

func serviceTables() []*memdb.TableSchema {
	return []*memdb.TableSchema{
		{Name: TableServices, Indexes: map[string]*memdb.IndexSchema{
			"id":    idIndex("ID"),
			"stack": {Name: "stack", Indexer: &memdb.StringFieldIndex{Field: "Stack"}},
		}},
	}
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

// Deploy states of a service (DeployState.State).
const (
	DeployDeploying = "deploying"
	DeployRunning   = "running"
	DeployFailed    = "failed"
)

// Why a deploy started (DeployState.Reason).
const (
	ReasonInstall  = "install"
	ReasonUpgrade  = "upgrade"
	ReasonScale    = "scale"
	ReasonDeploy   = "deploy"
	ReasonForce    = "force"
	ReasonRestart  = "restart"
	ReasonStart    = "start"
	ReasonInterval = "interval"
)

// DeployState is the last deploy of a service. A command that changes what
// should run (install, upgrade, scale, deploy, restart, start) starts one;
// the leader ends it (ServiceDeployState) once every instance is up, or
// when it fails: a placement error, an instance that fails to start or dies,
// or no progress for the leader's deploy timeout.
type DeployState struct {
	// ID is the Raft index of the command that started the deploy; the
	// leader's verdict names it, so a verdict on an older deploy is ignored.
	ID         uint64    `json:"id,omitempty"`
	State      string    `json:"state,omitempty"`  // deploying, running, failed
	Reason     string    `json:"reason,omitempty"` // install, upgrade, scale, deploy, force, restart, start, interval
	Revision   uint64    `json:"revision,omitempty"`
	Error      string    `json:"error,omitempty"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
}

// Status is what `service ls` shows: stopped, not deployed, or the deploy
// state.
func (s *Service) Status() string {
	switch {
	case s.Stopped:
		return "stopped"
	case s.Undeployed:
		return "not deployed"
	case s.Deploy.State != "":
		return s.Deploy.State
	}
	return "unknown"
}

// NextDeploy is when deploy.interval redeploys the service next (zero when
// it has no interval, is stopped, not deployed or never deployed).
func (s *Service) NextDeploy() time.Time {
	iv := time.Duration(s.Spec.Deploy.Interval)
	if iv <= 0 || s.Stopped || s.Undeployed || s.Deploy.StartedAt.IsZero() {
		return time.Time{}
	}
	return s.Deploy.StartedAt.Add(iv)
}

// Service command numbers (persisted: never renumber).
const (
	MsgServiceScale          MsgType = 12
	MsgServicePlacementError MsgType = 15
	MsgServiceStop           MsgType = 20
	MsgServiceStart          MsgType = 21
	MsgServiceRestart        MsgType = 22
	MsgServiceRedeploy       MsgType = 23
	MsgServiceRemove         MsgType = 24
	MsgServiceDeployState    MsgType = 25
)

var serviceCommands = []Command{(*ServiceScale)(nil), (*ServicePlacementError)(nil), (*ServiceStop)(nil),
	(*ServiceStart)(nil), (*ServiceRestart)(nil), (*ServiceRedeploy)(nil), (*ServiceRemove)(nil),
	(*ServiceDeployState)(nil)}

// ServiceScale sets the desired instance count of a service.
type ServiceScale struct {
	ID        string `json:"id"`
	Instances int    `json:"instances"`
}

func (*ServiceScale) MsgType() MsgType   { return MsgServiceScale }
func (*ServiceScale) name() string       { return "service.scale" }
func (c *ServiceScale) resource() string { return "service/" + c.ID }

func (c *ServiceScale) apply(a *applier) (any, error) {
	if c.Instances < 0 || c.Instances > stack.MaxStoredInstances {
		return nil, fmt.Errorf("service %s: %d instances: expected 0 to %d: %w", c.ID, c.Instances, stack.MaxStoredInstances, ErrInvalid)
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
	if err := a.txn.Insert(TableServices, svc); err != nil {
		return nil, err
	}
	return svc, a.event("service.scaled", "service/"+svc.ID, fmt.Sprintf("service %s scaled from %d to %d", svc.ID, old, c.Instances))
}

// ServicePlacementError records why a service could not be fully placed.
type ServicePlacementError struct {
	ID    string `json:"id"`
	Error string `json:"error"`
}

func (*ServicePlacementError) MsgType() MsgType { return MsgServicePlacementError }
func (*ServicePlacementError) name() string     { return "service.placement_error" }
func (*ServicePlacementError) resource() string { return "" }

func (c *ServicePlacementError) apply(a *applier) (any, error) {
	svc, err := a.getService(c.ID)
	if err != nil {
		return nil, err
	}
	if svc.PlacementError == c.Error {
		return svc, nil
	}
	svc.PlacementError, svc.ModifyIndex = c.Error, a.index
	if err := a.txn.Insert(TableServices, svc); err != nil {
		return nil, err
	}
	if c.Error == "" {
		return svc, a.event("service.placed", "service/"+svc.ID, "all instances of "+svc.ID+" placed")
	}
	return svc, a.event("service.unplaced", "service/"+svc.ID, c.Error)
}

// ServiceStop stops services: their instances keep their nodes, their
// containers are stopped (not removed) and stay stopped, across agent
// restarts and node failover, until ServiceStart.
type ServiceStop struct {
	IDs []string `json:"ids"`
}

func (*ServiceStop) MsgType() MsgType   { return MsgServiceStop }
func (*ServiceStop) name() string       { return "service.stop" }
func (c *ServiceStop) resource() string { return servicesResource(c.IDs) }

func (c *ServiceStop) apply(a *applier) (any, error) {
	return a.eachService(c.IDs, func(svc *Service) (bool, error) {
		if svc.Stopped {
			return false, nil
		}
		svc.Stopped = true
		if err := a.setInstancesStopped(svc, true); err != nil {
			return false, err
		}
		return true, a.event("service.stopped", serviceResource(svc.ID), fmt.Sprintf("service %s stopped: its containers are stopped, not removed", svc.ID))
	})
}

// ServiceStart starts stopped services again (all instances at once).
type ServiceStart struct {
	IDs []string `json:"ids"`
}

func (*ServiceStart) MsgType() MsgType   { return MsgServiceStart }
func (*ServiceStart) name() string       { return "service.start" }
func (c *ServiceStart) resource() string { return servicesResource(c.IDs) }

func (c *ServiceStart) apply(a *applier) (any, error) {
	return a.eachService(c.IDs, func(svc *Service) (bool, error) {
		if !svc.Stopped {
			return false, nil
		}
		svc.Stopped = false
		svc.RestartGen++
		if err := a.setInstancesStopped(svc, false); err != nil {
			return false, err
		}
		if err := a.event("service.started", serviceResource(svc.ID), fmt.Sprintf("service %s started", svc.ID)); err != nil {
			return false, err
		}
		return true, a.startDeploy(svc, ReasonStart)
	})
}

// ServiceRestart restarts every instance of the services in place (same
// container), a few at a time as min_health allows.
type ServiceRestart struct {
	IDs []string `json:"ids"`
}

func (*ServiceRestart) MsgType() MsgType   { return MsgServiceRestart }
func (*ServiceRestart) name() string       { return "service.restart" }
func (c *ServiceRestart) resource() string { return servicesResource(c.IDs) }

func (c *ServiceRestart) apply(a *applier) (any, error) {
	return a.eachService(c.IDs, func(svc *Service) (bool, error) {
		if err := runnable(svc, "restart"); err != nil {
			return false, err
		}
		if svc.Undeployed {
			return false, fmt.Errorf("service %s was installed with --no-deploy and runs nothing yet: deploy it with `kontena stack deploy %s`: %w", svc.ID, svc.Stack, ErrConflict)
		}
		svc.RestartGen++
		if err := a.event("service.restarting", serviceResource(svc.ID), fmt.Sprintf("rolling restart of %s requested", svc.ID)); err != nil {
			return false, err
		}
		return true, a.startDeploy(svc, ReasonRestart)
	})
}

// runnable refuses a restart or deploy of a service that is stopped.
func runnable(svc *Service, what string) error {
	if svc.Stopped {
		return fmt.Errorf("service %s is stopped: start it with `kontena service start %s` (it cannot %s while stopped): %w", svc.ID, svc.ID, what, ErrConflict)
	}
	return nil
}

// ServiceRedeploy deploys services: it places undeployed ones (--no-deploy),
// resumes a failed deploy, and with Force replaces every instance with a new
// container of the same spec (a new revision: a rolling replace).
type ServiceRedeploy struct {
	IDs    []string `json:"ids"`
	Force  bool     `json:"force,omitempty"`
	Reason string   `json:"reason,omitempty"` // "" = deploy or force
}

func (*ServiceRedeploy) MsgType() MsgType   { return MsgServiceRedeploy }
func (*ServiceRedeploy) name() string       { return "service.deploy" }
func (c *ServiceRedeploy) resource() string { return servicesResource(c.IDs) }

func (c *ServiceRedeploy) apply(a *applier) (any, error) {
	return a.eachService(c.IDs, func(svc *Service) (bool, error) {
		if err := runnable(svc, "be deployed"); err != nil {
			return false, err
		}
		reason := c.Reason
		if reason == "" {
			reason = ReasonDeploy
			if c.Force {
				reason = ReasonForce
			}
		}
		if c.Force && !svc.Undeployed {
			// The same spec under a new revision: every container is
			// replaced, rolling, by the machinery of an upgrade.
			svc.Revision++
		}
		svc.Undeployed = false
		return true, a.startDeploy(svc, reason)
	})
}

// ServiceRemove removes one service from its stack with its instances.
type ServiceRemove struct {
	ID string `json:"id"`
}

func (*ServiceRemove) MsgType() MsgType   { return MsgServiceRemove }
func (*ServiceRemove) name() string       { return "service.remove" }
func (c *ServiceRemove) resource() string { return "service/" + c.ID }

func (c *ServiceRemove) apply(a *applier) (any, error) {
	svc, err := a.getService(c.ID)
	if err != nil {
		return nil, err
	}
	rawSt, err := a.txn.First(TableStacks, "id", svc.Stack)
	if err != nil {
		return nil, err
	}
	siblings, err := listBy[*Service](a.txn, TableServices, "stack", svc.Stack)
	if err != nil {
		return nil, err
	}
	if len(siblings) <= 1 {
		return nil, fmt.Errorf("%s is the only service of stack %s: remove the stack with `kontena stack rm %s`: %w", svc.ID, svc.Stack, svc.Stack, ErrConflict)
	}
	all, err := list[*Service](a.txn, TableServices)
	if err != nil {
		return nil, err
	}
	if users := dependents(svc, all); len(users) > 0 {
		return nil, fmt.Errorf("cannot remove %s: %s depend on it (links/depends_on); remove those first, or upgrade the stack without them: %w",
			svc.ID, strings.Join(users, ", "), ErrConflict)
	}
	if rawSt != nil {
		st := *rawSt.(*Stack)
		if st.Spec.Expose == svc.Name {
			return nil, fmt.Errorf("cannot remove %s: stack %s exposes it (expose: %s); upgrade the stack to expose another service first: %w", svc.ID, st.Name, svc.Name, ErrConflict)
		}
		st.Spec.Services = slices.DeleteFunc(slices.Clone(st.Spec.Services), func(s2 *stack.Service) bool { return s2.Name == svc.Name })
		st.Revision++
		st.UpdatedAt, st.ModifyIndex = a.now, a.index
		if err := a.txn.Insert(TableStacks, &st); err != nil {
			return nil, err
		}
	}
	if _, err := a.txn.DeleteAll(TableInstances, "service", svc.ID); err != nil {
		return nil, err
	}
	if err := a.txn.Delete(TableServices, svc); err != nil {
		return nil, err
	}
	return svc, a.event("service.removed", serviceResource(svc.ID), fmt.Sprintf("service %s removed from stack %s with its instances", svc.ID, svc.Stack))
}

// dependents lists the services that link to or depend on svc: in its own
// stack by name, from other stacks as stack/service.
func dependents(svc *Service, all []*Service) []string {
	var out []string
	for _, o := range all {
		if o.ID == svc.ID {
			continue
		}
		uses := false
		for _, l := range o.Spec.Links {
			uses = uses || l.Target(o.Stack) == svc.ID
		}
		if o.Stack == svc.Stack && slices.Contains(o.Spec.DependsOn, svc.Name) {
			uses = true
		}
		if uses {
			out = append(out, o.ID)
		}
	}
	slices.Sort(out)
	return out
}

// ServiceDeployState is the leader's verdict on deploy DeployID of a
// service: running or failed (with Error).
type ServiceDeployState struct {
	ID       string `json:"id"`
	DeployID uint64 `json:"deploy_id"`
	State    string `json:"state"`
	Error    string `json:"error,omitempty"`
}

func (*ServiceDeployState) MsgType() MsgType { return MsgServiceDeployState }
func (*ServiceDeployState) name() string     { return "service.deploy_state" }
func (*ServiceDeployState) resource() string { return "" }

func (c *ServiceDeployState) apply(a *applier) (any, error) {
	if c.State != DeployRunning && c.State != DeployFailed {
		return nil, fmt.Errorf("deploy state %q: expected running or failed: %w", c.State, ErrInvalid)
	}
	svc, err := a.getService(c.ID)
	if err != nil {
		return nil, err
	}
	d := svc.Deploy
	if d.ID != c.DeployID || (d.State == c.State && d.Error == c.Error) {
		return svc, nil // a verdict on an older deploy, or nothing new
	}
	was := d.State
	d.State, d.Error, d.FinishedAt = c.State, c.Error, a.now
	svc.Deploy, svc.ModifyIndex = d, a.index
	if err := a.txn.Insert(TableServices, svc); err != nil {
		return nil, err
	}
	took := ""
	if !d.StartedAt.IsZero() && !a.now.IsZero() {
		took = " in " + a.now.Sub(d.StartedAt).Round(time.Second).String()
	}
	if c.State == DeployFailed {
		return svc, a.event("service.deploy_failed", serviceResource(svc.ID),
			fmt.Sprintf("deploy of %s (%s, revision %d) failed: %s", svc.ID, d.Reason, d.Revision, c.Error))
	}
	msg := fmt.Sprintf("deploy of %s (%s, revision %d) finished%s", svc.ID, d.Reason, d.Revision, took)
	if was == DeployFailed {
		msg += " after it had failed"
	}
	return svc, a.event("service.deployed", serviceResource(svc.ID), msg)
}

// servicesResource names the services a command touches, for the audit log.
func servicesResource(ids []string) string {
	if len(ids) == 1 {
		return "service/" + ids[0]
	}
	return "services/" + strings.Join(ids, ",")
}

// startDeploy records a new deploy of svc (not yet written). Undeployed and
// stopped services have none: nothing of theirs must run.
func (a *applier) startDeploy(svc *Service, reason string) error {
	if svc.Undeployed || svc.Stopped {
		return nil
	}
	svc.Deploy = DeployState{ID: a.index, State: DeployDeploying, Reason: reason, Revision: svc.Revision, StartedAt: a.now}
	return a.event("service.deploying", serviceResource(svc.ID),
		fmt.Sprintf("deploy of %s started (%s, revision %d)", svc.ID, reason, svc.Revision))
}

// installLifecycle sets up a service that StackInstall creates.
func (a *applier) installLifecycle(svc *Service, noDeploy bool) error {
	svc.Undeployed = noDeploy
	return a.startDeploy(svc, ReasonInstall)
}

// upgradeLifecycle carries a service's lifecycle over a StackUpgrade and
// starts a deploy when what runs changes (revision or instance count).
// current are the stack's services before the upgrade.
func (a *applier) upgradeLifecycle(svc *Service, current []*Service) error {
	var prev *Service
	undeployed := false
	for _, c := range current {
		if c.ID == svc.ID {
			prev = c
		}
		undeployed = undeployed || c.Undeployed
	}
	if prev == nil {
		// A new service of a stack that was never deployed waits too.
		svc.Undeployed = undeployed
		return a.startDeploy(svc, ReasonUpgrade)
	}
	svc.Stopped, svc.Undeployed, svc.RestartGen, svc.Deploy = prev.Stopped, prev.Undeployed, prev.RestartGen, prev.Deploy
	if svc.Revision != prev.Revision || svc.Instances != prev.Instances {
		return a.startDeploy(svc, ReasonUpgrade)
	}
	return nil
}

func (a *applier) getService(id string) (*Service, error) {
	raw, err := a.txn.First(TableServices, "id", id)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("service %q: %w", id, ErrNotFound)
	}
	cp := *raw.(*Service)
	return &cp, nil
}

// eachService applies fn to every service of ids, in order, and writes the
// ones fn changed. An unknown ID fails the whole command.
func (a *applier) eachService(ids []string, fn func(svc *Service) (bool, error)) ([]*Service, error) {
	if len(ids) == 0 {
		return nil, fmt.Errorf("no service given: %w", ErrInvalid)
	}
	var out []*Service
	for _, id := range ids {
		svc, err := a.getService(id)
		if err != nil {
			return nil, err
		}
		changed, err := fn(svc)
		if err != nil {
			return nil, err
		}
		if changed {
			svc.ModifyIndex = a.index
			if err := a.txn.Insert(TableServices, svc); err != nil {
				return nil, err
			}
		}
		out = append(out, svc)
	}
	return out, nil
}

// Services lists services; with stackName set, only that stack's.
func (v *View) Services(stackName string) ([]*Service, error) {
	if stackName == "" {
		return list[*Service](v.txn, TableServices)
	}
	return listBy[*Service](v.txn, TableServices, "stack", stackName)
}

// Service returns a service by ID ("<stack>/<service>").
func (v *View) Service(id string) (*Service, error) {
	raw, err := v.txn.First(TableServices, "id", id)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("service %q: %w", id, ErrNotFound)
	}
	return raw.(*Service), nil
}

// Services lists services; with stackName set, only that stack's.
func (s *Store) Services(stackName string) ([]*Service, error) {
	return s.Snapshot().Services(stackName)
}

// Service returns a service by ID ("<stack>/<service>").
func (s *Store) Service(id string) (*Service, error) { return s.Snapshot().Service(id) }
