package cluster

import (
	"errors"
	"fmt"
	"math/rand/v2"
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
		cmds, errs := planDeploys(now, ns, []*fsm.Service{other, svc}, current, 0, rnd())
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
		_, errs = planDeploys(now, ns, []*fsm.Service{other, svc}, current, 0, rnd())
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), "memory") {
			t.Fatalf("5 half-GiB instances on 2 GiB free: errs %v", errs)
		}
		cpu := service(1, "ha")
		cpu.Spec.CPUs = 4
		cmds, errs = planDeploys(now, ns, []*fsm.Service{cpu}, nil, 0, rnd())
		if len(errs) != 0 || len(cmds) != 1 || placed(cmds[0])[1] != "id2" {
			t.Fatalf("cpus 4 must land on the 8-CPU node: %v %v", cmds, errs)
		}
	})
	t.Run("new service is spread over zones", func(t *testing.T) {
		cmds, errs := planDeploys(now, nodes("online", "online", "online"), []*fsm.Service{service(3, "ha")}, nil, 0, rnd())
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
		cmds, _ := planDeploys(now, nodes("online", "online"), []*fsm.Service{service(2, "ha")}, current, 0, rnd())
		if len(cmds) != 0 {
			t.Fatalf("unexpected commands: %+v", cmds[0])
		}
	})
	t.Run("scale down removes the highest numbers", func(t *testing.T) {
		cmds, _ := planDeploys(now, nodes("online", "online"), []*fsm.Service{service(1, "ha")}, current, 0, rnd())
		if len(cmds) != 1 || fmt.Sprint(cmds[0].Remove) != "[2]" || placed(cmds[0])[1] != "id1" {
			t.Fatalf("cmds %+v", cmds)
		}
	})
	t.Run("revision change rolls one instance at a time", func(t *testing.T) {
		svc := service(2, "ha")
		svc.Revision = 2
		running := func(in *fsm.Instance) *fsm.Instance {
			cp := *in
			cp.Actual = fsm.InstanceActual{State: "running", Revision: cp.Revision}
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
		cmds, _ := planDeploys(now, nodes("online", "online"), []*fsm.Service{svc}, insts, 0, rnd())
		if len(cmds) != 1 || revs(cmds[0]) != "1@id1:r2 2@id2:r1" {
			t.Fatalf("first pass: %+v", cmds)
		}
		// Instance 1 is updated but not reported yet: nothing more moves.
		insts[0] = &fsm.Instance{ID: "s/web-1", ServiceID: "s/web", Number: 1, NodeID: "id1", Revision: 2, Actual: insts[0].Actual}
		if cmds, _ := planDeploys(now, nodes("online", "online"), []*fsm.Service{svc}, insts, 0, rnd()); len(cmds) != 0 {
			t.Fatalf("second instance updated before the first runs: %s", revs(cmds[0]))
		}
		// Once it runs the new revision, instance 2 goes.
		insts[0] = running(insts[0])
		cmds, _ = planDeploys(now, nodes("online", "online"), []*fsm.Service{svc}, insts, 0, rnd())
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
	} {
		t.Run(fmt.Sprintf("%s node %s", tc.strategy, tc.offline), func(t *testing.T) {
			cmds, _ := planDeploys(now, nodes("online", tc.offline, "online"), []*fsm.Service{service(2, tc.strategy)}, current, 0, rnd())
			moved := len(cmds) == 1 && placed(cmds[0])[2] != "id2"
			if moved != tc.moves {
				t.Fatalf("moved = %v, want %v (cmds %+v)", moved, tc.moves, cmds)
			}
		})
	}
	t.Run("grid grace override", func(t *testing.T) {
		cmds, _ := planDeploys(now, nodes("online", "offline@6s", "online"), []*fsm.Service{service(2, "ha")}, current, 5*time.Second, rnd())
		if len(cmds) != 1 || placed(cmds[0])[2] == "id2" {
			t.Fatalf("instance on a node offline past the overridden grace did not move: %+v", cmds)
		}
	})
	t.Run("a node back online gets no new work during the online grace", func(t *testing.T) {
		ns := nodes("online", "online", "online")
		ns[2].JoinedAt = now.Add(-time.Hour) // n3 came back 0s ago
		cmds, _ := planDeploys(now, ns, []*fsm.Service{service(3, "ha")}, current, 0, rnd())
		if len(cmds) != 1 || placed(cmds[0])[3] == "id3" {
			t.Fatalf("new instance placed on a node that just came back: %+v", cmds)
		}
		for i := range ns {
			ns[i].StatusAt = now.Add(-time.Minute)
		}
		cmds, _ = planDeploys(now, ns, []*fsm.Service{service(3, "ha")}, current, 0, rnd())
		if len(cmds) != 1 || placed(cmds[0])[3] != "id3" {
			t.Fatalf("after the grace the spread should use n3: %+v", cmds)
		}
	})
	t.Run("impossible placement names the filter", func(t *testing.T) {
		svc := service(1, "ha")
		svc.Spec.Affinity = []string{"label==az=z"}
		_, errs := planDeploys(now, nodes("online", "online"), []*fsm.Service{svc}, nil, 0, rnd())
		var nf *scheduler.NoFitError
		if len(errs) != 1 || !errors.As(errs[0], &nf) || !strings.Contains(errs[0].Error(), "affinity") {
			t.Fatalf("errs = %v", errs)
		}
	})
}
