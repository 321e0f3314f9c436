package fsm

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kontena-ng/kontena/stack"
)

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

// ServiceStop stops services: their instances keep their nodes, their
// containers are stopped (not removed) and stay stopped, across agent
// restarts and node failover, until ServiceStart.
type ServiceStop struct {
	IDs []string `json:"ids"`
}

// ServiceStart starts stopped services again (all instances at once).
type ServiceStart struct {
	IDs []string `json:"ids"`
}

// ServiceRestart restarts every instance of the services in place (same
// container), a few at a time as min_health allows.
type ServiceRestart struct {
	IDs []string `json:"ids"`
}

// ServiceRedeploy deploys services: it places undeployed ones (--no-deploy),
// resumes a failed deploy, and with Force replaces every instance with a new
// container of the same spec (a new revision: a rolling replace).
type ServiceRedeploy struct {
	IDs    []string `json:"ids"`
	Force  bool     `json:"force,omitempty"`
	Reason string   `json:"reason,omitempty"` // "" = deploy or force
}

// ServiceRemove removes one service from its stack with its instances.
type ServiceRemove struct {
	ID string `json:"id"`
}

// ServiceDeployState is the leader's verdict on deploy DeployID of a
// service: running or failed (with Error).
type ServiceDeployState struct {
	ID       string `json:"id"`
	DeployID uint64 `json:"deploy_id"`
	State    string `json:"state"`
	Error    string `json:"error,omitempty"`
}

func (*ServiceStop) MsgType() MsgType        { return MsgServiceStop }
func (*ServiceStart) MsgType() MsgType       { return MsgServiceStart }
func (*ServiceRestart) MsgType() MsgType     { return MsgServiceRestart }
func (*ServiceRedeploy) MsgType() MsgType    { return MsgServiceRedeploy }
func (*ServiceRemove) MsgType() MsgType      { return MsgServiceRemove }
func (*ServiceDeployState) MsgType() MsgType { return MsgServiceDeployState }

// servicesResource names the services a command touches, for the audit log.
func servicesResource(ids []string) string {
	if len(ids) == 1 {
		return "service/" + ids[0]
	}
	return "services/" + strings.Join(ids, ",")
}

func serviceResource(id string) string { return "service/" + id }

func instanceResource(id string) string { return "instance/" + id }

// EventOfService tells whether ev concerns service id: the service itself or
// one of its instances ("instance/<id>-<n>").
func EventOfService(ev *Event, id string) bool {
	if ev.Resource == serviceResource(id) {
		return true
	}
	rest, ok := strings.CutPrefix(ev.Resource, "instance/"+id+"-")
	if !ok || rest == "" {
		return false
	}
	for _, r := range rest {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// ServiceEvents lists the events of a service and its instances with an
// index above since, oldest first.
func (s *Store) ServiceEvents(id string, since uint64) ([]*Event, error) {
	all, err := s.Events(since)
	if err != nil {
		return nil, err
	}
	out := []*Event{}
	for _, ev := range all {
		if EventOfService(ev, id) {
			out = append(out, ev)
		}
	}
	return out, nil
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
	if err := a.event("instance."+r.Event, instanceResource(inst.ID), msg); err != nil {
		return r, err
	}
	if r.Event == "died" {
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
	if err := a.txn.Insert(tableServices, svc); err != nil {
		return err
	}
	return a.event("service.deploy_failed", serviceResource(svc.ID),
		fmt.Sprintf("deploy of %s (%s, revision %d) failed: %s", svc.ID, d.Reason, d.Revision, msg))
}

func (a *applier) nodeName(id string) string {
	if n, err := a.getNode(id); err == nil {
		return n.Name
	}
	return id
}

// serviceInstances returns copies of a service's instances, to change.
func (a *applier) serviceInstances(id string) ([]*Instance, error) {
	insts, err := listBy[*Instance](a.txn, tableInstances, "service", id)
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
			if err := a.txn.Insert(tableServices, svc); err != nil {
				return nil, err
			}
		}
		out = append(out, svc)
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
		if err := a.txn.Insert(tableInstances, in); err != nil {
			return err
		}
	}
	return nil
}

func (a *applier) serviceStop(c *ServiceStop) (any, error) {
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

func (a *applier) serviceStart(c *ServiceStart) (any, error) {
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

// runnable refuses a restart or deploy of a service that is stopped.
func runnable(svc *Service, what string) error {
	if svc.Stopped {
		return fmt.Errorf("service %s is stopped: start it with `kontena service start %s` (it cannot %s while stopped): %w", svc.ID, svc.ID, what, ErrConflict)
	}
	return nil
}

func (a *applier) serviceRestart(c *ServiceRestart) (any, error) {
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

func (a *applier) serviceRedeploy(c *ServiceRedeploy) (any, error) {
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

func (a *applier) serviceRemove(c *ServiceRemove) (any, error) {
	svc, err := a.getService(c.ID)
	if err != nil {
		return nil, err
	}
	rawSt, err := a.txn.First(tableStacks, "id", svc.Stack)
	if err != nil {
		return nil, err
	}
	siblings, err := listBy[*Service](a.txn, tableServices, "stack", svc.Stack)
	if err != nil {
		return nil, err
	}
	if len(siblings) <= 1 {
		return nil, fmt.Errorf("%s is the only service of stack %s: remove the stack with `kontena stack rm %s`: %w", svc.ID, svc.Stack, svc.Stack, ErrConflict)
	}
	all, err := list[*Service](a.txn, tableServices)
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
		if err := a.txn.Insert(tableStacks, &st); err != nil {
			return nil, err
		}
	}
	if _, err := a.txn.DeleteAll(tableInstances, "service", svc.ID); err != nil {
		return nil, err
	}
	if err := a.txn.Delete(tableServices, svc); err != nil {
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
			st := l.Stack
			if st == "" {
				st = o.Stack
			}
			uses = uses || (st == svc.Stack && l.Service == svc.Name)
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

func (a *applier) serviceDeployState(c *ServiceDeployState) (any, error) {
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
	if err := a.txn.Insert(tableServices, svc); err != nil {
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
