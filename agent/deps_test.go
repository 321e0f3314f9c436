package agent

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMissingImageIsPulledOnce(t *testing.T) {
	f := newFake()
	f.missing["img"] = true
	a, rec := newTestAgent(t, f, nil)
	if err := a.Reconcile(context.Background(), []ContainerSpec{spec(1, 1), spec(2, 1)}); err != nil {
		t.Fatal(err)
	}
	ops := f.takeOps()
	if n := slices.Index(ops, "pull img"); n < 0 || slices.Index(ops, "create s.web-1") < n || slices.Index(ops, "create s.web-2") < n {
		t.Fatalf("the image must be pulled before any create: %v", ops)
	}
	if strings.Count(strings.Join(ops, "\n"), "pull img") != 1 {
		t.Fatalf("pulled more than once: %v", ops)
	}
	if st := rec.get("s.web-1").State; st != StateRunning {
		t.Fatalf("state %s", st)
	}
}

func TestUnpullableImageFailsWithTheReason(t *testing.T) {
	f := newFake()
	f.unpullable["img"] = true
	a, rec := newTestAgent(t, f, nil)
	err := a.Reconcile(context.Background(), []ContainerSpec{spec(1, 1)})
	st := rec.get("s.web-1")
	if err == nil || st.State != StateFailed || !strings.Contains(st.Error, `image "img" for s.web-1: not on this node, and pulling it failed`) {
		t.Fatalf("err %v, status %+v", err, st)
	}
	if ops := f.takeOps(); len(ops) != 0 {
		t.Fatalf("nothing may be created without the image: %v", ops)
	}
}

func TestVolumesFromAndContainerNetworkWaitForTheirTarget(t *testing.T) {
	f := newFake()
	a, _ := newTestAgent(t, f, nil)
	a.net = &fixedNet{}
	db := ContainerSpec{Name: "s.db-1", Stack: "s", Service: "db", Instance: 1, Revision: 1, Image: "img"}
	app := ContainerSpec{Name: "s.app-1", Stack: "s", Service: "app", Instance: 1, Revision: 1, Image: "img",
		VolumesFrom: []string{"s.db-1"}, Ports: []Port{{HostPort: 80, ContainerPort: 80}}}
	side := ContainerSpec{Name: "s.side-1", Stack: "s", Service: "side", Instance: 1, Revision: 1, Image: "img",
		NetworkMode: "container:s.app-1"}
	// Names sort app < db < side: only the dependencies can order them.
	if err := a.Reconcile(context.Background(), []ContainerSpec{side, app, db}); err != nil {
		t.Fatal(err)
	}
	ops := f.takeOps()
	at := func(op string) int { return slices.Index(ops, op) }
	if !(at("start s.db-1") < at("create s.app-1") && at("start s.app-1") < at("create s.side-1")) {
		t.Fatalf("order: %v", ops)
	}
	if r := f.reqs["s.side-1"]; r.Net != nil {
		t.Fatalf("a container in another's network namespace must not join the overlay: %+v", r.Net)
	}
	if r := f.reqs["s.app-1"]; r.Net == nil {
		t.Fatal("app must be on the overlay")
	}
}

func TestWaves(t *testing.T) {
	s := func(name string, uses ...string) ContainerSpec { return ContainerSpec{Name: name, VolumesFrom: uses} }
	cases := []struct {
		specs []ContainerSpec
		want  string
	}{
		{[]ContainerSpec{s("a"), s("b")}, "[[0 1]]"},
		{[]ContainerSpec{s("a", "b"), s("b")}, "[[1] [0]]"},
		{[]ContainerSpec{s("a", "b"), s("b", "c"), s("c")}, "[[2] [1] [0]]"},
		{[]ContainerSpec{s("a", "elsewhere")}, "[[0]]"},        // a target that is not in this pass
		{[]ContainerSpec{s("a", "b"), s("b", "a")}, "[[0 1]]"}, // a cycle: one wave, the engine says why
	}
	for _, c := range cases {
		if got := fmtWaves(waves(c.specs)); got != c.want {
			t.Errorf("waves(%v) = %s, want %s", c.specs, got, c.want)
		}
	}
}

func fmtWaves(w [][]int) string {
	var parts []string
	for _, l := range w {
		var ns []string
		for _, i := range l {
			ns = append(ns, string(rune('0'+i)))
		}
		parts = append(parts, "["+strings.Join(ns, " ")+"]")
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// fixedNet gives every container one address on network "ov".
type fixedNet struct{}

func (fixedNet) Attach(ContainerSpec) (Attachment, error) {
	return Attachment{Network: "ov", IP: netip.MustParseAddr("10.81.1.9")}, nil
}
func (fixedNet) Hook(ContainerSpec) Attachment { return Attachment{Network: "ov"} }
func (fixedNet) Sync([]string) error           { return nil }

// TestDockerConfig: the translation to the engine's types, for what the
// real-engine tests cannot run here (privileged containers are refused by
// this sandbox's engine).
func TestDockerConfig(t *testing.T) {
	s := ContainerSpec{Name: "s.web-1", Image: "img", Privileged: true, CapAdd: []string{"NET_ADMIN"},
		NetworkMode: "container:s.db-1", Ports: []Port{{HostPort: 80, ContainerPort: 80}},
		StopGrace: 2500 * time.Millisecond, CPUs: 1.5}
	cfg, hc, err := dockerConfig(CreateRequest{Spec: s, Name: s.Name})
	if err != nil {
		t.Fatal(err)
	}
	if !hc.Privileged || hc.CapAdd[0] != "NET_ADMIN" || string(hc.NetworkMode) != "container:s.db-1" || hc.NanoCPUs != 1.5e9 {
		t.Fatalf("host config %+v", hc)
	}
	if len(hc.PortBindings) != 0 || len(cfg.ExposedPorts) != 0 {
		t.Fatalf("ports published into another container's network namespace: %v", hc.PortBindings)
	}
	if *cfg.StopTimeout != 3 { // rounded up: never less grace than asked
		t.Fatalf("stop timeout %d", *cfg.StopTimeout)
	}
	if hc.RestartPolicy.Name != "no" {
		t.Fatalf("restart policy %q: the agent owns restarts", hc.RestartPolicy.Name)
	}
	if nc := networkConfig(CreateRequest{Spec: s, Net: &Attachment{Network: "kontena"}}, hc); nc != nil {
		t.Fatalf("container: mode joined the overlay: %+v", nc)
	}
}
