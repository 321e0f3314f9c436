package cluster

import (
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

// joinGrace keeps a just-admitted node online while it starts gossiping.
const joinGrace = 15 * time.Second

// leaderLoop is the leader's reconciler: it observes gossip membership and
// the Raft configuration, compares them with the nodes in the state, and acts
// until they agree. Every voter runs the loop; only the leader acts.
func (n *Node) leaderLoop(ctx context.Context) {
	tick := time.NewTicker(n.cfg.Timing.Reconcile)
	defer tick.Stop()
	var barrierTerm uint64
	lastAlive := map[string]time.Time{} // when this leader last saw each node in gossip
	tracker := newDeployTracker()       // progress of the deploys this leader watches
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-n.gossip.changed:
		}
		rn := n.voter()
		if rn == nil || rn.raft.State() != raft.Leader {
			barrierTerm = 0
			continue
		}
		// A new leader first applies everything committed before it acts
		// on the state, or it would act on a stale view.
		if term := rn.raft.CurrentTerm(); term != barrierTerm {
			if err := rn.raft.Barrier(5 * time.Second).Error(); err != nil {
				n.log.Warn("leader barrier", "err", err)
				continue
			}
			barrierTerm = term
			rn.barrierTerm.Store(term)
			n.log.Info("this node is the leader", "term", term)
		}
		n.reconcileMembership(ctx, rn, lastAlive)
		n.reconcileVoters(ctx, rn)
		n.evictRemoved(ctx, rn)
		n.deploy(ctx, rn, tracker)
	}
}

// reconcileMembership turns gossip liveness into node status.
func (n *Node) reconcileMembership(ctx context.Context, rn *raftNode, lastAlive map[string]time.Time) {
	nodes, err := rn.store.Nodes()
	if err != nil {
		return
	}
	live := n.gossip.members()
	now := time.Now().UTC()
	var ups []fsm.NodeStatusUpdate
	for _, node := range nodes {
		m, alive := live[node.ID]
		if alive {
			lastAlive[node.ID] = now
		}
		want := fsm.StatusOffline
		if alive || node.ID == n.id.ID {
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
	if _, _, err := n.apply(ctx, &fsm.NodeStatus{Updates: ups}, nil); err != nil {
		n.log.Warn("record node status", "err", err)
		return
	}
	for _, u := range ups {
		n.log.Info("node status", "id", u.ID, "status", u.Status)
	}
}

// reconcileVoters makes the Raft configuration match the node roles in the
// state: promoted nodes are started and added, demoted or removed ones are
// taken out. Only the state is ever written by operators; Raft follows.
func (n *Node) reconcileVoters(ctx context.Context, rn *raftNode) {
	fut := rn.raft.GetConfiguration()
	if fut.Error() != nil {
		return
	}
	inRaft := map[string]raft.Server{}
	for _, s := range fut.Configuration().Servers {
		inRaft[string(s.ID)] = s
	}
	nodes, err := rn.store.Nodes()
	if err != nil {
		return
	}
	byID := map[string]*fsm.Node{}
	live := n.gossip.members()
	for _, node := range nodes {
		byID[node.ID] = node
		m, alive := live[node.ID]
		_, present := inRaft[node.ID]
		switch {
		case node.Role == fsm.RoleVoter && !present && alive && m.Meta.Role == fsm.RoleVoter:
			addr := net.JoinHostPort(m.Addr, strconv.Itoa(m.Meta.RaftPort))
			if err := rn.raft.AddVoter(raft.ServerID(node.ID), raft.ServerAddress(addr), 0, 10*time.Second).Error(); err != nil {
				n.log.Warn("add voter", "node", node.Name, "err", err)
			} else {
				n.log.Info("voter added", "node", node.Name, "addr", addr)
			}
		case node.Role == fsm.RoleVoter && !present && alive && m.Meta.Role == fsm.RoleWorker:
			n.sendVoterKeys(ctx, node, m)
		case node.Role == fsm.RoleWorker && alive && m.Meta.Role == fsm.RoleVoter && !present && node.ID != n.id.ID:
			n.callNode(ctx, m, "/v1/internal/demote", nil)
		}
	}
	for id, s := range inRaft {
		node := byID[id]
		if node != nil && node.Role == fsm.RoleVoter {
			continue
		}
		if id == n.id.ID {
			// Demoting the leader: hand leadership over first; the next
			// leader removes this node.
			if len(inRaft) > 1 {
				n.log.Info("this leader is demoted; transferring leadership")
				_ = rn.raft.LeadershipTransfer().Error()
			}
			continue
		}
		if err := rn.raft.RemoveServer(s.ID, 0, 10*time.Second).Error(); err != nil {
			n.log.Warn("remove voter", "id", id, "err", err)
			continue
		}
		n.log.Info("voter removed from raft", "id", id)
		if node != nil {
			if m, ok := live[id]; ok {
				n.callNode(ctx, m, "/v1/internal/demote", nil)
			}
		}
	}
}

// evictRemoved tells nodes that still gossip but are no longer in the state
// (removed with `node rm`) to stop: they must not serve a stale state to
// anyone who still reaches them.
func (n *Node) evictRemoved(ctx context.Context, rn *raftNode) {
	for id, m := range n.gossip.members() {
		if id == n.id.ID {
			continue
		}
		if _, err := rn.store.Node(id); err == nil {
			continue
		}
		// Members joining right now are in gossip a moment before their
		// registration is applied here; only act on ones the log has seen go.
		if !n.wasRemoved(rn, id) {
			continue
		}
		n.log.Info("telling a removed node to stop", "id", id, "addr", m.Addr)
		n.callNode(ctx, m, "/v1/internal/removed", nil)
	}
}

// wasRemoved tells whether node id was removed from the grid.
func (n *Node) wasRemoved(rn *raftNode, id string) bool {
	g, err := rn.store.Grid()
	return err == nil && slices.Contains(g.RemovedNodes, id)
}

// sendVoterKeys gives a promoted worker what it needs to start Raft.
func (n *Node) sendVoterKeys(ctx context.Context, node *fsm.Node, m member) {
	n.mu.RLock()
	keys := &api.VoterKeys{CAKey: string(n.id.caKeyPEM), MasterKey: n.id.masterKey}
	n.mu.RUnlock()
	n.callNode(ctx, m, "/v1/internal/promote", keys)
}

// callNode makes an internal, certificate-authenticated call to another node.
func (n *Node) callNode(ctx context.Context, m member, path string, body any) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c := api.NewClientTLS([]string{m.apiAddr()}, n.clientTLS, "")
	if _, err := c.Do(ctx, "POST", path, body, nil); err != nil {
		n.log.Warn("internal call failed", "node", m.Meta.Name, "path", path, "err", err)
	}
}

// maxPeers bounds the remembered gossip addresses.
const maxPeers = 64

// reconnectInterval is how often a node retries known nodes that gossip
// does not show as live. memberlist alone gives up on dead nodes after 30 s,
// so without this two halves of a healed partition, or a node restarted
// while it was alone, could stay apart for good.
const reconnectInterval = 3 * time.Second

// reconnectLoop keeps gossip connected to every node this node knows: the
// peers it remembers on disk and, on voters, every node in the state. It
// saves the live set to disk whenever it changes, so a restart finds the
// grid again whatever order nodes come back in.
func (n *Node) reconnectLoop(ctx context.Context, peers []string) {
	self := net.JoinHostPort(n.cfg.AdvertiseAddr, strconv.Itoa(n.cfg.GossipPort))
	saved := strings.Join(peers, ",")
	inflight := map[string]bool{}
	var mu sync.Mutex
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	lastTry := map[string]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		liveAddrs := map[string]bool{}
		var current []string
		for _, m := range n.gossip.members() {
			a := net.JoinHostPort(m.Addr, strconv.Itoa(m.Port))
			liveAddrs[a] = true
			current = append(current, a)
		}
		known := append([]string{}, peers...)
		if rn := n.voter(); rn != nil {
			if nodes, err := rn.store.Nodes(); err == nil {
				for _, node := range nodes {
					known = append(known, net.JoinHostPort(node.Addr, strconv.Itoa(node.GossipPort)))
				}
			}
		}
		// Remember live members first, then what we knew before.
		slices.Sort(current)
		merged := mergeUnique(current, known)
		if len(merged) > maxPeers {
			merged = merged[:maxPeers]
		}
		if key := strings.Join(merged, ","); key != saved && len(current) > 1 {
			if err := savePeers(n.cfg.DataDir, merged); err == nil {
				saved = key
				peers = merged
			}
		}
		now := time.Now()
		for _, a := range mergeUnique(nil, known) {
			if a == self || liveAddrs[a] || now.Sub(lastTry[a]) < reconnectInterval {
				continue
			}
			mu.Lock()
			busy := inflight[a]
			inflight[a] = true
			mu.Unlock()
			if busy {
				continue
			}
			lastTry[a] = now
			go func() {
				// Join blocks up to memberlist's TCP timeout on an
				// unreachable peer; one goroutine per peer keeps the others
				// moving.
				if k, err := n.gossip.join([]string{a}); err == nil && k > 0 {
					n.log.Info("gossip reconnected", "peer", a)
				}
				mu.Lock()
				delete(inflight, a)
				mu.Unlock()
			}()
		}
	}
}

// mergeUnique appends the items of b missing from a, keeping order.
func mergeUnique(a, b []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range append(append([]string{}, a...), b...) {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
