package cluster

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

// status is this node's own view of its Raft progress.
func (n *Node) status() api.NodeStatus {
	var ov *api.OverlayStatus
	if n.dp != nil {
		ov = n.dp.Status()
	}
	rn := n.voter()
	if rn == nil {
		return api.NodeStatus{Role: fsm.RoleWorker, Overlay: ov}
	}
	return api.NodeStatus{Role: fsm.RoleVoter, RaftState: rn.State().String(), AppliedIndex: rn.AppliedIndex(),
		CommitIndex: rn.CommitIndex(), Overlay: ov}
}

func (n *Node) serveStatus(w http.ResponseWriter, r *http.Request) {
	_ = writeJSON(w, 0, n.status())
}

// serveJoin admits a node. It is authenticated by the join token inside the
// request, which only the leader can check (the route is served there).
func (n *Node) serveJoin(w http.ResponseWriter, r *http.Request, _ *principal) error {
	var req api.JoinRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		return api.Errorf(api.CodeInvalid, "join request: %v", err)
	}
	resp, err := n.admitJoin(r.Context(), &req, sourceIP(r))
	if err != nil {
		return err
	}
	return writeJSON(w, 0, resp)
}

// servePromote is called by the leader on a node it promoted: store the
// voter keys and start Raft; the leader then adds it to the configuration.
func (n *Node) servePromote(w http.ResponseWriter, r *http.Request) {
	var keys api.VoterKeys
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&keys); err != nil {
		writeErr(w, api.Errorf(api.CodeInvalid, "promote: %v", err))
		return
	}
	if n.voter() != nil {
		_ = writeJSON(w, 0, map[string]string{"role": fsm.RoleVoter})
		return
	}
	if err := saveRaftTrust(n.cfg.DataDir, keys.Voters); err != nil {
		writeErr(w, fmt.Errorf("promote: %w", err))
		return
	}
	n.mu.Lock()
	n.id.Role = fsm.RoleVoter
	n.id.caKeyPEM, n.id.masterKey = []byte(keys.CAKey), keys.MasterKey
	err := n.id.save(n.cfg.DataDir)
	n.mu.Unlock()
	if err == nil {
		err = n.becomeVoter(false)
	}
	if err != nil {
		writeErr(w, fmt.Errorf("promote: %w", err))
		return
	}
	n.gossip.SetRole(fsm.RoleVoter)
	n.log.Info("promoted to voter")
	_ = writeJSON(w, 0, map[string]string{"role": fsm.RoleVoter})
}

// serveDemote is called by the leader once it removed this node from the
// Raft configuration (a removed node may never hear of its own removal).
func (n *Node) serveDemote(w http.ResponseWriter, r *http.Request) {
	if err := n.becomeWorker(); err != nil {
		writeErr(w, err)
		return
	}
	n.log.Info("demoted to worker")
	_ = writeJSON(w, 0, map[string]string{"role": fsm.RoleWorker})
}

// serveRemoved is called by the leader when this node was removed from the
// grid while it was away. The node stops: its identity is no longer valid.
func (n *Node) serveRemoved(w http.ResponseWriter, r *http.Request) {
	_ = writeJSON(w, 0, map[string]string{"stopping": n.id.Name})
	n.removedOnce.Do(func() { close(n.removed) })
}
