package leader

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/membership"
	"github.com/kontena-ng/kontena/raftnode"
	"github.com/kontena-ng/kontena/stack"
)

// members is gossip as the test says it is.
type members struct {
	mu   sync.Mutex
	live map[string]membership.Member
}

func (m *members) Members() map[string]membership.Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.live
}
func (m *members) Changed() <-chan struct{} { return nil }

// calls records the control calls the leader makes.
type calls struct {
	mu  sync.Mutex
	got []string
}

func (c *calls) CallNode(_ context.Context, id, _, addr, path string, _ any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, id+" "+addr+" "+path)
}

func voter(t *testing.T) *raftnode.Node {
	t.Helper()
	rn, err := raftnode.StartInmem("id1", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rn.Shutdown() })
	old := time.Now().UTC().Add(-time.Hour)
	for _, c := range []fsm.Command{
		&fsm.GridInit{Grid: fsm.Grid{Name: "g", Subnet: "10.81.0.0/16", Supernet: "10.80.0.0/12", InitialSize: 3},
			Node: fsm.Node{ID: "id1", Name: "n1", Role: fsm.RoleVoter, Status: fsm.StatusOnline}, Admin: fsm.User{Name: "admin"},
			AdminToken: fsm.Token{ID: "t", Hash: "h", User: "admin"}},
		&fsm.NodeRegister{Node: fsm.Node{ID: "w1", Name: "w1", Role: fsm.RoleWorker, Status: fsm.StatusOnline, Addr: "10.0.0.2", APIPort: 9700, JoinedAt: old}},
		&fsm.NodeRegister{Node: fsm.Node{ID: "w2", Name: "w2", Role: fsm.RoleWorker, Status: fsm.StatusOnline, Addr: "10.0.0.3", APIPort: 9700, JoinedAt: old}},
		&fsm.NodeRegister{Node: fsm.Node{ID: "gone", Name: "gone", Role: fsm.RoleWorker, Status: fsm.StatusOffline, JoinedAt: old}},
		&fsm.NodeRemove{ID: "gone"},
		&fsm.NodeRole{ID: "w2", Role: fsm.RoleVoter}, // promoted: the leader sends it the keys
		&fsm.StackInstall{Stack: fsm.Stack{Name: "s", Spec: stack.Stack{Name: "s", Services: []*stack.Service{{Name: "web", Image: "web:1", Instances: 2}}}}},
	} {
		if _, _, err := rn.Apply(context.Background(), c, nil); err != nil {
			t.Fatalf("%T: %v", c, err)
		}
	}
	return rn
}

// TestPass: one pass of the leader over a state and a gossip view it is
// given. w1 is not in gossip: offline. The removed node still gossips:
// told to stop. w2 is a voter by the state and a worker by gossip: it gets
// the voter keys at the address the state has for it. The service is
// placed on the online nodes.
func TestPass(t *testing.T) {
	rn := voter(t)
	g := &members{live: map[string]membership.Member{
		"id1":  {ID: "id1", Addr: "10.0.0.1", Meta: membership.Meta{Role: fsm.RoleVoter, Name: "n1"}},
		"w2":   {ID: "w2", Addr: "10.0.0.3", Port: 0, Meta: membership.Meta{Role: fsm.RoleWorker, Name: "w2", APIPort: 9700}},
		"gone": {ID: "gone", Addr: "10.0.0.9", Meta: membership.Meta{Role: fsm.RoleWorker, Name: "gone", APIPort: 9700}},
	}}
	c := &calls{}
	l := New(Config{Self: "id1", Raft: func() (Raft, bool) { return rn, true }, Gossip: g, Calls: c,
		VoterKeys: func() api.VoterKeys { return api.VoterKeys{CAKey: "ca", MasterKey: []byte("m")} },
		Reconcile: time.Second, Rand: rand.New(rand.NewPCG(1, 2)), Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Clock: func() time.Time { return time.Now().Add(time.Minute) }}) // past the join grace of the nodes just registered
	l.Pass(context.Background())

	w1, err := rn.Store().Node("w1")
	if err != nil || w1.Status != fsm.StatusOffline {
		t.Fatalf("w1 not in gossip: %+v %v", w1, err)
	}
	c.mu.Lock()
	got := slices.Clone(c.got)
	c.mu.Unlock()
	for _, want := range []string{"gone 10.0.0.9:9700 /v1/internal/removed", "w2 10.0.0.3:9700 /v1/internal/promote"} {
		if !slices.Contains(got, want) {
			t.Errorf("calls %v: missing %q", got, want)
		}
	}
	insts, _ := rn.Store().Instances("s/web")
	if len(insts) != 2 {
		t.Fatalf("%d instances placed, want 2", len(insts))
	}
	for _, in := range insts {
		if in.NodeID == "w1" || in.NodeID == "gone" {
			t.Fatalf("instance placed on %s", in.NodeID)
		}
	}
}

// A node that is not the leader does nothing.
func TestPassOnlyOnTheLeader(t *testing.T) {
	c := &calls{}
	l := New(Config{Self: "id1", Raft: func() (Raft, bool) { return nil, false }, Gossip: &members{}, Calls: c,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	l.Pass(context.Background())
	if len(c.got) != 0 {
		t.Fatalf("a worker made calls: %v", c.got)
	}
}
