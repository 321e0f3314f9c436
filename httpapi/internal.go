package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

// status is this node's own view of its Raft progress.
func (n *Server) status() api.NodeStatus {
	var ov *api.OverlayStatus
	if n.dp != nil {
		ov = n.dp.Status()
	}
	rn := n.voter()
	if rn == nil {
		return api.NodeStatus{Role: fsm.RoleWorker, Overlay: ov}
	}
	return api.NodeStatus{Role: fsm.RoleVoter, RaftState: rn.State().String(), AppliedIndex: rn.AppliedIndex(),
		CommitIndex: rn.CommitIndex(), Overlay: ov, Locked: n.node.Locked(), KeyGeneration: n.keyGeneration()}
}

func (n *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	_ = writeJSON(w, 0, n.status())
}

// serveJoin admits a node. It is authenticated by the join token inside the
// request, which only the leader can check (the route is served there).
func (n *Server) serveJoin(w http.ResponseWriter, r *http.Request, _ *principal) error {
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

// servePromote is called by the leader on a node it promoted: the node
// stores the voter keys and starts Raft; the leader then adds it to the
// configuration.
func (n *Server) servePromote(w http.ResponseWriter, r *http.Request) {
	var keys api.VoterKeys
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&keys); err != nil {
		writeErr(w, api.Errorf(api.CodeInvalid, "promote: %v", err))
		return
	}
	if n.voter() == nil {
		if err := n.node.Promote(keys); err != nil {
			writeErr(w, fmt.Errorf("promote: %w", err))
			return
		}
	}
	_ = writeJSON(w, 0, map[string]string{"role": fsm.RoleVoter})
}

// serveDemote is called by the leader once it removed this node from the
// Raft configuration (a removed node may never hear of its own removal).
func (n *Server) serveDemote(w http.ResponseWriter, r *http.Request) {
	if err := n.node.Demote(); err != nil {
		writeErr(w, err)
		return
	}
	_ = writeJSON(w, 0, map[string]string{"role": fsm.RoleWorker})
}

// serveRemoved is called by the leader when this node was removed from the
// grid while it was away. The node stops: its identity is no longer valid.
func (n *Server) serveRemoved(w http.ResponseWriter, r *http.Request) {
	_ = writeJSON(w, 0, map[string]string{"stopping": n.id.Name})
	n.node.Removed()
}
