package httpapi

import (
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

// createVPN admits an admin machine's WireGuard public key. The private key
// was made by the CLI and never reaches the grid.
func (n *Server) createVPN(w http.ResponseWriter, r *http.Request, p *principal) error {
	var req api.VPNCreateRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	store, _ := n.store()
	var node *fsm.Node
	if req.Node != "" {
		nd, err := store.Node(req.Node)
		if err != nil {
			return err
		}
		node = nd
	} else {
		nodes, err := store.Nodes()
		if err != nil {
			return err
		}
		// Prefer an online voter: masters are the machines operators reach.
		for _, nd := range nodes {
			if nd.Status != fsm.StatusOnline || nd.Overlay.Port == 0 {
				continue
			}
			if node == nil || (nd.Role == fsm.RoleVoter && node.Role != fsm.RoleVoter) {
				node = nd
			}
		}
		if node == nil {
			return api.Errorf(api.CodeConflict, "no online node has the overlay on; see `kontena node ls`")
		}
	}
	res, idx, err := n.apply(r.Context(), &fsm.VPNCreate{Name: req.Name, PublicKey: req.PublicKey, NodeID: node.ID}, auditOf(r, p))
	if err != nil {
		return err
	}
	g, _ := store.Grid()
	return writeJSON(w, idx, vpnInfo(g, node, *res.(*fsm.VPNPeer)))
}

func (n *Server) listVPN(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, _ := n.store()
	g, err := store.Grid()
	if err != nil {
		return err
	}
	out := []api.VPNInfo{}
	for _, v := range g.VPNPeers {
		nd, err := store.Node(v.NodeID)
		if err != nil {
			nd = &fsm.Node{ID: v.NodeID, Name: v.NodeID}
		}
		out = append(out, vpnInfo(g, nd, v))
	}
	return writeJSON(w, store.Index(), out)
}

func (n *Server) deleteVPN(w http.ResponseWriter, r *http.Request, p *principal) error {
	_, idx, err := n.apply(r.Context(), &fsm.VPNRemove{Name: r.PathValue("name")}, auditOf(r, p))
	if err != nil {
		return err
	}
	return writeJSON(w, idx, map[string]string{"removed": r.PathValue("name")})
}

func vpnInfo(g *fsm.Grid, nd *fsm.Node, v fsm.VPNPeer) api.VPNInfo {
	host := nd.PublicAddr
	if host == "" {
		host = nd.Addr
	}
	return api.VPNInfo{Name: v.Name, Address: v.Address, Node: nd.Name,
		Endpoint:  net.JoinHostPort(host, strconv.Itoa(nd.Overlay.Port)),
		PublicKey: v.PublicKey, NodeKey: nd.Overlay.PublicKey, GridSubnet: g.Subnet, DNS: nd.Overlay.Address,
		Domain: g.Name + ".kontena.local", CreatedAt: v.CreatedAt.Format(time.RFC3339)}
}
