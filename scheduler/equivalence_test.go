package scheduler

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

// randomGrid builds a small grid with zones, drained and offline nodes,
// uneven memory and some running instances of this and other services.
func randomGrid(r *rand.Rand) *State {
	k := 1 + r.IntN(30)
	zones := 1 + r.IntN(4)
	nodes := make([]Node, k)
	for i := range nodes {
		n := nd(fmt.Sprintf("n%02d", i), fmt.Sprintf("az=%d", r.IntN(zones)))
		n.MemoryTotal = int64(1+r.IntN(8)) * gib
		n.MemoryUsed = int64(r.IntN(int(n.MemoryTotal/mib))) * mib
		switch r.IntN(10) {
		case 0:
			n = drained(n)
		case 1:
			n = offline(n)
		case 2:
			n.Labels = append(n.Labels, "disk=hdd")
		}
		nodes[i] = n
	}
	var insts []Instance
	for range r.IntN(40) {
		svc := []string{"app/web", "app/db", "app/lb"}[r.IntN(3)]
		in := inst(svc, 1+r.IntN(20), nodes[r.IntN(k)].ID)
		if svc == "app/lb" {
			in.Ports = []Port{{HostPort: 80}}
		}
		insts = append(insts, in)
	}
	return NewState(nodes, insts, nil)
}

func randomService(r *rand.Rand) Service {
	svc := web(r.IntN(40))
	if r.IntN(2) == 0 {
		svc.Memory = int64(1+r.IntN(1024)) * mib
	}
	if r.IntN(4) == 0 {
		svc.Ports = []Port{{HostPort: 80}}
	}
	if r.IntN(5) == 0 {
		svc.Stateful = true
	}
	rules := []string{"label!=disk=hdd", "service!=web", "service!=db", "label==az=0", "node!=n03", "service==~lb"}
	for _, a := range rules {
		if r.IntN(4) == 0 {
			svc.Affinity = append(svc.Affinity, a)
		}
	}
	if r.IntN(3) == 0 {
		svc.Strategy = StrategyRandom
	}
	return svc
}

// The incremental choosers must pick exactly what filtering every node for
// every instance picks, errors included.
func TestIncrementalMatchesScan(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 4242))
	incremental := 0
	for i := range 3000 {
		st, svc := randomGrid(r), randomService(r)
		seed := r.Uint64()
		fast, errFast := Place(st, svc, Options{Rand: rand.New(rand.NewPCG(seed, 1))})
		scan, errScan := Place(st, svc, Options{Rand: rand.New(rand.NewPCG(seed, 1)), scan: true})
		if !reflect.DeepEqual(fast, scan) || fmt.Sprint(errFast) != fmt.Sprint(errScan) {
			t.Fatalf("case %d (%+v):\nincremental %+v\n%v\nscan %+v\n%v", i, svc, fast, errFast, scan, errScan)
		}
		pc := newPlaceCtx(st, &svc)
		pc.previous(svc.Instances, &Plan{})
		if steps, err := buildSteps(pc); err == nil && newChain(pc, steps).incremental() {
			incremental++
		}
	}
	if incremental < 1000 {
		t.Errorf("only %d of 3000 cases took the incremental path", incremental)
	}
}
