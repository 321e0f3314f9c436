package dispatcher

import (
	"testing"
	"time"

	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/stack"
)

// TestLBRoutingLeavesOutInstancesOnTheirWayOut: a load balancer routes
// to the running, healthy instances of the services linked to it, and not
// to one its node is about to replace (placed at a newer revision or
// restart generation than its container runs), stopped or unhealthy.
func TestLBRoutingLeavesOutInstancesOnTheirWayOut(t *testing.T) {
	s := store(t)
	audit := &fsm.AuditInfo{User: "t", Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	running := func(ip string, rev, restart uint64) fsm.InstanceActual {
		return fsm.InstanceActual{State: fsm.StateRunning, IP: ip, Revision: rev, Restart: restart, ContainerID: "c" + ip}
	}
	idx := uint64(100)
	apply := func(c fsm.Command) {
		t.Helper()
		idx++
		if _, err := s.Apply(idx, c, audit); err != nil {
			t.Fatalf("%T: %v", c, err)
		}
	}
	apply(&fsm.StackInstall{Stack: fsm.Stack{Name: "edge", Spec: stack.Stack{Name: "edge", Services: []*stack.Service{
		{Name: "lb", Image: "kontena/lb:latest", Instances: 1},
		{Name: "app", Image: "app:1", Instances: 4, Links: []stack.Link{{Service: "lb", Alias: "lb"}},
			Environment: []stack.EnvVar{{Name: "KONTENA_LB_VIRTUAL_HOSTS", Value: "app.test"}}},
	}}}})
	var place []fsm.Placement
	for n := 1; n <= 4; n++ {
		place = append(place, fsm.Placement{Number: n, NodeID: "n1"})
	}
	apply(&fsm.InstancesPlace{ServiceID: "edge/app", Revision: 1, Place: place})
	apply(&fsm.InstancesReport{NodeID: "n1", Reports: []fsm.InstanceReport{
		{ID: "edge/app-1", Actual: running("10.81.1.2", 1, 0)},
		{ID: "edge/app-2", Actual: running("10.81.1.3", 1, 0)},
		{ID: "edge/app-3", Actual: running("10.81.1.4", 1, 0)},
		{ID: "edge/app-4", Actual: fsm.InstanceActual{State: fsm.StateRunning, IP: "10.81.1.5", Revision: 1, Health: fsm.HealthUnhealthy, ContainerID: "c5"}},
	}})
	ips := func() map[string]bool {
		t.Helper()
		r, err := LBRoutingOf(s.Snapshot(), "edge/lb")
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Services) != 1 || r.Services[0].ID != "edge/app" {
			t.Fatalf("routing of edge/lb: %+v", r)
		}
		got := map[string]bool{}
		for _, b := range r.Services[0].Instances {
			got[b.IP] = true
		}
		return got
	}
	if got := ips(); len(got) != 3 || got["10.81.1.5"] {
		t.Fatalf("backends before the deploy: %v, want the three healthy ones", got)
	}
	// The rolling deploy moves app-1 to revision 2 first: its container
	// still runs revision 1 and is about to go.
	apply(&fsm.InstancesPlace{ServiceID: "edge/app", Revision: 2, Place: []fsm.Placement{{Number: 1, NodeID: "n1", Revision: 2}}})
	if got := ips(); len(got) != 2 || got["10.81.1.2"] {
		t.Fatalf("backends with app-1 being replaced: %v", got)
	}
	// Its replacement runs revision 2: routed again, at its new address.
	apply(&fsm.InstancesReport{NodeID: "n1", Reports: []fsm.InstanceReport{{ID: "edge/app-1", Actual: running("10.81.1.9", 2, 0)}}})
	if got := ips(); len(got) != 3 || !got["10.81.1.9"] {
		t.Fatalf("backends with app-1 replaced: %v", got)
	}
}
