package fsm

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/kontena-ng/kontena/stack"
)

func webStack(name string) *StackInstall {
	return &StackInstall{Stack: Stack{Name: name, Source: "stack: me/web\n", Values: map[string]any{"tag": "1"},
		Spec: stack.Stack{Name: name, Services: []*stack.Service{
			{Name: "web", Image: "web:1", Instances: 3},
			{Name: "db", Image: "db:1", Instances: 1, Stateful: true},
		}}}}
}

func TestStackServiceInstanceCommands(t *testing.T) {
	s := newStore(t)
	mustApply(t, s, 2, &NodeRegister{Node: Node{ID: "id-2", Name: "n2"}})
	tests := []struct {
		name    string
		cmd     Command
		wantErr error
		check   func(t *testing.T)
	}{
		{"install creates the services", webStack("shop"), nil, func(t *testing.T) {
			st, err := s.Stack("shop")
			if err != nil || st.Revision != 1 || st.Values["tag"] != "1" {
				t.Fatalf("stack = %+v, %v", st, err)
			}
			svcs, _ := s.Services("shop")
			if len(svcs) != 2 {
				t.Fatalf("services = %d", len(svcs))
			}
			web, _ := s.Service("shop/web")
			if web.Instances != 3 || web.Revision != 1 || web.Spec.Image != "web:1" {
				t.Fatalf("web = %+v", web)
			}
		}},
		{"install twice refused", webStack("shop"), ErrConflict, nil},
		{"install without services refused", &StackInstall{Stack: Stack{Name: "empty"}}, ErrInvalid, nil},
		{"scale", &ServiceScale{ID: "shop/web", Instances: 5}, nil, func(t *testing.T) {
			if web, _ := s.Service("shop/web"); web.Instances != 5 {
				t.Fatalf("instances = %d", web.Instances)
			}
		}},
		{"scale below zero", &ServiceScale{ID: "shop/web", Instances: -1}, ErrInvalid, nil},
		{"scale unknown", &ServiceScale{ID: "shop/nope", Instances: 1}, ErrNotFound, nil},
		{"place", &InstancesPlace{ServiceID: "shop/web", Revision: 1, Place: []Placement{{Number: 1, NodeID: "id-1"}, {Number: 2, NodeID: "id-2"}, {Number: 3, NodeID: "id-1"}}}, nil, func(t *testing.T) {
			on1, _ := s.InstancesOnNode("id-1")
			on2, _ := s.InstancesOnNode("id-2")
			if len(on1) != 2 || len(on2) != 1 {
				t.Fatalf("on n1 %d, on n2 %d", len(on1), len(on2))
			}
		}},
		{"place on unknown node", &InstancesPlace{ServiceID: "shop/web", Place: []Placement{{Number: 4, NodeID: "ghost"}}}, ErrNotFound, nil},
		{"report from the right node", &InstancesReport{NodeID: "id-2", Reports: []InstanceReport{{ID: "shop/web-2", Actual: InstanceActual{State: "running", Revision: 1}}}}, nil, func(t *testing.T) {
			insts, _ := s.Instances("shop/web")
			for _, i := range insts {
				if i.Number == 2 && i.Actual.State != StateRunning {
					t.Fatalf("web-2 actual = %+v", i.Actual)
				}
			}
		}},
		{"report from another node is ignored", &InstancesReport{NodeID: "id-1", Reports: []InstanceReport{{ID: "shop/web-2", Actual: InstanceActual{State: "exited"}}}}, nil, func(t *testing.T) {
			insts, _ := s.Instances("shop/web")
			for _, i := range insts {
				if i.Number == 2 && i.Actual.State != StateRunning {
					t.Fatalf("web-2 actual overwritten by another node: %+v", i.Actual)
				}
			}
		}},
		{"move clears the actual state, remove drops numbers", &InstancesPlace{ServiceID: "shop/web", Revision: 2, Place: []Placement{{Number: 2, NodeID: "id-1"}}, Remove: []int{3}}, nil, func(t *testing.T) {
			insts, _ := s.Instances("shop/web")
			if len(insts) != 2 {
				t.Fatalf("instances = %d, want 2", len(insts))
			}
			for _, i := range insts {
				if i.Number == 2 && (i.NodeID != "id-1" || i.Actual.State != "" || i.Revision != 2) {
					t.Fatalf("moved web-2 = %+v", i)
				}
			}
		}},
		{"remove stack removes services and instances", &StackRemove{Name: "shop"}, nil, func(t *testing.T) {
			if _, err := s.Stack("shop"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("stack still there: %v", err)
			}
			svcs, _ := s.Services("")
			insts, _ := s.Instances("")
			if len(svcs) != 0 || len(insts) != 0 {
				t.Fatalf("left %d services, %d instances", len(svcs), len(insts))
			}
		}},
		{"remove unknown stack", &StackRemove{Name: "shop"}, ErrNotFound, nil},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Apply(uint64(10+i), tc.cmd, audit("admin"))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.check != nil {
				tc.check(t)
			}
		})
	}
}

func TestStacksSurviveSnapshot(t *testing.T) {
	s := newStore(t)
	mustApply(t, s, 2, webStack("shop"))
	mustApply(t, s, 3, &InstancesPlace{ServiceID: "shop/web", Revision: 1, Place: []Placement{{Number: 1, NodeID: "id-1"}}})
	s2 := roundTrip(t, s)
	st, err := s2.Stack("shop")
	if err != nil || st.Spec.Services[0].Image != "web:1" || st.Source == "" {
		t.Fatalf("restored stack = %+v, %v", st, err)
	}
	if insts, _ := s2.InstancesOnNode("id-1"); len(insts) != 1 || insts[0].ID != fmt.Sprintf("shop/web-%d", 1) {
		t.Fatalf("restored instances = %+v", insts)
	}
}

// roundTrip snapshots s and restores the snapshot into a new store.
func roundTrip(t *testing.T, s *Store) *Store {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	snap, err := New(s, quiet).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	s2, _ := NewStore()
	if err := New(s2, quiet).Restore(io.NopCloser(&sink.Buffer)); err != nil {
		t.Fatal(err)
	}
	return s2
}

func TestStackUpgrade(t *testing.T) {
	s := newStore(t)
	mustApply(t, s, 2, webStack("shop"))
	up := webStack("shop")
	up.Stack.Spec.Services[0].Image = "web:2" // web changes
	up.Stack.Spec.Services[1].Instances = 1   // db unchanged
	up.Stack.Spec.Services = append(up.Stack.Spec.Services, &stack.Service{Name: "cache", Image: "cache:1", Instances: 1})
	mustApply(t, s, 3, &ServiceScale{ID: "shop/db", Instances: 2})
	mustApply(t, s, 4, &StackUpgrade{Stack: up.Stack})
	st, _ := s.Stack("shop")
	web, _ := s.Service("shop/web")
	db, _ := s.Service("shop/db")
	cache, err := s.Service("shop/cache")
	if st.Revision != 2 || web.Revision != 2 || web.Spec.Image != "web:2" || db.Revision != 1 || err != nil || cache.Revision != 1 {
		t.Fatalf("after upgrade: stack rev %d, web %+v, db rev %d, cache %v", st.Revision, web, db.Revision, err)
	}
	// A scale is not a change of spec; the file's count applies again.
	if db.Instances != 1 {
		t.Fatalf("db instances = %d, want the file's 1", db.Instances)
	}
	// Dropping a service removes it.
	down := webStack("shop")
	down.Stack.Spec.Services = down.Stack.Spec.Services[:1]
	mustApply(t, s, 5, &StackUpgrade{Stack: down.Stack})
	if _, err := s.Service("shop/db"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("db still there after it left the file: %v", err)
	}
	if _, err := s.Apply(6, &StackUpgrade{Stack: Stack{Name: "nope", Spec: stack.Stack{Services: []*stack.Service{{Name: "x"}}}}}, audit("a")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("upgrade of a missing stack: %v", err)
	}
}
