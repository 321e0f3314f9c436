// Package agenttest is an in-memory container runtime for tests of the
// node daemon: nodes of an in-process grid run their agents against it
// instead of a Docker engine.
package agenttest

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/kontena-ng/kontena/agent"
)

// Runtime is an agent.Runtime whose containers are records: created,
// started, stopped and removed as the agent asks, running until Kill.
type Runtime struct {
	mu    sync.Mutex
	seq   int
	ctrs  map[string]*agent.Container
	watch []chan struct{}
	env   map[string][]string // the environment each container was created with, by name
	mnts  map[string][]agent.Mount
	// IP is the address every container gets ("" = none).
	IP string
}

// New returns an empty runtime.
func New() *Runtime {
	return &Runtime{ctrs: map[string]*agent.Container{}, env: map[string][]string{}, mnts: map[string][]agent.Mount{}}
}

// Mounts are the mounts container name was last created with.
func (f *Runtime) Mounts(name string) []agent.Mount {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]agent.Mount(nil), f.mnts[name]...)
}

// Env is the environment container name was last created with.
func (f *Runtime) Env(name string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.env[name]...)
}

var _ agent.Runtime = (*Runtime)(nil)

// Running returns the names of the running containers, sorted.
func (f *Runtime) Running() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.ctrs {
		if c.State == "running" {
			out = append(out, c.Name)
		}
	}
	sort.Strings(out)
	return out
}

// Kill makes a running container exit with code, as if it died.
func (f *Runtime) Kill(name string, code int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.ctrs {
		if c.Name == name && c.State == "running" {
			c.State, c.ExitCode = "exited", code
			for _, ch := range f.watch {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
			return true
		}
	}
	return false
}

func (f *Runtime) List(context.Context) ([]agent.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]agent.Container, 0, len(f.ctrs))
	for _, c := range f.ctrs {
		cp := *c
		out = append(out, cp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (f *Runtime) EnsureImage(context.Context, string) error               { return nil }
func (f *Runtime) EnsureVolume(context.Context, agent.VolumeRequest) error { return nil }

func (f *Runtime) Create(_ context.Context, r agent.CreateRequest) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.ctrs {
		if c.Name == r.Name {
			return "", fmt.Errorf("container name %s is already in use", r.Name)
		}
	}
	f.seq++
	id := fmt.Sprintf("fake%d", f.seq)
	f.ctrs[id] = &agent.Container{ID: id, Name: r.Name, Labels: r.Labels, State: "created", IP: f.IP}
	f.env[r.Name] = append([]string(nil), r.Env...)
	f.mnts[r.Name] = append([]agent.Mount(nil), r.Mounts...)
	return id, nil
}

func (f *Runtime) get(id string) (*agent.Container, error) {
	c := f.ctrs[id]
	if c == nil {
		return nil, fmt.Errorf("no such container: %s", id)
	}
	return c, nil
}

func (f *Runtime) Start(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(id)
	if err == nil {
		c.State, c.StartedAt = "running", time.Now()
	}
	return err
}

func (f *Runtime) Stop(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(id)
	if err == nil {
		c.State = "exited"
	}
	return err
}

func (f *Runtime) Remove(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.ctrs, id)
	return nil
}

func (f *Runtime) Exec(_ context.Context, id string, _ []string) (int, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(id)
	if err != nil {
		return -1, "", err
	}
	if c.State != "running" {
		return -1, "", fmt.Errorf("container %s is not running", c.Name)
	}
	return 0, "", nil
}

func (f *Runtime) RunOnce(context.Context, agent.CreateRequest) (int, string, error) {
	return 0, "", nil
}

func (f *Runtime) Watch(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	f.mu.Lock()
	f.watch = append(f.watch, ch)
	f.mu.Unlock()
	return ch
}
