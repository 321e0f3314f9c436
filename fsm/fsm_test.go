package fsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func audit(user string) *AuditInfo { return &AuditInfo{User: user, Time: t0} }

func initCmd() *GridInit {
	return &GridInit{
		Grid:       Grid{Name: "test", Subnet: "10.81.0.0/16", Supernet: "10.80.0.0/12", InitialSize: 3},
		Node:       Node{ID: "id-1", Name: "n1", Role: RoleVoter},
		Admin:      User{Name: "admin", Roles: []string{"master_admin"}},
		AdminToken: Token{ID: "t1", Hash: "h1", User: "admin"},
	}
}

// newStore returns a store with an initialised grid.
func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := NewStore()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(1, initCmd(), audit("bootstrap")); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestApplyCommands(t *testing.T) {
	labels := []string{"az=b"}
	tests := []struct {
		name    string
		cmd     Command
		wantErr error
		check   func(t *testing.T, s *Store)
	}{
		{"register second node gets number 2", &NodeRegister{Node: Node{ID: "id-2", Name: "n2", Role: RoleWorker, Labels: []string{"b=1", "a=1"}}}, nil,
			func(t *testing.T, s *Store) {
				n, err := s.Node("n2")
				if err != nil || n.Number != 2 || n.Status != StatusOnline || n.Availability != AvailabilityActive {
					t.Fatalf("n2 = %+v, %v", n, err)
				}
				if fmt.Sprint(n.Labels) != "[a=1 b=1]" {
					t.Fatalf("labels not normalised: %v", n.Labels)
				}
			}},
		{"reused name refused", &NodeRegister{Node: Node{ID: "id-9", Name: "n1"}}, ErrConflict, nil},
		{"reused ID refused", &NodeRegister{Node: Node{ID: "id-1", Name: "other"}}, ErrConflict, nil},
		{"drain", &NodeUpdate{ID: "id-1", Availability: AvailabilityDrain}, nil,
			func(t *testing.T, s *Store) {
				if n, _ := s.Node("n1"); n.Availability != AvailabilityDrain {
					t.Fatalf("availability = %s", n.Availability)
				}
			}},
		{"bad availability", &NodeUpdate{ID: "id-1", Availability: "sleepy"}, ErrInvalid, nil},
		{"add labels, last value of a key wins", &NodeUpdate{ID: "id-1", AddLabels: []string{"az=a", "region=eu", "az=c"}}, nil,
			func(t *testing.T, s *Store) {
				if n, _ := s.Node("n1"); fmt.Sprint(n.Labels) != "[az=c region=eu]" {
					t.Fatalf("labels = %v", n.Labels)
				}
			}},
		{"set labels replaces", &NodeUpdate{ID: "id-1", SetLabels: &labels}, nil,
			func(t *testing.T, s *Store) {
				if n, _ := s.Node("n1"); fmt.Sprint(n.Labels) != "[az=b]" {
					t.Fatalf("labels = %v", n.Labels)
				}
			}},
		{"remove label by key", &NodeUpdate{ID: "id-1", RemoveLabels: []string{"az"}}, nil,
			func(t *testing.T, s *Store) {
				if n, _ := s.Node("n1"); len(n.Labels) != 0 {
					t.Fatalf("labels = %v", n.Labels)
				}
			}},
		{"label without key", &NodeUpdate{ID: "id-1", AddLabels: []string{"=x"}}, ErrInvalid, nil},
		{"update unknown node", &NodeUpdate{ID: "nope"}, ErrNotFound, nil},
		{"online node cannot be removed", &NodeRemove{ID: "id-1"}, ErrConflict, nil},
		{"offline node can be removed", &NodeRemove{ID: "id-2"}, nil,
			func(t *testing.T, s *Store) {
				if _, err := s.Node("n2"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("n2 still there: %v", err)
				}
			}},
		{"bad role", &NodeRole{ID: "id-1", Role: "king"}, ErrInvalid, nil},
		{"token for unknown user", &TokenCreate{Token: Token{ID: "t2", Hash: "h2", User: "ghost"}}, ErrNotFound, nil},
		{"token create", &TokenCreate{Token: Token{ID: "t2", Hash: "h2", User: "admin"}}, nil,
			func(t *testing.T, s *Store) {
				if tok, err := s.TokenByHash("h2"); err != nil || tok.ID != "t2" {
					t.Fatalf("token = %+v, %v", tok, err)
				}
			}},
		{"token remove", &TokenRemove{ID: "t2"}, nil,
			func(t *testing.T, s *Store) {
				if _, err := s.TokenByHash("h2"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("revoked token still found: %v", err)
				}
			}},
		{"remove unknown token", &TokenRemove{ID: "t404"}, ErrNotFound, nil},
		{"rotate join token", &JoinTokenSet{Sealed: []byte("sealed-2")}, nil,
			func(t *testing.T, s *Store) {
				if g, _ := s.Grid(); string(g.JoinTokenSealed) != "sealed-2" {
					t.Fatalf("join token = %q", g.JoinTokenSealed)
				}
			}},
		{"second grid init refused", initCmd(), ErrConflict, nil},
	}
	s := newStore(t)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "offline node can be removed" {
				if _, err := s.Apply(uint64(100+i), &NodeStatus{Updates: []NodeStatusUpdate{{ID: "id-2", Status: StatusOffline, At: t0}}}, nil); err != nil {
					t.Fatal(err)
				}
			}
			_, err := s.Apply(uint64(200+i), tc.cmd, audit("admin"))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

func TestNodeNumbersAreNeverReused(t *testing.T) {
	s := newStore(t)
	mustApply(t, s, 2, &NodeRegister{Node: Node{ID: "id-2", Name: "n2"}})
	mustApply(t, s, 3, &NodeStatus{Updates: []NodeStatusUpdate{{ID: "id-2", Status: StatusOffline}}})
	mustApply(t, s, 4, &NodeRemove{ID: "id-2"})
	mustApply(t, s, 5, &NodeRegister{Node: Node{ID: "id-3", Name: "n3"}})
	if n, _ := s.Node("n3"); n.Number != 3 {
		t.Fatalf("n3 number = %d, want 3 (2 belonged to a removed node)", n.Number)
	}
	if g, _ := s.Grid(); fmt.Sprint(g.RemovedNodes) != "[id-2]" {
		t.Fatalf("removed nodes = %v, want [id-2]", g.RemovedNodes)
	}
}

func TestAuditAndEvents(t *testing.T) {
	s := newStore(t)
	mustApply(t, s, 2, &NodeUpdate{ID: "id-1", AddLabels: []string{"az=a"}})
	recs, err := s.Audit(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[1].Action != "node.update" || recs[1].User != "admin" || recs[1].Resource != "node/id-1" {
		t.Fatalf("audit = %+v", recs)
	}
	evs, _ := s.Events(0)
	if len(evs) != 3 { // grid.created, node.joined, node.updated
		t.Fatalf("events = %d, want 3: %+v", len(evs), evs)
	}
	if later, _ := s.Events(evs[1].Index); len(later) != 1 || later[0].Type != "node.updated" {
		t.Fatalf("events since = %+v", later)
	}
}

func TestEventRetentionIsBounded(t *testing.T) {
	s := newStore(t)
	before, _ := s.Events(0)
	n := maxEvents + maxEvents/trimSlack + 50
	for i := 0; i < n; i++ {
		av := AvailabilityDrain
		if i%2 == 1 {
			av = AvailabilityActive
		}
		mustApply(t, s, uint64(10+i), &NodeUpdate{ID: "id-1", Availability: av})
	}
	// The table is cut back to maxEvents once it holds maxEvents/trimSlack
	// more, so it holds between the two; the newest are kept.
	evs, _ := s.Events(0)
	if len(evs) < maxEvents || len(evs) > maxEvents+maxEvents/trimSlack {
		t.Fatalf("events = %d, want %d to %d", len(evs), maxEvents, maxEvents+maxEvents/trimSlack)
	}
	if last := evs[len(evs)-1]; last.Index>>8 != uint64(10+n-1) {
		t.Fatalf("newest event at raft index %d, want %d", last.Index>>8, 10+n-1)
	}
	if want := maxEvents + (len(before)+n-maxEvents)%(maxEvents/trimSlack+1); len(evs) != want {
		t.Fatalf("events = %d, want %d (cut back to %d every %d inserts)", len(evs), want, maxEvents, maxEvents/trimSlack+1)
	}
}

func TestWaitBlocksUntilIndexPasses(t *testing.T) {
	s := newStore(t)
	done := make(chan uint64)
	go func() {
		idx, _ := s.Wait(context.Background(), 1)
		done <- idx
	}()
	select {
	case <-done:
		t.Fatal("Wait returned before any change")
	case <-time.After(50 * time.Millisecond):
	}
	mustApply(t, s, 7, &NodeUpdate{ID: "id-1", Availability: AvailabilityDrain})
	if idx := <-done; idx != 7 {
		t.Fatalf("Wait returned %d, want 7", idx)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Wait(ctx, 7); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with cancelled ctx: %v", err)
	}
}

func TestEncodeDecodeEveryCommand(t *testing.T) {
	seen := map[MsgType]string{}
	n := 0
	for _, set := range commands {
		for _, p := range set {
			n++
			typ := p.MsgType()
			if other, dup := seen[typ]; dup {
				t.Fatalf("message type %d is both %s and %T", typ, other, p)
			}
			seen[typ] = fmt.Sprintf("%T", p)
			cmd := newCommand(typ)
			if cmd == nil || cmd.MsgType() != typ || reflect.TypeOf(cmd) != reflect.TypeOf(p) {
				t.Fatalf("newCommand(%d) = %T, want %T", typ, cmd, p)
			}
			if typ.String() != p.name() || strings.HasPrefix(typ.String(), "msg(") {
				t.Fatalf("%T: name %q", p, typ.String())
			}
			data, err := Encode(cmd, audit("x"))
			if err != nil {
				t.Fatal(err)
			}
			back, a, err := Decode(data)
			if err != nil || back.MsgType() != typ || reflect.TypeOf(back) != reflect.TypeOf(p) || a.User != "x" {
				t.Fatalf("round trip %s: %T %+v %v", typ, back, a, err)
			}
		}
	}
	if n < len(persistedMsgTypes) {
		t.Fatalf("%d commands, %d persisted message types: a command is gone", n, len(persistedMsgTypes))
	}
	// Commands with content come back as they went.
	for _, cmd := range fuzzSeedCommands() {
		data, err := Encode(cmd, audit("x"))
		if err != nil {
			t.Fatal(err)
		}
		back, _, err := Decode(data)
		if err != nil || reflect.TypeOf(back) != reflect.TypeOf(cmd) {
			t.Fatalf("round trip %s: %T %v", cmd.MsgType(), back, err)
		}
		if again, _ := Encode(back, audit("x")); !bytes.Equal(data, again) {
			t.Fatalf("round trip %s changed it:\n%s\n%s", cmd.MsgType(), data, again)
		}
	}
	if _, _, err := Decode([]byte(`{"t":250,"b":{}}`)); err == nil {
		t.Fatal("unknown message type decoded")
	}
	if s := MsgType(250).String(); s != "msg(250)" {
		t.Fatalf("unknown type named %q", s)
	}
}

// persistedMsgTypes are the message numbers in Raft logs on disk and their
// names in audit logs: neither may change. A new command may be pinned here
// too once a release has written it.
var persistedMsgTypes = map[MsgType]string{
	1: "grid.init", 2: "node.register", 3: "node.update", 4: "node.status", 5: "node.role",
	6: "node.remove", 7: "token.create", 8: "token.remove", 9: "grid.join_token",
	10: "stack.install", 11: "stack.remove", 12: "service.scale", 13: "service.place",
	14: "instance.report", 15: "service.placement_error", 16: "stack.upgrade",
	17: "node.overlay", 18: "vpn.create", 19: "vpn.remove", 20: "service.stop",
	21: "service.start", 22: "service.restart", 23: "service.deploy", 24: "service.remove",
	25: "service.deploy_state", 26: "node.resources", 27: "grid.update",
	33: "token.expire", 34: "token.touch", 35: "user.refresh", 36: "user.remove", 37: "user.roles",
	38: "user.invite", 39: "user.login", 40: "user.login", 41: "audit.note", 42: "user.recover_admin",
	43: "certificate.store", 44: "certificate.remove", 45: "certificate.export", 46: "certificate.register", 47: "certificate.challenge",
}

func TestMsgTypesArePersisted(t *testing.T) {
	for typ, name := range persistedMsgTypes {
		if got := typ.String(); got != name {
			t.Errorf("message type %d is %q, was %q: never renumber or rename a command", typ, got, name)
		}
	}
	want := []MsgType{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 15, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30}
	names := []string{"GridInit", "NodeRegister", "NodeUpdate", "NodeStatus", "NodeRole", "NodeRemove", "TokenCreate",
		"TokenRemove", "JoinTokenSet", "StackInstall", "StackRemove", "ServiceScale", "InstancesPlace", "InstancesReport",
		"StackUpgrade", "ServicePlacementError", "NodeOverlaySet", "VPNCreate", "VPNRemove", "ServiceStop", "ServiceStart",
		"ServiceRestart", "ServiceRedeploy", "ServiceRemove", "ServiceDeployState", "NodeResourcesSet", "GridUpdate",
		"SecretWrite", "SecretRemove", "SecretRead"}
	for i, name := range names {
		if c := newCommand(want[i]); c == nil || reflect.TypeOf(c).Elem().Name() != name || c.MsgType() != want[i] {
			t.Errorf("message type %d decodes to %T, was %s", want[i], c, name)
		}
	}
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	s := newStore(t)
	mustApply(t, s, 2, &NodeRegister{Node: Node{ID: "id-2", Name: "n2", Labels: []string{"az=a"}}})
	mustApply(t, s, 3, &TokenCreate{Token: Token{ID: "t2", Hash: "h2", User: "admin"}})
	f := New(s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	s2, _ := NewStore()
	f2 := New(s2, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := f2.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if s2.Index() != 3 {
		t.Fatalf("restored index = %d, want 3", s2.Index())
	}
	n, err := s2.Node("n2")
	if err != nil || n.Labels[0] != "az=a" || n.Number != 2 {
		t.Fatalf("restored n2 = %+v, %v", n, err)
	}
	if _, err := s2.TokenByHash("h2"); err != nil {
		t.Fatalf("restored token: %v", err)
	}
	g, _ := s2.Grid()
	if g.Name != "test" || g.LastNodeNumber != 2 {
		t.Fatalf("restored grid = %+v", g)
	}
	evs1, _ := s.Events(0)
	evs2, _ := s2.Events(0)
	if len(evs1) != len(evs2) {
		t.Fatalf("events %d != %d", len(evs1), len(evs2))
	}
	// The restored store keeps working.
	mustApply(t, s2, 4, &NodeRegister{Node: Node{ID: "id-3", Name: "n3"}})
	if n, _ := s2.Node("n3"); n.Number != 3 {
		t.Fatalf("number after restore = %d", n.Number)
	}
}

func mustApply(t *testing.T, s *Store, idx uint64, cmd Command) {
	t.Helper()
	if _, err := s.Apply(idx, cmd, audit("admin")); err != nil {
		t.Fatalf("apply %s: %v", cmd.MsgType(), err)
	}
}

type memSink struct{ bytes.Buffer }

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { return nil }
func (m *memSink) Close() error  { return nil }

// TestReplicatedThroughInmemRaft runs three real Raft instances over the
// in-memory transport: writes on the leader reach every FSM, and a restored
// snapshot brings a fresh node level.
func TestReplicatedThroughInmemRaft(t *testing.T) {
	const n = 3
	var (
		trans  [n]*raft.InmemTransport
		rafts  [n]*raft.Raft
		stores [n]*Store
		conf   raft.Configuration
	)
	for i := range n {
		_, trans[i] = raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("n%d", i)))
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.ServerID(fmt.Sprintf("n%d", i)), Address: trans[i].LocalAddr()})
	}
	for i := range n {
		for j := range n {
			if i != j {
				trans[i].Connect(trans[j].LocalAddr(), trans[j])
			}
		}
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i := range n {
		cfg := raft.DefaultConfig()
		cfg.LocalID = conf.Servers[i].ID
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
		cfg.CommitTimeout = 5 * time.Millisecond
		cfg.LogOutput = io.Discard
		logs := raft.NewInmemStore()
		snaps := raft.NewInmemSnapshotStore()
		if err := raft.BootstrapCluster(cfg, logs, logs, snaps, trans[i], conf); err != nil {
			t.Fatal(err)
		}
		stores[i], _ = NewStore()
		r, err := raft.NewRaft(cfg, New(stores[i], quiet), logs, logs, snaps, trans[i])
		if err != nil {
			t.Fatal(err)
		}
		rafts[i] = r
		t.Cleanup(func() { r.Shutdown().Error() })
	}
	var leader *raft.Raft
	deadline := time.Now().Add(5 * time.Second)
	for leader == nil && time.Now().Before(deadline) {
		for _, r := range rafts {
			if r.State() == raft.Leader {
				leader = r
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if leader == nil {
		t.Fatal("no leader elected")
	}
	apply := func(cmd Command) any {
		data, err := Encode(cmd, audit("admin"))
		if err != nil {
			t.Fatal(err)
		}
		f := leader.Apply(data, time.Second)
		if err := f.Error(); err != nil {
			t.Fatal(err)
		}
		return f.Response()
	}
	apply(initCmd())
	for i := 2; i <= 20; i++ {
		apply(&NodeRegister{Node: Node{ID: fmt.Sprintf("id-%d", i), Name: fmt.Sprintf("n%d", i)}})
	}
	// A command the FSM rejects comes back as the Apply response, and does
	// not change any replica.
	if err, ok := apply(&NodeRegister{Node: Node{ID: "dup", Name: "n5"}}).(error); !ok || !errors.Is(err, ErrConflict) {
		t.Fatalf("duplicate name response = %v", err)
	}
	want := leader.AppliedIndex()
	for i, s := range stores {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := s.Wait(ctx, want-1)
		cancel()
		if err != nil {
			t.Fatalf("replica %d did not reach index %d: %v", i, want, err)
		}
		nodes, _ := s.Nodes()
		if len(nodes) != 20 {
			t.Fatalf("replica %d has %d nodes, want 20", i, len(nodes))
		}
	}
	// Snapshot on the leader, restore into a brand new store.
	if err := leader.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	fresh, _ := NewStore()
	for _, s := range stores {
		if s.Index() == want {
			f := New(s, quiet)
			snap, _ := f.Snapshot()
			sink := &memSink{}
			if err := snap.Persist(sink); err != nil {
				t.Fatal(err)
			}
			if err := New(fresh, quiet).Restore(io.NopCloser(&sink.Buffer)); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if nodes, _ := fresh.Nodes(); len(nodes) != 20 {
		t.Fatalf("restored store has %d nodes", len(nodes))
	}
}

func TestWaitTablesWakesOnlyForItsTables(t *testing.T) {
	s := newStore(t)
	mustApply(t, s, 2, webStack("shop"))
	done := make(chan uint64, 1)
	errc := make(chan error, 1)
	go func() {
		idx, err := s.WaitTables(context.Background(), 2, TableInstances, TableServices)
		errc <- err
		done <- idx
	}()
	// Nodes, grid and the event and audit logs change: not its tables.
	mustApply(t, s, 3, &NodeUpdate{ID: "id-1", Availability: AvailabilityDrain})
	mustApply(t, s, 4, &JoinTokenSet{Sealed: []byte("x")})
	select {
	case <-done:
		t.Fatal("WaitTables woke for a change of another table")
	case <-time.After(50 * time.Millisecond):
	}
	if s.Index() != 4 {
		t.Fatalf("index %d", s.Index())
	}
	mustApply(t, s, 5, &ServiceScale{ID: "shop/web", Instances: 4})
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if idx := <-done; idx != 5 {
		t.Fatalf("WaitTables returned %d, want 5", idx)
	}
	// A table that changed after minIndex answers at once; others wait.
	if idx, err := s.WaitTables(context.Background(), 2, TableNodes, TableStacks); err != nil || idx != 3 {
		t.Fatalf("WaitTables(nodes, stacks since 2) = %d, %v", idx, err)
	}
	if idx, err := s.TablesIndex(TableStacks); err != nil || idx != 2 {
		t.Fatalf("stacks changed at %d, %v", idx, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.WaitTables(ctx, 5, TableStacks); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitTables on an unchanged table: %v", err)
	}
	if _, err := s.WaitTables(context.Background(), 0, "nope"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown table: %v", err)
	}
	// A rejected command changes no table.
	if _, err := s.Apply(6, &ServiceScale{ID: "shop/nope", Instances: 1}, audit("admin")); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if idx, _ := s.TablesIndex(TableServices, TableAudit); idx != 5 {
		t.Fatalf("a rejected command moved the tables to %d", idx)
	}
}

func TestWaitTablesWakesOnRestore(t *testing.T) {
	s := newStore(t)
	snap := snapshotBytes(t, s)
	done := make(chan uint64, 1)
	go func() {
		idx, _ := s.WaitTables(context.Background(), 1, TableStacks)
		done <- idx
	}()
	time.Sleep(10 * time.Millisecond)
	snap = bytes.Replace(snap, []byte(`{"index":1,`), []byte(`{"index":9,`), 1)
	if err := New(s, nil).Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	select {
	case idx := <-done:
		if idx != 9 {
			t.Fatalf("woke at %d, want 9", idx)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a restore did not wake WaitTables")
	}
}

func TestViewIsOneState(t *testing.T) {
	s := newStore(t)
	mustApply(t, s, 2, webStack("shop"))
	v := s.Snapshot()
	mustApply(t, s, 3, &NodeRegister{Node: Node{ID: "id-2", Name: "n2"}})
	mustApply(t, s, 4, &StackRemove{Name: "shop"})
	if v.Index() != 2 {
		t.Fatalf("view index %d, want 2", v.Index())
	}
	nodes, _ := v.Nodes()
	svcs, _ := v.Services("")
	if len(nodes) != 1 || len(svcs) != 2 {
		t.Fatalf("view sees %d nodes and %d services, want the state at index 2 (1, 2)", len(nodes), len(svcs))
	}
	if _, err := v.Stack("shop"); err != nil {
		t.Fatal(err)
	}
	err := s.View(func(v *View) error {
		if v.Index() != 4 {
			t.Fatalf("index %d", v.Index())
		}
		if _, err := v.Node("n2"); err != nil {
			return err
		}
		_, err := v.Stack("shop")
		return err
	})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("View: %v, want the removed stack not found", err)
	}
}

// The sequence index sorts as the numbers do, across every digit boundary,
// so "the oldest rows first" and "rows after since" hold.
func TestSeqIndexSortsAsNumbers(t *testing.T) {
	nums := []uint64{0, 1, 15, 16, 17, 255, 256, 4095, 4096, 1 << 32, 1<<32 + 1, 1<<63 - 1, 1 << 63, ^uint64(0)}
	for i := 1; i < len(nums); i++ {
		a, b := nibbles(nums[i-1]), nibbles(nums[i])
		if string(a) >= string(b) {
			t.Errorf("nibbles(%d) = %x does not sort before nibbles(%d) = %x", nums[i-1], a, nums[i], b)
		}
	}
	s := newStore(t)
	txn := s.txn(true)
	for _, n := range []uint64{256, 15, 4096, 16, 255, 17} {
		if err := txn.Insert(TableAudit, &AuditRecord{Index: n}); err != nil {
			t.Fatal(err)
		}
	}
	txn.Commit()
	recs, err := s.Audit(15)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, r := range recs {
		if r.Index >= 15 {
			got = append(got, r.Index)
		}
	}
	if fmt.Sprint(got) != "[16 17 255 256 4096]" {
		t.Fatalf("audit records after 15: %v, want [16 17 255 256 4096]", got)
	}
}
