package scheduler

import (
	"math/rand/v2"
	"reflect"
	"testing"
)

func TestHASpreadsOverZonesThenNodes(t *testing.T) {
	// Zone a has three nodes, zone b one: zones are balanced first, so b's
	// only node takes every other instance.
	nodes := []Node{nd("a1", "az=a"), nd("a2", "az=a"), nd("a3", "az=a"), nd("b1", "az=b")}
	p := place(t, NewState(nodes, nil, nil), web(6))
	eqList(t, "placements", where(p), []string{"a1", "b1", "a2", "b1", "a3", "b1"})

	// Without az labels all nodes are one zone: plain round robin.
	p = place(t, NewState([]Node{nd("n1"), nd("n2"), nd("n3")}, nil, nil), web(5))
	eqList(t, "no zones", where(p), []string{"n1", "n2", "n3", "n1", "n2"})
}

func TestHAKeepsInstancesWhereTheyRun(t *testing.T) {
	nodes := []Node{nd("n1"), nd("n2"), nd("n3")}
	cur := []Instance{inst("app/web", 1, "n3"), inst("app/web", 2, "n1"), inst("app/web", 3, "n2")}
	p := place(t, NewState(nodes, cur, nil), web(3))
	eqList(t, "unchanged", where(p), []string{"n3", "n1", "n2"})
	for _, pl := range p.Placements {
		if pl.Moved() || pl.Previous == "" {
			t.Errorf("instance %d: previous %q, moved %v", pl.Number, pl.Previous, pl.Moved())
		}
	}

	// n1 drained: instance 2 moves, the others stay.
	nodes[0] = drained(nodes[0])
	p = place(t, NewState(nodes, cur, nil), web(3))
	eqList(t, "after drain", where(p), []string{"n3", "n2", "n2"})
	eq(t, "instance 2 moved", p.Placements[1].Moved(), true)
	eq(t, "from", p.Placements[1].Previous, "n1")
}

func TestHAPrefersLeastMemoryUsed(t *testing.T) {
	n1, n2, n3 := nd("n1"), nd("n2"), nd("n3")
	n1.MemoryUsed, n2.MemoryUsed, n3.MemoryUsed = 3*gib, gib, 2*gib
	p := place(t, NewState([]Node{n1, n2, n3}, nil, nil), web(2))
	eqList(t, "placements", where(p), []string{"n2", "n3"})
}

func TestScaleDownRemovesHighNumbers(t *testing.T) {
	cur := []Instance{inst("app/web", 1, "n1"), inst("app/web", 2, "n2"), inst("app/web", 3, "n1"), inst("app/web", 2, "n1"), inst("app/web", 0, "n2")}
	p := place(t, NewState([]Node{nd("n1"), nd("n2")}, cur, nil), web(2))
	eqList(t, "kept", where(p), []string{"n1", "n2"})
	var removed []string
	for _, r := range p.Remove {
		removed = append(removed, r.Name()+"@"+r.NodeID)
	}
	eqList(t, "removed: number 0, the duplicate 2 and 3", removed, []string{"app/web-0@n2", "app/web-2@n1", "app/web-3@n1"})
}

func TestRandomIsSeededAndKeepsNodes(t *testing.T) {
	nodes := []Node{nd("n1"), nd("n2"), nd("n3"), nd("n4"), nd("n5")}
	svc := web(6)
	svc.Strategy = StrategyRandom
	st := NewState(nodes, nil, nil)
	run := func(seed uint64) []string {
		p, err := Place(st, svc, Options{Rand: rand.New(rand.NewPCG(seed, 7))})
		if err != nil {
			t.Fatal(err)
		}
		return where(p)
	}
	a, b := run(1), run(1)
	eqList(t, "same seed, same plan", a, b)
	eqList(t, "pinned by seed", a, []string{"n3", "n1", "n3", "n2", "n3", "n2"})

	// No generator: seeded from the service ID, still reproducible.
	p1, p2 := place(t, st, svc), place(t, st, svc)
	eqList(t, "default seed", where(p1), where(p2))

	// A redeploy keeps every instance where it runs.
	cur := make([]Instance, 0, 6)
	for i, n := range []string{"n5", "n5", "n1", "n2", "n3", "n3"} {
		cur = append(cur, inst("app/web", i+1, n))
	}
	again := NewState(nodes, cur, nil)
	eqList(t, "kept", where(place(t, again, svc)), []string{"n5", "n5", "n1", "n2", "n3", "n3"})
}

func TestDaemon(t *testing.T) {
	agent := Service{Stack: "sys", Name: "agent", Instances: 1, Strategy: StrategyDaemon, Affinity: []string{"label!=role=edge"}}
	nodes := []Node{nd("n1"), drained(nd("n2")), nd("n3", "role=edge"), nd("n4"), nd("n5")}
	p := place(t, NewState(nodes, nil, nil), agent)
	eqList(t, "one per eligible node", where(p), []string{"n1", "n4", "n5"})
	eq(t, "numbers", p.Placements[2].Number, 3)
	eq(t, "skipped", describe(p.Skipped), "availability rejected n2 (drain); affinity label!=role=edge rejected n3 (role=edge)")

	// Instances keep their numbers; a new node takes the lowest free one;
	// the instance of a node drained since is removed.
	cur := []Instance{inst("sys/agent", 1, "n1"), inst("sys/agent", 2, "n4"), inst("sys/agent", 3, "n5")}
	nodes[3] = drained(nodes[3])
	nodes = append(nodes, nd("n6"))
	p = place(t, NewState(nodes, cur, nil), agent)
	got := ""
	for _, pl := range p.Placements {
		got += pl.NodeID + "#" + itoa(pl.Number) + " "
	}
	eq(t, "placements", got, "n1#1 n6#2 n5#3 ")
	eq(t, "removed", len(p.Remove) == 1 && p.Remove[0].NodeID == "n4", true)

	two := agent
	two.Instances = 2
	two.Affinity = nil
	p = place(t, NewState([]Node{nd("n1"), nd("n2")}, nil, nil), two)
	eqList(t, "two per node", where(p), []string{"n1", "n1", "n2", "n2"})
	eq(t, "max in flight (min_health 0)", p.MaxInFlight, 4)

	_, err := placeErr(NewState([]Node{drained(nd("n1"))}, nil, nil), agent)
	eq(t, "nowhere", err, "cannot place sys/agent on any node: availability rejected n1 (drain)")
}

func TestStatefulStaysOnItsNode(t *testing.T) {
	db := Service{Stack: "app", Name: "db", Instances: 2, Stateful: true}
	nodes := []Node{nd("n1"), nd("n2"), nd("n3")}
	cur := []Instance{{Service: "app/db", Number: 1, NodeID: "n3", Volumes: true}, {Service: "app/db", Number: 2, NodeID: "n3", Volumes: true}}
	eqList(t, "both stay on n3", where(place(t, NewState(nodes, cur, nil), db)), []string{"n3", "n3"})

	// Drained: not moved, the error says why.
	nodes[2] = drained(nodes[2])
	p, err := placeErr(NewState(nodes, cur, nil), db)
	eq(t, "drained", err, "cannot place app/db-1 (stateful: it stays on n3, where its data is): availability rejected n3 (drain)\n"+
		"cannot place app/db-2 (stateful: it stays on n3, where its data is): availability rejected n3 (drain)")
	eq(t, "nothing placed or removed", len(p.Placements)+len(p.Remove), 0)
	eq(t, "unplaced", len(p.Unplaced), 2)

	// Its node left the grid.
	_, err = placeErr(NewState(nodes[:2], cur[:1], nil), Service{Stack: "app", Name: "db", Instances: 1, Stateful: true})
	eq(t, "gone", err, "cannot place app/db-1: it is stateful and its node n3 is no longer in the grid; its data is there, so it is not moved elsewhere (bring the node back, or remove the instance to start it afresh)")

	// A new stateful instance is placed like any other, off ephemeral nodes.
	st := NewState([]Node{nd("n1", "ephemeral"), nd("n2")}, nil, nil)
	eqList(t, "new", where(place(t, st, Service{Stack: "app", Name: "db", Instances: 1, Stateful: true})), []string{"n2"})

	// Stateful daemon: an instance whose node is gone is reported, not removed.
	d := Service{Stack: "app", Name: "db", Instances: 1, Stateful: true, Strategy: StrategyDaemon}
	p, err = placeErr(NewState([]Node{nd("n1")}, []Instance{inst("app/db", 1, "gone")}, nil), d)
	eq(t, "daemon gone", err, "cannot place app/db-1: it is stateful and its node gone is no longer in the grid; its data is there, so it is not moved elsewhere (bring the node back, or remove the instance to start it afresh)")
	eqList(t, "daemon new numbers skip the held one", where(p), []string{"n1"})
	eq(t, "number", p.Placements[0].Number, 2)
}

func TestMaxInFlight(t *testing.T) {
	for _, c := range []struct {
		n    int
		min  float64
		want int
	}{{10, 0.8, 2}, {3, 0.8, 1}, {10, 0.5, 5}, {10, 0, 10}, {0, 0.8, 1}, {10, 1, 1}} {
		svc := web(c.n)
		svc.MinHealth = c.min
		p := place(t, NewState([]Node{nd("n1")}, nil, nil), svc)
		eq(t, "max in flight", p.MaxInFlight, c.want)
	}
}

// Place depends only on its inputs: same plan twice, and the same plan
// whatever order the nodes and instances come in.
func TestDeterministic(t *testing.T) {
	nodes := []Node{nd("n1", "az=a"), nd("n2", "az=b"), nd("n3", "az=a"), nd("n4", "az=c"), nd("n5", "az=b")}
	cur := []Instance{inst("app/web", 3, "n2"), inst("app/web", 1, "n4"), inst("app/db", 1, "n1")}
	for _, strategy := range []string{StrategyHA, StrategyRandom, StrategyDaemon} {
		svc := web(7)
		svc.Strategy = strategy
		svc.Affinity = []string{"service!=db"}
		want := place(t, NewState(nodes, cur, nil), svc)
		for i := range 20 {
			r := rand.New(rand.NewPCG(uint64(i), 1))
			n2, c2 := append([]Node(nil), nodes...), append([]Instance(nil), cur...)
			r.Shuffle(len(n2), func(i, j int) { n2[i], n2[j] = n2[j], n2[i] })
			r.Shuffle(len(c2), func(i, j int) { c2[i], c2[j] = c2[j], c2[i] })
			if got := place(t, NewState(n2, c2, nil), svc); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: shuffle %d:\n got %+v\nwant %+v", strategy, i, got, want)
			}
		}
	}
}
