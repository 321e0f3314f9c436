package agent

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

type recorder struct {
	mu   sync.Mutex
	last []InstanceStatus
	n    int
}

func (r *recorder) Report(_ context.Context, s []InstanceStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last, r.n = s, r.n+1
}

func (r *recorder) get(name string) InstanceStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.last {
		if s.Name == name {
			return s
		}
	}
	return InstanceStatus{}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func spec(n int, rev uint64) ContainerSpec {
	return ContainerSpec{Name: "s.web-" + string(rune('0'+n)), Stack: "s", Service: "web", Instance: n,
		Revision: rev, Image: "img", ServiceID: "svc-1", Env: map[string]string{"A": "1"}}
}

func newTestAgent(t *testing.T, f *fakeRuntime, p Prober) (*Agent, *recorder) {
	t.Helper()
	rec := &recorder{}
	a, err := New(Config{Runtime: f, Reporter: rec, Logger: quiet(), Prober: p,
		Node: NodeInfo{NodeName: "node-1", GridName: "g"}, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	return a, rec
}

func TestReconcileDecisions(t *testing.T) {
	withHooks := func(s ContainerSpec) ContainerSpec {
		s.Hooks = Hooks{
			PreStart:  []Hook{{Name: "migrate", Cmd: "migrate"}},
			PostStart: []Hook{{Name: "seed", Cmd: "seed", Oneshot: true}, {Name: "warm", Cmd: "warm"}, {Name: "only2", Cmd: "only2", Instances: []int{2}}},
			PreStop:   []Hook{{Name: "drain", Cmd: "drain"}},
		}
		return s
	}
	tests := []struct {
		name      string
		existing  map[string]ContainerSpec // state -> spec of a container already there
		desired   []ContainerSpec
		wantOps   []string
		wantState map[string]State
		sameID    bool // the instance keeps the container it had
	}{
		{
			name:      "create missing",
			desired:   []ContainerSpec{spec(1, 1)},
			wantOps:   []string{"create s.web-1", "start s.web-1"},
			wantState: map[string]State{"s.web-1": StateRunning},
		},
		{
			name:      "adopt running of the same revision untouched",
			existing:  map[string]ContainerSpec{"running": spec(1, 1)},
			desired:   []ContainerSpec{spec(1, 1)},
			wantOps:   nil,
			wantState: map[string]State{"s.web-1": StateRunning},
			sameID:    true,
		},
		{
			name:      "replace on revision change, old pre_stop first",
			existing:  map[string]ContainerSpec{"running": withHooks(spec(1, 1))},
			desired:   []ContainerSpec{spec(1, 2)},
			wantOps:   []string{"exec s.web-1 drain", "stop s.web-1", "remove s.web-1", "create s.web-1", "start s.web-1"},
			wantState: map[string]State{"s.web-1": StateRunning},
		},
		{
			name:      "remove no longer desired",
			existing:  map[string]ContainerSpec{"running": spec(2, 1)},
			desired:   nil,
			wantOps:   []string{"stop s.web-2", "remove s.web-2"},
			wantState: map[string]State{"s.web-2": StateRemoved},
		},
		{
			name:      "restart exited in place",
			existing:  map[string]ContainerSpec{"exited": spec(1, 1)},
			desired:   []ContainerSpec{spec(1, 1)},
			wantOps:   []string{"start s.web-1"},
			wantState: map[string]State{"s.web-1": StateRunning},
			sameID:    true,
		},
		{
			name:    "hooks order on create; instance filter",
			desired: []ContainerSpec{withHooks(spec(1, 1))},
			wantOps: []string{"create s.web-1", "runonce s.web-1.pre_start-migrate migrate", "start s.web-1",
				"exec s.web-1 seed", "exec s.web-1 warm"},
			wantState: map[string]State{"s.web-1": StateRunning},
		},
		{
			name:      "restart of exited skips oneshot hooks already run",
			existing:  map[string]ContainerSpec{"exited": withHooks(spec(1, 1))},
			desired:   []ContainerSpec{withHooks(spec(1, 1))},
			wantOps:   []string{"runonce s.web-1.pre_start-migrate migrate", "start s.web-1", "exec s.web-1 warm"},
			wantState: map[string]State{"s.web-1": StateRunning},
			sameID:    true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			ids := map[string]string{}
			for state, s := range tc.existing {
				id := f.put(s, state)
				if len(s.Hooks.PostStart) > 0 { // an earlier start ran the oneshot hook
					c := f.byID(id)
					c.Labels = containerLabels(s, []string{"seed"})
				}
				ids[s.Name] = id
			}
			a, rec := newTestAgent(t, f, nil)
			if err := a.Reconcile(context.Background(), tc.desired); err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			if got := f.takeOps(); !slices.Equal(got, tc.wantOps) {
				t.Errorf("ops:\n got %q\nwant %q", got, tc.wantOps)
			}
			for name, want := range tc.wantState {
				st := rec.get(name)
				if st.State != want {
					t.Errorf("%s state = %q (%s), want %q", name, st.State, st.Error, want)
				}
				if tc.sameID && st.ContainerID != ids[name] {
					t.Errorf("%s container = %s, want the existing %s", name, st.ContainerID, ids[name])
				}
			}
			// A second pass over the result must change nothing.
			if err := a.Reconcile(context.Background(), tc.desired); err != nil {
				t.Fatal(err)
			}
			if got := f.takeOps(); len(got) != 0 {
				t.Errorf("second pass not idempotent: %q", got)
			}
		})
	}
}

func TestOneshotHookCarriedAcrossRedeploy(t *testing.T) {
	f := newFake()
	s := spec(1, 1)
	s.Hooks.PostStart = []Hook{{Name: "seed", Cmd: "seed", Oneshot: true}}
	a, rec := newTestAgent(t, f, nil)
	ctx := context.Background()
	if err := a.Reconcile(ctx, []ContainerSpec{s}); err != nil {
		t.Fatal(err)
	}
	f.takeOps()
	s.Revision = 2
	if err := a.Reconcile(ctx, []ContainerSpec{s}); err != nil {
		t.Fatal(err)
	}
	ops := f.takeOps()
	if slices.Contains(ops, "exec s.web-1 seed") {
		t.Errorf("oneshot hook ran again on redeploy: %q", ops)
	}
	if got := f.byID(rec.get("s.web-1").ContainerID).Labels[LabelOneshotDone]; got != "seed" {
		t.Errorf("new container's %s = %q, want seed", LabelOneshotDone, got)
	}
}

func TestFailingPostStartHookRemovesContainer(t *testing.T) {
	f := newFake()
	f.failExec["warm"] = true
	s := spec(1, 1)
	s.Hooks.PostStart = []Hook{{Name: "warm", Cmd: "warm"}}
	a, rec := newTestAgent(t, f, nil)
	err := a.Reconcile(context.Background(), []ContainerSpec{s})
	if err == nil || !strings.Contains(err.Error(), `post_start hook "warm"`) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("err = %v, want the hook's name and output", err)
	}
	if st := rec.get("s.web-1"); st.State != StateFailed {
		t.Errorf("state = %q, want failed", st.State)
	}
	if cs, _ := f.List(context.Background()); len(cs) != 0 {
		t.Errorf("half-started container left behind: %+v", cs)
	}
}

func TestUnhealthyIsRestarted(t *testing.T) {
	f := newFake()
	p := &fakeProber{fail: map[string]bool{"10.0.0.1:80": true}}
	s := spec(1, 1)
	s.HealthCheck = &HealthCheck{Protocol: "tcp", Port: 80, Interval: 5 * time.Second, InitialDelay: 10 * time.Second, Retries: 2}
	id := f.put(s, "running")
	a, rec := newTestAgent(t, f, p)
	ctx := context.Background()
	step := func(d time.Duration) InstanceStatus {
		t.Helper()
		f.now = f.now.Add(d)
		_ = a.Reconcile(ctx, []ContainerSpec{s})
		return rec.get(s.Name)
	}
	if st := step(0); st.Health != HealthUnknown || p.calls != 0 {
		t.Fatalf("probed during initial delay: %+v calls=%d", st, p.calls)
	}
	if st := step(10 * time.Second); st.State != StateRunning || p.calls != 1 {
		t.Fatalf("first failure must not restart (retries 2): %+v calls=%d", st, p.calls)
	}
	if st := step(time.Second); p.calls != 1 {
		t.Fatalf("probed before the interval: %+v calls=%d", st, p.calls)
	}
	f.takeOps()
	st := step(5 * time.Second)
	if st.State != StateUnhealthy || st.Health != HealthUnhealthy || st.ContainerID != id {
		t.Fatalf("after 2 failures: %+v", st)
	}
	if got, want := f.takeOps(), []string{"stop s.web-1", "start s.web-1"}; !slices.Equal(got, want) {
		t.Errorf("ops = %q, want %q", got, want)
	}
	p.fail = nil
	if st := step(10 * time.Second); st.State != StateRunning || st.Health != HealthHealthy {
		t.Errorf("after recovery: %+v", st)
	}
}

func TestEnvHasKontenaVariables(t *testing.T) {
	s := spec(3, 1)
	s.Env["KONTENA_SERVICE_NAME"] = "spoofed"
	env := containerEnv(s, NodeInfo{NodeName: "n1", GridName: "g"})
	for _, want := range []string{"A=1", "KONTENA_SERVICE_ID=svc-1", "KONTENA_SERVICE_NAME=web", "KONTENA_GRID_NAME=g",
		"KONTENA_PLATFORM_NAME=g", "KONTENA_STACK_NAME=s", "KONTENA_NODE_NAME=n1", "KONTENA_SERVICE_INSTANCE_NUMBER=3"} {
		if !slices.Contains(env, want) {
			t.Errorf("env lacks %s: %q", want, env)
		}
	}
}

func TestVolumeNames(t *testing.T) {
	f := newFake()
	s := spec(1, 1)
	s.Volumes = []Volume{{Kind: VolumeNamed, Name: "data", Path: "/data"}, {Kind: VolumeNamed, Name: "shared", Scope: ScopeStack, Path: "/s"},
		{Kind: VolumeBind, HostPath: "/tmp", Path: "/h"}, {Kind: VolumeAnonymous, Path: "/a"}}
	a, _ := newTestAgent(t, f, nil)
	if err := a.Reconcile(context.Background(), []ContainerSpec{s}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"s.web-1.data", "s.shared"} {
		if _, ok := f.volumes[n]; !ok {
			t.Errorf("volume %s not created; have %v", n, f.volumes)
		}
	}
	if len(f.volumes) != 2 {
		t.Errorf("volumes = %v, want only the 2 named", f.volumes)
	}
}

func TestRunWaitsForFirstStateAndKeepsLastOne(t *testing.T) {
	f := newFake()
	f.put(spec(1, 1), "running")
	rec := &recorder{}
	a, err := New(Config{Runtime: f, Reporter: rec, Logger: quiet(), Interval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := make(chan []ContainerSpec)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, ch) }()

	time.Sleep(50 * time.Millisecond)
	if ops := f.takeOps(); len(ops) != 0 {
		t.Fatalf("acted before any desired state: %q", ops)
	}
	ch <- []ContainerSpec{spec(1, 1)}
	close(ch) // masters gone
	// Kill the container: the periodic pass must restart it from the last state.
	for _, c := range must(f.List(ctx)) {
		f.setState(c.ID, "exited")
	}
	deadline := time.Now().Add(2 * time.Second)
	for rec.get("s.web-1").State != StateRunning || f.stateOf(rec.get("s.web-1").ContainerID) != "running" {
		if time.Now().After(deadline) {
			t.Fatalf("not restarted after the feed closed; ops %q", f.takeOps())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Errorf("Run returned %v, want context.Canceled", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestDuplicateContainersOfOneInstanceKeepOne(t *testing.T) {
	f := newFake()
	keep := f.put(spec(1, 1), "running")
	f.put(spec(1, 1), "running") // e.g. left by a crash between create and remove
	a, rec := newTestAgent(t, f, nil)
	if err := a.Reconcile(context.Background(), []ContainerSpec{spec(1, 1)}); err != nil {
		t.Fatal(err)
	}
	if got, want := f.takeOps(), []string{"stop s.web-1", "remove s.web-1"}; !slices.Equal(got, want) {
		t.Errorf("ops = %q, want %q", got, want)
	}
	if cs, _ := f.List(context.Background()); len(cs) != 1 || cs[0].ID != keep {
		t.Errorf("left %+v, want only %s", cs, keep)
	}
	if rec.get("s.web-1").ContainerID != keep {
		t.Errorf("status %+v", rec.get("s.web-1"))
	}
}

// Nodes sharing one Docker engine (a development host) must not touch each
// other's containers.
func TestReconcileLeavesOtherNodesContainersAlone(t *testing.T) {
	ctx := context.Background()
	rt := newFake()
	mk := func(id string) *Agent {
		a, err := New(Config{Runtime: rt, Node: NodeInfo{NodeID: id, NodeName: id, GridName: "g"}})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	n1, n2 := mk("node-1"), mk("node-2")
	spec := ContainerSpec{Name: "s.web-1", Stack: "s", Service: "web", Instance: 1, Revision: 1, Image: "img"}
	if err := n1.Reconcile(ctx, []ContainerSpec{spec}); err != nil {
		t.Fatal(err)
	}
	if err := n2.Reconcile(ctx, nil); err != nil { // node 2 has nothing to run
		t.Fatal(err)
	}
	list, _ := rt.List(ctx)
	if len(list) != 1 || list[0].Labels[LabelNode] != "node-1" {
		t.Fatalf("containers after node 2's pass: %+v", list)
	}
}
