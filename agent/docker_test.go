package agent

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

func httpSpec(stack, image string, rev uint64) ContainerSpec {
	return ContainerSpec{
		Name: stack + ".web-1", Stack: stack, Service: "web", Instance: 1, Revision: rev, ServiceID: "svc-web",
		Image:       image,
		Entrypoint:  []string{"/bin/sh", "-c"},
		Cmd:         []string{"mkdir -p /tmp/www && echo ok > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"},
		Env:         map[string]string{"FOO": "bar"},
		Labels:      map[string]string{"app": "web"},
		Ports:       []Port{{HostIP: "127.0.0.1", ContainerPort: 8080}},
		MemoryBytes: 64 << 20,
		CPUs:        0.5,
		CapAdd:      []string{"NET_ADMIN"},
		StopSignal:  "SIGKILL", // httpd as PID 1 ignores SIGTERM: don't wait out the grace
		StopGrace:   2 * time.Second,
		Volumes:     []Volume{{Kind: VolumeNamed, Name: "data", Path: "/data"}, {Kind: VolumeAnonymous, Path: "/cache"}},
		Hooks: Hooks{
			PreStart:  []Hook{{Name: "init", Cmd: "echo pre > /data/pre"}},
			PostStart: []Hook{{Name: "mark", Cmd: "echo post > /tmp/post"}},
			PreStop:   []Hook{{Name: "bye", Cmd: "true"}},
		},
		HealthCheck: &HealthCheck{Protocol: "http", Port: 8080, URI: "/", Timeout: time.Second, Interval: 50 * time.Millisecond},
	}
}

// waitHealth reconciles until the instance reports want (the server inside
// needs a moment to listen).
func waitHealth(t *testing.T, a *Agent, rec *recorder, specs []ContainerSpec, want Health) InstanceStatus {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_ = a.Reconcile(context.Background(), specs)
		st := rec.get(specs[0].Name)
		if st.Health == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("health never became %q: %+v", want, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestDockerLifecycle(t *testing.T) {
	rt, stack := engine(t)
	image := busyboxImage(t)
	ctx := context.Background()
	rec := &recorder{}
	newAgent := func() *Agent {
		a, err := New(Config{Runtime: rt, Reporter: rec, Logger: quiet(), Node: NodeInfo{NodeID: "test-" + stack, NodeName: "n1", GridName: "g"}})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := newAgent()
	specs := []ContainerSpec{httpSpec(stack, image, 1)}

	start := time.Now()
	if err := a.Reconcile(ctx, specs); err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Logf("reconcile that creates and starts one container (with pre_start and post_start hooks): %v", time.Since(start))
	st := rec.get(specs[0].Name)
	if st.State != StateRunning || st.ContainerID == "" {
		t.Fatalf("after create: %+v", st)
	}
	id := st.ContainerID

	ins := inspectContainer(t, id)
	for _, want := range []string{"FOO=bar", "KONTENA_NODE_NAME=n1", "KONTENA_SERVICE_INSTANCE_NUMBER=1", "KONTENA_STACK_NAME=" + stack, "KONTENA_SERVICE_ID=svc-web"} {
		if !slices.Contains(ins.Config.Env, want) {
			t.Errorf("env lacks %s", want)
		}
	}
	if ins.Config.Labels["app"] != "web" || ins.Config.Labels[LabelRevision] != "1" || ins.Config.Labels[LabelManaged] != "true" {
		t.Errorf("labels = %v", ins.Config.Labels)
	}
	if ins.HostConfig.Memory != 64<<20 || ins.HostConfig.NanoCpus != 5e8 {
		t.Errorf("memory %d cpus %d", ins.HostConfig.Memory, ins.HostConfig.NanoCpus)
	}
	if b := ins.HostConfig.PortBindings["8080/tcp"]; len(b) != 1 || b[0].HostIP != "127.0.0.1" {
		t.Errorf("port bindings = %v", ins.HostConfig.PortBindings)
	}
	if ins.Config.StopSignal != "SIGKILL" || !(slices.Contains(ins.HostConfig.CapAdd, "NET_ADMIN") || slices.Contains(ins.HostConfig.CapAdd, "CAP_NET_ADMIN")) {
		t.Errorf("stop signal %q cap_add %v", ins.Config.StopSignal, ins.HostConfig.CapAdd)
	}
	if got := docker(t, "exec", id, "cat", "/data/pre", "/tmp/post"); got != "pre\npost" {
		t.Errorf("hooks left %q, want pre_start's file in the volume and post_start's file", got)
	}

	waitHealth(t, a, rec, specs, HealthHealthy)

	// Agent restart: a fresh agent adopts the running container untouched.
	before := inspectContainer(t, id).State.StartedAt
	a = newAgent()
	if err := a.Reconcile(ctx, specs); err != nil {
		t.Fatalf("adopt: %v", err)
	}
	if st := rec.get(specs[0].Name); st.ContainerID != id || st.State != StateRunning {
		t.Errorf("adopt: %+v, want container %s running", st, id)
	}
	if after := inspectContainer(t, id).State.StartedAt; after != before {
		t.Errorf("adopted container was restarted: StartedAt %s -> %s", before, after)
	}

	// A killed container is started again.
	docker(t, "kill", id)
	if err := a.Reconcile(ctx, specs); err != nil {
		t.Fatalf("restart: %v", err)
	}
	ins = inspectContainer(t, rec.get(specs[0].Name).ContainerID)
	if ins.State.Status != "running" || ins.State.StartedAt == before {
		t.Errorf("after kill: %s started %s", ins.State.Status, ins.State.StartedAt)
	}

	// Revision bump replaces; the named volume survives.
	specs[0].Revision = 2
	if err := a.Reconcile(ctx, specs); err != nil {
		t.Fatalf("replace: %v", err)
	}
	st = rec.get(specs[0].Name)
	if st.ContainerID == id || st.Revision != 2 {
		t.Errorf("replace: %+v, want a new container of revision 2", st)
	}
	if got := inspectContainer(t, st.ContainerID).Config.Labels[LabelRevision]; got != "2" {
		t.Errorf("revision label %q", got)
	}

	// Nothing desired: removed.
	if err := a.Reconcile(ctx, nil); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if left := docker(t, "ps", "-aq", "--filter", "label="+LabelStack+"="+stack); left != "" {
		t.Errorf("containers left: %s", left)
	}
	if vols := docker(t, "volume", "ls", "-q", "--filter", "label="+LabelStack+"="+stack); !strings.Contains(vols, stack+".web-1.data") {
		t.Errorf("named volume should be kept, have %q", vols)
	}
}

func TestDockerTCPHealthRestartsUnhealthy(t *testing.T) {
	rt, stack := engine(t)
	image := busyboxImage(t)
	rec := &recorder{}
	a, err := New(Config{Runtime: rt, Reporter: rec, Logger: quiet(), Node: NodeInfo{NodeID: "test-" + stack}})
	if err != nil {
		t.Fatal(err)
	}
	s := ContainerSpec{Name: stack + ".tcp-1", Stack: stack, Service: "tcp", Instance: 1, Revision: 1, Image: image,
		Cmd:         []string{"sh", "-c", "while true; do nc -l -p 9000 </dev/null; done"},
		StopSignal:  "SIGKILL",
		HealthCheck: &HealthCheck{Protocol: "tcp", Port: 9000, Timeout: time.Second, Interval: 50 * time.Millisecond}}
	start := time.Now()
	if err := a.Reconcile(context.Background(), []ContainerSpec{s}); err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Logf("reconcile that creates and starts one container (no hooks): %v", time.Since(start))
	st := waitHealth(t, a, rec, []ContainerSpec{s}, HealthHealthy)
	id, started := st.ContainerID, inspectContainer(t, st.ContainerID).State.StartedAt

	// Point the check at a closed port: the next probe fails and the agent
	// restarts the container in place.
	s.HealthCheck.Port = 9001
	time.Sleep(60 * time.Millisecond)
	if err := a.Reconcile(context.Background(), []ContainerSpec{s}); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	st = rec.get(s.Name)
	if st.State != StateUnhealthy || st.Health != HealthUnhealthy || !strings.Contains(st.Error, "9001") {
		t.Fatalf("after failing probe: %+v", st)
	}
	ins := inspectContainer(t, id)
	if ins.State.Status != "running" || ins.State.StartedAt == started {
		t.Errorf("not restarted: %s started %s (was %s)", ins.State.Status, ins.State.StartedAt, started)
	}
}
