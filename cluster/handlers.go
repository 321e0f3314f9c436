package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/raftnode"
	"github.com/kontena-ng/kontena/scheduler"
)

func (n *Node) store() (*fsm.Store, error) {
	rn := n.voter()
	if rn == nil {
		return nil, api.Errorf(api.CodeUnavailable, "this node is not a voter")
	}
	return rn.Store(), nil
}

// pathNode is the local state and the node named by the {name} path value.
func (n *Node) pathNode(r *http.Request) (*fsm.Store, *fsm.Node, error) {
	store, err := n.store()
	if err != nil {
		return nil, nil, err
	}
	node, err := store.Node(r.PathValue("name"))
	return store, node, err
}

func (n *Node) getWhoAmI(w http.ResponseWriter, r *http.Request, p *principal) error {
	return writeJSON(w, 0, api.WhoAmI{User: p.User, Roles: p.Roles, Node: p.Node})
}

func (n *Node) listNodes(w http.ResponseWriter, r *http.Request, p *principal) error {
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

func (n *Node) getNode(w http.ResponseWriter, r *http.Request, p *principal) error {
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

func (n *Node) patchNode(w http.ResponseWriter, r *http.Request, p *principal) error {
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

func (n *Node) deleteNode(w http.ResponseWriter, r *http.Request, p *principal) error {
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
func (n *Node) roleNode(role string) func(http.ResponseWriter, *http.Request, *principal) error {
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

func (n *Node) gridInfo(rn *raftnode.Node) api.GridInfo {
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
func (n *Node) voterInfo(rn *raftnode.Node, nodes []*fsm.Node) []api.VoterInfo {
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

func (n *Node) getGrid(w http.ResponseWriter, r *http.Request, p *principal) error {
	rn := n.voter()
	if rn == nil {
		return api.Errorf(api.CodeUnavailable, "this node is not a voter")
	}
	return writeJSON(w, rn.Store().Index(), n.gridInfo(rn))
}

// updateGrid changes the grid settings (`kontena grid update`).
func (n *Node) updateGrid(w http.ResponseWriter, r *http.Request, p *principal) error {
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
	if cmd.DefaultAffinity == nil && cmd.OfflineGrace == nil {
		return api.Errorf(api.CodeInvalid, "nothing to change: give default_affinity or offline_grace")
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
func (n *Node) getHealth(w http.ResponseWriter, r *http.Request, p *principal) error {
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
func (n *Node) voterLag(ctx context.Context, voters []api.VoterInfo) {
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
		voters[i].AppliedIndex = st.AppliedIndex
		if commit > st.AppliedIndex {
			voters[i].Lag = commit - st.AppliedIndex
		}
	}
}

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

func (n *Node) getJoinToken(w http.ResponseWriter, r *http.Request, p *principal) error {
	rn := n.voter()
	g, err := rn.Store().Grid()
	if err != nil {
		return err
	}
	n.mu.RLock()
	seal := n.seal
	n.mu.RUnlock()
	secret, err := seal.Open(g.JoinTokenSealed, "join-token")
	if err != nil {
		return err
	}
	tok := joinToken{Grid: g.Name, CADigest: g.CADigest, Secret: string(secret)}
	return writeJSON(w, rn.Store().Index(), api.JoinTokenResponse{Token: tok.String()})
}

func (n *Node) rotateJoinToken(w http.ResponseWriter, r *http.Request, p *principal) error {
	n.mu.RLock()
	seal := n.seal
	n.mu.RUnlock()
	secret := randomSecret(24)
	sealed, err := seal.Seal([]byte(secret), "join-token")
	if err != nil {
		return err
	}
	res, idx, err := n.apply(r.Context(), &fsm.JoinTokenSet{Sealed: sealed}, auditOf(r, p))
	if err != nil {
		return err
	}
	g := res.(*fsm.Grid)
	tok := joinToken{Grid: g.Name, CADigest: g.CADigest, Secret: secret}
	return writeJSON(w, idx, api.JoinTokenResponse{Token: tok.String()})
}

// publicToken hides the hash, which is never needed outside the leader.
func publicToken(t *fsm.Token) *fsm.Token {
	cp := *t
	cp.Hash = ""
	return &cp
}

func (n *Node) listTokens(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, err := n.store()
	if err != nil {
		return err
	}
	user := p.User
	if p.admin() {
		user = ""
	}
	toks, err := store.Tokens(user)
	if err != nil {
		return err
	}
	out := make([]*fsm.Token, 0, len(toks))
	for _, t := range toks {
		out = append(out, publicToken(t))
	}
	return writeJSON(w, store.Index(), out)
}

func (n *Node) createToken(w http.ResponseWriter, r *http.Request, p *principal) error {
	if p.Node != "" {
		return api.Errorf(api.CodeForbidden, "nodes cannot create API tokens")
	}
	var req api.TokenCreateRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	now := time.Now().UTC()
	t := fsm.Token{ID: randomSecret(4), User: p.User, Description: req.Description, CreatedAt: now}
	if req.ExpiresIn != "" {
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil || d <= 0 {
			return api.Errorf(api.CodeInvalid, "expires_in %q: expected a positive duration such as 2h or 30m", req.ExpiresIn)
		}
		t.ExpiresAt = now.Add(d)
	}
	value := "ktn_" + randomSecret(24)
	t.Hash = hashToken(value)
	res, idx, err := n.apply(r.Context(), &fsm.TokenCreate{Token: t}, auditOf(r, p))
	if err != nil {
		return err
	}
	return writeJSON(w, idx, api.TokenCreateResponse{Token: *publicToken(res.(*fsm.Token)), Value: value})
}

func (n *Node) deleteToken(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, err := n.store()
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	toks, err := store.Tokens("")
	if err != nil {
		return err
	}
	for _, t := range toks {
		if t.ID == id && t.User != p.User && !p.admin() {
			return api.Errorf(api.CodeForbidden, "token %s belongs to %s", id, t.User)
		}
	}
	_, idx, err := n.apply(r.Context(), &fsm.TokenRemove{ID: id}, auditOf(r, p))
	if err != nil {
		return err
	}
	return writeJSON(w, idx, map[string]string{"revoked": id})
}

func (n *Node) listEvents(w http.ResponseWriter, r *http.Request, p *principal) error {
	return listSince(n, w, r, (*fsm.Store).Events)
}

func (n *Node) listAudit(w http.ResponseWriter, r *http.Request, p *principal) error {
	return listSince(n, w, r, (*fsm.Store).Audit)
}

// listSince answers the records a log-like table holds after ?since=N.
func listSince[T any](n *Node, w http.ResponseWriter, r *http.Request, get func(*fsm.Store, uint64) ([]T, error)) error {
	store, err := n.store()
	if err != nil {
		return err
	}
	since, _ := strconv.ParseUint(r.URL.Query().Get("since"), 10, 64)
	recs, err := get(store, since)
	if err != nil {
		return err
	}
	if recs == nil {
		recs = []T{}
	}
	return writeJSON(w, store.Index(), recs)
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
