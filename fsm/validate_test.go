package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/kontena-ng/kontena/stack"
)

// The commands that once panicked the FSM (and so every voter replaying
// them) are refused with ErrInvalid and leave the state as it was.
func TestApplyRefusesWhatPanicked(t *testing.T) {
	cases := []struct {
		name string
		cmd  Command
	}{
		{"install services [null]", &StackInstall{Stack: Stack{Name: "x", Spec: stack.Stack{Services: []*stack.Service{nil}}}}},
		{"upgrade services [null]", &StackUpgrade{Stack: Stack{Name: "shop", Spec: stack.Stack{Services: []*stack.Service{nil}}}}},
		{"install stack volumes [null]", &StackInstall{Stack: Stack{Name: "x", Spec: stack.Stack{Volumes: []*stack.Volume{nil},
			Services: []*stack.Service{{Name: "w", Image: "w", Volumes: []stack.Mount{{Volume: "data", Path: "/d"}}}}}}}},
		{"install 2^62 instances", &StackInstall{Stack: Stack{Name: "x", Spec: stack.Stack{Services: []*stack.Service{{Name: "w", Image: "w", Instances: 1 << 62}}}}}},
		{"scale to 2^62", &ServiceScale{ID: "shop/web", Instances: 1 << 62}},
		{"scale above the bound", &ServiceScale{ID: "shop/web", Instances: stack.MaxStoredInstances + 1}},
		{"scale negative", &ServiceScale{ID: "shop/web", Instances: -1}},
		{"spec named otherwise", &StackInstall{Stack: Stack{Name: "x", Spec: stack.Stack{Name: "y", Services: []*stack.Service{{Name: "w", Image: "w"}}}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := fuzzGrid(t)
			before := snapshotBytes(t, s)
			// Through the log format, as a replay reads it.
			data, err := Encode(c.cmd, audit("admin"))
			if err != nil {
				t.Fatal(err)
			}
			cmd, a, err := Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Apply(50, cmd, a)
			if !errors.Is(err, ErrInvalid) || errors.Is(err, ErrApplyPanic) {
				t.Fatalf("want ErrInvalid (not a recovered panic), got %v", err)
			}
			if !bytes.Equal(before, snapshotBytes(t, s)) {
				t.Fatal("the refused command changed the state")
			}
		})
	}
}

// A panic the checks miss is recovered into ErrInvalid with the state
// unchanged, through the raft.FSM that replays the log.
func TestApplyRecoversPanics(t *testing.T) {
	s := fuzzGrid(t)
	before := snapshotBytes(t, s)
	_, err := s.Apply(50, &StackInstall{Stack: Stack{Name: "x"}}, nil) // no services: refused as before
	if !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	for _, cmd := range []Command{(*StackInstall)(nil), (*ServiceScale)(nil), (*InstancesPlace)(nil)} {
		_, err = s.Apply(51, cmd, audit("admin"))
		if !errors.Is(err, ErrInvalid) || !errors.Is(err, ErrApplyPanic) {
			t.Fatalf("%T: %v", cmd, err)
		}
	}
	if !bytes.Equal(before, snapshotBytes(t, s)) {
		t.Fatal("state changed")
	}
}

func TestRestoreRefusesNullRows(t *testing.T) {
	for _, body := range []string{`{"index":3,"nodes":[null]}`, `{"index":3,"services":[null]}`, `{"index":3,"grid":[null]}`} {
		s, _ := NewStore()
		err := New(s, nil).Restore(nopCloser{bytes.NewReader([]byte(body))})
		if !errors.Is(err, ErrInvalid) || s.Index() != 0 {
			t.Fatalf("%s: %v (index %d)", body, err, s.Index())
		}
	}
	var d snapshotData
	_ = json.Unmarshal(snapshotBytes(t, fuzzGrid(t)), &d)
	if len(d.Services) != 2 {
		t.Fatalf("grid snapshot: %d services", len(d.Services))
	}
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

// TestReplayKeepsWhatOlderGridsAccepted: the state machine's own checks
// are looser than the API's, so a log entry an older grid committed (here
// 5000 instances and a stack name ending in a dash, both accepted before
// the API bounds) still applies when the log is replayed.
func TestReplayKeepsWhatOlderGridsAccepted(t *testing.T) {
	s := fuzzGrid(t)
	cmds := []Command{
		&StackInstall{Stack: Stack{Name: "old-", Spec: stack.Stack{Services: []*stack.Service{{Name: "w", Image: "w", Instances: 5000}}}}},
		&ServiceScale{ID: "shop/web", Instances: stack.MaxInstances + 1},
	}
	for i, c := range cmds {
		if _, err := s.Apply(uint64(60+i), c, audit("admin")); err != nil {
			t.Fatalf("%T: %v", c, err)
		}
	}
	if _, err := s.Stack("old-"); err != nil {
		t.Fatalf("the old stack is not in the state: %v", err)
	}
}
