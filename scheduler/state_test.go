package scheduler

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/kontena-ng/kontena/fsm"
)

// Apply makes the next Place of a pass see the previous plan: its ports,
// its containers and the memory it took.
func TestApplyFeedsTheNextService(t *testing.T) {
	n1, n2 := nd("n1"), nd("n2")
	n1.MemoryTotal, n1.MemoryUsed, n2.MemoryTotal, n2.MemoryUsed = 2*gib, 0, 2*gib, 0
	st := NewState([]Node{n1, n2}, nil, nil)

	lb := Service{Stack: "app", Name: "lb", Instances: 1, Ports: []Port{{HostPort: 80}}, Memory: 1536 * mib}
	p := place(t, st, lb)
	eqList(t, "lb", where(p), []string{"n1"})
	st.Apply(lb, p)

	other := Service{Stack: "app", Name: "edge", Instances: 1, Ports: []Port{{HostPort: 80}}}
	eqList(t, "port 80 is taken on n1", where(place(t, st, other)), []string{"n2"})

	big := Service{Stack: "app", Name: "big", Instances: 3, Memory: gib}
	p, err := placeErr(st, big)
	eqList(t, "big", where(p), []string{"n2", "n2"})
	eq(t, "memory", err, "cannot place app/big-3: memory rejected n1 (needs 1 GiB, 512 MiB free), n2 (needs 1 GiB, 0 B free)")

	side := Service{Stack: "app", Name: "side", Instances: 1, Affinity: []string{"container==lb-1"}}
	eqList(t, "container index", where(place(t, st, side)), []string{"n1"})

	// Moving lb to n2 frees n1's memory and port.
	lb.Affinity = []string{"node==n2"}
	p = place(t, st, lb)
	eq(t, "moved", p.Placements[0].Moved(), true)
	st.Apply(lb, p)
	eq(t, "instances", len(st.Instances("app/lb")), 1)
	eq(t, "on n2", st.Instances("app/lb")[0].NodeID, "n2")
	other.Affinity = []string{"node==n1"}
	eqList(t, "port 80 free on n1", where(place(t, st, other)), []string{"n1"})
	eq(t, "n1 memory back", st.memUsed[0], int64(0))

	// Scaling to zero removes it from the state.
	lb.Instances = 0
	p = place(t, st, lb)
	eq(t, "removed", len(p.Remove), 1)
	st.Apply(lb, p)
	eq(t, "gone", len(st.Instances("app/lb")), 0)
	eq(t, "n2 memory back", st.memUsed[1], int64(0))
}

// Apply keeps what a plan could not place (a stateful instance on a
// drained node) and the volume flag of instances that did not move.
func TestApplyKeepsUnplaced(t *testing.T) {
	db := Service{Stack: "app", Name: "db", Instances: 2, Stateful: true}
	cur := []Instance{{Service: "app/db", Number: 1, NodeID: "n1", Volumes: true}}
	st := NewState([]Node{drained(nd("n1")), nd("n2")}, cur, nil)
	p, _ := placeErr(st, db)
	eqList(t, "new one placed", where(p), []string{"n2"})
	st.Apply(db, p)
	got := st.Instances("app/db")
	eq(t, "both kept", len(got), 2)
	eq(t, "old one still on n1", got[0].NodeID+"/"+got[1].NodeID, "n1/n2")
	eq(t, "volumes", got[0].Volumes && got[1].Volumes, true)
}

func TestNodeHelpers(t *testing.T) {
	f := &fsm.Node{ID: "id1", Name: "n1", Number: 3, Status: fsm.StatusOnline, Availability: fsm.AvailabilityDrain, Labels: []string{"az=x", "ephemeral"}}
	n := NodeFromFSM(f)
	f.Labels[0] = "changed"
	eq(t, "copied labels", n.Labels[0], "az=x")
	eq(t, "zone", n.Zone(), "x")
	eq(t, "ephemeral", n.Ephemeral(), true)
	eq(t, "schedulable", n.schedulable(), false)
	for label, want := range map[string]bool{"ephemeral=true": true, "ephemeral=no": false, "ephemeral=0": false, "ephemeral=False": false, "other": false} {
		eq(t, label, (&Node{Labels: []string{label}}).Ephemeral(), want)
	}
	eq(t, "display falls back to ID", (&Node{ID: "x"}).display(), "x")
}

func TestDuplicateNodesAndOrder(t *testing.T) {
	a, b, c := nd("b"), nd("a"), nd("c")
	a.Number, b.Number, c.Number = 2, 2, 1
	dup := nd("a")
	dup.Availability = fsm.AvailabilityDrain
	st := NewState([]Node{a, b, c, dup}, nil, nil)
	got := ""
	for _, n := range st.nodes {
		got += n.Name + n.Availability[:1]
	}
	eq(t, "order by number, name; first duplicate wins", got, "caaaba")
}

// Place only reads the State: plans of several services may be computed
// at once from one snapshot (run with -race).
func TestConcurrentPlaceSharesState(t *testing.T) {
	st := NewState(benchNodes(50), []Instance{inst("bench/svc-0001", 1, "id-0003")}, []string{"label!=disk=hdd"})
	svcs := benchServices(8, 20)
	want := make([]Plan, len(svcs))
	for i, s := range svcs {
		want[i] = place(t, st, s)
	}
	done := make(chan error, len(svcs))
	for i, s := range svcs {
		go func() {
			p, err := Place(st, s, Options{})
			if err == nil && !reflect.DeepEqual(p, want[i]) {
				err = fmt.Errorf("%s: plan differs", s.ID())
			}
			done <- err
		}()
	}
	for range svcs {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
