package agent

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// fakeRuntime is an in-memory Runtime that records every operation as
// "op name[ detail]" so tests can assert decisions and their order.
type fakeRuntime struct {
	mu      sync.Mutex
	seq     int
	ctrs    map[string]*Container // by ID
	volumes map[string]VolumeRequest
	ops     []string
	now     time.Time
	// failExec makes Exec of a command containing the key exit with 1.
	failExec map[string]bool
	env      map[string][]string // last env by container name
	// missing images are pulled on first use; unpullable ones fail.
	missing, unpullable map[string]bool
	reqs                map[string]CreateRequest // last create request by container name
}

func newFake() *fakeRuntime {
	return &fakeRuntime{ctrs: map[string]*Container{}, volumes: map[string]VolumeRequest{},
		failExec: map[string]bool{}, env: map[string][]string{}, now: time.Unix(1000, 0),
		missing: map[string]bool{}, unpullable: map[string]bool{}, reqs: map[string]CreateRequest{}}
}

func (f *fakeRuntime) record(format string, a ...any) {
	f.ops = append(f.ops, fmt.Sprintf(format, a...))
}

func (f *fakeRuntime) takeOps() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := f.ops
	f.ops = nil
	return o
}

// put adds a container as if an earlier agent had made it.
func (f *fakeRuntime) put(s ContainerSpec, state string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	id := fmt.Sprintf("c%d", f.seq)
	f.ctrs[id] = &Container{ID: id, Name: s.Name, Labels: containerLabels(s, nil), State: state,
		StartedAt: f.now, IP: "10.0.0.1"}
	return id
}

func (f *fakeRuntime) byID(id string) *Container {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ctrs[id]
}

func (f *fakeRuntime) List(context.Context) ([]Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Container
	for _, c := range f.ctrs {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// EnsureImage pulls (records "pull REF") only the images listed in
// missing, failing for those listed in unpullable.
func (f *fakeRuntime) EnsureImage(_ context.Context, ref string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unpullable[ref] {
		return fmt.Errorf("not on this node, and pulling it failed: no such image")
	}
	if f.missing[ref] {
		f.record("pull %s", ref)
		delete(f.missing, ref)
	}
	return nil
}

func (f *fakeRuntime) EnsureVolume(_ context.Context, v VolumeRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.volumes[v.Name] = v
	return nil
}

func (f *fakeRuntime) Create(_ context.Context, r CreateRequest) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.ctrs {
		if c.Name == r.Name {
			return "", fmt.Errorf("name %s taken", r.Name)
		}
	}
	f.seq++
	id := fmt.Sprintf("c%d", f.seq)
	f.ctrs[id] = &Container{ID: id, Name: r.Name, Labels: r.Labels, State: "created", IP: "10.0.0.1"}
	f.env[r.Name] = r.Env
	f.reqs[r.Name] = r
	f.record("create %s", r.Name)
	return id, nil
}

func (f *fakeRuntime) Start(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.ctrs[id]
	c.State, c.StartedAt = "running", f.now
	f.record("start %s", c.Name)
	return nil
}

func (f *fakeRuntime) Stop(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.ctrs[id]
	c.State = "exited"
	f.record("stop %s", c.Name)
	return nil
}

func (f *fakeRuntime) Remove(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("remove %s", f.ctrs[id].Name)
	delete(f.ctrs, id)
	return nil
}

func (f *fakeRuntime) Exec(_ context.Context, id string, cmd []string) (int, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.ctrs[id]
	if c.State != "running" {
		return -1, "", fmt.Errorf("container %s is not running", c.Name)
	}
	line := strings.Join(cmd[2:], " ")
	f.record("exec %s %s", c.Name, line)
	for k := range f.failExec {
		if strings.Contains(line, k) {
			return 1, "boom", nil
		}
	}
	return 0, "", nil
}

func (f *fakeRuntime) RunOnce(_ context.Context, r CreateRequest) (int, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("runonce %s %s", r.Name, strings.Join(r.Cmd, " "))
	return 0, "", nil
}

func (f *fakeRuntime) Watch(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{})
	context.AfterFunc(ctx, func() { close(ch) })
	return ch
}

// fakeProber fails for addresses in fail.
type fakeProber struct {
	mu    sync.Mutex
	fail  map[string]bool
	calls int
}

func (p *fakeProber) Probe(_ context.Context, _ HealthCheck, addr string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.fail[addr] {
		return fmt.Errorf("connection refused")
	}
	return nil
}

func (f *fakeRuntime) setState(id, state string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ctrs[id].State = state
}

func (f *fakeRuntime) stateOf(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.ctrs[id]; c != nil {
		return c.State
	}
	return ""
}
