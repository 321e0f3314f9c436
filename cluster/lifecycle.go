package cluster

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/kontena-ng/kontena/agent"
	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/scheduler"
)

// The service lifecycle beyond install and scale: deploy (and --force),
// stop, start, restart, remove, events, and the leader's tracking of every
// deploy (deploying -> running | failed) and of deploy.interval.
//
// Semantics:
//   - stop: the service and its instances are marked stopped in the state;
//     instances keep their node (and move on node failure like any other),
//     agents stop their containers and keep them, create none, replace none.
//     Nothing is restarted while stopped: not by an agent restart, not by a
//     health check, not on another node after a failover.
//   - start: the containers start again, all at once (nothing runs to
//     protect); it bumps the restart generation so agents tell a requested
//     start from a crash, and the deploy that follows waits until they run.
//   - restart: every instance is stopped and started again in place (same
//     container, hooks run), at most max(1, floor(N*(1-min_health))) at a
//     time, the next only once the previous runs again (and answers on its
//     wait_for_port): like a rolling deploy, never below min_health.
//   - deploy: places a service installed with --no-deploy, resumes a failed
//     deploy; --force replaces every container with a new one of the same
//     spec (a new revision), rolling like an upgrade.
//   - deploy.interval: the leader force-deploys the service again once the
//     interval has passed since its last deploy started.
//   - deploy.wait_for_port: an instance counts as up (for the rollout, and
//     for the deploy to finish) only once its agent found the port open on
//     the container's address.

// deployTimeout is how long a deploy may make no progress (no instance
// came up) before the leader fails it, as Kontena's 300 s per instance.
const deployTimeout = 5 * time.Minute

// trackerGap is how long the tracker may go unused (this node was not the
// leader) before it forgets the progress it saw: another leader watched.
const trackerGap = 10 * time.Second

// deployTracker is the leader's memory of deploy progress, only to time
// out a stuck deploy; everything else is in the state.
type deployTracker struct {
	progress map[string]deployProgress // by service ID
	last     time.Time
	timeout  time.Duration
}

type deployProgress struct {
	id uint64 // deploy ID
	up int
	at time.Time // when up last changed
}

func newDeployTracker() *deployTracker {
	return &deployTracker{progress: map[string]deployProgress{}, timeout: deployTimeout}
}

// lifecycleSpec gives the agent what the lifecycle asks of an instance.
func lifecycleSpec(spec *agent.ContainerSpec, a api.Assignment) {
	in := a.Instance
	spec.Stopped = in.Stopped || a.Drained
	spec.RestartGen = in.Restart
	if in.Actual.ContainerID != "" {
		spec.RestartDone, spec.RestartDoneID = in.Actual.Restart, in.Actual.ContainerID
	}
	spec.WaitForPort = a.Service.Deploy.WaitForPort
}

// instanceUpdated tells whether an instance is placed at the service's
// revision and restart generation (what it must run now).
func instanceUpdated(svc *fsm.Service, in *fsm.Instance) bool {
	return in.Revision >= svc.Revision && in.Restart >= svc.RestartGen
}

// instanceUp tells whether its node reports the instance running at the
// service's revision and restart generation, with its wait_for_port open
// and, for a service with a health check, healthy: a rollout must not take
// down the next instance while the new one cannot serve yet.
func instanceUp(svc *fsm.Service, in *fsm.Instance) bool {
	a := in.Actual
	if a.State != string(agent.StateRunning) || a.Revision != svc.Revision || a.Restart < svc.RestartGen {
		return false
	}
	if svc.Spec.HealthCheck != nil && a.Health != string(agent.HealthHealthy) {
		return false
	}
	return svc.Spec.Deploy.WaitForPort == 0 || a.WaitPort == agent.WaitPortOpen
}

// planLifecycle is the leader's deploy tracking as a function of the state
// and the clock: the verdict on every deploy that finished or failed, and
// the interval redeploys that are due. pending are the services planDeploys
// changed in this pass, placeErr why others could not be placed.
func planLifecycle(now time.Time, t *deployTracker, nodes []*fsm.Node, services []*fsm.Service, instances []*fsm.Instance,
	pending map[string]bool, placeErr map[string]string) []fsm.Command {
	if !t.last.IsZero() && now.Sub(t.last) > trackerGap {
		clear(t.progress)
	}
	t.last = now
	names := map[string]string{}
	for _, nd := range nodes {
		names[nd.ID] = nd.Name
	}
	byService := map[string][]*fsm.Instance{}
	for _, in := range instances {
		byService[in.ServiceID] = append(byService[in.ServiceID], in)
	}
	var out []fsm.Command
	live := map[string]bool{}
	verdict := func(svc *fsm.Service, state, msg string) {
		delete(t.progress, svc.ID)
		out = append(out, &fsm.ServiceDeployState{ID: svc.ID, DeployID: svc.Deploy.ID, State: state, Error: msg})
	}
	for _, svc := range services {
		d := svc.Deploy
		if svc.Undeployed || svc.Stopped {
			continue
		}
		if d.State != fsm.DeployDeploying {
			if next := svc.NextDeploy(); !next.IsZero() && !now.Before(next) {
				out = append(out, &fsm.ServiceRedeploy{IDs: []string{svc.ID}, Force: true, Reason: fsm.ReasonInterval})
				continue
			}
		}
		if d.State == fsm.DeployRunning {
			continue
		}
		insts := byService[svc.ID]
		slices.SortFunc(insts, func(a, b *fsm.Instance) int { return a.Number - b.Number })
		up, waiting, queued := deployProgressOf(svc, insts, names)
		complete := svc.Spec.Deploy.Strategy == scheduler.StrategyDaemon || len(insts) == svc.Instances
		if !pending[svc.ID] && placeErr[svc.ID] == "" && complete && len(waiting) == 0 && queued == 0 {
			verdict(svc, fsm.DeployRunning, "")
			continue
		}
		if d.State == fsm.DeployFailed {
			continue // halted; the next deploy resumes it (or it converges)
		}
		if msg := placeErr[svc.ID]; msg != "" {
			verdict(svc, fsm.DeployFailed, "cannot place every instance: "+msg)
			continue
		}
		if msg := failedInstance(svc, insts, names); msg != "" {
			verdict(svc, fsm.DeployFailed, msg)
			continue
		}
		live[svc.ID] = true
		p, ok := t.progress[svc.ID]
		if dependencyWait(svc, services) != "" {
			// Waiting for a dependency to deploy is not a lack of progress:
			// that deploy has its own timeout.
			t.progress[svc.ID] = deployProgress{id: d.ID, up: up, at: now}
			continue
		}
		if !ok || p.id != d.ID || p.up != up {
			p = deployProgress{id: d.ID, up: up, at: now}
			t.progress[svc.ID] = p
		}
		if now.Sub(p.at) >= t.timeout {
			msg := fmt.Sprintf("timed out: no instance came up for %s (%d of %d up)", t.timeout, up, len(insts))
			if len(waiting) > 0 {
				msg += "; waiting for " + strings.Join(waiting, ", ")
			}
			verdict(svc, fsm.DeployFailed, msg)
		}
	}
	for id := range t.progress {
		if !live[id] {
			delete(t.progress, id)
		}
	}
	return out
}

// deployProgressOf counts the instances of a deploy that are up, describes
// those in flight that are not, and counts those still queued (behind).
func deployProgressOf(svc *fsm.Service, insts []*fsm.Instance, names map[string]string) (up int, waiting []string, queued int) {
	for _, in := range insts {
		switch {
		case !instanceUpdated(svc, in):
			queued++
		case instanceUp(svc, in):
			up++
		default:
			waiting = append(waiting, whyNotUp(svc, in, names))
		}
	}
	return up, waiting, queued
}

// whyNotUp says what an instance in flight waits for.
func whyNotUp(svc *fsm.Service, in *fsm.Instance, names map[string]string) string {
	name := fmt.Sprintf("%s on %s", containerName(svc.Stack, svc.Name, in.Number), orID(names, in.NodeID))
	a := in.Actual
	switch {
	case a.State == "":
		return name + " (not reported yet)"
	case a.State == string(agent.StateRunning) && a.Revision == svc.Revision && a.Restart >= svc.RestartGen &&
		svc.Spec.HealthCheck != nil && a.Health != string(agent.HealthHealthy):
		if a.Health == string(agent.HealthUnhealthy) {
			return name + " (health check failing)"
		}
		return name + " (not healthy yet)"
	case a.State == string(agent.StateRunning) && a.Revision == svc.Revision && a.Restart >= svc.RestartGen:
		return fmt.Sprintf("%s (port %d not open yet)", name, svc.Spec.Deploy.WaitForPort)
	case a.State == string(agent.StateRunning):
		return name + " (old container still running)"
	case a.Error != "":
		return fmt.Sprintf("%s (%s: %s)", name, a.State, a.Error)
	}
	return fmt.Sprintf("%s (%s)", name, a.State)
}

// failedInstance names an instance of the deploy its node could not run,
// reported after the deploy started.
func failedInstance(svc *fsm.Service, insts []*fsm.Instance, names map[string]string) string {
	for _, in := range insts {
		a := in.Actual
		if instanceUpdated(svc, in) && a.State == string(agent.StateFailed) && !a.At.Before(svc.Deploy.StartedAt) {
			return fmt.Sprintf("%s on %s failed: %s", containerName(svc.Stack, svc.Name, in.Number), orID(names, in.NodeID), a.Error)
		}
	}
	return ""
}

func orID(names map[string]string, id string) string {
	if n := names[id]; n != "" {
		return n
	}
	return id
}

// trackDeploys commits the verdicts and interval redeploys of this pass.
func (n *Node) trackDeploys(ctx context.Context, t *deployTracker, now time.Time, nodes []*fsm.Node, services []*fsm.Service,
	instances []*fsm.Instance, cmds []*fsm.InstancesPlace, placeErr map[string]string) {
	pending := map[string]bool{}
	for _, c := range cmds {
		pending[c.ServiceID] = true
	}
	for _, cmd := range planLifecycle(now, t, nodes, services, instances, pending, placeErr) {
		if _, _, err := n.apply(ctx, cmd, nil); err != nil {
			n.log.Warn("record deploy state", "cmd", cmd.MsgType(), "err", err)
			continue
		}
		switch c := cmd.(type) {
		case *fsm.ServiceDeployState:
			if c.Error != "" {
				n.log.Warn("deploy "+c.State, "service", c.ID, "err", c.Error)
			} else {
				n.log.Info("deploy "+c.State, "service", c.ID)
			}
		case *fsm.ServiceRedeploy:
			n.log.Info("deploy.interval: redeploying", "services", c.IDs)
		}
	}
}

// lifecycleInfo adds the lifecycle of a service to what the API shows.
func lifecycleInfo(info *api.ServiceInfo, svc *fsm.Service) {
	info.Status, info.Stopped, info.Undeployed, info.Deploy = svc.Status(), svc.Stopped, svc.Undeployed, svc.Deploy
	info.WaitForPort = svc.Spec.Deploy.WaitForPort
	if next := svc.NextDeploy(); !next.IsZero() {
		info.NextDeploy = &next
	}
}

// lifecycleCommand is the FSM command of a lifecycle action.
func lifecycleCommand(action string, ids []string, force bool) (fsm.Command, error) {
	switch action {
	case "deploy":
		return &fsm.ServiceRedeploy{IDs: ids, Force: force}, nil
	case "stop":
		return &fsm.ServiceStop{IDs: ids}, nil
	case "start":
		return &fsm.ServiceStart{IDs: ids}, nil
	case "restart":
		return &fsm.ServiceRestart{IDs: ids}, nil
	}
	return nil, api.Errorf(api.CodeInvalid, "unknown action %q", action)
}

// skipReason says why a stack action leaves a service alone ("" = it
// applies).
func skipReason(action string, svc *fsm.Service) string {
	switch {
	case (action == "deploy" || action == "restart") && svc.Stopped:
		return "stopped; start it first"
	case action == "restart" && svc.Undeployed:
		return "not deployed yet"
	case action == "stop" && svc.Stopped:
		return "already stopped"
	case action == "start" && !svc.Stopped:
		return "not stopped"
	}
	return ""
}

// stackAction runs deploy, stop, start or restart on every service of a
// stack it applies to, in one change.
func (n *Node) stackAction(action string) func(http.ResponseWriter, *http.Request, *principal) error {
	return func(w http.ResponseWriter, r *http.Request, p *principal) error {
		store, err := n.store()
		if err != nil {
			return err
		}
		name := r.PathValue("name")
		if _, err := store.Stack(name); err != nil {
			return err
		}
		svcs, err := store.Services(name)
		if err != nil {
			return err
		}
		var ids, skipped []string
		for _, svc := range svcs {
			if why := skipReason(action, svc); why != "" {
				skipped = append(skipped, svc.ID+": "+why)
				continue
			}
			ids = append(ids, svc.ID)
		}
		idx := store.Index()
		if len(ids) == 0 {
			if action == "deploy" || action == "restart" {
				return api.Errorf(api.CodeConflict, "nothing to %s in stack %s: %s", action, name, strings.Join(skipped, "; "))
			}
		} else {
			cmd, err := lifecycleCommand(action, ids, false)
			if err != nil {
				return err
			}
			if _, idx, err = n.apply(r.Context(), cmd, auditOf(r, p)); err != nil {
				return err
			}
		}
		return writeJSON(w, idx, lifecycleResult(store, ids, skipped))
	}
}

// serviceAction runs deploy, stop, start or restart on one service.
func (n *Node) serviceAction(action string) func(http.ResponseWriter, *http.Request, *principal) error {
	return func(w http.ResponseWriter, r *http.Request, p *principal) error {
		id := fsm.ServiceID(r.PathValue("stack"), r.PathValue("service"))
		var req api.ServiceDeployRequest
		if action == "deploy" && r.ContentLength != 0 {
			if err := decodeBody(r, &req); err != nil {
				return err
			}
		}
		store, err := n.store()
		if err != nil {
			return err
		}
		svc, err := store.Service(id)
		if err != nil {
			return err
		}
		if why := skipReason(action, svc); why != "" && (action == "stop" || action == "start") {
			// Nothing to do; deploy and restart of a stopped service are
			// refused by the FSM with the way out.
			return writeJSON(w, store.Index(), lifecycleResult(store, nil, []string{svc.ID + ": " + why}))
		}
		cmd, err := lifecycleCommand(action, []string{id}, req.Force)
		if err != nil {
			return err
		}
		_, idx, err := n.apply(r.Context(), cmd, auditOf(r, p))
		if err != nil {
			return err
		}
		return writeJSON(w, idx, lifecycleResult(store, []string{id}, nil))
	}
}

func lifecycleResult(store *fsm.Store, ids, skipped []string) *api.LifecycleResult {
	out := &api.LifecycleResult{Services: []api.ServiceInfo{}, Skipped: skipped}
	names := nodeNames(store)
	for _, id := range ids {
		if svc, err := store.Service(id); err == nil {
			out.Services = append(out.Services, *serviceInfo(store, svc, names))
		}
	}
	return out
}

// getService is `service show`: the service with its spec and instances.
// Environment values are shown to admins only.
func (n *Node) getService(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, err := n.store()
	if err != nil {
		return err
	}
	if err := blockingWait(r, store); err != nil {
		return err
	}
	svc, err := store.Service(fsm.ServiceID(r.PathValue("stack"), r.PathValue("service")))
	if err != nil {
		return err
	}
	info := serviceInfo(store, svc, nodeNames(store))
	spec := svc.Spec
	if !p.admin() {
		spec.Environment = slices.Clone(spec.Environment)
		for i := range spec.Environment {
			spec.Environment[i].Value = "(hidden)"
		}
	}
	info.Spec = &spec
	return writeJSON(w, store.Index(), info)
}

func (n *Node) deleteService(w http.ResponseWriter, r *http.Request, p *principal) error {
	id := fsm.ServiceID(r.PathValue("stack"), r.PathValue("service"))
	_, idx, err := n.apply(r.Context(), &fsm.ServiceRemove{ID: id}, auditOf(r, p))
	if err != nil {
		return err
	}
	return writeJSON(w, idx, map[string]string{"removed": id})
}

// serviceEvents is the grid event log filtered to one service and its
// instances; a removed service still has its events.
func (n *Node) serviceEvents(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, err := n.store()
	if err != nil {
		return err
	}
	id := fsm.ServiceID(r.PathValue("stack"), r.PathValue("service"))
	evs, err := store.ServiceEvents(id, 0)
	if err != nil {
		return err
	}
	if len(evs) == 0 {
		if _, err := store.Service(id); err != nil {
			return err
		}
	}
	return writeJSON(w, store.Index(), evs)
}

// stackLogs merges the logs of every instance of every service of a stack.
func (n *Node) stackLogs(w http.ResponseWriter, r *http.Request, p *principal) error {
	q, err := parseLogQuery(r)
	if err != nil {
		return err
	}
	store, err := n.store()
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	if _, err := store.Stack(name); err != nil {
		return err
	}
	return n.mergeLogs(w, r, q, func() ([]logSource, error) {
		store, err := n.store()
		if err != nil {
			return nil, err
		}
		svcs, err := store.Services(name)
		if err != nil {
			return nil, err
		}
		var sources []logSource
		for _, svc := range svcs {
			src, err := logSources(store, svc)
			if err != nil {
				return nil, err
			}
			sources = append(sources, src...)
		}
		return sources, nil
	})
}
