// Package nodeagent is the node-side loop of the node protocol: it watches
// the node's assignments (a blocking query on the node's own API, which a
// worker forwards to a voter), turns them into container specs for the
// agent, reports what the agent saw back to the leader, tells the grid what
// the node's engine offers, and keeps the last assignments sealed on disk
// so a node restarted while no master answers runs what it ran.
package nodeagent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/kontena-ng/kontena/agent"
	"github.com/kontena-ng/kontena/agent/engine"
	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

// Config is the node agent's narrow view of its node.
type Config struct {
	NodeID, NodeName, Grid string
	DataDir                string // assignments.sealed and its key
	// Runtime is the container engine the agent drives.
	Runtime agent.Runtime
	// Network attaches containers to the overlay; it blocks until the
	// node's overlay is up (or known to be off).
	Network func(ctx context.Context) (agent.Network, error)
	// Resources is what the engine offers (CPUs, memory, volume drivers).
	Resources func(ctx context.Context) (engine.Resources, error)
	// Self is a client of the node's own API, with its certificate.
	Self *api.Client
	Log  *slog.Logger
	// SecretFiles keeps secrets of type file (a tmpfs); nil = none.
	SecretFiles agent.SecretFiles
	// LB is how this node runs load balancers.
	LB LBRuntime
}

// LBRuntime is how a node runs the instances of load balancer services:
// from an image of its own executable (Image, built by the node), running
// `kontena lb` against the node's API (API, as the containers reach it).
type LBRuntime struct {
	Image string
	API   string
}

type nodeAgent struct {
	cfg Config
	log *slog.Logger
}

// Run runs the node's containers until ctx ends: it watches the node's assignments
// with a blocking query on its own API (which a worker forwards to a
// voter) and hands them to the agent. When the masters cannot be reached
// the agent keeps enforcing the last assignments it got.
func Run(ctx context.Context, cfg Config) {
	n := &nodeAgent{cfg: cfg, log: cfg.Log}
	rt := cfg.Runtime
	// Containers wait for the overlay: one created before it would sit on
	// the engine's default bridge, unreachable from the grid.
	netw, err := cfg.Network(ctx)
	if err != nil {
		return
	}
	self := cfg.Self
	go n.resourceLoop(ctx, self)
	var lastReport [32]byte
	var lastSent time.Time
	reporter := agent.ReporterFunc(func(ctx context.Context, st []agent.InstanceStatus) {
		// Every pass reports; only a change (or a minute of silence) is
		// worth a Raft write.
		data, _ := json.Marshal(st)
		if sum := sha256.Sum256(data); sum != lastReport || time.Since(lastSent) > time.Minute {
			if n.report(ctx, self, st) {
				lastReport, lastSent = sum, time.Now()
			}
		}
	})
	a, err := agent.New(agent.Config{Runtime: rt, Reporter: reporter, Logger: n.log.With("component", "agent"), Network: netw,
		SecretFiles: n.cfg.SecretFiles, Node: agent.NodeInfo{NodeID: n.cfg.NodeID, NodeName: n.cfg.NodeName, GridName: n.cfg.Grid}})
	if err != nil {
		n.log.Error("start container agent", "err", err)
		return
	}
	desired := make(chan []agent.ContainerSpec, 1)
	agentDone := make(chan struct{})
	// Run returns only once the agent has: a pass in progress may still
	// attach a container (and write the address allocator's file).
	defer func() { <-agentDone }()
	go func() {
		defer close(agentDone)
		if err := a.Run(ctx, desired); err != nil && ctx.Err() == nil {
			n.log.Error("container agent stopped", "err", err)
		}
	}()
	var (
		mu       sync.Mutex
		last     [32]byte
		answered bool // the grid answered: the cache is no longer needed
	)
	send := func(specs []agent.ContainerSpec) {
		// The index moves on every grid change; only new work matters.
		data, _ := json.Marshal(specs)
		if sum := sha256.Sum256(data); sum != last {
			last = sum
			select { // keep only the newest desired state
			case <-desired:
			default:
			}
			desired <- specs
		}
	}
	cache := newAssignmentCache(n.cfg.DataDir)
	go func() {
		// A restarted node waits a moment for the grid (which may have
		// moved its work away meanwhile), then runs what it ran before.
		select {
		case <-ctx.Done():
			return
		case <-time.After(assignmentCacheWait):
		}
		as, err := cache.load()
		if err != nil {
			n.log.Warn("cannot read the cached assignments", "err", err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if as != nil && !answered {
			n.log.Warn("no master answers: running the last assignments this node knew", "instances", len(as.Items))
			send(containerSpecs(*as, n.cfg.LB))
		}
	}()
	var saved [32]byte
	api.Watch(ctx, self, "/v1/nodes/"+url.PathEscape(n.cfg.NodeName)+"/assignments", func(err error) { n.log.Debug("watch assignments", "err", err) }, func(as *api.Assignments) {
		mu.Lock()
		defer mu.Unlock()
		answered = true
		send(containerSpecs(*as, n.cfg.LB))
		data, _ := json.Marshal(as.Items)
		if sum := sha256.Sum256(data); sum != saved {
			if err := cache.save(as); err != nil {
				n.log.Warn("cache assignments", "err", err)
			} else {
				saved = sum
			}
		}
	})
}

// assignmentCacheWait is how long a starting node waits for the grid's
// assignments before it falls back to the cached ones.
const assignmentCacheWait = 10 * time.Second

// report sends the agent's view of the node's instances to the leader.
func (n *nodeAgent) report(ctx context.Context, self *api.Client, statuses []agent.InstanceStatus) bool {
	now := time.Now().UTC()
	reports := make([]fsm.InstanceReport, 0, len(statuses))
	for _, s := range statuses {
		if s.Stack == "" || s.Service == "" {
			continue
		}
		reports = append(reports, fsm.InstanceReport{
			ID:     fsm.InstanceID(fsm.ServiceID(s.Stack, s.Service), s.Instance),
			Actual: instanceActual(s, now)})
	}
	if len(reports) == 0 {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := self.Do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(n.cfg.NodeName)+"/instances", reports, nil); err != nil {
		n.log.Warn("report instances", "err", err)
		return false
	}
	return true
}

// instanceActual is the agent's status of an instance as the grid state
// holds it: the one place where the agent's states, health, events and
// wait-for-port values become fsm's (the agent does not import fsm). The
// values are the same strings on both sides (TestInstanceActualOfAgent).
func instanceActual(s agent.InstanceStatus, now time.Time) fsm.InstanceActual {
	return fsm.InstanceActual{State: fsm.InstanceState(s.State), Health: fsm.InstanceHealth(s.Health), Error: s.Error,
		ContainerID: s.ContainerID, IP: s.IP, Revision: s.Revision, At: now, Restart: s.Restart,
		WaitPort: fsm.WaitPortState(s.WaitPort), Event: fsm.InstanceEvent(s.Event), EventMessage: s.EventMessage, EventAt: s.EventAt}
}

// resourceLoop tells the grid what the node's engine has (CPUs, memory,
// volume drivers) for the scheduler's filters: at start, then whenever it
// changes (checked every 5 minutes).
func (n *nodeAgent) resourceLoop(ctx context.Context, self *api.Client) {
	var sent []byte
	for {
		if r, err := n.cfg.Resources(ctx); err == nil {
			res := fsm.NodeResources{CPUs: r.CPUs, MemoryTotal: r.MemoryTotal, VolumeDrivers: r.VolumeDrivers, Engine: r.Engine}
			data, _ := json.Marshal(res)
			if !bytes.Equal(data, sent) {
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := self.Do(rctx, http.MethodPut, "/v1/nodes/"+url.PathEscape(n.cfg.NodeName)+"/resources", res, nil)
				cancel()
				if err == nil {
					sent = data
				} else {
					n.log.Debug("report node resources", "err", err)
				}
			}
		}
		wait := 5 * time.Minute
		if sent == nil {
			wait = 2 * time.Second // not reported yet: the grid may still be starting
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
