package orchestrator

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/scheduler"
	"github.com/kontena-ng/kontena/stack"
)

var now = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func nodes(statuses ...string) []*fsm.Node {
	var out []*fsm.Node
	for i, st := range statuses {
		status, age, _ := strings.Cut(st, "@")
		at := now
		if age != "" {
			d, _ := time.ParseDuration(age)
			at = now.Add(-d)
		}
		out = append(out, &fsm.Node{ID: fmt.Sprintf("id%d", i+1), Name: fmt.Sprintf("n%d", i+1), Number: i + 1,
			Status: status, StatusAt: at, JoinedAt: at, Availability: fsm.AvailabilityActive, Labels: []string{fmt.Sprintf("az=%c", 'a'+i%2)}})
	}
	return out
}

func service(n int, strategy string) *fsm.Service {
	return &fsm.Service{ID: "s/web", Stack: "s", Name: "web", Revision: 1, Instances: n,
		Spec: stack.Service{Name: "web", Image: "web:1", Instances: n, Deploy: stack.Deploy{Strategy: strategy, MinHealth: 0.8}}}
}

func placed(cmd *fsm.InstancesPlace) map[int]string {
	m := map[int]string{}
	for _, p := range cmd.Place {
		m[p.Number] = p.NodeID
	}
	return m
}

func TestPlanDeploys(t *testing.T) {
	rnd := func() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }
	t.Run("memory is reserved by mem_limit, cpus and resources come from the nodes", func(t *testing.T) {
		const gib = int64(1) << 30
		ns := nodes("online", "online")
		ns[0].Resources = fsm.NodeResources{CPUs: 2, MemoryTotal: 2 * gib}
		ns[1].Resources = fsm.NodeResources{CPUs: 8, MemoryTotal: 1 * gib}
		other := &fsm.Service{ID: "s/db", Stack: "s", Name: "db", Revision: 1, Instances: 1,
			Spec: stack.Service{Name: "db", MemLimit: gib, Instances: 1}}
		current := []*fsm.Instance{{ID: "s/db-1", ServiceID: "s/db", Number: 1, NodeID: "id1", Revision: 1}}
		svc := service(3, "random")
		svc.Spec.MemLimit = gib / 2
		cmds, errs := PlanDeploys(View{Now: now, Nodes: ns, Services: []*fsm.Service{other, svc}, Instances: current}, rnd())
		// n1 has 2 GiB with 1 GiB reserved by db: two halves fit; n2 fits
		// two more; so 3 instances place, at most 2 per node.
		var mine *fsm.InstancesPlace
		for _, c := range cmds {
			if c.ServiceID == "s/web" {
				mine = c
			}
		}
		if len(errs) != 0 || mine == nil || len(mine.Place) != 3 {
			t.Fatalf("cmds %v errs %v", cmds, errs)
		}
		per := map[string]int{}
		for _, nd := range placed(mine) {
			per[nd]++
		}
		if per["id1"] > 2 || per["id2"] > 2 {
			t.Fatalf("placements %v exceed the nodes' free memory", per)
		}
		svc.Instances = 5 // 1 GiB + 1 GiB free = 4 halves
		_, errs = PlanDeploys(View{Now: now, Nodes: ns, Services: []*fsm.Service{other, svc}, Instances: current}, rnd())
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), "memory") {
			t.Fatalf("5 half-GiB instances on 2 GiB free: errs %v", errs)
		}
		cpu := service(1, "ha")
		cpu.Spec.CPUs = 4
		cmds, errs = PlanDeploys(View{Now: now, Nodes: ns, Services: []*fsm.Service{cpu}, Instances: nil}, rnd())
		if len(errs) != 0 || len(cmds) != 1 || placed(cmds[0])[1] != "id2" {
			t.Fatalf("cpus 4 must land on the 8-CPU node: %v %v", cmds, errs)
		}
	})
	t.Run("new service is spread over zones", func(t *testing.T) {
		cmds, errs := PlanDeploys(View{Now: now, Nodes: nodes("online", "online", "online"), Services: []*fsm.Service{service(3, "ha")}, Instances: nil}, rnd())
		if len(errs) != 0 || len(cmds) != 1 || len(cmds[0].Place) != 3 {
			t.Fatalf("cmds %+v errs %v", cmds, errs)
		}
		zones := map[string]int{}
		for _, p := range cmds[0].Place {
			zones[map[string]string{"id1": "a", "id2": "b", "id3": "a"}[p.NodeID]]++
		}
		if zones["a"] == 0 || zones["b"] == 0 {
			t.Fatalf("not spread over zones: %v", placed(cmds[0]))
		}
	})
	current := []*fsm.Instance{
		{ID: "s/web-1", ServiceID: "s/web", Number: 1, NodeID: "id1", Revision: 1},
		{ID: "s/web-2", ServiceID: "s/web", Number: 2, NodeID: "id2", Revision: 1},
	}
	t.Run("placed service is left alone", func(t *testing.T) {
		cmds, _ := PlanDeploys(View{Now: now, Nodes: nodes("online", "online"), Services: []*fsm.Service{service(2, "ha")}, Instances: current}, rnd())
		if len(cmds) != 0 {
			t.Fatalf("unexpected commands: %+v", cmds[0])
		}
	})
	t.Run("scale down removes the highest numbers", func(t *testing.T) {
		cmds, _ := PlanDeploys(View{Now: now, Nodes: nodes("online", "online"), Services: []*fsm.Service{service(1, "ha")}, Instances: current}, rnd())
		if len(cmds) != 1 || fmt.Sprint(cmds[0].Remove) != "[2]" || placed(cmds[0])[1] != "id1" {
			t.Fatalf("cmds %+v", cmds)
		}
	})
	t.Run("revision change rolls one instance at a time", func(t *testing.T) {
		svc := service(2, "ha")
		svc.Revision = 2
		running := func(in *fsm.Instance) *fsm.Instance {
			cp := *in
			cp.Actual = fsm.InstanceActual{State: fsm.StateRunning, Revision: cp.Revision}
			return &cp
		}
		insts := []*fsm.Instance{running(current[0]), running(current[1])}
		revs := func(cmd *fsm.InstancesPlace) string {
			var out []string
			for _, p := range cmd.Place {
				out = append(out, fmt.Sprintf("%d@%s:r%d", p.Number, p.NodeID, p.Revision))
			}
			return strings.Join(out, " ")
		}
		// min_health 0.8 of 2: one instance in flight.
		cmds, _ := PlanDeploys(View{Now: now, Nodes: nodes("online", "online"), Services: []*fsm.Service{svc}, Instances: insts}, rnd())
		if len(cmds) != 1 || revs(cmds[0]) != "1@id1:r2 2@id2:r1" {
			t.Fatalf("first pass: %+v", cmds)
		}
		// Instance 1 is updated but not reported yet: nothing more moves.
		insts[0] = &fsm.Instance{ID: "s/web-1", ServiceID: "s/web", Number: 1, NodeID: "id1", Revision: 2, Actual: insts[0].Actual}
		if cmds, _ := PlanDeploys(View{Now: now, Nodes: nodes("online", "online"), Services: []*fsm.Service{svc}, Instances: insts}, rnd()); len(cmds) != 0 {
			t.Fatalf("second instance updated before the first runs: %s", revs(cmds[0]))
		}
		// Once it runs the new revision, instance 2 goes.
		insts[0] = running(insts[0])
		cmds, _ = PlanDeploys(View{Now: now, Nodes: nodes("online", "online"), Services: []*fsm.Service{svc}, Instances: insts}, rnd())
		if len(cmds) != 1 || revs(cmds[0]) != "1@id1:r2 2@id2:r2" {
			t.Fatalf("third pass: %+v", cmds)
		}
	})
	for _, tc := range []struct {
		strategy string
		offline  string
		moves    bool
	}{
		{"random", "offline@10s", false},
		{"random", "offline@31s", true},
		{"ha", "offline@90s", false},
		{"ha", "offline@3m", true},
		{"ha", "offline@0s", false},
		{"daemon", "offline@9m", false},
		{"daemon", "offline@11m", true},
	} {
		t.Run(fmt.Sprintf("%s node %s", tc.strategy, tc.offline), func(t *testing.T) {
			cmds, _ := PlanDeploys(View{Now: now, Nodes: nodes("online", tc.offline, "online"), Services: []*fsm.Service{service(2, tc.strategy)}, Instances: current}, rnd())
			moved := len(cmds) == 1 && placed(cmds[0])[2] != "id2"
			if tc.strategy == "daemon" { // one per node: past the grace, n2's instance goes
				moved = len(cmds) == 1 && !slices.Contains(mapValues(placed(cmds[0])), "id2")
			}
			if moved != tc.moves {
				t.Fatalf("moved = %v, want %v (cmds %+v)", moved, tc.moves, cmds)
			}
		})
	}
	t.Run("grid grace override", func(t *testing.T) {
		cmds, _ := PlanDeploys(View{Now: now, Nodes: nodes("online", "offline@6s", "online"), Services: []*fsm.Service{service(2, "ha")}, Instances: current, Grace: 5 * time.Second}, rnd())
		if len(cmds) != 1 || placed(cmds[0])[2] == "id2" {
			t.Fatalf("instance on a node offline past the overridden grace did not move: %+v", cmds)
		}
	})
	t.Run("a node back online gets no new work during the online grace", func(t *testing.T) {
		ns := nodes("online", "online", "online")
		ns[2].JoinedAt = now.Add(-time.Hour) // n3 came back 0s ago
		cmds, _ := PlanDeploys(View{Now: now, Nodes: ns, Services: []*fsm.Service{service(3, "ha")}, Instances: current}, rnd())
		if len(cmds) != 1 || placed(cmds[0])[3] == "id3" {
			t.Fatalf("new instance placed on a node that just came back: %+v", cmds)
		}
		for i := range ns {
			ns[i].StatusAt = now.Add(-time.Minute)
		}
		cmds, _ = PlanDeploys(View{Now: now, Nodes: ns, Services: []*fsm.Service{service(3, "ha")}, Instances: current}, rnd())
		if len(cmds) != 1 || placed(cmds[0])[3] != "id3" {
			t.Fatalf("after the grace the spread should use n3: %+v", cmds)
		}
	})
	t.Run("impossible placement names the filter", func(t *testing.T) {
		svc := service(1, "ha")
		svc.Spec.Affinity = []string{"label==az=z"}
		_, errs := PlanDeploys(View{Now: now, Nodes: nodes("online", "online"), Services: []*fsm.Service{svc}, Instances: nil}, rnd())
		var nf *scheduler.NoFitError
		if len(errs) != 1 || !errors.As(errs[0], &nf) || !strings.Contains(errs[0].Error(), "affinity") {
			t.Fatalf("errs = %v", errs)
		}
	})
}

// running marks instances reported running at their revision.
func runningAt(insts ...*fsm.Instance) []*fsm.Instance {
	for _, in := range insts {
		in.Actual = fsm.InstanceActual{State: fsm.StateRunning, Revision: in.Revision}
	}
	return insts
}

func cmdFor(cmds []*fsm.InstancesPlace, id string) *fsm.InstancesPlace {
	for _, c := range cmds {
		if c.ServiceID == id {
			return c
		}
	}
	return nil
}

func TestPlanDeploysOnePass(t *testing.T) {
	rnd := func() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }
	named := func(name string, n int) *fsm.Service {
		s := service(n, "ha")
		s.ID, s.Name, s.Spec.Name = "s/"+name, name, name
		return s
	}
	t.Run("two new services publishing one port get different nodes", func(t *testing.T) {
		a, b := named("a", 1), named("b", 1)
		for _, s := range []*fsm.Service{a, b} {
			s.Spec.Ports = []stack.Port{{NodePort: 80, ContainerPort: 80, Protocol: "tcp"}}
		}
		cmds, errs := PlanDeploys(View{Now: now, Nodes: nodes("online", "online"), Services: []*fsm.Service{a, b}}, rnd())
		if len(errs) != 0 || len(cmds) != 2 {
			t.Fatalf("cmds %v errs %v", cmds, errs)
		}
		if placed(cmdFor(cmds, "s/a"))[1] == placed(cmdFor(cmds, "s/b"))[1] {
			t.Fatalf("both on %s: the second service did not see the first one's port", placed(cmds[0])[1])
		}
		_, errs = PlanDeploys(View{Now: now, Nodes: nodes("online"), Services: []*fsm.Service{a, b}}, rnd())
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), "port") {
			t.Fatalf("one node, two services on port 80: errs %v", errs)
		}
	})
	t.Run("memory reserved by a service placed in the same pass counts", func(t *testing.T) {
		const gib = int64(1) << 30
		ns := nodes("online")
		ns[0].Resources = fsm.NodeResources{CPUs: 2, MemoryTotal: gib}
		a, b := named("a", 1), named("b", 1)
		a.Spec.MemLimit, b.Spec.MemLimit = gib*3/4, gib*3/4
		_, errs := PlanDeploys(View{Now: now, Nodes: ns, Services: []*fsm.Service{a, b}}, rnd())
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), "memory") {
			t.Fatalf("two 768 MiB services on a 1 GiB node: errs %v", errs)
		}
	})
	t.Run("volumes_from is planned after its target, in the same pass", func(t *testing.T) {
		db, app := named("db", 2), named("app", 2)
		app.Spec.VolumesFrom = []string{"db-%s"}
		// app sorts before db: the order must come from the dependency.
		cmds, errs := PlanDeploys(View{Now: now, Nodes: nodes("online", "online", "online"), Services: []*fsm.Service{app, db}}, rnd())
		if len(errs) != 0 || len(cmds) != 2 {
			t.Fatalf("cmds %v errs %v", cmds, errs)
		}
		if cmds[0].ServiceID != "s/db" {
			t.Fatalf("db must be planned first, got %s", cmds[0].ServiceID)
		}
		for num, node := range placed(cmdFor(cmds, "s/app")) {
			if placed(cmdFor(cmds, "s/db"))[num] != node {
				t.Fatalf("app-%d on %s, db-%d elsewhere", num, node, num)
			}
		}
	})
	t.Run("depends_on: the dependent starts once the dependency is up", func(t *testing.T) {
		web, worker := named("web", 1), named("worker", 1)
		worker.Spec.DependsOn = []string{"web"}
		web.Deploy = fsm.DeployState{ID: 5, State: fsm.DeployDeploying}
		worker.Deploy = fsm.DeployState{ID: 5, State: fsm.DeployDeploying}
		v := View{Now: now, Nodes: nodes("online", "online"), Services: []*fsm.Service{web, worker}}
		cmds, errs := PlanDeploys(v, rnd())
		if len(errs) != 0 || len(cmds) != 1 || cmds[0].ServiceID != "s/web" {
			t.Fatalf("only web may be placed first: %v %v", cmds, errs)
		}
		if w := DependencyWait(worker, v.Services); w != "s/web" {
			t.Fatalf("worker waits for %q", w)
		}
		web.Deploy.State = fsm.DeployRunning
		v.Instances = runningAt(&fsm.Instance{ID: "s/web-1", ServiceID: "s/web", Number: 1, NodeID: "id1", Revision: 1})
		cmds, _ = PlanDeploys(v, rnd())
		if len(cmds) != 1 || cmds[0].ServiceID != "s/worker" {
			t.Fatalf("worker must be placed once web runs: %v", cmds)
		}
		// Not deploying (a reconcile, a failover): no waiting.
		worker.Deploy.State, web.Deploy.State = fsm.DeployRunning, fsm.DeployDeploying
		if w := DependencyWait(worker, v.Services); w != "" {
			t.Fatalf("a running service waits for %q", w)
		}
		// A cycle waits for nobody.
		web.Spec.DependsOn = []string{"worker"}
		worker.Deploy.State = fsm.DeployDeploying
		if w := DependencyWait(worker, v.Services); w != "" {
			t.Fatalf("cycle: worker waits for %q", w)
		}
	})
	t.Run("moves of running instances stay within min_health", func(t *testing.T) {
		svc := service(5, "ha") // min_health 0.8 of 5: one at a time
		var insts []*fsm.Instance
		for i := 1; i <= 5; i++ {
			insts = append(insts, &fsm.Instance{ID: fmt.Sprintf("s/web-%d", i), ServiceID: "s/web", Number: i, NodeID: "id1", Revision: 1})
		}
		runningAt(insts...)
		ns := nodes("online", "online")
		ns[0].Availability = fsm.AvailabilityDrain // everything must leave n1
		cmds, _ := PlanDeploys(View{Now: now, Nodes: ns, Services: []*fsm.Service{svc}, Instances: insts}, rnd())
		moved := 0
		for _, nd := range placed(cmds[0]) {
			if nd == "id2" {
				moved++
			}
		}
		if moved != 1 {
			t.Fatalf("%d of 5 running instances moved at once, want 1: %v", moved, placed(cmds[0]))
		}
		// Instances that are not running anywhere move at once.
		for _, in := range insts {
			in.Actual = fsm.InstanceActual{}
		}
		cmds, _ = PlanDeploys(View{Now: now, Nodes: ns, Services: []*fsm.Service{svc}, Instances: insts}, rnd())
		for num, nd := range placed(cmds[0]) {
			if nd != "id2" {
				t.Fatalf("instance %d not running on a drained node stayed: %v", num, placed(cmds[0]))
			}
		}
	})
	t.Run("an offline node within its grace takes no new instance", func(t *testing.T) {
		current := runningAt(&fsm.Instance{ID: "s/web-1", ServiceID: "s/web", Number: 1, NodeID: "id2", Revision: 1})
		cmds, _ := PlanDeploys(View{Now: now, Nodes: nodes("online", "offline@10s"), Services: []*fsm.Service{service(3, "ha")}, Instances: current}, rnd())
		p := placed(cmds[0])
		if p[1] != "id2" || p[2] != "id1" || p[3] != "id1" {
			t.Fatalf("placements %v: instance 1 stays on the held n2, the new ones go to n1", p)
		}
	})
	t.Run("the grid's default affinity applies to services without one", func(t *testing.T) {
		ns := nodes("online", "online")
		ns[1].Labels = append(ns[1].Labels, "disk=ssd")
		v := View{Now: now, Nodes: ns, Services: []*fsm.Service{service(2, "ha")}, DefaultAffinity: []string{"label==disk=ssd"}}
		cmds, errs := PlanDeploys(v, rnd())
		if len(errs) != 0 || placed(cmds[0])[1] != "id2" || placed(cmds[0])[2] != "id2" {
			t.Fatalf("default affinity ignored: %v %v", cmds, errs)
		}
	})
	t.Run("a named volume's driver must be on the node", func(t *testing.T) {
		ns := nodes("online", "online")
		ns[1].Resources.VolumeDrivers = []string{"local", "rexray"}
		svc := service(1, "ha")
		svc.Spec.Volumes = []stack.Mount{{Volume: "data", Path: "/data"}}
		v := View{Now: now, Nodes: ns, Services: []*fsm.Service{svc},
			Volumes: map[string][]*stack.Volume{"s": {{Name: "data", Driver: "rexray", Scope: "instance"}}}}
		cmds, errs := PlanDeploys(v, rnd())
		if len(errs) != 0 || placed(cmds[0])[1] != "id2" {
			t.Fatalf("volume driver filter not applied: %v %v", cmds, errs)
		}
	})
}

func mapValues(m map[int]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
