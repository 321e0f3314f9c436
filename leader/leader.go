// Package leader is what the grid's leader does, and only while it leads:
// it turns gossip liveness into node status, makes the Raft configuration
// follow the node roles of the state (promote, demote, remove), tells
// removed nodes to stop, and commits the orchestrator's plans (placements,
// deploy verdicts, interval redeploys). Every voter runs it; a pass acts
// only on a leader, after a Barrier for each new term (a new leader's
// state may lag its log until then).
package leader

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/membership"
	"github.com/kontena-ng/kontena/orchestrator"
	"github.com/kontena-ng/kontena/stack"
)

// Raft is what the leader needs of its voter (*raftnode.Node).
type Raft interface {
	Store() *fsm.Store
	IsLeader() bool
	Term() uint64
	Barrier(timeout time.Duration) error
	Apply(ctx context.Context, cmd fsm.Command, audit *fsm.AuditInfo) (any, uint64, error)
	Servers() ([]raft.Server, error)
	Voters() []string
	AddVoter(id, addr string) error
	RemoveServer(id string) error
	TransferLeadership() error
}

// Members is gossip's view of the live nodes (*membership.Gossip).
type Members interface {
	Members() map[string]membership.Member
	Changed() <-chan struct{}
}

// Caller makes node-to-node control calls, to node id only (its
// certificate is checked), with this node's certificate.
type Caller interface {
	CallNode(ctx context.Context, id, name, addr, path string, body any)
}

// Config is the leader's narrow view of its node.
type Config struct {
	Self string // this node's ID
	// Raft is this node's voter, or false while it is a worker.
	Raft      func() (Raft, bool)
	Gossip    Members // nil: no membership passes (tests)
	Calls     Caller
	VoterKeys func() api.VoterKeys // the CA and master keys a promoted node gets
	Reconcile time.Duration        // how often a pass runs (also on every gossip change)
	Rand      *rand.Rand           // the scheduler's randomness (random strategy)
	Log       *slog.Logger
	// Hook, when set (tests), runs first for every service a pass plans.
	Hook func(pass string, svc *fsm.Service)
	// Clock is the time of a pass (nil: time.Now): the leader reads no
	// clock of its own, so tests can move it.
	Clock func() time.Time
}

// Leader runs the passes. What it remembers between passes is only what
// the state cannot hold: the term of its last Barrier, when it last saw
// each node, and the progress of the deploys it watches.
type Leader struct {
	cfg         Config
	barrierTerm uint64
	lastAlive   map[string]time.Time
	tracker     *orchestrator.Tracker
}

func (l *Leader) now() time.Time {
	if l.cfg.Clock != nil {
		return l.cfg.Clock().UTC()
	}
	return time.Now().UTC()
}

// New returns a leader for cfg; Run runs it.
func New(cfg Config) *Leader {
	t := orchestrator.NewTracker()
	t.Hook = cfg.Hook
	return &Leader{cfg: cfg, lastAlive: map[string]time.Time{}, tracker: t}
}

// joinGrace keeps a just-admitted node online while it starts gossiping.
const joinGrace = 15 * time.Second

// Run is the leader's reconciler: it observes gossip membership and the
// Raft configuration, compares them with the nodes in the state, and acts
// until they agree, every Reconcile and on every gossip change, until ctx
// ends. Every voter runs it; only the leader acts.
func (l *Leader) Run(ctx context.Context) {
	tick := time.NewTicker(l.cfg.Reconcile)
	defer tick.Stop()
	var changed <-chan struct{}
	if l.cfg.Gossip != nil {
		changed = l.cfg.Gossip.Changed()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-changed:
		}
		l.Pass(ctx)
	}
}

// Pass runs one pass if this node leads. A new leader first applies
// everything committed before its term (a Barrier): it must not act on a
// stale view.
func (l *Leader) Pass(ctx context.Context) {
	rn, ok := l.cfg.Raft()
	if !ok || !rn.IsLeader() {
		l.barrierTerm = 0
		return
	}
	if term := rn.Term(); term != l.barrierTerm {
		if err := rn.Barrier(5 * time.Second); err != nil {
			l.cfg.Log.Warn("leader barrier", "err", err)
			return
		}
		l.barrierTerm = term
		l.cfg.Log.Info("this node is the leader", "term", term)
	}
	if l.cfg.Gossip != nil { // without gossip (a test double) it only plans
		l.reconcileMembership(ctx, rn, l.lastAlive)
		l.reconcileVoters(ctx, rn)
		l.evictRemoved(ctx, rn)
	}
	l.deploy(ctx, rn, l.tracker)
}

// reconcileMembership turns gossip liveness into node status.
func (l *Leader) reconcileMembership(ctx context.Context, rn Raft, lastAlive map[string]time.Time) {
	nodes, err := rn.Store().Nodes()
	if err != nil {
		return
	}
	live := l.cfg.Gossip.Members()
	now := l.now()
	var ups []fsm.NodeStatusUpdate
	for _, node := range nodes {
		m, alive := live[node.ID]
		if alive {
			lastAlive[node.ID] = now
		}
		want := fsm.StatusOffline
		if alive || node.ID == l.cfg.Self {
			want = fsm.StatusOnline
		} else if now.Sub(node.JoinedAt) < joinGrace {
			continue
		}
		u := fsm.NodeStatusUpdate{ID: node.ID, Status: want, At: now}
		changed := node.Status != want
		if seen, ok := lastAlive[node.ID]; ok && !alive {
			u.LastSeen = seen
		}
		if alive {
			u.LastSeen = now
			if m.Addr != node.Addr || m.Meta.APIPort != node.APIPort || m.Meta.RaftPort != node.RaftPort || m.Port != node.GossipPort || m.Meta.Version != node.Version {
				u.Addr, u.APIPort, u.RaftPort, u.GossipPort, u.Version = m.Addr, m.Meta.APIPort, m.Meta.RaftPort, m.Port, m.Meta.Version
				changed = true
			}
			if m.Meta.PublicAddr != node.PublicAddr {
				u.PublicAddr, u.SetPublicAddr, changed = m.Meta.PublicAddr, true, true
			}
		}
		if changed {
			ups = append(ups, u)
		}
	}
	if len(ups) == 0 {
		return
	}
	if _, _, err := rn.Apply(ctx, &fsm.NodeStatus{Updates: ups}, nil); err != nil {
		l.cfg.Log.Warn("record node status", "err", err)
		return
	}
	for _, u := range ups {
		l.cfg.Log.Info("node status", "id", u.ID, "status", u.Status)
	}
}

// reconcileVoters makes the Raft configuration match the node roles in the
// state: promoted nodes are started and added, demoted or removed ones are
// taken out. Only the state is ever written by operators; Raft follows.
func (l *Leader) reconcileVoters(ctx context.Context, rn Raft) {
	servers, err := rn.Servers()
	if err != nil {
		return
	}
	inRaft := map[string]raft.Server{}
	for _, s := range servers {
		inRaft[string(s.ID)] = s
	}
	nodes, err := rn.Store().Nodes()
	if err != nil {
		return
	}
	byID := map[string]*fsm.Node{}
	live := l.cfg.Gossip.Members()
	for _, node := range nodes {
		byID[node.ID] = node
		m, alive := live[node.ID]
		_, present := inRaft[node.ID]
		switch {
		case node.Role == fsm.RoleVoter && !present && alive && m.Meta.Role == fsm.RoleVoter:
			addr := net.JoinHostPort(m.Addr, strconv.Itoa(m.Meta.RaftPort))
			if err := rn.AddVoter(node.ID, addr); err != nil {
				l.cfg.Log.Warn("add voter", "node", node.Name, "err", err)
			} else {
				l.cfg.Log.Info("voter added", "node", node.Name, "addr", addr)
			}
		case node.Role == fsm.RoleVoter && !present && alive && m.Meta.Role == fsm.RoleWorker:
			l.sendVoterKeys(ctx, rn, node)
		case node.Role == fsm.RoleWorker && alive && m.Meta.Role == fsm.RoleVoter && !present && node.ID != l.cfg.Self:
			l.cfg.Calls.CallNode(ctx, node.ID, node.Name, m.APIAddr(), "/v1/internal/demote", nil)
		}
	}
	for id, s := range inRaft {
		node := byID[id]
		if node != nil && node.Role == fsm.RoleVoter {
			continue
		}
		if id == l.cfg.Self {
			// Demoting the leader: hand leadership over first; the next
			// leader removes this node.
			if len(inRaft) > 1 {
				l.cfg.Log.Info("this leader is demoted; transferring leadership")
				_ = rn.TransferLeadership()
			}
			continue
		}
		if err := rn.RemoveServer(string(s.ID)); err != nil {
			l.cfg.Log.Warn("remove voter", "id", id, "err", err)
			continue
		}
		l.cfg.Log.Info("voter removed from raft", "id", id)
		if node != nil {
			if m, ok := live[id]; ok {
				l.cfg.Calls.CallNode(ctx, id, m.Meta.Name, m.APIAddr(), "/v1/internal/demote", nil)
			}
		}
	}
}

// evictRemoved tells nodes that still gossip but are no longer in the state
// (removed with `node rm`) to stop: they must not serve a stale state to
// anyone who still reaches them.
func (l *Leader) evictRemoved(ctx context.Context, rn Raft) {
	for id, m := range l.cfg.Gossip.Members() {
		if id == l.cfg.Self {
			continue
		}
		if _, err := rn.Store().Node(id); err == nil {
			continue
		}
		// Members joining right now are in gossip a moment before their
		// registration is applied here; only act on ones the log has seen go.
		if !wasRemoved(rn, id) {
			continue
		}
		l.cfg.Log.Info("telling a removed node to stop", "id", id, "addr", m.Addr)
		l.cfg.Calls.CallNode(ctx, id, m.Meta.Name, m.APIAddr(), "/v1/internal/removed", nil)
	}
}

// wasRemoved tells whether node id was removed from the grid.
func wasRemoved(rn Raft, id string) bool {
	g, err := rn.Store().Grid()
	return err == nil && g.WasRemoved(id)
}

// sendVoterKeys gives a promoted worker what it needs to start Raft: only
// to the node the state says was promoted, at the address the state has
// for it, over TLS that verified that node's certificate.
func (l *Leader) sendVoterKeys(ctx context.Context, rn Raft, node *fsm.Node) {
	keys := l.cfg.VoterKeys()
	keys.Voters = rn.Voters()
	l.cfg.Calls.CallNode(ctx, node.ID, node.Name, net.JoinHostPort(node.Addr, strconv.Itoa(node.APIPort)), "/v1/internal/promote", &keys)
}

// deploy is the leader's deploy step: plan every service and commit the
// placements that changed, and each service's placement error when it
// changes.
func (l *Leader) deploy(ctx context.Context, rn Raft, tracker *orchestrator.Tracker) {
	// A panic in a pass must not take the node down (and every leader
	// after it): the pass is dropped, the next one runs.
	defer func() {
		if p := recover(); p != nil {
			l.cfg.Log.Error("deploy pass failed", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	// One view of the state for the whole pass: nodes, services,
	// instances and stacks as they were after the same command.
	view := rn.Store().Snapshot()
	nodes, err := view.Nodes()
	if err != nil {
		return
	}
	services, err := view.Services("")
	if err != nil || len(services) == 0 {
		return
	}
	instances, err := view.Instances("")
	if err != nil {
		return
	}
	now := l.now()
	v := orchestrator.View{Now: now, Nodes: nodes, Services: services, Instances: instances, Volumes: map[string][]*stack.Volume{}, Hook: l.cfg.Hook}
	if g, err := view.Grid(); err == nil {
		v.Grace, v.DefaultAffinity = g.OfflineGrace, g.DefaultAffinity
	}
	if stacks, err := view.Stacks(); err == nil {
		for _, st := range stacks {
			v.Volumes[st.Name] = st.Spec.Volumes
		}
	}
	cmds, errs := orchestrator.PlanDeploys(v, l.cfg.Rand)
	for _, cmd := range cmds {
		if _, _, err := rn.Apply(ctx, cmd, nil); err != nil {
			l.cfg.Log.Warn("commit placement", "service", cmd.ServiceID, "err", err)
			continue
		}
		l.cfg.Log.Info("instances placed", "service", cmd.ServiceID, "revision", cmd.Revision, "instances", len(cmd.Place), "removed", len(cmd.Remove))
	}
	failed := map[string]string{}
	for _, e := range errs {
		var se *orchestrator.ServiceError
		if errors.As(e, &se) {
			failed[se.ID] = se.Err.Error()
		}
	}
	for _, svc := range services {
		if msg := failed[svc.ID]; msg != svc.PlacementError {
			if _, _, err := rn.Apply(ctx, &fsm.ServicePlacementError{ID: svc.ID, Error: msg}, nil); err != nil {
				l.cfg.Log.Warn("record placement error", "service", svc.ID, "err", err)
			}
		}
	}
	l.trackDeploys(ctx, rn, tracker, now, nodes, services, instances, cmds, failed)
}

// trackDeploys commits the verdicts and interval redeploys of this pass.
func (l *Leader) trackDeploys(ctx context.Context, rn Raft, t *orchestrator.Tracker, now time.Time, nodes []*fsm.Node, services []*fsm.Service,
	instances []*fsm.Instance, cmds []*fsm.InstancesPlace, placeErr map[string]string) {
	defer func() {
		if p := recover(); p != nil {
			l.cfg.Log.Error("deploy tracking failed", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	pending := map[string]bool{}
	for _, c := range cmds {
		pending[c.ServiceID] = true
	}
	for _, cmd := range orchestrator.PlanLifecycle(now, t, nodes, services, instances, pending, placeErr) {
		if _, _, err := rn.Apply(ctx, cmd, nil); err != nil {
			l.cfg.Log.Warn("record deploy state", "cmd", cmd.MsgType(), "err", err)
			continue
		}
		switch c := cmd.(type) {
		case *fsm.ServiceDeployState:
			if c.Error != "" {
				l.cfg.Log.Warn("deploy "+c.State, "service", c.ID, "err", c.Error)
			} else {
				l.cfg.Log.Info("deploy "+c.State, "service", c.ID)
			}
		case *fsm.ServiceRedeploy:
			l.cfg.Log.Info("deploy.interval: redeploying", "services", c.IDs)
		}
	}
}
