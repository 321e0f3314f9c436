package orchestrator

import (
	"fmt"
	"slices"
	"strings"
	"time"

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
type Tracker struct {
	progress map[string]deployProgress // by service ID
	last     time.Time
	timeout  time.Duration
	// Hook, when set (tests), runs first for every service a pass tracks.
	Hook func(pass string, svc *fsm.Service)
}

type deployProgress struct {
	id uint64 // deploy ID
	up int
	at time.Time // when up last changed
}

func NewTracker() *Tracker {
	return &Tracker{progress: map[string]deployProgress{}, timeout: deployTimeout}
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
func InstanceUp(svc *fsm.Service, in *fsm.Instance) bool {
	a := in.Actual
	if a.State != fsm.StateRunning || a.Revision != svc.Revision || a.Restart < svc.RestartGen {
		return false
	}
	if svc.Spec.HealthCheck != nil && a.Health != fsm.HealthHealthy {
		return false
	}
	return svc.Spec.Deploy.WaitForPort == 0 || a.WaitPort == fsm.WaitPortOpen
}

// planLifecycle is the leader's deploy tracking as a function of the state
// and the clock: the verdict on every deploy that finished or failed, and
// the interval redeploys that are due. pending are the services planDeploys
// changed in this pass, placeErr why others could not be placed.
func PlanLifecycle(now time.Time, t *Tracker, nodes []*fsm.Node, services []*fsm.Service, instances []*fsm.Instance,
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
		// A service whose data breaks the tracking fails alone, with the
		// reason; the others are still tracked.
		func() {
			defer func() {
				if p := recover(); p != nil {
					if svc.Deploy.State == fsm.DeployDeploying {
						verdict(svc, fsm.DeployFailed, fmt.Sprintf("internal error while tracking the deploy: %v", p))
					}
				}
			}()
			if t.Hook != nil {
				t.Hook("lifecycle", svc)
			}
			d := svc.Deploy
			if svc.Undeployed || svc.Stopped {
				return
			}
			if d.State != fsm.DeployDeploying {
				if next := svc.NextDeploy(); !next.IsZero() && !now.Before(next) {
					out = append(out, &fsm.ServiceRedeploy{IDs: []string{svc.ID}, Force: true, Reason: fsm.ReasonInterval})
					return
				}
			}
			if d.State == fsm.DeployRunning {
				return
			}
			insts := byService[svc.ID]
			slices.SortFunc(insts, func(a, b *fsm.Instance) int { return a.Number - b.Number })
			up, waiting, queued := DeployProgress(svc, insts, names)
			complete := svc.Spec.Deploy.Strategy == scheduler.StrategyDaemon || len(insts) == svc.Instances
			if !pending[svc.ID] && placeErr[svc.ID] == "" && complete && len(waiting) == 0 && queued == 0 {
				verdict(svc, fsm.DeployRunning, "")
				return
			}
			if d.State == fsm.DeployFailed {
				return // halted; the next deploy resumes it (or it converges)
			}
			if msg := placeErr[svc.ID]; msg != "" {
				verdict(svc, fsm.DeployFailed, "cannot place every instance: "+msg)
				return
			}
			if msg := failedInstance(svc, insts, names); msg != "" {
				verdict(svc, fsm.DeployFailed, msg)
				return
			}
			live[svc.ID] = true
			p, ok := t.progress[svc.ID]
			if DependencyWait(svc, services) != "" {
				// Waiting for a dependency to deploy is not a lack of progress:
				// that deploy has its own timeout.
				t.progress[svc.ID] = deployProgress{id: d.ID, up: up, at: now}
				return
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
		}()
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
func DeployProgress(svc *fsm.Service, insts []*fsm.Instance, names map[string]string) (up int, waiting []string, queued int) {
	for _, in := range insts {
		switch {
		case !instanceUpdated(svc, in):
			queued++
		case InstanceUp(svc, in):
			up++
		default:
			waiting = append(waiting, whyNotUp(svc, in, names))
		}
	}
	return up, waiting, queued
}

// whyNotUp says what an instance in flight waits for.
func whyNotUp(svc *fsm.Service, in *fsm.Instance, names map[string]string) string {
	name := fmt.Sprintf("%s on %s", fsm.ContainerName(svc.Stack, svc.Name, in.Number), orID(names, in.NodeID))
	a := in.Actual
	switch {
	case a.State == "":
		return name + " (not reported yet)"
	case a.State == fsm.StateRunning && a.Revision == svc.Revision && a.Restart >= svc.RestartGen &&
		svc.Spec.HealthCheck != nil && a.Health != fsm.HealthHealthy:
		if a.Health == fsm.HealthUnhealthy {
			return name + " (health check failing)"
		}
		return name + " (not healthy yet)"
	case a.State == fsm.StateRunning && a.Revision == svc.Revision && a.Restart >= svc.RestartGen:
		return fmt.Sprintf("%s (port %d not open yet)", name, svc.Spec.Deploy.WaitForPort)
	case a.State == fsm.StateRunning:
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
		if instanceUpdated(svc, in) && a.State == fsm.StateFailed && !a.At.Before(svc.Deploy.StartedAt) {
			return fmt.Sprintf("%s on %s failed: %s", fsm.ContainerName(svc.Stack, svc.Name, in.Number), orID(names, in.NodeID), a.Error)
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
