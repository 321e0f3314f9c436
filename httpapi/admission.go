package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/raftnode"
)

// The admission path. Every route of the API, JSON, upgrades, join and
// node-to-node calls alike, is one entry of the route table (routes.go)
// and passes one middleware (admit) in three steps:
//
//  1. who calls: a bearer token (a user), or a node certificate checked
//     against the grid state (a node that exists and was not removed; its
//     role is the state's, never what it says about itself in gossip);
//  2. may it: the route's declared policy (allow), decided by authorize, a
//     pure function of the route, the principal and the request path;
//  3. where is it served: here, or forwarded to a voter or the leader.
//
// A forwarder vouches only for itself: it passes a user's own token along,
// or forwards its own node requests with its own certificate. A node
// request that must reach the leader is redirected there (307), so the
// leader sees that node's certificate, never a forwarder's word for it.

// allow is the set of principals a route accepts.
type allow uint16

const (
	// allowPublic: anyone; the handler authenticates what the request
	// carries itself (join: the join token inside; login: the invite
	// code, refresh token or identity provider's code inside).
	allowPublic allow = 1 << iota
	// allowAnyUser: any user token, whatever its roles (whoami, one's
	// own tokens).
	allowAnyUser
	// allowViewer: reading the grid (viewer and every role above it).
	allowViewer
	// allowDeveloper: stacks, services, logs, exec, vault writes.
	allowDeveloper
	// allowGridAdmin: nodes, grid settings, join tokens, VPN, vault
	// reads, backups, the audit log.
	allowGridAdmin
	// allowUserAdmin: users and invites.
	allowUserAdmin
	// allowNodeSelf: a node certificate of the node named by {name}.
	allowNodeSelf
	// allowVoter: a node certificate of a voter (by the state).
	allowVoter
	// allowLeader: the current leader's certificate.
	allowLeader
	// allowLB: a load balancer's token, on the routes of its own service
	// ({stack}/{service}).
	allowLB
)

// userAllows are the route permissions a user with roles holds.
func userAllows(roles []string) allow {
	a := allowAnyUser
	for _, grant := range []struct {
		role string
		a    allow
	}{{fsm.RoleViewer, allowViewer}, {fsm.RoleDeveloper, allowDeveloper}, {fsm.RoleGridAdmin, allowGridAdmin}, {fsm.RoleUserAdmin, allowUserAdmin}} {
		if fsm.AnyRoleImplies(roles, grant.role) {
			a |= grant.a
		}
	}
	return a
}

// roleNeeded names the weakest role that opens a route, for refusals.
func roleNeeded(a allow) string {
	switch {
	case a&allowViewer != 0:
		return fsm.RoleViewer
	case a&allowDeveloper != 0:
		return fsm.RoleDeveloper
	case a&allowGridAdmin != 0:
		return fsm.RoleGridAdmin
	case a&allowUserAdmin != 0:
		return fsm.RoleUserAdmin
	}
	return fsm.RoleMasterAdmin
}

// where tells where a route is served.
type where uint8

const (
	// atState: on a voter whose state is caught up (reads).
	atState where = iota
	// atLeader: on the leader (writes, join).
	atLeader
	// atAnyState: on any voter, whatever its state (grid health).
	atAnyState
	// atThisNode: node-to-node calls about this very node (promote, its
	// containers): never forwarded.
	atThisNode
)

// principalKind is what authenticated a caller.
type principalKind uint8

const (
	kindAnonymous principalKind = iota
	kindUser
	kindNode
	kindLB
)

// principal is who made a request.
type principal struct {
	Kind principalKind
	User string
	// Roles are the roles the user acts with: their own, or the one role
	// their token is limited to.
	Roles []string
	// Stacks limits a developer to the stacks matching these patterns.
	Stacks []string
	// Token is the ID of the token the user called with.
	Token string
	// LB is the service of a load balancer principal ("<stack>/<service>").
	LB string
	// Node principals: the node's ID, name and role as the state has them,
	// and whether it leads the grid right now.
	Node     string
	NodeName string
	NodeRole string
	Leader   bool
}

// has tells whether a user principal holds a role (or one above it).
func (p *principal) has(role string) bool {
	return p.Kind == kindUser && fsm.AnyRoleImplies(p.Roles, role)
}

// admin: a user who may see and manage everything of the grid (not users).
func (p *principal) admin() bool { return p.has(fsm.RoleGridAdmin) }

// mayStack tells whether the user may act on stack: grid admins on every
// one, a developer on those matching their patterns.
func (p *principal) mayStack(stack string) bool {
	return p.admin() || fsm.StackAllowed(p.Stacks, stack)
}

func (p *principal) String() string {
	switch p.Kind {
	case kindUser:
		return "user " + p.User
	case kindNode:
		return fmt.Sprintf("node %s (%s)", p.NodeName, p.NodeRole)
	case kindLB:
		return "load balancer " + p.LB
	}
	return "an anonymous caller"
}

type ctxKey struct{}

// route is one API endpoint with its policy.
type route struct {
	method, pattern string
	allow           allow
	at              where
	// stack names the path value that holds the stack the route acts on
	// ("name", "stack", or "container" for "<stack>.<service>-<n>"): a
	// developer limited to some stacks may call it only on those.
	stack string
	// upgrade: the route takes over the connection (exec); it is relayed
	// by splicing, not by copying a body.
	upgrade bool
	h       func(w http.ResponseWriter, r *http.Request, p *principal) error
}

func (rt route) String() string { return rt.method + " " + rt.pattern }

// stackOf is the stack a request of rt acts on ("" if none).
func (rt route) stackOf(r *http.Request) string {
	switch rt.stack {
	case "":
		return ""
	case "container":
		s, _, _ := strings.Cut(r.PathValue("name"), ".")
		return s
	case "service":
		return r.PathValue("stack") + "/" + r.PathValue("service")
	}
	return r.PathValue(rt.stack)
}

// authorize decides whether p may call rt on the node named pathName and
// the stack named stack. It is pure: the principal is already resolved
// against the state.
func authorize(rt route, p *principal, pathName, stack string) error {
	a := rt.allow
	if a&allowPublic != 0 {
		return nil
	}
	switch p.Kind {
	case kindUser:
		if a&userAllows(p.Roles) == 0 {
			if a&(allowAnyUser|allowViewer|allowDeveloper|allowGridAdmin|allowUserAdmin) == 0 {
				return api.Errorf(api.CodeForbidden, "%s is for grid nodes only, not for users", rt)
			}
			return api.Errorf(api.CodeForbidden, "%s needs the %s role or one above it; %s acts with %v", rt, roleNeeded(a), p, p.Roles)
		}
		if stack != "" && !p.mayStack(stack) {
			return api.Errorf(api.CodeForbidden, "%s: %s may act only on stacks matching %v, not on stack %q", rt, p, p.Stacks, stack)
		}
		return nil
	case kindLB:
		if a&allowLB != 0 && stack == p.LB {
			return nil
		}
		return api.Errorf(api.CodeForbidden, "%s: the token of %s reads only its own routing", rt, p)
	case kindNode:
		switch {
		case a&allowLeader != 0 && p.Leader,
			a&allowVoter != 0 && p.NodeRole == fsm.RoleVoter,
			a&allowNodeSelf != 0 && pathName != "" && (pathName == p.NodeName || pathName == p.Node):
			return nil
		case a&allowNodeSelf != 0:
			return api.Errorf(api.CodeForbidden, "%s: %s may act only on its own resources, not on node %q", rt, p, pathName)
		case a&allowLeader != 0:
			return api.Errorf(api.CodeForbidden, "%s is accepted only from the grid's leader; %s is not the leader", rt, p)
		case a&allowVoter != 0:
			return api.Errorf(api.CodeForbidden, "%s is accepted only from a voter; %s is not one", rt, p)
		}
		return api.Errorf(api.CodeForbidden, "%s needs a user token; %s may not call it", rt, p)
	}
	return api.Errorf(api.CodeUnauthorized, "authentication required: pass an API token (Authorization: Bearer ...) or a grid node certificate")
}

// bearer returns the request's bearer token, "" for none, or an error for
// an Authorization header that is not a bearer token.
func bearer(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", nil
	}
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return "", api.Errorf(api.CodeUnauthorized, "Authorization header must be `Bearer <token>`")
	}
	return tok, nil
}

// peerNode returns the node ID of a caller that presented a grid
// certificate (its common name).
func peerNode(r *http.Request) string {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return r.TLS.VerifiedChains[0][0].Subject.CommonName
	}
	return ""
}

// admit is the one admission middleware.
func (n *Server) admit(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer n.recoverHandler(w, r, rt)
		tok, err := bearer(r)
		if err != nil {
			writeErr(w, err)
			return
		}
		// Nothing is read, buffered or forwarded for a caller with neither
		// a token nor a certificate, unless the route is public.
		if rt.allow&allowPublic == 0 && tok == "" && peerNode(r) == "" {
			writeErr(w, authorize(rt, &principal{}, "", ""))
			return
		}
		if rt.at == atThisNode {
			n.admitHere(w, r, rt)
			return
		}
		rn := n.voter()
		if rn == nil {
			n.relay(w, r, rt, tok, n.voterTargets())
			return
		}
		if rt.at != atAnyState && !rn.CaughtUp() {
			switch leader := rn.Leader(); {
			case rn.IsLeader():
				writeErr(w, api.Errorf(api.CodeUnavailable, "this node just became the leader and is still applying the log; retry"))
			case leader == "":
				writeErr(w, api.Errorf(api.CodeUnavailable, "this voter restarted and has no leader yet to tell it how much of its log is committed, so its state may be behind; retry once a majority of the voters runs (see `kontena grid health`)"))
			default:
				n.toLeader(w, r, rt, tok, rn)
			}
			return
		}
		// A user's change is decided by the leader, which puts a refusal
		// on the record as it puts every change there.
		if tok != "" && rt.at == atLeader && !rn.IsLeader() {
			n.toLeader(w, r, rt, tok, rn)
			return
		}
		p := &principal{}
		if rt.allow&allowPublic == 0 {
			if p, err = n.identify(r, tok, rn, rt.at != atAnyState); err != nil {
				// A follower may not have applied a token the leader just
				// created: the leader has the final word on tokens.
				if tok != "" && !rn.IsLeader() {
					if leader := rn.Leader(); leader != "" {
						n.toLeader(w, r, rt, tok, rn)
						return
					}
				}
				writeErr(w, err)
				return
			}
		}
		if err := authorize(rt, p, r.PathValue("name"), rt.stackOf(r)); err != nil {
			n.auditRefusal(r, rt, p, err)
			writeErr(w, err)
			return
		}
		if rt.at == atLeader && !rn.IsLeader() {
			n.toLeader(w, r, rt, tok, rn)
			return
		}
		n.uses.record(p.Token, time.Now())
		if rt.at == atState && consistentRead(r) {
			// A default read is served from this voter's state, which
			// may trail the leader's by what is in flight (or more, cut
			// off). ?consistent=true is served by a leader that has just
			// confirmed with a majority that it still is one: linearizable.
			if !rn.IsLeader() {
				n.toLeader(w, r, rt, tok, rn)
				return
			}
			if err := rn.VerifyLeader(5 * time.Second); err != nil {
				writeErr(w, api.Errorf(api.CodeUnavailable, "a consistent read needs the leader to reach a majority of the voters: %v", err))
				return
			}
		}
		ctx := context.WithValue(r.Context(), ctxKey{}, p)
		if err := rt.h(w, r.WithContext(ctx), p); err != nil {
			if api.IsCode(err, api.CodeForbidden) {
				n.auditRefusal(r, rt, p, err) // a handler's own refusal (host access, roles it may grant)
			}
			writeErr(w, err)
		}
	})
}

// admitHere serves a node-to-node call about this node: the caller must be
// a node this node's view of the state trusts for the route.
func (n *Server) admitHere(w http.ResponseWriter, r *http.Request, rt route) {
	id := peerNode(r)
	if id == "" {
		writeErr(w, api.Errorf(api.CodeUnauthorized, "%s: a grid node certificate is required", rt))
		return
	}
	p, err := n.trust().principal(id)
	if err != nil {
		writeErr(w, err)
		return
	}
	if err := authorize(rt, p, r.PathValue("name"), ""); err != nil {
		writeErr(w, err)
		return
	}
	if err := rt.h(w, r, p); err != nil {
		writeErr(w, err)
	}
}

// identify resolves the caller on a voter against its state.
func (n *Server) identify(r *http.Request, tok string, rn *raftnode.Node, fresh bool) (*principal, error) {
	if tok != "" {
		if err := tokensTrusted(rn, time.Now(), fresh); err != nil {
			return nil, err
		}
		if strings.HasPrefix(tok, lbTokenPrefix) {
			return n.lbPrincipal(rn.Store(), tok)
		}
		return userPrincipal(rn.Store(), tok, time.Now())
	}
	if id := peerNode(r); id != "" {
		return voterView{rn: rn}.principal(id)
	}
	return nil, authorize(route{}, &principal{}, "", "")
}

// tokenStaleness is how long a voter may go without hearing from a
// leader and still trust its state's tokens: a token revoked meanwhile
// would look valid on it. Heartbeats come every fraction of a second, so a
// voter in contact with a leader is never near it.
const tokenStaleness = 3 * time.Second

// tokensTrusted says whether this voter's state is fresh enough to decide
// on tokens: a voter cut off from the leader for longer than
// tokenStaleness refuses every token (503, the CLI tries another master)
// rather than accept one that was revoked on the other side of the cut.
// Routes that answer from any state (grid health) say fresh=false: they
// hold nothing a revoked token could take.
func tokensTrusted(rn *raftnode.Node, now time.Time, fresh bool) error {
	if !fresh || rn.IsLeader() || rn.Leader() != "" {
		return nil
	}
	last := rn.LastContact()
	if last.IsZero() || now.Sub(last) <= tokenStaleness {
		return nil
	}
	return api.Errorf(api.CodeUnavailable, "this voter has not heard from a leader for %s, so it cannot tell whether your token was revoked meanwhile: it refuses tokens until it hears from one (ask another master; see `kontena grid health`)",
		now.Sub(last).Round(time.Second))
}

// userPrincipal looks a bearer token up in the state: an access or API
// token that has not expired, of a user who still exists, acting with the
// user's roles or the one role the token is limited to (if the user still
// holds it).
func userPrincipal(store *fsm.Store, tok string, now time.Time) (*principal, error) {
	t, err := store.TokenByHash(HashToken(tok))
	if err != nil {
		return nil, api.Errorf(api.CodeUnauthorized, "invalid or revoked token: log in again (`kontena login`) or create a token with `kontena token create`")
	}
	if t.Expired(now) {
		return nil, api.Errorf(api.CodeUnauthorized, "token %s expired at %s: log in again (the CLI refreshes its login token by itself)", t.ID, t.ExpiresAt.Format(time.RFC3339))
	}
	if t.Kind == fsm.TokenKindRefresh {
		return nil, api.Errorf(api.CodeUnauthorized, "token %s is a refresh token: it is accepted only by POST /v1/login, to get an access token", t.ID)
	}
	u, err := store.User(t.User)
	if err != nil {
		return nil, api.Errorf(api.CodeUnauthorized, "token %s belongs to user %q who no longer exists", t.ID, t.User)
	}
	roles := u.Roles
	if t.Role != "" {
		if !fsm.AnyRoleImplies(u.Roles, t.Role) {
			return nil, api.Errorf(api.CodeForbidden, "token %s acts as %s, a role user %s no longer holds (they have %v)", t.ID, t.Role, u.Name, u.Roles)
		}
		roles = []string{t.Role}
	}
	return &principal{Kind: kindUser, User: u.Name, Roles: slices.Clone(roles), Stacks: u.Stacks, Token: t.ID}, nil
}

// auditRefusal puts a user's refused change on the record (on the leader,
// which decides changes; reads are not recorded when refused).
func (n *Server) auditRefusal(r *http.Request, rt route, p *principal, refusal error) {
	rn := n.voter()
	if p.Kind != kindUser || rt.at != atLeader || rn == nil || !rn.IsLeader() {
		return
	}
	note := &fsm.AuditNote{Action: "denied " + rt.String(), Resource: resourceOfPath(r.URL.Path), Result: "denied: " + refusal.Error()}
	if _, _, err := n.apply(r.Context(), note, auditOf(r, p)); err != nil {
		n.log.Warn("could not record a refused request in the audit log", "user", p.User, "route", rt.String(), "err", err)
	}
}

// trustView is what a node knows about the other nodes when it decides who
// may call it: on a voter its state, on a worker the voters its last network
// map named.
type trustView interface {
	principal(id string) (*principal, error)
}

func (n *Server) trust() trustView {
	if rn := n.voter(); rn != nil {
		return voterView{rn: rn}
	}
	return workerView{voters: n.trustedVoters()}
}

// voterView resolves node certificates against a voter's state.
type voterView struct{ rn *raftnode.Node }

func (v voterView) principal(id string) (*principal, error) {
	node, err := v.rn.Store().Node(id)
	if err != nil {
		if g, gerr := v.rn.Store().Grid(); gerr == nil && g.WasRemoved(id) {
			return nil, api.Errorf(api.CodeUnauthorized, "certificate of node %s: the node was removed from the grid; its certificate is no longer accepted", id)
		}
		// A voter that restarted and has not caught up yet has only the
		// state of its last snapshot; what it does have is its Raft
		// configuration, read from its log at start. Its voters may make
		// node-to-node calls (the leader telling it that it was removed).
		if !v.rn.CaughtUp() && slices.Contains(v.rn.Voters(), id) {
			leader := v.rn.Leader()
			return &principal{Kind: kindNode, User: "node:" + id, Node: id, NodeName: id, NodeRole: fsm.RoleVoter, Leader: leader == id || leader == ""}, nil
		}
		return nil, api.Errorf(api.CodeUnauthorized, "certificate of node %s: node is not part of the grid", id)
	}
	// The leader is who Raft says it is. A voter that knows no leader (one
	// the leader just took out of the configuration, before it is told to
	// step down) takes any voter of its state for it: a voter holds the CA
	// key and could sign itself any certificate, so the line that matters
	// is voter against worker or removed node, and that one holds.
	leader := v.rn.Leader()
	isLeader := leader == node.ID || (leader == "" && node.Role == fsm.RoleVoter)
	return &principal{Kind: kindNode, User: "node:" + node.Name, Node: node.ID, NodeName: node.Name, NodeRole: node.Role, Leader: isLeader}, nil
}

// workerView: a worker has no state. It trusts, for calls about itself,
// the voters that its last network map (built by a voter from the state)
// named. A worker cannot tell which voter leads; a voter holds the CA key
// and could sign any certificate anyway, so the line that matters (a
// worker or a removed node is refused) holds.
type workerView struct{ voters []api.NetVoter }

func (v workerView) principal(id string) (*principal, error) {
	for _, vt := range v.voters {
		if vt.ID == id {
			return &principal{Kind: kindNode, User: "node:" + vt.Name, Node: vt.ID, NodeName: vt.Name, NodeRole: fsm.RoleVoter, Leader: true}, nil
		}
	}
	if len(v.voters) == 0 {
		return nil, api.Errorf(api.CodeUnavailable, "this worker has no network map yet, so it cannot tell which nodes are voters; retry")
	}
	return nil, api.Errorf(api.CodeForbidden, "certificate of node %s: not a voter of this grid (by this worker's last network map); node-to-node calls to a worker come only from voters", id)
}

// trustedVoters are the voters of this worker's last network map.
func (n *Server) trustedVoters() []api.NetVoter {
	if n.dp == nil {
		return nil
	}
	return n.dp.Voters()
}

// toLeader sends a request this voter may not serve to the leader: a
// user's request (token) or a public one is relayed; a node's own request
// is redirected, so the node presents its own certificate to the leader.
func (n *Server) toLeader(w http.ResponseWriter, r *http.Request, rt route, tok string, rn *raftnode.Node) {
	id := rn.Leader()
	if id == "" {
		writeErr(w, api.Errorf(api.CodeUnavailable, "no leader: this node cannot reach a majority of the voters, so the grid cannot accept changes here (see `kontena grid health`)"))
		return
	}
	target := ""
	if node, err := rn.Store().Node(string(id)); err == nil {
		target = net.JoinHostPort(node.Addr, strconv.Itoa(node.APIPort))
	} else if m, ok := n.gossip.Members()[string(id)]; ok {
		target = m.APIAddr() // our state is behind; gossip knows the leader
	}
	if target == "" {
		writeErr(w, api.Errorf(api.CodeUnavailable, "leader %s is not known yet; retry", id))
		return
	}
	if tok == "" && rt.allow&allowPublic == 0 {
		u := &url.URL{Scheme: "https", Host: target, Path: r.URL.Path, RawQuery: r.URL.RawQuery}
		w.Header().Set("Location", u.String())
		w.WriteHeader(http.StatusTemporaryRedirect)
		return
	}
	n.relay(w, r, rt, tok, []string{target})
}

// relay forwards a request to the first target that answers, with this
// node's certificate. Only a user's token or this node's own request
// travels: a node certificate of anyone else is not relayed, since this
// node would then speak for it.
func (n *Server) relay(w http.ResponseWriter, r *http.Request, rt route, tok string, targets []string) {
	if tok == "" && rt.allow&allowPublic == 0 && peerNode(r) != n.id.ID {
		writeErr(w, api.Errorf(api.CodeForbidden, "%s: this node (%s) does not serve it and relays only user tokens and its own requests; node %s must call a voter itself", rt, n.id.Name, peerNode(r)))
		return
	}
	if len(targets) == 0 {
		writeErr(w, api.Errorf(api.CodeUnavailable, "this worker cannot see any voter through gossip"))
		return
	}
	if rt.upgrade {
		n.proxyUpgrade(w, r, targets, r.URL.RequestURI(), true)
		return
	}
	n.forward(w, r, targets)
}

// recoverHandler turns a panic in a handler into a 500 that says so: one
// bad request must never take the node down.
func (n *Server) recoverHandler(w http.ResponseWriter, r *http.Request, rt route) {
	v := recover()
	if v == nil {
		return
	}
	if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
		panic(v) // the server's own way to abort a response
	}
	n.log.Error("API handler panicked", "route", rt.String(), "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	writeErr(w, api.Errorf(api.CodeInternal, "internal error serving %s (the node logged it): %v", rt, v))
}

// consistentRead: the request asks for a linearizable read (?consistent,
// ?consistent=true, as Consul's).
func consistentRead(r *http.Request) bool {
	q := r.URL.Query()
	if !q.Has("consistent") {
		return false
	}
	v := q.Get("consistent")
	return v == "" || v == "true" || v == "1"
}
