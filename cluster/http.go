package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

// Roles a user may hold. A node authenticated by its certificate acts as
// RoleNode.
const (
	RoleMasterAdmin = "master_admin"
	RoleGridAdmin   = "grid_admin"
	RoleNode        = "node"
)

// principal is who made a request.
type principal struct {
	User  string
	Roles []string
	Node  string // node ID when authenticated by certificate
}

func (p *principal) admin() bool {
	return slices.Contains(p.Roles, RoleMasterAdmin) || slices.Contains(p.Roles, RoleGridAdmin)
}

type ctxKey struct{}

// route is one API endpoint.
type route struct {
	method, pattern string
	leader          bool // must run on the leader (writes)
	admin           bool // needs an admin role (else any authenticated caller)
	// anyState: the handler reports on the node's Raft state itself (grid
	// health), so it answers even from a voter that is not caught up.
	anyState bool
	h        func(w http.ResponseWriter, r *http.Request, p *principal) error
}

// handler builds the API. Requests pass three steps: a worker forwards to a
// voter; a voter authenticates; a follower forwards writes to the leader.
func (n *Node) handler() http.Handler {
	mux := http.NewServeMux()
	routes := []route{
		{method: "GET", pattern: "/v1/whoami", h: n.getWhoAmI},
		{method: "GET", pattern: "/v1/nodes", h: n.listNodes},
		{method: "GET", pattern: "/v1/nodes/{name}", h: n.getNode},
		{method: "PATCH", pattern: "/v1/nodes/{name}", leader: true, admin: true, h: n.patchNode},
		{method: "DELETE", pattern: "/v1/nodes/{name}", leader: true, admin: true, h: n.deleteNode},
		{method: "POST", pattern: "/v1/nodes/{name}/promote", leader: true, admin: true, h: n.roleNode(fsm.RoleVoter)},
		{method: "POST", pattern: "/v1/nodes/{name}/demote", leader: true, admin: true, h: n.roleNode(fsm.RoleWorker)},
		{method: "GET", pattern: "/v1/grid", h: n.getGrid},
		{method: "GET", pattern: "/v1/grid/health", anyState: true, h: n.getHealth},
		{method: "PATCH", pattern: "/v1/grid", leader: true, admin: true, h: n.updateGrid},
		{method: "GET", pattern: "/v1/grid/token", leader: true, admin: true, h: n.getJoinToken},
		{method: "POST", pattern: "/v1/grid/token/rotate", leader: true, admin: true, h: n.rotateJoinToken},
		{method: "GET", pattern: "/v1/tokens", h: n.listTokens},
		{method: "POST", pattern: "/v1/tokens", leader: true, h: n.createToken},
		{method: "DELETE", pattern: "/v1/tokens/{id}", leader: true, h: n.deleteToken},
		{method: "GET", pattern: "/v1/events", h: n.listEvents},
		{method: "GET", pattern: "/v1/audit", admin: true, h: n.listAudit},
		{method: "POST", pattern: "/v1/stacks", leader: true, admin: true, h: n.installStack},
		{method: "GET", pattern: "/v1/stacks", h: n.listStacks},
		{method: "GET", pattern: "/v1/stacks/{name}", h: n.getStack},
		{method: "DELETE", pattern: "/v1/stacks/{name}", leader: true, admin: true, h: n.deleteStack},
		{method: "PUT", pattern: "/v1/stacks/{name}", leader: true, admin: true, h: n.upgradeStack},
		{method: "GET", pattern: "/v1/services", h: n.listServices},
		{method: "POST", pattern: "/v1/services/{stack}/{service}/scale", leader: true, admin: true, h: n.scaleService},
		{method: "GET", pattern: "/v1/services/{stack}/{service}/logs", admin: true, h: n.serviceLogs},
		{method: "GET", pattern: "/v1/services/{stack}/{service}", h: n.getService},
		{method: "DELETE", pattern: "/v1/services/{stack}/{service}", leader: true, admin: true, h: n.deleteService},
		{method: "GET", pattern: "/v1/services/{stack}/{service}/events", h: n.serviceEvents},
		{method: "POST", pattern: "/v1/services/{stack}/{service}/deploy", leader: true, admin: true, h: n.serviceAction("deploy")},
		{method: "POST", pattern: "/v1/services/{stack}/{service}/stop", leader: true, admin: true, h: n.serviceAction("stop")},
		{method: "POST", pattern: "/v1/services/{stack}/{service}/start", leader: true, admin: true, h: n.serviceAction("start")},
		{method: "POST", pattern: "/v1/services/{stack}/{service}/restart", leader: true, admin: true, h: n.serviceAction("restart")},
		{method: "POST", pattern: "/v1/stacks/{name}/deploy", leader: true, admin: true, h: n.stackAction("deploy")},
		{method: "POST", pattern: "/v1/stacks/{name}/stop", leader: true, admin: true, h: n.stackAction("stop")},
		{method: "POST", pattern: "/v1/stacks/{name}/start", leader: true, admin: true, h: n.stackAction("start")},
		{method: "POST", pattern: "/v1/stacks/{name}/restart", leader: true, admin: true, h: n.stackAction("restart")},
		{method: "GET", pattern: "/v1/stacks/{name}/logs", admin: true, h: n.stackLogs},
		{method: "GET", pattern: "/v1/containers", h: n.listContainers},
		{method: "GET", pattern: "/v1/containers/{name}", admin: true, h: n.inspectContainer},
		{method: "GET", pattern: "/v1/containers/{name}/logs", admin: true, h: n.containerLogs},
		{method: "GET", pattern: "/v1/stats", h: n.containerStats},
		{method: "GET", pattern: "/v1/nodes/{name}/assignments", h: n.getAssignments},
		{method: "POST", pattern: "/v1/nodes/{name}/instances", leader: true, h: n.reportInstances},
		{method: "GET", pattern: "/v1/nodes/{name}/netmap", h: n.getNetMap},
		{method: "GET", pattern: "/v1/nodes/{name}/overlay", h: n.getOverlayStatus},
		{method: "PUT", pattern: "/v1/nodes/{name}/overlay", leader: true, h: n.setOverlay},
		{method: "PUT", pattern: "/v1/nodes/{name}/resources", leader: true, h: n.setResources},
		{method: "GET", pattern: "/v1/vpn", admin: true, h: n.listVPN},
		{method: "POST", pattern: "/v1/vpn", leader: true, admin: true, h: n.createVPN},
		{method: "DELETE", pattern: "/v1/vpn/{name}", leader: true, admin: true, h: n.deleteVPN},
	}
	for _, rt := range routes {
		mux.Handle(rt.method+" "+rt.pattern, n.wrap(rt))
	}
	mux.HandleFunc("POST /v1/join", n.serveJoin)
	mux.HandleFunc("POST /v1/internal/promote", n.internal(n.servePromote))
	mux.HandleFunc("POST /v1/internal/demote", n.internal(n.serveDemote))
	mux.HandleFunc("GET /v1/internal/status", n.internal(n.serveStatus))
	mux.HandleFunc("POST /v1/internal/removed", n.internal(n.serveRemoved))
	mux.HandleFunc("GET /v1/internal/containers/{name}/logs", n.internal(n.serveContainerLogs))
	mux.HandleFunc("POST /v1/containers/{name}/exec", n.serveExec) // an upgrade: authenticates like wrap, see exec.go
	mux.HandleFunc("POST /v1/internal/containers/{name}/exec", n.internal(n.serveContainerExec))
	mux.HandleFunc("GET /v1/internal/containers/{name}/inspect", n.internal(n.serveContainerInspect))
	mux.HandleFunc("GET /v1/internal/containers/{name}/stats", n.internal(n.serveContainerStats))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, api.Errorf(api.CodeNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

func (n *Node) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rn := n.voter()
		if rn == nil {
			n.forwardToVoter(w, r)
			return
		}
		if !rt.anyState && !n.caughtUp(rn) {
			switch leader, _ := rn.raft.LeaderWithID(); {
			case rn.raft.State() == raft.Leader:
				writeErr(w, api.Errorf(api.CodeUnavailable, "this node just became the leader and is still applying the log; retry"))
			case leader == "":
				writeErr(w, api.Errorf(api.CodeUnavailable, "this voter restarted and has no leader yet to tell it how much of its log is committed, so its state may be behind; retry once a majority of the voters runs (see `kontena grid health`)"))
			default:
				n.forwardToLeader(w, r, rn)
			}
			return
		}
		p, err := n.authenticate(r, rn.store)
		if err != nil {
			// A follower may not have applied a token the leader just
			// created: the leader has the final word.
			if leader, _ := rn.raft.LeaderWithID(); leader != "" && rn.raft.State() != raft.Leader {
				n.forwardToLeader(w, r, rn)
				return
			}
			writeErr(w, err)
			return
		}
		if rt.admin && !p.admin() {
			writeErr(w, api.Errorf(api.CodeForbidden, "%s needs the master_admin or grid_admin role; %s has %v", r.URL.Path, p.User, p.Roles))
			return
		}
		if rt.leader && rn.raft.State() != raft.Leader {
			n.forwardToLeader(w, r, rn)
			return
		}
		ctx := context.WithValue(r.Context(), ctxKey{}, p)
		if err := rt.h(w, r.WithContext(ctx), p); err != nil {
			writeErr(w, err)
		}
	})
}

// caughtUp tells whether this voter's state may answer requests. A
// restarted follower replays its log only once a leader tells it the commit
// index; until then its state is the last snapshot (a token may look
// revoked, a label removed long ago back). Without any leader, a voter that
// was caught up since it started answers from its last state (a voter cut
// off from the others keeps serving reads); one that restarted and never
// heard from a leader does not: it cannot know how far behind it is.
func (n *Node) caughtUp(rn *raftNode) bool {
	if rn.raft.State() == raft.Leader {
		ok := n.leaderReady(rn)
		if ok {
			rn.caughtUpOnce.Store(true)
		}
		return ok
	}
	if _, err := rn.store.Grid(); err != nil {
		return false
	}
	if addr, _ := rn.raft.LeaderWithID(); addr == "" {
		return rn.caughtUpOnce.Load()
	}
	commit := rn.raft.CommitIndex()
	if commit == 0 || rn.raft.AppliedIndex() < commit {
		return false
	}
	if !rn.caughtUpOnce.Load() {
		// A leader that restarted too tells its old commit index until the
		// no-op entry of its own term commits: only an entry of the current
		// term at the commit index proves everything before it is applied.
		var l raft.Log
		if err := rn.bolt.GetLog(commit, &l); err != nil || l.Term != rn.raft.CurrentTerm() {
			return false
		}
		rn.caughtUpOnce.Store(true)
	}
	return true
}

// leaderReady waits (briefly) until a new leader has applied everything
// committed before its term: after a restart of every voter the new
// leader's state is only partly replayed until its first Barrier, and an
// answer from it would lose acknowledged writes for the reader.
func (n *Node) leaderReady(rn *raftNode) bool {
	deadline := time.Now().Add(5 * time.Second)
	for rn.barrierTerm.Load() != rn.raft.CurrentTerm() {
		if time.Now().After(deadline) || rn.raft.State() != raft.Leader {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// authenticate accepts a bearer token, or a grid node certificate. Bearer
// tokens win so that a request forwarded by a node still runs as its user.
func (n *Node) authenticate(r *http.Request, store *fsm.Store) (*principal, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || tok == "" {
			return nil, api.Errorf(api.CodeUnauthorized, "Authorization header must be `Bearer <token>`")
		}
		t, err := store.TokenByHash(hashToken(tok))
		if err != nil {
			return nil, api.Errorf(api.CodeUnauthorized, "invalid or revoked token: log in again or create a token with `kontena token create`")
		}
		if t.Expired(time.Now()) {
			return nil, api.Errorf(api.CodeUnauthorized, "token %s expired at %s", t.ID, t.ExpiresAt.Format(time.RFC3339))
		}
		u, err := store.User(t.User)
		if err != nil {
			return nil, api.Errorf(api.CodeUnauthorized, "token %s belongs to user %q who no longer exists", t.ID, t.User)
		}
		return &principal{User: u.Name, Roles: u.Roles}, nil
	}
	if id := callerNode(r); id != "" {
		node, err := store.Node(id)
		if err != nil {
			return nil, api.Errorf(api.CodeUnauthorized, "certificate of node %s: node is not part of the grid (removed?)", id)
		}
		return &principal{User: "node:" + node.Name, Roles: []string{RoleNode}, Node: node.ID}, nil
	}
	return nil, api.Errorf(api.CodeUnauthorized, "authentication required: pass an API token (Authorization: Bearer ...) or a grid node certificate")
}

// peerNode returns the node ID of a caller that presented a grid certificate.
func peerNode(r *http.Request) string {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return r.TLS.VerifiedChains[0][0].Subject.CommonName
	}
	return ""
}

// callerNode is the node that made a request, if a node made it: the TLS
// peer itself, or for a request another node forwarded, the node that the
// forwarder verified. A forwarder's own certificate never stands in for an
// anonymous caller.
func callerNode(r *http.Request) string {
	peer := peerNode(r)
	if peer == "" {
		return ""
	}
	if r.Header.Get(api.HeaderForwardedBy) != "" {
		return r.Header.Get(api.HeaderCallerNode)
	}
	return peer
}

// internal guards node-to-node endpoints: only a grid certificate will do.
func (n *Node) internal(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if peerNode(r) == "" {
			writeErr(w, api.Errorf(api.CodeUnauthorized, "internal endpoint: a grid node certificate is required"))
			return
		}
		h(w, r)
	}
}

// sourceIP is the original client address, trusting the forwarding header
// only from another grid node.
func sourceIP(r *http.Request) string {
	if peerNode(r) != "" {
		if ip := r.Header.Get(api.HeaderSourceIP); ip != "" {
			return ip
		}
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	return host
}

func auditOf(r *http.Request, p *principal) *fsm.AuditInfo {
	return &fsm.AuditInfo{User: p.User, SourceIP: sourceIP(r), UserAgent: r.UserAgent(), Time: time.Now().UTC()}
}

// forwardToLeader sends a write to the leader.
func (n *Node) forwardToLeader(w http.ResponseWriter, r *http.Request, rn *raftNode) {
	_, id := rn.raft.LeaderWithID()
	if id == "" {
		writeErr(w, api.Errorf(api.CodeUnavailable, "no leader: this node cannot reach a majority of the voters, so the grid cannot accept changes here (see `kontena grid health`)"))
		return
	}
	target := ""
	if node, err := rn.store.Node(string(id)); err == nil {
		target = net.JoinHostPort(node.Addr, strconv.Itoa(node.APIPort))
	} else if m, ok := n.gossip.members()[string(id)]; ok {
		target = m.apiAddr() // our state is behind; gossip knows the leader
	}
	if target == "" {
		writeErr(w, api.Errorf(api.CodeUnavailable, "leader %s is not known yet; retry", id))
		return
	}
	n.forward(w, r, []string{target})
}

// forwardToVoter sends any request from a worker to a live voter.
func (n *Node) forwardToVoter(w http.ResponseWriter, r *http.Request) {
	var targets []string
	for _, m := range n.gossip.members() {
		if m.Meta.Role == fsm.RoleVoter && m.ID != n.id.ID {
			targets = append(targets, m.apiAddr())
		}
	}
	slices.Sort(targets)
	if len(targets) == 0 {
		writeErr(w, api.Errorf(api.CodeUnavailable, "this worker cannot see any voter through gossip"))
		return
	}
	n.forward(w, r, targets)
}

// forward proxies a request to the first target that answers, with this
// node's certificate. The caller's token travels along unchanged.
func (n *Node) forward(w http.ResponseWriter, r *http.Request, targets []string) {
	hops, _ := strconv.Atoi(r.Header.Get(api.HeaderHops))
	if hops >= 3 {
		writeErr(w, api.Errorf(api.CodeUnavailable, "request forwarded too many times (leadership is changing); retry"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 8<<20))
	if err != nil {
		writeErr(w, api.Errorf(api.CodeInvalid, "read request: %v", err))
		return
	}
	// A forwarded request must never outlive a peer that vanished (a pooled
	// connection to a cut-off node would otherwise wait forever).
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout(r))
	defer cancel()
	var lastErr error
	for _, t := range targets {
		out, err := http.NewRequestWithContext(ctx, r.Method, api.BaseURL(t)+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			writeErr(w, err)
			return
		}
		out.Header = r.Header.Clone()
		out.Header.Set(api.HeaderHops, strconv.Itoa(hops+1))
		out.Header.Set(api.HeaderForwardedBy, n.id.ID)
		out.Header.Set(api.HeaderSourceIP, sourceIP(r))
		out.Header.Del(api.HeaderCallerNode)
		if id := callerNode(r); id != "" {
			out.Header.Set(api.HeaderCallerNode, id)
		}
		resp, err := n.peerHTTP.Do(out)
		if err != nil {
			lastErr = err
			continue
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		flushCopy(w, resp.Body)
		return
	}
	writeErr(w, api.Errorf(api.CodeUnavailable, "could not reach %s: %v", strings.Join(targets, ", "), lastErr))
}

// requestTimeout bounds one API request: a blocking query may wait as long
// as it asked (at most 5 minutes) plus a margin, anything else 30 s.
func requestTimeout(r *http.Request) time.Duration {
	if r.URL.Query().Get("follow") == "true" {
		return 24 * time.Hour // a log stream lasts as long as its reader
	}
	if r.URL.Query().Get("index") != "" {
		if d, err := time.ParseDuration(r.URL.Query().Get("wait")); err == nil {
			return min(d, 5*time.Minute) + 15*time.Second
		}
		return 45 * time.Second
	}
	return 30 * time.Second
}

// flushCopy streams a body, flushing as data arrives (follow streams).
func flushCopy(w http.ResponseWriter, body io.Reader) {
	f, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		k, err := body.Read(buf)
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return
			}
			if f != nil {
				f.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}

func writeJSON(w http.ResponseWriter, index uint64, v any) error {
	w.Header().Set("Content-Type", "application/json")
	if index > 0 {
		w.Header().Set(api.HeaderIndex, strconv.FormatUint(index, 10))
	}
	return json.NewEncoder(w).Encode(v)
}

// writeErr maps errors to API answers: FSM sentinel errors to their codes,
// anything unknown to 500 with its message.
func writeErr(w http.ResponseWriter, err error) {
	var ae *api.Error
	if !errors.As(err, &ae) {
		code := api.CodeInternal
		switch {
		case errors.Is(err, fsm.ErrNotFound):
			code = api.CodeNotFound
		case errors.Is(err, fsm.ErrConflict):
			code = api.CodeConflict
		case errors.Is(err, fsm.ErrInvalid):
			code = api.CodeInvalid
		}
		ae = api.Errorf(code, "%s", cleanErr(err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(api.StatusOf(ae.Code))
	_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: ae})
}

// cleanErr drops the trailing ": conflict" or ": invalid" that only serves
// errors.Is; ": not found" stays, it reads well ("node \"x\": not found").
func cleanErr(err error) string {
	s := err.Error()
	for _, sent := range []error{fsm.ErrConflict, fsm.ErrInvalid} {
		if errors.Is(err, sent) {
			s = strings.TrimSuffix(s, ": "+sent.Error())
		}
	}
	return s
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return api.Errorf(api.CodeInvalid, "request body: %v", err)
	}
	return nil
}

// blockingWait implements blocking queries: ?index=N&wait=D waits until the
// state passes N (or D ends, at most 5 minutes).
func blockingWait(r *http.Request, store *fsm.Store) error {
	idx, _ := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
	if idx == 0 {
		return nil
	}
	wait := 30 * time.Second
	if s := r.URL.Query().Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			return api.Errorf(api.CodeInvalid, "wait=%q: %v", s, err)
		}
		wait = min(d, 5*time.Minute)
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	_, err := store.Wait(ctx, idx)
	if err != nil && r.Context().Err() != nil {
		return r.Context().Err()
	}
	return nil
}
