package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/scheduler"
)

// offlineGrace is how long a node may be offline before its instances are
// moved, per strategy (Kontena's values): a short network blip must not
// reshuffle a grid.
func offlineGrace(strategy string) time.Duration {
	switch strategy {
	case scheduler.StrategyRandom:
		return 30 * time.Second
	case scheduler.StrategyDaemon:
		return 10 * time.Minute
	}
	return 2 * time.Minute
}

// planDeploys is the leader's deploy step as a pure function of the state:
// for every service it asks the scheduler where its instances belong and
// returns a placement command for each service whose instances are not
// already there (count, node or revision). Services that cannot be placed
// come back as errors naming the filters that rejected nodes; the others
// are still planned.
func planDeploys(now time.Time, nodes []*fsm.Node, services []*fsm.Service, instances []*fsm.Instance, graceOverride time.Duration, rnd *rand.Rand) ([]*fsm.InstancesPlace, []error) {
	byService := map[string][]*fsm.Instance{}
	for _, in := range instances {
		byService[in.ServiceID] = append(byService[in.ServiceID], in)
	}
	reserved := reservedMemory(services, instances)
	var cmds []*fsm.InstancesPlace
	var errs []error
	for _, svc := range services {
		if svc.Undeployed {
			continue // installed with --no-deploy: nothing runs until a deploy
		}
		ssvc := toSchedulerService(svc)
		grace, back := offlineGrace(ssvc.Strategy), onlineGrace
		if graceOverride > 0 {
			grace, back = graceOverride, graceOverride
		}
		st := scheduler.NewState(schedulerNodes(now, nodes, grace, back, byService[svc.ID], reserved), schedulerInstances(services, instances), nil)
		plan, err := scheduler.Place(st, ssvc, scheduler.Options{Rand: rnd})
		if err != nil {
			errs = append(errs, &serviceError{id: svc.ID, err: err})
		}
		if cmd := diffPlan(svc, byService[svc.ID], plan); cmd != nil {
			cmds = append(cmds, cmd)
		}
	}
	return cmds, errs
}

// diffPlan turns a plan into a command, or nil when the instances already
// match it. It is also the rolling deploy: instances that stay on their node
// but are behind the service revision or restart generation (`service
// restart`) move on at most MaxInFlight at a time (from min_health),
// counting those already updated that are not up yet (instanceUp: running
// the revision, restarted, port open with wait_for_port); the rest keep
// their old revision until a later pass. A failed instance thus halts the
// rollout where it is, and so does a failed deploy until the next one. New
// and moved instances start at the new revision. A stopped service runs
// nothing, so all its instances move on at once.
func diffPlan(svc *fsm.Service, current []*fsm.Instance, plan scheduler.Plan) *fsm.InstancesPlace {
	have := map[int]*fsm.Instance{}
	inFlight := 0
	for _, in := range current {
		have[in.Number] = in
		if instanceUpdated(svc, in) && !instanceUp(svc, in) {
			inFlight++
		}
	}
	budget := max(plan.MaxInFlight, 1) - inFlight
	switch {
	case svc.Stopped:
		budget = len(plan.Placements)
	case svc.Deploy.State == fsm.DeployFailed:
		budget = 0
	}
	cmd := &fsm.InstancesPlace{ServiceID: svc.ID, Revision: svc.Revision}
	changed := false
	for _, p := range plan.Placements {
		rev, restart := svc.Revision, svc.RestartGen
		in, ok := have[p.Number]
		switch {
		case !ok || in.NodeID != p.NodeID:
			changed = true
		case !instanceUpdated(svc, in) && budget > 0:
			budget--
			changed = true
		case !instanceUpdated(svc, in):
			rev, restart = in.Revision, in.Restart
		}
		cmd.Place = append(cmd.Place, fsm.Placement{Number: p.Number, NodeID: p.NodeID, Revision: rev, Restart: restart})
	}
	for _, r := range plan.Remove {
		cmd.Remove = append(cmd.Remove, r.Number)
		changed = true
	}
	if !changed {
		return nil
	}
	slices.Sort(cmd.Remove)
	return cmd
}

func toSchedulerService(svc *fsm.Service) scheduler.Service {
	spec := svc.Spec
	out := scheduler.Service{Stack: svc.Stack, Name: svc.Name, Instances: svc.Instances, Strategy: spec.Deploy.Strategy,
		Affinity: spec.Affinity, CPUs: spec.CPUs, Stateful: spec.Stateful, VolumesFrom: spec.VolumesFrom,
		NetworkMode: spec.NetworkMode, MinHealth: spec.Deploy.MinHealth, Ports: servicePorts(svc),
		Memory: spec.MemLimit}
	return out
}

func servicePorts(svc *fsm.Service) []scheduler.Port {
	var ports []scheduler.Port
	for _, p := range svc.Spec.Ports {
		ports = append(ports, scheduler.Port{HostIP: p.IP, HostPort: p.NodePort, Protocol: p.Protocol})
	}
	return ports
}

// onlineGrace is how long a node that came (back) online waits before new
// instances are placed on it (Kontena's value): a flapping node must not
// pull work back and forth.
const onlineGrace = 20 * time.Second

// schedulerNodes is the grid as the scheduler sees it for one service. A
// node offline for less than the offline grace still counts as online, so
// its instances stay put; a node online for less than the online grace
// takes no new instances of the service (it keeps those it runs).
//
// Memory is reserved, not measured: a node's used memory is the mem_limit
// of every instance placed on it (reserved), as Kontena did, so a placement
// does not depend on what containers happen to use at that moment.
func schedulerNodes(now time.Time, nodes []*fsm.Node, offline, online time.Duration, current []*fsm.Instance, reserved map[string]int64) []scheduler.Node {
	runs := map[string]bool{}
	for _, in := range current {
		runs[in.NodeID] = true
	}
	out := make([]scheduler.Node, 0, len(nodes))
	for _, n := range nodes {
		sn := scheduler.NodeFromFSM(n)
		sn.CPUs, sn.MemoryTotal, sn.VolumeDrivers = n.Resources.CPUs, n.Resources.MemoryTotal, n.Resources.VolumeDrivers
		sn.MemoryUsed = reserved[n.ID]
		since := now.Sub(n.StatusAt)
		switch {
		case n.Status == fsm.StatusOffline && since < offline:
			sn.Status = fsm.StatusOnline
		case n.Status == fsm.StatusOnline && since < online && !runs[n.ID] && n.JoinedAt.Before(n.StatusAt):
			// Back from offline (a node that just joined is welcome at once).
			sn.Status = fsm.StatusOffline
		}
		out = append(out, sn)
	}
	return out
}

// reservedMemory sums the mem_limit of the instances placed on each node.
func reservedMemory(services []*fsm.Service, instances []*fsm.Instance) map[string]int64 {
	limit := map[string]int64{}
	for _, s := range services {
		limit[s.ID] = s.Spec.MemLimit
	}
	out := map[string]int64{}
	for _, in := range instances {
		out[in.NodeID] += limit[in.ServiceID]
	}
	return out
}

func schedulerInstances(services []*fsm.Service, instances []*fsm.Instance) []scheduler.Instance {
	svcs := map[string]*fsm.Service{}
	for _, s := range services {
		svcs[s.ID] = s
	}
	out := make([]scheduler.Instance, 0, len(instances))
	for _, in := range instances {
		si := scheduler.Instance{Service: in.ServiceID, Number: in.Number, NodeID: in.NodeID}
		if svc := svcs[in.ServiceID]; svc != nil {
			si.Ports = servicePorts(svc)
			si.Volumes = svc.Spec.Stateful
		}
		out = append(out, si)
	}
	return out
}

// deploy is the leader's deploy step: plan every service and commit the
// placements that changed, and each service's placement error when it
// changes.
func (n *Node) deploy(ctx context.Context, rn *raftNode, tracker *deployTracker) {
	nodes, err := rn.store.Nodes()
	if err != nil {
		return
	}
	services, err := rn.store.Services("")
	if err != nil || len(services) == 0 {
		return
	}
	instances, err := rn.store.Instances("")
	if err != nil {
		return
	}
	var override time.Duration
	if g, err := rn.store.Grid(); err == nil {
		override = g.OfflineGrace
	}
	now := time.Now().UTC()
	cmds, errs := planDeploys(now, nodes, services, instances, override, n.rnd)
	for _, cmd := range cmds {
		if _, _, err := n.apply(ctx, cmd, nil); err != nil {
			n.log.Warn("commit placement", "service", cmd.ServiceID, "err", err)
			continue
		}
		n.log.Info("instances placed", "service", cmd.ServiceID, "revision", cmd.Revision, "instances", len(cmd.Place), "removed", len(cmd.Remove))
	}
	failed := map[string]string{}
	for _, e := range errs {
		var se *serviceError
		if errors.As(e, &se) {
			failed[se.id] = se.err.Error()
		}
	}
	for _, svc := range services {
		if msg := failed[svc.ID]; msg != svc.PlacementError {
			if _, _, err := n.apply(ctx, &fsm.ServicePlacementError{ID: svc.ID, Error: msg}, nil); err != nil {
				n.log.Warn("record placement error", "service", svc.ID, "err", err)
			}
		}
	}
	n.trackDeploys(ctx, tracker, now, nodes, services, instances, cmds, failed)
}

// serviceError ties a placement error to its service.
type serviceError struct {
	id  string
	err error
}

func (e *serviceError) Error() string { return fmt.Sprintf("service %s: %v", e.id, e.err) }
func (e *serviceError) Unwrap() error { return e.err }
