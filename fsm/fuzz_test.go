package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/stack"
)

// fuzzGrid is a small grid: two nodes, a stack with a named volume, two
// services and their placed, reported instances.
func fuzzGrid(tb testing.TB) *Store {
	tb.Helper()
	s, err := NewStore()
	if err != nil {
		tb.Fatal(err)
	}
	for i, cmd := range fuzzGridCommands() {
		if _, err := s.Apply(uint64(i+1), cmd, audit("admin")); err != nil {
			tb.Fatalf("%T: %v", cmd, err)
		}
	}
	return s
}

func fuzzGridCommands() []Command {
	return []Command{
		initCmd(),
		&NodeRegister{Node: Node{ID: "id-2", Name: "n2", Role: RoleWorker, Labels: []string{"az=b"}}},
		&StackInstall{Stack: Stack{Name: "shop", Source: "stack: a/shop", Spec: stack.Stack{Name: "shop", Stack: "a/shop", Version: "1.0.0",
			Volumes: []*stack.Volume{{Name: "data", Driver: "local", Scope: "instance"}},
			Services: []*stack.Service{
				{Name: "web", Image: "web:1", Instances: 2, Links: []stack.Link{{Service: "db", Alias: "db"}},
					Ports: []stack.Port{{NodePort: 80, ContainerPort: 8080, Protocol: "tcp"}}, Deploy: stack.Deploy{Strategy: "ha", MinHealth: 0.8}},
				{Name: "db", Image: "db:1", Instances: 1, Stateful: true, Volumes: []stack.Mount{{Volume: "data", Path: "/var/lib/db"}},
					Deploy: stack.Deploy{Strategy: "ha", MinHealth: 0.8}},
			}}}},
		&InstancesPlace{ServiceID: "shop/web", Revision: 1, Place: []Placement{{Number: 1, NodeID: "id-1"}, {Number: 2, NodeID: "id-2"}}},
		&InstancesPlace{ServiceID: "shop/db", Revision: 1, Place: []Placement{{Number: 1, NodeID: "id-2"}}},
		&InstancesReport{NodeID: "id-2", Reports: []InstanceReport{{ID: "shop/db-1", Actual: InstanceActual{State: "running", Revision: 1}}}},
	}
}

// fuzzSeedCommands are the commands the fuzzers start from: every type,
// the grid's own commands, and the inputs that once panicked.
func fuzzSeedCommands() []Command {
	grace := time.Minute
	aff := []string{"az==a"}
	labels := []string{"x=1"}
	cmds := append(fuzzGridCommands(),
		&NodeUpdate{ID: "id-2", Availability: AvailabilityDrain, SetLabels: &labels, RemoveLabels: []string{"az"}},
		&NodeStatus{Updates: []NodeStatusUpdate{{ID: "id-2", Status: StatusOffline, At: t0}}},
		&NodeRole{ID: "id-2", Role: RoleVoter},
		&NodeRemove{ID: "id-2"},
		&TokenCreate{Token: Token{ID: "t2", Hash: "h2", User: "admin"}},
		&TokenRemove{ID: "t1"},
		&StackRemove{Name: "shop"},
		&ServiceScale{ID: "shop/web", Instances: 3},
		&ServiceScale{ID: "shop/web", Instances: 1 << 62},
		&ServicePlacementError{ID: "shop/web", Error: "no node"},
		&StackUpgrade{Stack: Stack{Name: "shop", Spec: stack.Stack{Name: "shop", Services: []*stack.Service{{Name: "web", Image: "web:2", Instances: 1}}}}},
		&StackUpgrade{Stack: Stack{Name: "shop", Spec: stack.Stack{Name: "shop", Services: []*stack.Service{nil}}}},
		&StackInstall{Stack: Stack{Name: "bad", Spec: stack.Stack{Name: "bad", Volumes: []*stack.Volume{nil},
			Services: []*stack.Service{{Name: "w", Image: "w", Volumes: []stack.Mount{{}}}}}}},
		&ServiceStop{IDs: []string{"shop/web"}},
		&ServiceStart{IDs: []string{"shop/web"}},
		&ServiceRestart{IDs: []string{"shop/db"}},
		&ServiceRedeploy{IDs: []string{"shop/db"}, Force: true},
		&ServiceRemove{ID: "shop/web"},
		&ServiceDeployState{ID: "shop/web", DeployID: 3, State: DeployRunning},
		&GridUpdate{DefaultAffinity: &aff, OfflineGrace: &grace},
	)
	for typ := MsgGridInit; typ <= MsgGridUpdate; typ++ {
		if c := newCommand(typ); c != nil {
			cmds = append(cmds, c)
		}
	}
	return cmds
}

func FuzzDecode(f *testing.F) {
	for _, c := range fuzzSeedCommands() {
		b, err := Encode(c, audit("admin"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"t":10,"b":null}`))
	f.Add([]byte(`{"t":10,"b":{"stack":{"spec":{"services":[null]}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd, a, err := Decode(data)
		if err != nil {
			if cmd != nil || a != nil {
				t.Fatalf("error %v with a command %T", err, cmd)
			}
			return
		}
		if cmd == nil {
			t.Fatal("no error and no command")
		}
		// What decodes encodes again, to the same command.
		b, err := Encode(cmd, a)
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		back, _, err := Decode(b)
		if err != nil || back.MsgType() != cmd.MsgType() {
			t.Fatalf("round trip: %T %v", back, err)
		}
		b2, _ := Encode(back, a)
		if !bytes.Equal(b, b2) {
			t.Fatalf("round trip changed the command:\n%s\n%s", b, b2)
		}
	})
}

// snapshotBytes is the store as a snapshot writes it.
func snapshotBytes(t testing.TB, s *Store) []byte {
	t.Helper()
	snap, err := New(s, slog.New(slog.NewTextHandler(io.Discard, nil))).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	return sink.Bytes()
}

func FuzzApply(f *testing.F) {
	for _, c := range fuzzSeedCommands() {
		b, err := Encode(c, audit("admin"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd, a, err := Decode(data)
		if err != nil {
			return
		}
		s := fuzzGrid(t)
		before := snapshotBytes(t, s)
		_, err = s.Apply(100, cmd, a)
		if errors.Is(err, ErrApplyPanic) {
			t.Fatalf("apply %s panicked: %v\n%s", cmd.MsgType(), err, data)
		}
		after := snapshotBytes(t, s)
		if err != nil {
			if !bytes.Equal(before, after) {
				t.Fatalf("apply %s failed (%v) but changed the store", cmd.MsgType(), err)
			}
			return
		}
		// The state after it is one a snapshot restores as it was.
		s2, _ := NewStore()
		if err := New(s2, slog.New(slog.NewTextHandler(io.Discard, nil))).Restore(io.NopCloser(bytes.NewReader(after))); err != nil {
			t.Fatalf("restore after %s: %v", cmd.MsgType(), err)
		}
		if again := snapshotBytes(t, s2); !bytes.Equal(after, again) {
			t.Fatalf("snapshot round trip after %s differs", cmd.MsgType())
		}
	})
}

func FuzzRestore(f *testing.F) {
	snap := snapshotBytes(f, fuzzGrid(f))
	f.Add(snap)
	f.Add(snap[:len(snap)/2])
	f.Add([]byte(`{"index":3,"nodes":[null],"stacks":[null],"services":[null],"instances":[null]}`))
	f.Add([]byte(`{"index":1,"services":[{"id":"a/b","stack":"a","name":"b","spec":{"name":"b","volumes":[null]}}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, _ := NewStore()
		fs := New(s, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err := fs.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			if s.Index() != 0 {
				t.Fatalf("failed restore (%v) changed the store", err)
			}
			return
		}
		// A restored store answers every read and snapshots to a state that
		// restores the same.
		_, _ = s.Grid()
		_, _ = s.Nodes()
		_, _ = s.Stacks()
		_, _ = s.Services("")
		_, _ = s.Instances("")
		_, _ = s.Events(0)
		first := snapshotBytes(t, s)
		s2, _ := NewStore()
		if err := New(s2, slog.New(slog.NewTextHandler(io.Discard, nil))).Restore(io.NopCloser(bytes.NewReader(first))); err != nil {
			t.Fatalf("restore of its own snapshot: %v", err)
		}
		if again := snapshotBytes(t, s2); !bytes.Equal(first, again) {
			t.Fatalf("snapshot round trip differs:\n%s\n%s", first, again)
		}
		var d snapshotData
		if err := json.Unmarshal(first, &d); err != nil {
			t.Fatal(err)
		}
	})
}
