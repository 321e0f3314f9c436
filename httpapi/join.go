package httpapi

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/stack"
)

// joinMu serialises joins on the leader so that two nodes joining at once
// cannot both take the last voter seat.
type joinGate struct{ mu sync.Mutex }

// admit handles POST /v1/join on the leader.
func (n *Server) admitJoin(ctx context.Context, req *api.JoinRequest, sourceIP string) (*api.JoinResponse, error) {
	n.joins.mu.Lock()
	defer n.joins.mu.Unlock()
	rn := n.voter()
	if rn == nil {
		return nil, api.Errorf(api.CodeUnavailable, "this node cannot admit nodes (not a voter)")
	}
	keys, err := n.keys()
	if err != nil {
		return nil, err
	}
	ca, seal := keys.CA, keys.Seal
	g, err := rn.Store().Grid()
	if err != nil {
		return nil, api.Errorf(api.CodeUnavailable, "grid not ready: %v", err)
	}
	refuse := func(format string, args ...any) (*api.JoinResponse, error) {
		n.log.Warn("join refused", "name", req.Name, "from", sourceIP, "reason", fmt.Sprintf(format, args...))
		return nil, api.Errorf(api.CodeJoinRefused, format, args...)
	}
	if req.Protocol != api.ProtocolVersion {
		return refuse("incompatible version: the joining node runs kontena %s (protocol %d) but this grid runs %s (protocol %d); install the grid's version",
			req.Version, req.Protocol, n.version, api.ProtocolVersion)
	}
	if req.Grid != g.Name {
		return refuse("the join token is for grid %q but this master serves grid %q", req.Grid, g.Name)
	}
	secret, err := seal.Open(g.JoinTokenSealed, "join-token")
	if err != nil {
		return nil, api.Errorf(api.CodeInternal, "open join token: %v", err)
	}
	if subtle.ConstantTimeCompare(secret, []byte(req.Secret)) != 1 {
		return refuse("invalid join token: it is mistyped or was rotated; print the current one on a master with `kontena grid token`")
	}
	if !stack.IsDNSLabel(req.Name) {
		return refuse("node name %q is not valid: use lowercase letters, digits and dashes", req.Name)
	}
	if other, err := rn.Store().Node(req.NodeID); err == nil {
		return refuse("node ID %s is already in use by node %s", req.NodeID, other.Name)
	}
	if g.WasRemoved(req.NodeID) {
		// A removed node's certificate stays refused: its ID is never reused.
		return refuse("node ID %s belongs to a node removed from the grid; start the new node with an empty data dir", req.NodeID)
	}
	if other, err := rn.Store().Node(req.Name); err == nil {
		return refuse("node name %q is already in use by node %s (%s, %s); start the new node with another --name, or remove the old one with `kontena node rm %s`",
			req.Name, other.ID, other.Role, other.Status, req.Name)
	}
	nodes, err := rn.Store().Nodes()
	if err != nil {
		return nil, err
	}
	role, voters := fsm.RoleWorker, 0
	for _, o := range nodes {
		if o.Role == fsm.RoleVoter {
			voters++
		}
	}
	if voters < g.InitialSize {
		role = fsm.RoleVoter
	}
	cert, err := ca.IssueNode([]byte(req.PublicKey), req.NodeID, req.Name, []string{req.Addr, req.PublicAddr})
	if err != nil {
		return refuse("bad public key: %v", err)
	}
	node := fsm.Node{ID: req.NodeID, Name: req.Name, Role: role, Status: fsm.StatusOnline, Labels: req.Labels,
		Addr: req.Addr, PublicAddr: req.PublicAddr, APIPort: req.APIPort, RaftPort: req.RaftPort, GossipPort: req.GossipPort,
		Version: req.Version}
	res, _, err := n.apply(ctx, &fsm.NodeRegister{Node: node}, &fsm.AuditInfo{User: "join:" + req.Name, SourceIP: sourceIP})
	if err != nil {
		if errors.Is(err, fsm.ErrConflict) {
			return refuse("%v", err)
		}
		return nil, err
	}
	out := &api.JoinResponse{Node: *res.(*fsm.Node), Grid: n.gridInfo(rn), CACert: string(keys.CAPEM), NodeCert: string(cert),
		GossipKey: keys.GossipKey}
	for _, m := range n.gossip.Members() {
		out.Peers = append(out.Peers, net.JoinHostPort(m.Addr, strconv.Itoa(m.Port)))
	}
	if role == fsm.RoleVoter {
		vk := keys.Voter
		vk.Voters = rn.Voters()
		out.VoterKeys = &vk
	}
	n.log.Info("node admitted", "name", req.Name, "role", role, "from", sourceIP)
	return out, nil
}
