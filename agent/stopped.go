package agent

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"
)

// Values of InstanceStatus.WaitPort.
const (
	WaitPortWaiting = "waiting"
	WaitPortOpen    = "open"
)

// Values of InstanceStatus.Event: what the agent did to an instance on its
// own, or on the leader's request.
const (
	EventDied      = "died"      // the container exited; the agent started it again
	EventUnhealthy = "unhealthy" // its health check failed; the agent restarted it
	EventRestarted = "restarted" // restarted in place on request (`service restart`)
	EventStarted   = "started"   // started on request (`service start`)
)

// portTimeout bounds one wait_for_port probe: the pass waits on it.
const portTimeout = 2 * time.Second

// portRecheck is how soon Run passes again while an instance waits for its
// port: a deploy is waiting on it.
const portRecheck = time.Second

// lifecycle is what the agent remembers between passes about stop, restart
// and wait_for_port. It is only a cache: everything that must survive an
// agent restart is in container labels or in the grid (ContainerSpec).
type lifecycle struct {
	restarted map[string]uint64    // container ID -> restart generation reached
	portOpen  map[string]bool      // container ID -> its wait_for_port answered
	events    map[string]instEvent // instance name -> last event
	waiting   map[string]bool      // instance names waiting for their port after the last pass
}

type instEvent struct {
	kind, msg string
	at        time.Time
}

func newLifecycle() lifecycle {
	return lifecycle{restarted: map[string]uint64{}, portOpen: map[string]bool{}, events: map[string]instEvent{}, waiting: map[string]bool{}}
}

// knownRestart is the restart generation container c has reached: the one
// it was created at, the one this agent restarted it to, or the one the grid
// heard this node report for it.
func (a *Agent) knownRestart(s ContainerSpec, c Container) uint64 {
	gen, _ := strconv.ParseUint(c.Labels[LabelRestart], 10, 64)
	if s.RestartDoneID == c.ID && s.RestartDone > gen {
		gen = s.RestartDone
	}
	a.hmu.Lock()
	defer a.hmu.Unlock()
	if g := a.life.restarted[c.ID]; g > gen {
		gen = g
	}
	return gen
}

func (a *Agent) setRestarted(id string, gen uint64) {
	a.hmu.Lock()
	defer a.hmu.Unlock()
	if gen > a.life.restarted[id] {
		a.life.restarted[id] = gen
	}
	delete(a.life.portOpen, id) // a restarted container must answer again
}

func (a *Agent) forgetPort(id string) {
	a.hmu.Lock()
	defer a.hmu.Unlock()
	delete(a.life.portOpen, id)
}

// noteEvent remembers the last event of an instance; every report carries it
// until a newer one.
func (a *Agent) noteEvent(name, kind, msg string) {
	a.hmu.Lock()
	defer a.hmu.Unlock()
	a.life.events[name] = instEvent{kind: kind, msg: msg, at: a.now().UTC()}
}

// withEvent adds the instance's last event to its status.
func (a *Agent) withEvent(st InstanceStatus) InstanceStatus {
	a.hmu.Lock()
	defer a.hmu.Unlock()
	if ev, ok := a.life.events[st.Name]; ok {
		st.Event, st.EventMessage, st.EventAt = ev.kind, ev.msg, ev.at
	}
	return st
}

// forgetLifecycle drops what is known of containers and instances that are
// gone, and records which instances still wait for their port.
func (a *Agent) forgetLifecycle(statuses []InstanceStatus) {
	ids := make(map[string]bool, len(statuses))
	names := make(map[string]bool, len(statuses))
	a.hmu.Lock()
	defer a.hmu.Unlock()
	a.life.waiting = map[string]bool{}
	for _, st := range statuses {
		if st.State == StateRemoved {
			continue
		}
		ids[st.ContainerID] = true
		names[st.Name] = true
		if st.WaitPort == WaitPortWaiting {
			a.life.waiting[st.Name] = true
		}
	}
	for id := range a.life.restarted {
		if !ids[id] {
			delete(a.life.restarted, id)
		}
	}
	for id := range a.life.portOpen {
		if !ids[id] {
			delete(a.life.portOpen, id)
		}
	}
	for name := range a.life.events {
		if !names[name] {
			delete(a.life.events, name)
		}
	}
}

// waitingForPorts tells whether an instance waited for its port after the
// last pass, so Run passes again soon.
func (a *Agent) waitingForPorts() bool {
	a.hmu.Lock()
	defer a.hmu.Unlock()
	return len(a.life.waiting) > 0
}

// reconcileStopped handles an instance of a stopped service: its container,
// if there is one, is stopped and kept; none is created or replaced.
func (a *Agent) reconcileStopped(ctx context.Context, s ContainerSpec, c *Container) (InstanceStatus, error) {
	st := InstanceStatus{Name: s.Name, Stack: s.Stack, Service: s.Service, Instance: s.Instance, State: StateStopped}
	if c == nil {
		return st, nil
	}
	st.ContainerID = c.ID
	st.Revision, _ = revisionOf(*c)
	st.Restart = a.knownRestart(s, *c)
	switch c.State {
	case "running", "restarting", "paused":
		a.log.Info("stopping container: its service is stopped", "container", s.Name, "id", c.ID)
		a.dropHealth(c.ID)
		a.forgetPort(c.ID)
		if err := a.stopWithHooks(ctx, *c); err != nil {
			st.State, st.Error = StateFailed, err.Error()
			return st, err
		}
	}
	return st, nil
}

// restartDue tells whether the leader asked for a restart c has not had.
func (a *Agent) restartDue(s ContainerSpec, c Container) bool {
	return s.RestartGen > 0 && a.knownRestart(s, c) < s.RestartGen
}

// restartOnRequest restarts a running container in place (pre_stop hooks,
// stop, pre_start hooks, start, post_start hooks) for `service restart`.
func (a *Agent) restartOnRequest(ctx context.Context, s ContainerSpec, c Container, st InstanceStatus) (InstanceStatus, error) {
	a.log.Info("restarting container on request", "container", s.Name, "id", c.ID, "restart", s.RestartGen)
	if err := a.restart(ctx, s, c); err != nil {
		st.State, st.Error = StateFailed, err.Error()
		return st, err
	}
	a.setRestarted(c.ID, s.RestartGen)
	a.noteEvent(s.Name, EventRestarted, fmt.Sprintf("restarted on request (restart %d)", s.RestartGen))
	st.State, st.Restart, st.Health = StateRunning, s.RestartGen, a.initialHealth(s)
	if s.WaitForPort > 0 {
		st.WaitPort = WaitPortWaiting
	}
	return st, nil
}

// startedFresh completes the status of an instance whose container the pass
// just created or started: it has reached the requested restart, and its
// port is not known to answer yet.
func (a *Agent) startedFresh(s ContainerSpec, id string, st *InstanceStatus) {
	if id != "" {
		a.setRestarted(id, s.RestartGen)
	}
	st.Restart = s.RestartGen
	if s.WaitForPort > 0 {
		st.WaitPort = WaitPortWaiting
	}
}

// startEvent says why an exited container of a running service is started:
// on request (`service start`) or because it died.
func (a *Agent) startEvent(s ContainerSpec, c Container) {
	if a.restartDue(s, c) {
		a.noteEvent(s.Name, EventStarted, "started on request")
		return
	}
	if c.State == "created" {
		return // never ran: nothing died
	}
	a.noteEvent(s.Name, EventDied, fmt.Sprintf("exited with code %d; started again", c.ExitCode))
}

// checkPort sets st.WaitPort for a running container of a spec with
// wait_for_port: open once the port accepted a TCP connection on the
// container's address (remembered for the container), else waiting.
func (a *Agent) checkPort(ctx context.Context, s ContainerSpec, c Container, st *InstanceStatus) {
	if s.WaitForPort <= 0 {
		return
	}
	a.hmu.Lock()
	open := a.life.portOpen[c.ID]
	a.hmu.Unlock()
	if !open {
		addr, err := portAddr(s, c, s.WaitForPort)
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, portTimeout)
			err = a.prober.Probe(pctx, HealthCheck{Protocol: "tcp", Port: s.WaitForPort}, addr)
			cancel()
		}
		if err != nil {
			a.log.Debug("waiting for port", "container", s.Name, "port", s.WaitForPort, "err", err)
		} else {
			open = true
			a.hmu.Lock()
			a.life.portOpen[c.ID] = true
			a.hmu.Unlock()
		}
	}
	st.WaitPort = WaitPortWaiting
	if open {
		st.WaitPort = WaitPortOpen
	}
}

// portAddr is where a container's port answers: its address on its network
// (what the grid reaches), 127.0.0.1 with network_mode host, or the
// published host port as a last resort.
func portAddr(s ContainerSpec, c Container, port int) (string, error) {
	switch {
	case s.NetworkMode == "host":
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
	case c.IP != "":
		return net.JoinHostPort(c.IP, strconv.Itoa(port)), nil
	}
	if hp, ok := c.HostPorts[strconv.Itoa(port)+"/tcp"]; ok {
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(hp)), nil
	}
	return "", fmt.Errorf("container has no IP address and port %d is not published", port)
}
