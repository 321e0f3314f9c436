package httpapi

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/dispatcher"
	"github.com/kontena-ng/kontena/fsm"
)

// getNetMap is what a node's network loop watches (a blocking query): its
// WireGuard peers and the DNS records of the grid.
func (n *Server) getNetMap(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, node, err := n.pathNode(r)
	if err != nil {
		return err
	}
	if p.Node != node.ID && !p.admin() {
		return api.Errorf(api.CodeForbidden, "only node %s itself may read its network map", node.Name)
	}
	// Peers and records are read from one view: as they were after the
	// same command.
	return blockingAnswer(w, r, store, dispatcher.NetMapTables(), func(v *fsm.View) (any, error) {
		return dispatcher.NodeNetMap(v, node.ID)
	})
}

// setOverlay records a node's WireGuard key and port; only the node itself
// may set them.
func (n *Server) setOverlay(w http.ResponseWriter, r *http.Request, p *principal) error {
	var req api.OverlaySetRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	_, node, err := n.pathNode(r)
	if err != nil {
		return err
	}
	if p.Node != node.ID {
		return api.Errorf(api.CodeForbidden, "only node %s itself may set its overlay key", node.Name)
	}
	cmd, err := dispatcher.Overlay(node.ID, req.PublicKey, req.Port, req.Interface)
	if err != nil {
		return err
	}
	res, idx, err := n.apply(r.Context(), cmd, nil)
	if err != nil {
		return err
	}
	return writeJSON(w, idx, res)
}

// getOverlayStatus asks a node how its overlay runs: device, peers and
// their last handshakes, resolver addresses.
func (n *Server) getOverlayStatus(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, node, err := n.pathNode(r)
	if err != nil {
		return err
	}
	var st api.NodeStatus
	if node.ID == n.id.ID {
		st = n.status()
	} else {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		c := api.NewClientTLS([]string{net.JoinHostPort(node.Addr, strconv.Itoa(node.APIPort))}, n.clientTLS, "")
		if _, err := c.Do(ctx, http.MethodGet, "/v1/internal/status", nil, &st); err != nil {
			return api.Errorf(api.CodeUnavailable, "node %s does not answer (%s): %v", node.Name, node.Status, err)
		}
	}
	if st.Overlay == nil {
		st.Overlay = &api.OverlayStatus{}
	}
	return writeJSON(w, store.Index(), st.Overlay)
}

// setResources records what a node's engine has; only the node itself may.
func (n *Server) setResources(w http.ResponseWriter, r *http.Request, p *principal) error {
	var res fsm.NodeResources
	if err := decodeBody(r, &res); err != nil {
		return err
	}
	_, node, err := n.pathNode(r)
	if err != nil {
		return err
	}
	if p.Node != node.ID {
		return api.Errorf(api.CodeForbidden, "only node %s itself may report its resources", node.Name)
	}
	cmd, err := dispatcher.Resources(node.ID, res)
	if err != nil {
		return err
	}
	out, idx, err := n.apply(r.Context(), cmd, nil)
	if err != nil {
		return err
	}
	return writeJSON(w, idx, out)
}
