package dispatcher

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/stack"
)

func store(t *testing.T) *fsm.Store {
	t.Helper()
	s, err := fsm.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	audit := &fsm.AuditInfo{User: "t", Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	for i, c := range []fsm.Command{
		&fsm.GridInit{Grid: fsm.Grid{Name: "g", Subnet: "10.81.0.0/16", Supernet: "10.80.0.0/12", InitialSize: 1},
			Node: fsm.Node{ID: "n1", Name: "a", Role: fsm.RoleVoter}, Admin: fsm.User{Name: "admin"}, AdminToken: fsm.Token{ID: "t", Hash: "h", User: "admin"}},
		&fsm.NodeRegister{Node: fsm.Node{ID: "n2", Name: "b", Role: fsm.RoleWorker}},
		&fsm.StackInstall{Stack: fsm.Stack{Name: "shop", Spec: stack.Stack{Name: "shop",
			Volumes: []*stack.Volume{{Name: "data", Scope: "instance"}, {Name: "unused", Scope: "stack"}},
			Services: []*stack.Service{
				{Name: "db", Image: "db:1", Instances: 1, Stateful: true, Volumes: []stack.Mount{{Volume: "data", Path: "/d"}, {Volume: "data", Path: "/e"}}},
				{Name: "web", Image: "web:1", Instances: 1},
			}}}},
		&fsm.InstancesPlace{ServiceID: "shop/db", Revision: 1, Place: []fsm.Placement{{Number: 1, NodeID: "n2"}}},
		&fsm.InstancesPlace{ServiceID: "shop/web", Revision: 1, Place: []fsm.Placement{{Number: 1, NodeID: "n1"}}},
		&fsm.NodeUpdate{ID: "n2", Availability: fsm.AvailabilityDrain},
	} {
		if _, err := s.Apply(uint64(i+1), c, audit); err != nil {
			t.Fatalf("%T: %v", c, err)
		}
	}
	return s
}

// TestNodeAssignments: a node gets its own instances only, each with its
// service's spec and the stack's declarations of the volumes it mounts
// (once each); a drained node's stateful instance stays, stopped.
func TestNodeAssignments(t *testing.T) {
	v := store(t).Snapshot()
	as, err := NodeAssignments(v, "n2")
	if err != nil {
		t.Fatal(err)
	}
	if as.Grid != "g" || len(as.Items) != 1 {
		t.Fatalf("assignments of n2: %+v", as)
	}
	a := as.Items[0]
	if a.Instance.ID != "shop/db-1" || a.Service.Image != "db:1" || !a.Drained || len(a.Volumes) != 1 || a.Volumes[0].Name != "data" {
		t.Fatalf("db-1 on a drained node: %+v", a)
	}
	as, _ = NodeAssignments(v, "n1")
	if len(as.Items) != 1 || as.Items[0].Instance.ID != "shop/web-1" || as.Items[0].Drained {
		t.Fatalf("assignments of n1: %+v", as)
	}
	if _, err := NodeAssignments(v, "ghost"); !errors.Is(err, fsm.ErrNotFound) {
		t.Fatalf("unknown node: %v", err)
	}
}

func TestNodeProtocolCommandsAreBounded(t *testing.T) {
	if _, err := Report("n1", make([]fsm.InstanceReport, MaxReports+1)); !errors.Is(err, fsm.ErrInvalid) {
		t.Fatalf("oversized report: %v", err)
	}
	if _, err := Report("n1", []fsm.InstanceReport{{}}); err == nil || !strings.Contains(err.Error(), "names no instance") {
		t.Fatalf("report without an ID: %v", err)
	}
	if c, err := Report("n1", []fsm.InstanceReport{{ID: "shop/web-1"}}); err != nil || c.NodeID != "n1" {
		t.Fatalf("good report: %+v %v", c, err)
	}
	for _, tc := range []struct {
		key  string
		port int
		ok   bool
	}{{"k", 51820, true}, {"", 0, true}, {"k", 0, false}, {"", 51820, false}, {"k", 70000, false}} {
		if _, err := Overlay("n1", tc.key, tc.port, ""); (err == nil) != tc.ok {
			t.Errorf("overlay %q:%d: %v", tc.key, tc.port, err)
		}
	}
	if _, err := Resources("n1", fsm.NodeResources{CPUs: -1}); !errors.Is(err, fsm.ErrInvalid) {
		t.Fatalf("negative resources: %v", err)
	}
}
