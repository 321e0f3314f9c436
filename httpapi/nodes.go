package httpapi

import (
	"net/http"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

func (n *Server) store() (*fsm.Store, error) {
	rn := n.voter()
	if rn == nil {
		return nil, api.Errorf(api.CodeUnavailable, "this node is not a voter")
	}
	return rn.Store(), nil
}

// pathNode is the local state and the node named by the {name} path value.
func (n *Server) pathNode(r *http.Request) (*fsm.Store, *fsm.Node, error) {
	store, err := n.store()
	if err != nil {
		return nil, nil, err
	}
	node, err := store.Node(r.PathValue("name"))
	return store, node, err
}

func (n *Server) listNodes(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, err := n.store()
	if err != nil {
		return err
	}
	if err := blockingWait(r, store); err != nil {
		return err
	}
	idx := store.Index()
	nodes, err := store.Nodes()
	if err != nil {
		return err
	}
	out := make([]*fsm.Node, 0, len(nodes))
	for _, node := range nodes {
		out = append(out, seenNow(node))
	}
	return writeJSON(w, idx, out)
}

func (n *Server) getNode(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, node, err := n.pathNode(r)
	if err != nil {
		return err
	}
	return writeJSON(w, store.Index(), seenNow(node))
}

// seenNow reports an online node as seen now: the state records last_seen
// only when status changes, to keep gossip heartbeats out of the Raft log.
func seenNow(node *fsm.Node) *fsm.Node {
	if node.Status != fsm.StatusOnline {
		return node
	}
	cp := *node
	cp.LastSeen = time.Now().UTC()
	return &cp
}

func (n *Server) patchNode(w http.ResponseWriter, r *http.Request, p *principal) error {
	var req api.NodeUpdateRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	_, node, err := n.pathNode(r)
	if err != nil {
		return err
	}
	for _, l := range append(append([]string{}, req.AddLabels...), derefLabels(req.SetLabels)...) {
		if err := fsm.ValidateLabel(l); err != nil {
			return err
		}
	}
	res, idx, err := n.apply(r.Context(), &fsm.NodeUpdate{ID: node.ID, Availability: req.Availability,
		SetLabels: req.SetLabels, AddLabels: req.AddLabels, RemoveLabels: req.RemoveLabels}, auditOf(r, p))
	if err != nil {
		return err
	}
	return writeJSON(w, idx, res)
}

func derefLabels(p *[]string) []string {
	if p == nil {
		return nil
	}
	return *p
}

func (n *Server) deleteNode(w http.ResponseWriter, r *http.Request, p *principal) error {
	_, node, err := n.pathNode(r)
	if err != nil {
		return err
	}
	if node.ID == n.id.ID {
		return api.Errorf(api.CodeConflict, "node %s is the leader answering this request; it cannot remove itself", node.Name)
	}
	_, idx, err := n.apply(r.Context(), &fsm.NodeRemove{ID: node.ID}, auditOf(r, p))
	if err != nil {
		return err
	}
	return writeJSON(w, idx, map[string]string{"removed": node.Name})
}

// roleNode records the new role; the leader's reconciler then changes Raft.
func (n *Server) roleNode(role string) func(http.ResponseWriter, *http.Request, *principal) error {
	return func(w http.ResponseWriter, r *http.Request, p *principal) error {
		store, node, err := n.pathNode(r)
		if err != nil {
			return err
		}
		if node.Role == role {
			return api.Errorf(api.CodeConflict, "node %s is already a %s", node.Name, role)
		}
		nodes, err := store.Nodes()
		if err != nil {
			return err
		}
		voters := 0
		for _, o := range nodes {
			if o.Role == fsm.RoleVoter {
				voters++
			}
		}
		switch role {
		case fsm.RoleVoter:
			if node.Status != fsm.StatusOnline {
				return api.Errorf(api.CodeConflict, "node %s is %s: only an online node can be promoted", node.Name, node.Status)
			}
		case fsm.RoleWorker:
			if voters <= 1 {
				return api.Errorf(api.CodeConflict, "node %s is the only voter; promote another node before demoting it", node.Name)
			}
		}
		res, idx, err := n.apply(r.Context(), &fsm.NodeRole{ID: node.ID, Role: role}, auditOf(r, p))
		if err != nil {
			return err
		}
		return writeJSON(w, idx, res)
	}
}
