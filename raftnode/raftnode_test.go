package raftnode

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/kontena-ng/kontena/fsm"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestInmemVoterAppliesAndIsCaughtUp(t *testing.T) {
	n, err := StartInmem("id1", quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown()
	if !n.IsLeader() || n.Leader() != "id1" {
		t.Fatalf("leader %v %q", n.IsLeader(), n.Leader())
	}
	_, idx, err := n.Apply(context.Background(), &fsm.GridInit{Grid: fsm.Grid{Name: "g", Subnet: "10.81.0.0/16", Supernet: "10.80.0.0/12", InitialSize: 1},
		Node: fsm.Node{ID: "id1", Name: "n1", Role: fsm.RoleVoter}, Admin: fsm.User{Name: "admin"}, AdminToken: fsm.Token{ID: "t", Hash: "h", User: "admin"}}, nil)
	if err != nil || idx == 0 {
		t.Fatalf("apply: %d %v", idx, err)
	}
	if !n.CaughtUp() {
		t.Fatal("a leader past its barrier is caught up")
	}
	if got := n.Voters(); len(got) != 1 || got[0] != "id1" {
		t.Fatalf("voters %v", got)
	}
	// The state machine's refusal comes back as the command's error.
	if _, _, err := n.Apply(context.Background(), &fsm.NodeRemove{ID: "nope"}, nil); err == nil {
		t.Fatal("removing an unknown node succeeded")
	}
}

// TestPeerCheck is the rule the Raft listener applies to every connection.
func TestPeerCheck(t *testing.T) {
	n, err := StartInmem("id1", quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown()
	if _, _, err := n.Apply(context.Background(), &fsm.GridInit{Grid: fsm.Grid{Name: "g", Subnet: "10.81.0.0/16", Supernet: "10.80.0.0/12", InitialSize: 1},
		Node: fsm.Node{ID: "id1", Name: "n1", Role: fsm.RoleVoter}, Admin: fsm.User{Name: "admin"}, AdminToken: fsm.Token{ID: "t", Hash: "h", User: "admin"}}, nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*fsm.NodeRegister{
		{Node: fsm.Node{ID: "w1", Name: "w1", Role: fsm.RoleWorker, Status: fsm.StatusOffline}},
	} {
		if _, _, err := n.Apply(context.Background(), c, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := n.Apply(context.Background(), &fsm.NodeRemove{ID: "w1"}, nil); err != nil {
		t.Fatal(err)
	}
	check := n.peerCheck([]string{"boot"})
	for _, tc := range []struct{ id, want string }{
		{"id1", ""},
		{"w2", "not a voter in the raft configuration"},
		{"w1", "removed from the grid"},
		{"boot", "not a voter in the raft configuration"}, // the trust list counts only before a configuration exists
	} {
		err := check(tc.id)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.id, err, tc.want)
		}
	}
}

// TestLastCommand: a follower's state is caught up once the store has
// applied the last command at or below the commit index; the no-op,
// configuration and barrier entries after it never reach the store.
func TestLastCommand(t *testing.T) {
	logs := raft.NewInmemStore()
	types := []raft.LogType{raft.LogConfiguration, raft.LogCommand, raft.LogNoop, raft.LogCommand, raft.LogConfiguration, raft.LogBarrier, raft.LogNoop}
	for i, typ := range types {
		if err := logs.StoreLog(&raft.Log{Index: uint64(i + 1), Term: 1, Type: typ}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ commit, want uint64 }{{1, 0}, {2, 2}, {3, 2}, {4, 4}, {7, 4}} {
		if got, err := lastCommand(logs, c.commit); err != nil || got != c.want {
			t.Errorf("lastCommand(%d) = %d, %v; want %d", c.commit, got, err, c.want)
		}
	}
	// Compacted into a snapshot: what is left holds no command.
	if err := logs.DeleteRange(1, 4); err != nil {
		t.Fatal(err)
	}
	if got, err := lastCommand(logs, 7); err != nil || got != 0 {
		t.Errorf("after compaction lastCommand(7) = %d, %v; want 0", got, err)
	}
	// A gap (an entry the store lost) is an error, never "caught up".
	if err := logs.DeleteRange(6, 6); err != nil {
		t.Fatal(err)
	}
	if _, err := lastCommand(logs, 7); err == nil {
		t.Error("a missing entry below the commit index read as caught up")
	}
}
