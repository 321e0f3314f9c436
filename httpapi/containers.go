package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/kontena-ng/kontena/agent/engine"
	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

// located is an instance container as the grid state knows it.
type located struct {
	name string
	svc  *fsm.Service
	inst *fsm.Instance
	node *fsm.Node // nil when the node left the grid
}

func (l located) addr() string {
	return net.JoinHostPort(l.node.Addr, strconv.Itoa(l.node.APIPort))
}

func (l located) nodeName() string {
	if l.node == nil {
		return ""
	}
	return l.node.Name
}

// reachable tells why the node of a container cannot be asked, if it
// cannot.
func (l located) reachable() error {
	switch {
	case l.inst.NodeID == "":
		return api.Errorf(api.CodeConflict, "container %s is not placed on any node yet (see `kontena service ls`)", l.name)
	case l.node == nil:
		return api.Errorf(api.CodeUnavailable, "container %s was placed on a node that left the grid; wait for it to move", l.name)
	case l.node.Status != fsm.StatusOnline:
		seen := "never"
		if !l.node.LastSeen.IsZero() {
			seen = time.Since(l.node.LastSeen).Round(time.Second).String() + " ago"
		}
		return api.Errorf(api.CodeUnavailable, "container %s runs on node %s, which is %s (last seen %s); retry when the node is back, or once the instance has moved",
			l.name, l.node.Name, l.node.Status, seen)
	}
	return nil
}

// containerFilter is ContainerFilter read from a request's query.
type containerFilter struct {
	stack, service, node string
	names                []string
}

func parseContainerFilter(r *http.Request) containerFilter {
	q := r.URL.Query()
	return containerFilter{stack: q.Get("stack"), service: q.Get("service"), node: q.Get("node"), names: q["name"]}
}

// findContainers lists the instance containers f selects, sorted by stack,
// service and number. Names that match nothing are an error.
func findContainers(store *fsm.Store, f containerFilter) ([]located, error) {
	svcs, err := store.Services(f.stack)
	if err != nil {
		return nil, err
	}
	if f.service != "" {
		if !strings.Contains(f.service, "/") {
			return nil, api.Errorf(api.CodeInvalid, "service %q: expected STACK/SERVICE", f.service)
		}
		if _, err := store.Service(f.service); err != nil {
			return nil, api.Errorf(api.CodeNotFound, "no service %s; see `kontena service ls`", f.service)
		}
	}
	nodes := map[string]*fsm.Node{}
	if all, err := store.Nodes(); err == nil {
		for _, nd := range all {
			nodes[nd.ID] = nd
		}
	}
	if f.node != "" {
		if _, err := store.Node(f.node); err != nil {
			return nil, api.Errorf(api.CodeNotFound, "no node %s; see `kontena node ls`", f.node)
		}
	}
	var out []located
	for _, svc := range svcs {
		if f.service != "" && svc.ID != f.service {
			continue
		}
		insts, err := store.Instances(svc.ID)
		if err != nil {
			return nil, err
		}
		for _, in := range insts {
			l := located{name: fsm.ContainerName(svc.Stack, svc.Name, in.Number), svc: svc, inst: in, node: nodes[in.NodeID]}
			if f.node != "" && (l.node == nil || (l.node.Name != f.node && l.node.ID != f.node)) {
				continue
			}
			if len(f.names) > 0 && !slices.Contains(f.names, l.name) {
				continue
			}
			out = append(out, l)
		}
	}
	for _, name := range f.names {
		if !slices.ContainsFunc(out, func(l located) bool { return l.name == name }) {
			return nil, noContainer(name)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.svc.ID != b.svc.ID {
			return a.svc.ID < b.svc.ID
		}
		return a.inst.Number < b.inst.Number
	})
	return out, nil
}

func noContainer(name string) error {
	return api.Errorf(api.CodeNotFound, "no container %s; see `kontena container ls`", name)
}

// locateLive is locate for a request that must reach the container's node:
// it also fails when that node cannot be asked.
func locateLive(store *fsm.Store, name string) (located, error) {
	l, err := locate(store, name)
	if err != nil {
		return located{}, err
	}
	return l, l.reachable()
}

// locate finds one container by name ("<stack>.<service>-<n>").
func locate(store *fsm.Store, name string) (located, error) {
	all, err := findContainers(store, containerFilter{})
	if err != nil {
		return located{}, err
	}
	for _, l := range all {
		if l.name == name {
			return l, nil
		}
	}
	return located{}, noContainer(name)
}

// listContainers answers `container ls` from the state: no node is asked.
func (n *Server) listContainers(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, err := n.store()
	if err != nil {
		return err
	}
	if err := blockingWait(r, store); err != nil {
		return err
	}
	found, err := findContainers(store, parseContainerFilter(r))
	if err != nil {
		return err
	}
	out := make([]api.ContainerInfo, 0, len(found))
	for _, l := range found {
		a := l.inst.Actual
		info := api.ContainerInfo{Name: l.name, Stack: l.svc.Stack, Service: l.svc.ID, Instance: l.inst.Number,
			Node: l.nodeName(), State: string(a.State), Health: string(a.Health), Revision: a.Revision, Desired: l.inst.Revision,
			ContainerID: a.ContainerID, IP: a.IP, Image: l.svc.Spec.Image, Error: a.Error, ReportedAt: a.At}
		if l.node != nil {
			info.NodeStatus = l.node.Status
		}
		out = append(out, info)
	}
	return writeJSON(w, store.Index(), out)
}

// inspectContainer asks the node that runs a container for its details.
func (n *Server) inspectContainer(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, err := n.store()
	if err != nil {
		return err
	}
	l, err := locateLive(store, r.PathValue("name"))
	if err != nil {
		return err
	}
	var d *api.ContainerDetails
	if l.node.ID == n.id.ID {
		d, err = n.inspectLocal(r.Context(), l.name)
	} else {
		d = &api.ContainerDetails{}
		err = n.peerGet(r.Context(), l, "/inspect", d)
	}
	if err != nil {
		return err
	}
	d.Node = l.node.Name
	if d.Health == "" {
		d.Health = string(l.inst.Actual.Health)
	}
	return writeJSON(w, 0, d)
}

// containerLogs streams one container's log from its node.
func (n *Server) containerLogs(w http.ResponseWriter, r *http.Request, p *principal) error {
	q, err := parseLogQuery(r)
	if err != nil {
		return err
	}
	store, err := n.store()
	if err != nil {
		return err
	}
	l, err := locateLive(store, r.PathValue("name"))
	if err != nil {
		return err
	}
	if l.node.ID == n.id.ID {
		n.serveContainerLogs(w, r)
		return nil
	}
	ctx := r.Context()
	if !q.follow {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Minute)
		defer cancel()
	}
	resp, err := n.peerOpen(ctx, l, "/logs?"+q.values().Encode(), "the logs of "+l.name)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	flushCopy(w, resp.Body)
	return nil
}

// containerStats samples the selected containers on their nodes, in
// parallel. A node that cannot be asked gives an error row, not an error.
func (n *Server) containerStats(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, err := n.store()
	if err != nil {
		return err
	}
	found, err := findContainers(store, parseContainerFilter(r))
	if err != nil {
		return err
	}
	out := make([]api.ContainerStats, len(found))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i, l := range found {
		out[i] = api.ContainerStats{Name: l.name, Node: l.nodeName()}
		if err := l.reachable(); err != nil {
			out[i].Error = err.Error()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
			defer cancel()
			var st *api.ContainerStats
			var err error
			if l.node.ID == n.id.ID {
				st, err = n.statsLocal(ctx, l.name)
			} else {
				st = &api.ContainerStats{}
				err = n.peerGet(ctx, l, "/stats", st)
			}
			if err != nil {
				out[i].Error = err.Error()
				return
			}
			st.Name, st.Node = l.name, l.node.Name
			out[i] = *st
		}()
	}
	wg.Wait()
	return writeJSON(w, 0, out)
}

// peerGet GETs /v1/internal/containers/<name><suffix> on the container's
// node and decodes the JSON answer.
func (n *Server) peerGet(ctx context.Context, l located, suffix string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	resp, err := n.peerOpen(ctx, l, suffix, l.name)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(out); err != nil {
		return fmt.Errorf("node %s: decode answer for %s: %w", l.node.Name, l.name, err)
	}
	return nil
}

// peerOpen asks the node running container l for suffix of its internal
// container endpoint; a non-200 answer becomes an API error with its code.
// The caller closes the body.
func (n *Server) peerOpen(ctx context.Context, l located, suffix, what string) (*http.Response, error) {
	u := api.BaseURL(l.addr()) + "/v1/internal/containers/" + url.PathEscape(l.name) + suffix
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := n.peerHTTP.Do(req)
	if err != nil {
		return nil, api.Errorf(api.CodeUnavailable, "node %s (%s) did not answer for %s: %v", l.node.Name, l.addr(), what, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, peerError(resp, l)
	}
	return resp, nil
}

// peerError turns a node's error answer into an API error with its code.
func peerError(resp *http.Response, l located) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb api.ErrorBody
	if json.Unmarshal(data, &eb) == nil && eb.Error != nil {
		return api.Errorf(eb.Error.Code, "node %s: %s", l.node.Name, eb.Error.Message)
	}
	return api.Errorf(api.CodeInternal, "node %s: %s: %s", l.node.Name, resp.Status, strings.TrimSpace(string(data)))
}

// errNoEngine answers a request for this node's engine on a node that
// has none.
func errNoEngine() error {
	return api.Errorf(api.CodeUnavailable, "no Docker engine on this node")
}

// managedContainer inspects a container of this node's agent. Node
// certificates do not open the whole engine: anything else is "not found".
func (n *Server) managedContainer(ctx context.Context, name string) (container.InspectResponse, error) {
	if n.eng == nil {
		return container.InspectResponse{}, errNoEngine()
	}
	ins, err := n.eng.InspectManaged(ctx, name, n.id.ID)
	if errors.Is(err, engine.ErrNotManaged) {
		return ins, api.Errorf(api.CodeNotFound, "no kontena container %s on node %s (it may have just moved or been replaced)", name, n.id.Name)
	}
	if err != nil {
		return ins, api.Errorf(api.CodeUnavailable, "inspect %s on this node's engine: %v", name, err)
	}
	return ins, nil
}

// serveContainerInspect is the internal endpoint behind `container inspect`.
func (n *Server) serveContainerInspect(w http.ResponseWriter, r *http.Request) {
	d, err := n.inspectLocal(r.Context(), r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	_ = writeJSON(w, 0, d)
}

func (n *Server) inspectLocal(ctx context.Context, name string) (*api.ContainerDetails, error) {
	ins, err := n.managedContainer(ctx, name)
	if err != nil {
		return nil, err
	}
	d := trimInspect(ins)
	d.Node = n.id.Name
	return d, nil
}

// trimInspect keeps what an operator needs from docker inspect, and only
// the names of environment variables.
func trimInspect(ins container.InspectResponse) *api.ContainerDetails {
	d := &api.ContainerDetails{Name: strings.TrimPrefix(ins.Name, "/"), ID: ins.ID, ImageID: ins.Image, CreatedAt: ins.Created,
		RestartCount: ins.RestartCount, EnvNames: []string{}, Mounts: []api.ContainerMount{}, Networks: []api.ContainerNetwork{},
		Ports: []api.ContainerPort{}}
	if c := ins.Config; c != nil {
		d.Image, d.Cmd, d.Entrypoint, d.Labels = c.Image, c.Cmd, c.Entrypoint, c.Labels
		for _, e := range c.Env {
			k, _, _ := strings.Cut(e, "=")
			d.EnvNames = append(d.EnvNames, k)
		}
		sort.Strings(d.EnvNames)
	}
	if s := ins.State; s != nil {
		d.State, d.StartedAt, d.FinishedAt, d.ExitCode, d.OOMKilled = string(s.Status), s.StartedAt, s.FinishedAt, s.ExitCode, s.OOMKilled
		if s.Health != nil {
			d.Health = string(s.Health.Status)
		}
	}
	for _, m := range ins.Mounts {
		d.Mounts = append(d.Mounts, api.ContainerMount{Type: string(m.Type), Name: m.Name, Source: m.Source, Destination: m.Destination, RW: m.RW})
	}
	if ns := ins.NetworkSettings; ns != nil {
		for name, ep := range ns.Networks {
			if ep == nil {
				continue
			}
			d.Networks = append(d.Networks, api.ContainerNetwork{Name: name, IP: ep.IPAddress, Gateway: ep.Gateway, MAC: ep.MacAddress})
		}
		sort.Slice(d.Networks, func(i, j int) bool { return d.Networks[i].Name < d.Networks[j].Name })
		for port, binds := range ns.Ports {
			if len(binds) == 0 {
				d.Ports = append(d.Ports, api.ContainerPort{ContainerPort: string(port)})
			}
			for _, b := range binds {
				d.Ports = append(d.Ports, api.ContainerPort{ContainerPort: string(port), HostIP: b.HostIP, HostPort: b.HostPort})
			}
		}
		sort.Slice(d.Ports, func(i, j int) bool {
			if d.Ports[i].ContainerPort != d.Ports[j].ContainerPort {
				return d.Ports[i].ContainerPort < d.Ports[j].ContainerPort
			}
			return d.Ports[i].HostIP < d.Ports[j].HostIP
		})
	}
	return d
}

// serveContainerStats is the internal endpoint behind the stats commands.
func (n *Server) serveContainerStats(w http.ResponseWriter, r *http.Request) {
	st, err := n.statsLocal(r.Context(), r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	_ = writeJSON(w, 0, st)
}

func (n *Server) statsLocal(ctx context.Context, name string) (*api.ContainerStats, error) {
	ins, err := n.managedContainer(ctx, name)
	if err != nil {
		return nil, err
	}
	if ins.State == nil || !ins.State.Running {
		state := "unknown"
		if ins.State != nil {
			state = string(ins.State.Status)
		}
		return nil, api.Errorf(api.CodeConflict, "container %s is not running (%s)", name, state)
	}
	prev, cur, err := n.eng.SampleStats(ctx, ins.ID)
	if engine.IsUnavailable(err) {
		return nil, api.Errorf(api.CodeUnavailable, "%v", err)
	}
	if err != nil {
		return nil, err
	}
	st := statsFrom(prev, cur)
	st.Name, st.Node = name, n.id.Name
	return st, nil
}

// statsFrom computes a stats row from a previous CPU reading and a current
// sample, the way `docker stats` does.
func statsFrom(prev container.CPUStats, cur *container.StatsResponse) *api.ContainerStats {
	st := &api.ContainerStats{CPUPercent: cpuPercent(prev, cur.CPUStats), MemoryUsage: memoryUsage(cur.MemoryStats),
		MemoryLimit: cur.MemoryStats.Limit, PIDs: cur.PidsStats.Current, At: cur.Read.UTC()}
	if st.MemoryLimit > 0 {
		st.MemoryPercent = float64(st.MemoryUsage) / float64(st.MemoryLimit) * 100
	}
	for _, nw := range cur.Networks {
		st.NetRx += nw.RxBytes
		st.NetTx += nw.TxBytes
	}
	return st
}

// cpuPercent is the container's share of the host's CPU time between two
// readings, scaled to the number of CPUs: 100 % is one CPU fully busy, as
// in `docker stats`.
func cpuPercent(prev, cur container.CPUStats) float64 {
	if cur.CPUUsage.TotalUsage < prev.CPUUsage.TotalUsage || cur.SystemUsage <= prev.SystemUsage {
		return 0
	}
	cpuDelta := float64(cur.CPUUsage.TotalUsage - prev.CPUUsage.TotalUsage)
	sysDelta := float64(cur.SystemUsage - prev.SystemUsage)
	cpus := float64(cur.OnlineCPUs)
	if cpus == 0 {
		cpus = float64(len(cur.CPUUsage.PercpuUsage))
	}
	if cpus == 0 {
		cpus = 1
	}
	return cpuDelta / sysDelta * cpus * 100
}

// memoryUsage is the usage without the page cache the kernel can drop, as
// `docker stats` shows it (cgroup v1: total_inactive_file, v2:
// inactive_file).
func memoryUsage(m container.MemoryStats) uint64 {
	if v, ok := m.Stats["total_inactive_file"]; ok && v < m.Usage {
		return m.Usage - v
	}
	if v, ok := m.Stats["inactive_file"]; ok && v < m.Usage {
		return m.Usage - v
	}
	return m.Usage
}
