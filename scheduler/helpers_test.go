package scheduler

import (
	"errors"
	"strings"
	"testing"

	"github.com/kontena-ng/kontena/fsm"
)

const (
	mib = int64(1) << 20
	gib = int64(1) << 30
)

// nd is an online, active node whose ID is its name, with 4 CPUs and
// 8 GiB of which 1 GiB is used.
func nd(name string, labels ...string) Node {
	return Node{ID: name, Name: name, Status: fsm.StatusOnline, Availability: fsm.AvailabilityActive,
		Labels: labels, CPUs: 4, MemoryTotal: 8 * gib, MemoryUsed: gib}
}

func drained(n Node) Node { n.Availability = fsm.AvailabilityDrain; return n }
func offline(n Node) Node { n.Status = fsm.StatusOffline; return n }

func inst(service string, num int, node string) Instance {
	return Instance{Service: service, Number: num, NodeID: node}
}

func web(n int) Service { return Service{Stack: "app", Name: "web", Instances: n} }

// where lists the node of each placement, in instance order.
func where(p Plan) []string {
	out := make([]string, len(p.Placements))
	for i, pl := range p.Placements {
		out[i] = pl.NodeID
	}
	return out
}

func place(t *testing.T, st *State, svc Service) Plan {
	t.Helper()
	p, err := Place(st, svc, Options{})
	if err != nil {
		t.Fatalf("Place: %v", err)
	}
	return p
}

// placeErr places and returns the error text ("" for none).
func placeErr(st *State, svc Service) (Plan, string) {
	p, err := Place(st, svc, Options{})
	if err == nil {
		return p, ""
	}
	return p, err.Error()
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s:\n got %v\nwant %v", what, got, want)
	}
}

func eqList(t *testing.T, what string, got, want []string) {
	t.Helper()
	eq(t, what, strings.Join(got, ","), strings.Join(want, ","))
}

func noFit(t *testing.T, err error) *NoFitError {
	t.Helper()
	var nf *NoFitError
	if !errors.As(err, &nf) {
		t.Fatalf("want a *NoFitError, got %v", err)
	}
	return nf
}
