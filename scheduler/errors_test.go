package scheduler

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// The example of the issue, word for word.
func TestNoFitErrorNamesEveryFilter(t *testing.T) {
	n4 := nd("n4", "az=b")
	n4.MemoryTotal, n4.MemoryUsed = gib, 896*mib
	nodes := []Node{nd("n1", "az=a"), drained(nd("n2", "az=b")), nd("n3", "az=a"), n4}
	cur := []Instance{inst("web", 1, "n4"), inst("web", 2, "n4")}
	svc := Service{Name: "web", Instances: 3, Affinity: []string{"label==az=b"}, Memory: 512 * mib}
	p, err := Place(NewState(nodes, cur, nil), svc, Options{})
	eq(t, "error", fmt.Sprint(err), "cannot place web-3: availability rejected n2 (drain); affinity label==az=b rejected n1, n3 (az=a); memory rejected n4 (needs 512 MiB, 128 MiB free)")
	eqList(t, "the others stay", where(p), []string{"n4", "n4"})
	nf := noFit(t, err)
	eq(t, "number", nf.Number, 3)
	eq(t, "rejections", len(nf.Rejections), 4)
	eq(t, "first", nf.Rejections[0], Rejection{Filter: "availability", Node: "n2", Reason: "drain"})
}

func TestNoFitErrorListsAreBounded(t *testing.T) {
	var nodes []Node
	for i := range 25 {
		nodes = append(nodes, drained(nd(fmt.Sprintf("n%02d", i))))
	}
	_, err := placeErr(NewState(nodes, nil, nil), web(1))
	eq(t, "error", err, "cannot place app/web-1: availability rejected n00, n01, n02, n03, n04, n05, n06, n07, n08, n09 and 15 more (drain)")
}

func TestNoFitErrorWithoutNodes(t *testing.T) {
	_, err := placeErr(NewState(nil, nil, nil), web(1))
	eq(t, "error", err, "cannot place app/web-1: the grid has no nodes")
	_, err = placeErr(NewState(nil, nil, nil), Service{Name: "agent", Instances: 1, Strategy: StrategyDaemon})
	eq(t, "daemon", err, "cannot place agent on any node: the grid has no nodes")
}

// A service far too big is explained for its first instances only, with a
// count of the rest, so a failing deploy stays cheap and readable.
func TestManyFailuresAreSummarised(t *testing.T) {
	svc := web(1000)
	svc.Ports = []Port{{HostPort: 80}}
	p, err := Place(NewState([]Node{nd("n1"), nd("n2")}, nil, nil), svc, Options{})
	eq(t, "placed", len(p.Placements), 2)
	eq(t, "unplaced", len(p.Unplaced), 998)
	eq(t, "first unplaced", p.Unplaced[0], 3)
	lines := strings.Split(err.Error(), "\n")
	eq(t, "lines", len(lines), maxExplained+1)
	eq(t, "first", lines[0], "cannot place app/web-3: ports rejected n1, n2 (port 80/tcp is taken by another instance of app/web)")
	eq(t, "last", lines[maxExplained], "993 more instances of app/web cannot be placed either (Plan.Unplaced lists them)")
	var nf *NoFitError
	eq(t, "errors.As", errors.As(err, &nf) && nf.Number == 3, true)
}

func TestInvalidService(t *testing.T) {
	st := NewState([]Node{nd("n1")}, nil, nil)
	for _, c := range []struct {
		svc Service
		err string
	}{
		{Service{Instances: 1}, "service has no name"},
		{Service{Stack: "app", Name: "web", Instances: -1}, "service app/web: instances is -1; it must be 0 or more"},
		{Service{Stack: "app", Name: "web", Strategy: "spread"}, `service app/web: unknown deploy strategy "spread" (use ha, daemon or random)`},
		{Service{Stack: "app", Name: "web", Ports: []Port{{HostPort: 70000}}}, `service app/web: published port "70000/tcp" is invalid (want 1-65535, tcp or udp)`},
		{Service{Stack: "app", Name: "web", Ports: []Port{{HostPort: 80, Protocol: "sctp"}}}, `service app/web: published port "80/sctp" is invalid (want 1-65535, tcp or udp)`},
		{Service{Stack: "app", Name: "web", Memory: -1}, "service app/web: cpus and memory must not be negative"},
		{Service{Stack: "app", Name: "web", MinHealth: 1.5}, "service app/web: min_health is 1.5; it must be between 0 and 1"},
	} {
		_, err := placeErr(st, c.svc)
		eq(t, c.err, err, c.err)
	}
}

func TestFmtBytes(t *testing.T) {
	for in, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1 KiB", 1536: "1.5 KiB", 512 * mib: "512 MiB", 1536 * mib: "1.5 GiB", 3 * gib / 10: "307.2 MiB", 2048 * gib: "2 TiB"} {
		eq(t, fmt.Sprint(in), fmtBytes(in), want)
	}
}
