package agent

import (
	"context"
	"slices"
	"testing"
	"time"
)

func stopped(s ContainerSpec) ContainerSpec { s.Stopped = true; return s }

func withRestart(s ContainerSpec, gen uint64) ContainerSpec { s.RestartGen = gen; return s }

func TestStoppedInstances(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		existing  map[string]ContainerSpec // state -> spec of a container already there
		desired   ContainerSpec
		wantOps   []string
		wantState State
		wantCtr   string // container state after the pass ("" = none)
	}{
		{"running container is stopped and kept", map[string]ContainerSpec{"running": spec(1, 1)}, stopped(spec(1, 1)),
			[]string{"stop s.web-1"}, StateStopped, "exited"},
		{"exited container is left alone", map[string]ContainerSpec{"exited": spec(1, 1)}, stopped(spec(1, 1)),
			nil, StateStopped, "exited"},
		{"no container: none is created", nil, stopped(spec(1, 1)), nil, StateStopped, ""},
		{"another revision is not replaced while stopped", map[string]ContainerSpec{"running": spec(1, 1)}, stopped(spec(1, 2)),
			[]string{"stop s.web-1"}, StateStopped, "exited"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			id := ""
			for state, s := range tc.existing {
				id = f.put(s, state)
			}
			a, rec := newTestAgent(t, f, nil)
			if err := a.Reconcile(ctx, []ContainerSpec{tc.desired}); err != nil {
				t.Fatal(err)
			}
			if got := f.takeOps(); !slices.Equal(got, tc.wantOps) {
				t.Fatalf("ops = %q, want %q", got, tc.wantOps)
			}
			if st := rec.get("s.web-1"); st.State != tc.wantState || st.ContainerID != id {
				t.Fatalf("status = %+v, want %s with container %q", st, tc.wantState, id)
			}
			if got := f.stateOf(id); got != tc.wantCtr {
				t.Fatalf("container state %q, want %q", got, tc.wantCtr)
			}
			// Another pass, and a restarted agent, leave it stopped.
			b, _ := newTestAgent(t, f, nil)
			for _, ag := range []*Agent{a, b} {
				if err := ag.Reconcile(ctx, []ContainerSpec{tc.desired}); err != nil {
					t.Fatal(err)
				}
				if ops := f.takeOps(); len(ops) > 0 {
					t.Fatalf("a stopped instance was touched again: %q", ops)
				}
			}
		})
	}
}

func TestStartAfterStopIsNotADeath(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	id := f.put(spec(1, 1), "running")
	a, rec := newTestAgent(t, f, nil)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(a.Reconcile(ctx, []ContainerSpec{stopped(spec(1, 1))}))
	f.takeOps()
	// `service start` bumps the restart generation with the start.
	must(a.Reconcile(ctx, []ContainerSpec{withRestart(spec(1, 1), 1)}))
	if ops := f.takeOps(); !slices.Equal(ops, []string{"start s.web-1"}) {
		t.Fatalf("ops %q", ops)
	}
	st := rec.get("s.web-1")
	if st.State != StateRunning || st.ContainerID != id || st.Restart != 1 || st.Event != EventStarted {
		t.Fatalf("after start: %+v", st)
	}
	// A crash of the running container is a death.
	f.setState(id, "exited")
	f.now = f.now.Add(time.Second)
	must(a.Reconcile(ctx, []ContainerSpec{withRestart(spec(1, 1), 1)}))
	if st := rec.get("s.web-1"); st.Event != EventDied || st.EventMessage != "exited with code 0; started again" || st.EventAt.IsZero() {
		t.Fatalf("after crash: %+v", st)
	}
}

func TestRestartOnRequest(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	withHook := spec(1, 1)
	withHook.Hooks.PreStop = []Hook{{Name: "drain", Cmd: "drain"}}
	id := f.put(withHook, "running")
	a, rec := newTestAgent(t, f, nil)
	want := withRestart(withHook, 1)
	if err := a.Reconcile(ctx, []ContainerSpec{want}); err != nil {
		t.Fatal(err)
	}
	if ops := f.takeOps(); !slices.Equal(ops, []string{"exec s.web-1 drain", "stop s.web-1", "start s.web-1"}) {
		t.Fatalf("restart ops %q", ops)
	}
	st := rec.get("s.web-1")
	if st.ContainerID != id || st.Restart != 1 || st.State != StateRunning || st.Event != EventRestarted {
		t.Fatalf("after restart: %+v (same container, restart 1)", st)
	}
	// Once is enough: the next pass adopts it.
	if err := a.Reconcile(ctx, []ContainerSpec{want}); err != nil {
		t.Fatal(err)
	}
	if ops := f.takeOps(); len(ops) > 0 {
		t.Fatalf("restarted twice: %q", ops)
	}
	// A restarted agent learns from the grid what this node reported.
	want.RestartDone, want.RestartDoneID = 1, id
	b, rec2 := newTestAgent(t, f, nil)
	if err := b.Reconcile(ctx, []ContainerSpec{want}); err != nil {
		t.Fatal(err)
	}
	if ops := f.takeOps(); len(ops) > 0 {
		t.Fatalf("an agent restart restarted the container again: %q", ops)
	}
	if st := rec2.get("s.web-1"); st.Restart != 1 {
		t.Fatalf("restart generation after agent restart: %+v", st)
	}
	// A container created after the request has reached it: its label says so.
	f2 := newFake()
	c, _ := newTestAgent(t, f2, nil)
	if err := c.Reconcile(ctx, []ContainerSpec{withRestart(spec(2, 1), 3)}); err != nil {
		t.Fatal(err)
	}
	f2.takeOps()
	d, _ := newTestAgent(t, f2, nil)
	if err := d.Reconcile(ctx, []ContainerSpec{withRestart(spec(2, 1), 3)}); err != nil {
		t.Fatal(err)
	}
	if ops := f2.takeOps(); len(ops) > 0 {
		t.Fatalf("a new container was restarted for a request older than itself: %q", ops)
	}
}

func TestWaitForPortReporting(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	p := &fakeProber{fail: map[string]bool{"10.0.0.1:5432": true}}
	a, rec := newTestAgent(t, f, p)
	s := spec(1, 1)
	s.WaitForPort = 5432
	if err := a.Reconcile(ctx, []ContainerSpec{s}); err != nil {
		t.Fatal(err)
	}
	if st := rec.get("s.web-1"); st.WaitPort != WaitPortWaiting || st.State != StateRunning {
		t.Fatalf("just created: %+v", st)
	}
	if !a.waitingForPorts() {
		t.Fatal("Run would not pass again soon for a port a deploy waits on")
	}
	// The port stays closed: still waiting, probed on the container's address.
	if err := a.Reconcile(ctx, []ContainerSpec{s}); err != nil {
		t.Fatal(err)
	}
	if st := rec.get("s.web-1"); st.WaitPort != WaitPortWaiting || p.calls != 1 {
		t.Fatalf("closed port: %+v after %d probes", st, p.calls)
	}
	p.mu.Lock()
	p.fail = nil
	p.mu.Unlock()
	if err := a.Reconcile(ctx, []ContainerSpec{s}); err != nil {
		t.Fatal(err)
	}
	if st := rec.get("s.web-1"); st.WaitPort != WaitPortOpen || a.waitingForPorts() {
		t.Fatalf("open port: %+v", st)
	}
	// Once open, the container is not probed again.
	calls := p.calls
	if err := a.Reconcile(ctx, []ContainerSpec{s}); err != nil {
		t.Fatal(err)
	}
	if st := rec.get("s.web-1"); st.WaitPort != WaitPortOpen || p.calls != calls {
		t.Fatalf("re-probed an open port: %+v (%d probes)", st, p.calls)
	}
	// A restart on request must answer again.
	p.mu.Lock()
	p.fail = map[string]bool{"10.0.0.1:5432": true}
	p.mu.Unlock()
	s.RestartGen = 1
	if err := a.Reconcile(ctx, []ContainerSpec{s}); err != nil {
		t.Fatal(err)
	}
	if err := a.Reconcile(ctx, []ContainerSpec{s}); err != nil {
		t.Fatal(err)
	}
	if st := rec.get("s.web-1"); st.WaitPort != WaitPortWaiting || st.Restart != 1 {
		t.Fatalf("after a restart: %+v", st)
	}
	// Without wait_for_port nothing is probed or reported.
	calls = p.calls
	if err := a.Reconcile(ctx, []ContainerSpec{spec(2, 1)}); err != nil {
		t.Fatal(err)
	}
	if st := rec.get("s.web-2"); st.WaitPort != "" || p.calls != calls {
		t.Fatalf("no wait_for_port: %+v, %d probes", st, p.calls-calls)
	}
}

func TestUnhealthyIsAnEvent(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	s := spec(1, 1)
	s.HealthCheck = &HealthCheck{Protocol: "http", Port: 8080, Interval: time.Second}
	id := f.put(s, "running")
	p := &fakeProber{fail: map[string]bool{"10.0.0.1:8080": true}}
	a, rec := newTestAgent(t, f, p)
	if err := a.Reconcile(ctx, []ContainerSpec{s}); err != nil {
		t.Fatal(err)
	}
	st := rec.get("s.web-1")
	if st.State != StateUnhealthy || st.Event != EventUnhealthy || st.ContainerID != id || st.EventMessage == "" {
		t.Fatalf("unhealthy: %+v", st)
	}
	if ops := f.takeOps(); !slices.Equal(ops, []string{"stop s.web-1", "start s.web-1"}) {
		t.Fatalf("ops %q", ops)
	}
	// The event stays with the instance in later reports, with its time.
	f.now = f.now.Add(time.Second)
	p.mu.Lock()
	p.fail = nil
	p.mu.Unlock()
	if err := a.Reconcile(ctx, []ContainerSpec{s}); err != nil {
		t.Fatal(err)
	}
	if later := rec.get("s.web-1"); later.Event != EventUnhealthy || !later.EventAt.Equal(st.EventAt) || later.State != StateRunning {
		t.Fatalf("later: %+v", later)
	}
}
