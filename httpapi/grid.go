package httpapi

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/pki"
	"github.com/kontena-ng/kontena/raftnode"
	"github.com/kontena-ng/kontena/scheduler"
)

func (n *Server) gridInfo(rn *raftnode.Node) api.GridInfo {
	g, err := rn.Store().Grid()
	if err != nil {
		return api.GridInfo{}
	}
	nodes, _ := rn.Store().Nodes()
	info := api.GridInfo{Name: g.Name, Subnet: g.Subnet, Supernet: g.Supernet, InitialSize: g.InitialSize,
		CADigest: g.CADigest, CreatedAt: g.CreatedAt, Nodes: len(nodes), Voters: n.voterInfo(rn, nodes)}
	for _, v := range info.Voters {
		if v.Leader {
			info.Leader = v.Name
		}
	}
	info.VPNPeers = len(g.VPNPeers)
	info.Locked = g.MasterKeyLocked != nil
	info.KeyGeneration = g.KeyGeneration
	info.AllowHostAccess = g.AllowHostAccess
	if o := g.OIDC; o != nil {
		info.OIDC = &api.OIDCSettings{Issuer: o.Issuer, ClientID: o.ClientID, RoleClaim: o.RoleClaim, RoleMap: o.RoleMap, Scopes: o.Scopes}
	}
	info.DefaultAffinity = g.DefaultAffinity
	if g.OfflineGrace > 0 {
		info.OfflineGrace = g.OfflineGrace.String()
	}
	info.SeenFrom = n.id.Name
	handshakes := map[string]time.Time{}
	if n.dp != nil {
		if st := n.dp.Status(); st != nil {
			for _, p := range st.Peers {
				handshakes[p.PublicKey] = p.LastHandshake
			}
		}
	}
	info.Overlay = []api.OverlayNode{}
	for _, nd := range nodes {
		info.Overlay = append(info.Overlay, api.OverlayNode{Name: nd.Name, Address: nd.Overlay.Address, Subnet: nd.Overlay.Subnet,
			Enabled: nd.Overlay.Port != 0, LastHandshake: handshakes[nd.Overlay.PublicKey]})
	}
	return info
}

// voterInfo joins the voters in the state with the Raft configuration as
// this node sees it.
func (n *Server) voterInfo(rn *raftnode.Node, nodes []*fsm.Node) []api.VoterInfo {
	inRaft := map[string]bool{}
	for _, id := range rn.Voters() {
		inRaft[id] = true
	}
	leaderID := rn.Leader()
	var out []api.VoterInfo
	for _, node := range nodes {
		if node.Role != fsm.RoleVoter && !inRaft[node.ID] {
			continue
		}
		out = append(out, api.VoterInfo{Name: node.Name, ID: node.ID, Addr: node.Addr,
			APIAddr: net.JoinHostPort(node.Addr, strconv.Itoa(node.APIPort)), Status: node.Status,
			Leader: string(leaderID) == node.ID, InRaft: inRaft[node.ID]})
	}
	return out
}

func (n *Server) getGrid(w http.ResponseWriter, r *http.Request, p *principal) error {
	rn := n.voter()
	if rn == nil {
		return api.Errorf(api.CodeUnavailable, "this node is not a voter")
	}
	return writeJSON(w, rn.Store().Index(), n.gridInfo(rn))
}

// updateGrid changes the grid settings (`kontena grid update`).
func (n *Server) updateGrid(w http.ResponseWriter, r *http.Request, p *principal) error {
	var req api.GridUpdateRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	cmd := &fsm.GridUpdate{DefaultAffinity: req.DefaultAffinity}
	if req.DefaultAffinity != nil {
		for _, rule := range *req.DefaultAffinity {
			if err := scheduler.CheckAffinity(rule); err != nil {
				return api.Errorf(api.CodeInvalid, "default affinity: %v", err)
			}
		}
	}
	if req.OfflineGrace != nil {
		d, err := time.ParseDuration(*req.OfflineGrace)
		if err != nil || d < 0 {
			return api.Errorf(api.CodeInvalid, "offline grace %q: expected a duration like 30s or 5m, 0s for each strategy's own", *req.OfflineGrace)
		}
		cmd.OfflineGrace = &d
	}
	cmd.AllowHostAccess = req.AllowHostAccess
	if req.OIDC != nil {
		oc, err := n.oidcSettings(p, req.OIDC)
		if err != nil {
			return err
		}
		cmd.OIDC = oc
	}
	if cmd.DefaultAffinity == nil && cmd.OfflineGrace == nil && cmd.AllowHostAccess == nil && cmd.OIDC == nil {
		return api.Errorf(api.CodeInvalid, "nothing to change: give default_affinity, offline_grace, allow_host_access or oidc")
	}
	_, idx, err := n.apply(r.Context(), cmd, auditOf(r, p))
	if err != nil {
		return err
	}
	rn := n.voter()
	if rn == nil {
		return writeJSON(w, idx, api.GridInfo{})
	}
	return writeJSON(w, idx, n.gridInfo(rn))
}

// getHealth answers ok, warning (a voter is down but there is quorum) or
// error (no leader: the grid cannot change).
func (n *Server) getHealth(w http.ResponseWriter, r *http.Request, p *principal) error {
	rn := n.voter()
	if rn == nil {
		return api.Errorf(api.CodeUnavailable, "this node is not a voter")
	}
	nodes, err := rn.Store().Nodes()
	if err != nil {
		return err
	}
	h := api.Health{Status: api.HealthOK, Voters: n.voterInfo(rn, nodes)}
	h.Quorum = len(h.Voters)/2 + 1
	leaderID := rn.Leader()
	n.voterLag(r.Context(), h.Voters)
	for _, v := range h.Voters {
		if v.Leader {
			h.Leader = v.Name
		}
		switch {
		case v.Status != fsm.StatusOnline:
			h.Status = api.HealthWarning
			h.Messages = append(h.Messages, fmt.Sprintf("voter %s is %s", v.Name, v.Status))
		case !v.InRaft:
			h.Status = api.HealthWarning
			h.Messages = append(h.Messages, fmt.Sprintf("voter %s is not in the raft configuration yet", v.Name))
		case !v.Reachable:
			h.Status = api.HealthWarning
			h.Messages = append(h.Messages, fmt.Sprintf("voter %s does not answer this node", v.Name))
		case v.Lag > maxHealthyLag:
			h.Status = api.HealthWarning
			h.Messages = append(h.Messages, fmt.Sprintf("voter %s is %d entries behind", v.Name, v.Lag))
		case v.Locked:
			h.Status = api.HealthWarning
			h.Messages = append(h.Messages, fmt.Sprintf("voter %s is locked: it serves no secrets until `kontena grid unlock`", v.Name))
		}
	}
	if g, err := rn.Store().Grid(); err == nil && len(h.Voters) < g.InitialSize {
		h.Status = api.HealthWarning
		h.Messages = append(h.Messages, fmt.Sprintf("%d of %d voters; join or promote nodes", len(h.Voters), g.InitialSize))
	}
	if leaderID == "" {
		h.Status = api.HealthError
		h.Messages = append(h.Messages, "no leader: a majority of voters is not reachable from this node; the grid cannot accept changes")
	}
	for _, v := range h.Voters {
		// Raft keeps a lost leader for up to a heartbeat timeout; a leader
		// this node cannot reach cannot commit anything for it either.
		if v.Leader && !v.Reachable && leaderID != "" {
			h.Status = api.HealthError
			h.Messages = append(h.Messages, fmt.Sprintf("leader %s does not answer this node: changes cannot be made from here", v.Name))
		}
	}
	return writeJSON(w, rn.Store().Index(), h)
}

// maxHealthyLag is how many log entries a voter may trail the others by
// before health warns; a busy grid always has a few in flight.
const maxHealthyLag = 64

// voterLag asks every voter (in parallel, briefly) how far its state is
// applied, and fills in Lag against the most advanced commit index seen.
func (n *Server) voterLag(ctx context.Context, voters []api.VoterInfo) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	statuses := make([]*api.NodeStatus, len(voters))
	var wg sync.WaitGroup
	for i, v := range voters {
		if v.ID == n.id.ID {
			st := n.status()
			statuses[i] = &st
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st api.NodeStatus
			c := api.NewClientTLS([]string{v.APIAddr}, n.clientTLS, "")
			if _, err := c.Do(ctx, http.MethodGet, "/v1/internal/status", nil, &st); err == nil {
				statuses[i] = &st
			}
		}()
	}
	wg.Wait()
	var commit uint64
	for _, st := range statuses {
		if st != nil {
			commit = max(commit, st.CommitIndex)
		}
	}
	for i, st := range statuses {
		if st == nil {
			continue
		}
		voters[i].Reachable = true
		voters[i].Locked, voters[i].KeyGeneration = st.Locked, st.KeyGeneration
		voters[i].AppliedIndex = st.AppliedIndex
		if commit > st.AppliedIndex {
			voters[i].Lag = commit - st.AppliedIndex
		}
	}
}

func (n *Server) getJoinToken(w http.ResponseWriter, r *http.Request, p *principal) error {
	rn := n.voter()
	g, err := rn.Store().Grid()
	if err != nil {
		return err
	}
	keys, err := n.keys()
	if err != nil {
		return err
	}
	secret, err := keys.Seal.Open(g.JoinTokenSealed, "join-token")
	if err != nil {
		return err
	}
	tok := api.JoinToken{Grid: g.Name, CADigest: g.CADigest, Secret: string(secret)}
	return writeJSON(w, rn.Store().Index(), api.JoinTokenResponse{Token: tok.String()})
}

func (n *Server) rotateJoinToken(w http.ResponseWriter, r *http.Request, p *principal) error {
	keys, err := n.keys()
	if err != nil {
		return err
	}
	seal := keys.Seal
	secret := pki.RandomHex(24)
	sealed, err := seal.Seal([]byte(secret), "join-token")
	if err != nil {
		return err
	}
	res, idx, err := n.apply(r.Context(), &fsm.JoinTokenSet{Sealed: sealed}, auditOf(r, p))
	if err != nil {
		return err
	}
	g := res.(*fsm.Grid)
	tok := api.JoinToken{Grid: g.Name, CADigest: g.CADigest, Secret: secret}
	return writeJSON(w, idx, api.JoinTokenResponse{Token: tok.String()})
}

// oidcSettings checks single sign-on settings and seals the client secret.
// Only a master_admin changes them: the role map decides who gets which
// role, master_admin included.
func (n *Server) oidcSettings(p *principal, req *api.OIDCSettings) (*fsm.OIDCConfig, error) {
	if !p.has(fsm.RoleMasterAdmin) {
		return nil, api.Errorf(api.CodeForbidden, "single sign-on settings decide who gets which role: they need the master_admin role; %s acts with %v", p, p.Roles)
	}
	oc := &fsm.OIDCConfig{Issuer: req.Issuer, ClientID: req.ClientID, RoleClaim: req.RoleClaim, RoleMap: req.RoleMap, Scopes: req.Scopes}
	if err := oc.Validate(); err != nil {
		return nil, err
	}
	if req.ClientSecret != "" {
		keys, err := n.keys()
		if err != nil {
			return nil, err
		}
		if oc.ClientSecretSealed, err = keys.Seal.Seal([]byte(req.ClientSecret), oidcClientSecretContext); err != nil {
			return nil, err
		}
	}
	return oc, nil
}
