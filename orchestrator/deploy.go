// Package orchestrator decides what the grid should run: pure functions of
// a view of the state and the clock that return the commands the leader
// commits. Placement per service (through the scheduler), rolling
// replacement within min_health, holds for nodes in a grace period,
// dependency order, and the verdict of every deploy (deploying, running,
// failed) with the one definition of an instance being "up". It reads no
// clock, opens no connection and imports neither Raft nor HTTP.
package orchestrator

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/scheduler"
	"github.com/kontena-ng/kontena/stack"
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

// View is what the leader's deploy step reads from the state.
type View struct {
	Now       time.Time
	Nodes     []*fsm.Node
	Services  []*fsm.Service
	Instances []*fsm.Instance
	// Volumes are the top-level volume declarations of each stack, by
	// stack name (their drivers feed the volume driver filter).
	Volumes map[string][]*stack.Volume
	// Grace, when set, replaces every strategy's offline grace and the
	// online grace (grid setting --offline-grace).
	Grace time.Duration
	// DefaultAffinity is the grid's, for services that have none.
	DefaultAffinity []string
	// Hook, when set (tests), runs first for every service a pass plans:
	// a test makes one service's planning panic with it.
	Hook func(pass string, svc *fsm.Service)
}

// planDeploys is the leader's deploy step as a pure function of the state:
// for every service it asks the scheduler where its instances belong and
// returns a placement command for each service whose instances are not
// already there (count, node or revision). Services that cannot be placed
// come back as errors naming the filters that rejected nodes; the others
// are still planned.
//
// Services are planned one after the other on one scheduler state, each
// plan applied to it before the next service is placed, so that two
// services of one pass never take the same host port or the same memory;
// dependencies (volumes_from, network_mode container:, depends_on) are
// planned before the services that need them. A service whose depends_on
// targets are still deploying waits for them (Kontena's start order).
func PlanDeploys(v View, rnd *rand.Rand) ([]*fsm.InstancesPlace, []error) {
	byService := map[string][]*fsm.Instance{}
	for _, in := range v.Instances {
		byService[in.ServiceID] = append(byService[in.ServiceID], in)
	}
	st := scheduler.NewState(schedulerNodes(v.Nodes, reservedMemory(v.Services, v.Instances)),
		schedulerInstances(v.Services, v.Instances), v.DefaultAffinity)
	serving := servingOn(v.Nodes)
	holdsFor := map[[2]time.Duration]map[string]string{} // by (offline, online) grace: a few per pass
	var cmds []*fsm.InstancesPlace
	var errs []error
	for _, svc := range deployOrder(v.Services) {
		if svc.Undeployed {
			continue // installed with --no-deploy: nothing runs until a deploy
		}
		if DependencyWait(svc, v.Services) != "" {
			continue
		}
		// One service whose data breaks the planning (a bug, or a state
		// written before the API checked what it stores) fails alone: it
		// is marked failed with the reason and the others are planned.
		func() {
			defer func() {
				if p := recover(); p != nil {
					errs = append(errs, &ServiceError{ID: svc.ID, Err: fmt.Errorf("internal error while planning the service (it is left as it is): %v", p)})
				}
			}()
			if v.Hook != nil {
				v.Hook("deploy", svc)
			}
			if svc.Instances < 0 || svc.Instances > stack.MaxStoredInstances {
				errs = append(errs, &ServiceError{ID: svc.ID, Err: fmt.Errorf("%d instances: expected 0 to %d", svc.Instances, stack.MaxStoredInstances)})
				return
			}
			ssvc := toSchedulerService(svc, v.Volumes[svc.Stack])
			grace, back := offlineGrace(ssvc.Strategy), onlineGrace
			if v.Grace > 0 {
				grace, back = v.Grace, v.Grace
			}
			h, ok := holdsFor[[2]time.Duration{grace, back}]
			if !ok {
				h = holds(v.Now, v.Nodes, grace, back)
				holdsFor[[2]time.Duration{grace, back}] = h
			}
			st.SetHolds(h)
			plan, err := scheduler.Place(st, ssvc, scheduler.Options{Rand: rnd})
			if err != nil {
				errs = append(errs, &ServiceError{ID: svc.ID, Err: err})
			}
			if cmd := diffPlan(svc, byService[svc.ID], plan, serving); cmd != nil {
				st.Apply(ssvc, committed(cmd, byService[svc.ID]))
				cmds = append(cmds, cmd)
			}
		}()
	}
	return cmds, errs
}

// committed is the plan a placement command commits, for State.Apply: what
// diffPlan held back (a rollout's budget) stays where it is.
func committed(cmd *fsm.InstancesPlace, current []*fsm.Instance) scheduler.Plan {
	prev := map[int]string{}
	for _, in := range current {
		prev[in.Number] = in.NodeID
	}
	var p scheduler.Plan
	for _, pl := range cmd.Place {
		p.Placements = append(p.Placements, scheduler.Placement{Number: pl.Number, NodeID: pl.NodeID, Previous: prev[pl.Number]})
	}
	for _, n := range cmd.Remove {
		p.Remove = append(p.Remove, scheduler.Instance{Number: n, NodeID: prev[n]})
	}
	return p
}

// holds says, per node, why it keeps the instances it runs but takes no
// new ones: offline for less than the grace (a short blip must not
// reshuffle the grid, nor should new work wait on a node that may be
// gone), or back online for less than the online grace (a flapping node
// must not pull work back and forth; a node that just joined is welcome
// at once).
func holds(now time.Time, nodes []*fsm.Node, offline, online time.Duration) map[string]string {
	out := map[string]string{}
	for _, n := range nodes {
		since := now.Sub(n.StatusAt)
		switch {
		case n.Status == fsm.StatusOffline && since < offline:
			out[n.ID] = fmt.Sprintf("offline for %s, within the %s grace", since.Round(time.Second), offline)
		case n.Status == fsm.StatusOnline && since < online && n.JoinedAt.Before(n.StatusAt):
			out[n.ID] = fmt.Sprintf("online again for %s, new work waits %s", since.Round(time.Second), online)
		}
	}
	return out
}

// serviceDeps are the services of the grid that svc needs first: its
// depends_on entries and the services of its volumes_from and
// network_mode container: targets, as service IDs.
func serviceDeps(svc *fsm.Service) []string {
	var out []string
	add := func(ref string) {
		if !strings.Contains(ref, "/") {
			ref = svc.Stack + "/" + ref
		}
		if !slices.Contains(out, ref) && ref != svc.ID {
			out = append(out, ref)
		}
	}
	for _, d := range svc.Spec.DependsOn {
		add(d)
	}
	targets := append([]string(nil), svc.Spec.VolumesFrom...)
	if x, ok := strings.CutPrefix(svc.Spec.NetworkMode, "container:"); ok {
		targets = append(targets, x)
	}
	for _, t := range targets {
		// A container reference, "db-%s" or "db-1": its service is the
		// part before the last "-".
		t = strings.ReplaceAll(t, "%s", "1")
		if i := strings.LastIndexByte(t, '-'); i > 0 {
			add(t[:i])
		}
	}
	return out
}

// deployOrder sorts services so that each comes after the services it
// needs (stable otherwise; a cycle keeps the services' own order).
func deployOrder(services []*fsm.Service) []*fsm.Service {
	byID := make(map[string]*fsm.Service, len(services))
	for _, s := range services {
		byID[s.ID] = s
	}
	out := make([]*fsm.Service, 0, len(services))
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(s *fsm.Service)
	visit = func(s *fsm.Service) {
		if state[s.ID] != 0 {
			return // done, or a cycle: keep going without it
		}
		state[s.ID] = 1
		for _, d := range serviceDeps(s) {
			if dep := byID[d]; dep != nil {
				visit(dep)
			}
		}
		state[s.ID] = 2
		out = append(out, s)
	}
	for _, s := range services {
		visit(s)
	}
	return out
}

// dependencyWait names the depends_on service that svc's deploy waits for
// ("" when none): while both deploy, the dependent starts only once the
// service it depends on is up, as Kontena started a stack's services in
// order. A dependency that depends back on svc is not waited for.
func DependencyWait(svc *fsm.Service, services []*fsm.Service) string {
	if svc.Deploy.State != fsm.DeployDeploying {
		return ""
	}
	for _, d := range svc.Spec.DependsOn {
		id := d
		if !strings.Contains(id, "/") {
			id = svc.Stack + "/" + id
		}
		for _, dep := range services {
			if dep.ID == id && dep.ID != svc.ID && dep.Deploy.State == fsm.DeployDeploying && !dep.Undeployed &&
				!slices.Contains(serviceDeps(dep), svc.ID) {
				return dep.ID
			}
		}
	}
	return ""
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
func diffPlan(svc *fsm.Service, current []*fsm.Instance, plan scheduler.Plan, serving func(*fsm.Instance) bool) *fsm.InstancesPlace {
	have := map[int]*fsm.Instance{}
	inFlight := 0
	for _, in := range current {
		have[in.Number] = in
		if instanceUpdated(svc, in) && !InstanceUp(svc, in) {
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
		case !ok:
			changed = true // a new instance: nothing runs that could drop
		case in.NodeID != p.NodeID && (!serving(in) || budget > 0):
			// A move stops the instance where it runs: one that serves
			// there counts against the rollout's budget.
			if serving(in) {
				budget--
			}
			changed = true
		case in.NodeID != p.NodeID:
			p.NodeID, rev, restart = in.NodeID, in.Revision, in.Restart // later
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

// servingOn returns whether an instance runs on its node, that node
// online, as far as the grid knows (whatever its revision): moving it away
// takes it down.
func servingOn(nodes []*fsm.Node) func(*fsm.Instance) bool {
	online := map[string]bool{}
	for _, n := range nodes {
		online[n.ID] = n.Status == fsm.StatusOnline
	}
	return func(in *fsm.Instance) bool {
		return online[in.NodeID] && in.Actual.State == fsm.StateRunning && in.Actual.Health != fsm.HealthUnhealthy
	}
}

func toSchedulerService(svc *fsm.Service, volumes []*stack.Volume) scheduler.Service {
	spec := svc.Spec
	out := scheduler.Service{Stack: svc.Stack, Name: svc.Name, Instances: svc.Instances, Strategy: spec.Deploy.Strategy,
		Affinity: spec.Affinity, CPUs: spec.CPUs, Stateful: spec.Stateful, VolumesFrom: spec.VolumesFrom,
		NetworkMode: spec.NetworkMode, MinHealth: spec.Deploy.MinHealth, Ports: servicePorts(svc),
		Memory: spec.MemLimit}
	for _, m := range spec.Volumes {
		if m.Volume == "" {
			continue
		}
		for _, v := range volumes {
			if v != nil && v.Name == m.Volume {
				out.Volumes = append(out.Volumes, scheduler.Volume{Name: v.Name, Driver: v.Driver})
			}
		}
	}
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

// schedulerNodes is the grid as the scheduler sees it. Memory is
// reserved, not measured: a node's used memory is the mem_limit of every
// instance placed on it (reserved), as Kontena did, so a placement does
// not depend on what containers happen to use at that moment. The grace
// periods are per service (see holds).
func schedulerNodes(nodes []*fsm.Node, reserved map[string]int64) []scheduler.Node {
	out := make([]scheduler.Node, 0, len(nodes))
	for _, n := range nodes {
		sn := scheduler.NodeFromFSM(n)
		sn.CPUs, sn.MemoryTotal, sn.VolumeDrivers = n.Resources.CPUs, n.Resources.MemoryTotal, n.Resources.VolumeDrivers
		sn.MemoryUsed = reserved[n.ID]
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
			si.Volumes = svc.Spec.Stateful || slices.ContainsFunc(svc.Spec.Volumes, func(m stack.Mount) bool { return m.Volume != "" })
		}
		out = append(out, si)
	}
	return out
}

// serviceError ties a placement error to its service.
type ServiceError struct {
	ID  string
	Err error
}

func (e *ServiceError) Error() string { return fmt.Sprintf("service %s: %v", e.ID, e.Err) }
func (e *ServiceError) Unwrap() error { return e.Err }
