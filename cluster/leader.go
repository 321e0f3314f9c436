package cluster

import (
	"context"
	"net"
	"slices"
	"strconv"
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
		if term := currentTerm(rn.raft); term != barrierTerm {
			if err := rn.raft.Barrier(5 * time.Second).Error(); err != nil {
				n.log.Warn("leader barrier", "err", err)
				continue
			}
			barrierTerm = term
			n.log.Info("this node is the leader", "term", term)
		}
		n.reconcileMembership(ctx, rn, lastAlive)
		n.reconcileVoters(ctx, rn)
		n.evictRemoved(ctx, rn)
	}
}

func currentTerm(r *raft.Raft) uint64 {
	t, _ := strconv.ParseUint(r.Stats()["term"], 10, 64)
	return t
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

// rejoinLoop keeps trying known peers while this node sees nobody else, so
// that a node restarted before the others finds them when they return.
func (n *Node) rejoinLoop(ctx context.Context, peers []string) {
	self := net.JoinHostPort(n.cfg.AdvertiseAddr, strconv.Itoa(n.cfg.GossipPort))
	save := time.NewTicker(10 * time.Second)
	defer save.Stop()
	backoff := 500 * time.Millisecond
	for {
		live := n.gossip.members()
		if len(live) > 1 {
			backoff = 500 * time.Millisecond
		}
		if len(live) <= 1 && len(peers) > 0 {
			var targets []string
			for _, p := range peers {
				if p != self {
					targets = append(targets, p)
				}
			}
			if k, err := n.gossip.join(targets); err == nil && k > 0 {
				n.log.Info("gossip joined", "peers", k)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
			if backoff < 5*time.Second {
				backoff *= 2
			}
		case <-save.C:
			// Remember whoever is alive now, plus the old list, so a later
			// restart can find the grid even if it changed shape.
			seen := map[string]bool{}
			var all []string
			for _, m := range live {
				a := net.JoinHostPort(m.Addr, strconv.Itoa(m.Port))
				if !seen[a] {
					seen[a] = true
					all = append(all, a)
				}
			}
			for _, p := range peers {
				if !seen[p] {
					seen[p] = true
					all = append(all, p)
				}
			}
			if len(all) > maxPeers {
				all = all[:maxPeers] // live members come first
			}
			if len(all) > 0 {
				peers = all
				_ = savePeers(n.cfg.DataDir, all)
			}
		}
	}
}
