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

// Roles a user may hold.
const (
	RoleMasterAdmin = "master_admin"
	RoleGridAdmin   = "grid_admin"
)

// allow is the set of principals a route accepts.
type allow uint16

const (
	// allowPublic: anyone; the handler authenticates what the request
	// carries itself (join: the join token inside).
	allowPublic allow = 1 << iota
	// allowUser: any user token.
	allowUser
	// allowAdmin: a user token with the master_admin or grid_admin role.
	allowAdmin
	// allowNodeSelf: a node certificate of the node named by {name}.
	allowNodeSelf
	// allowVoter: a node certificate of a voter (by the state).
	allowVoter
	// allowLeader: the current leader's certificate.
	allowLeader
)

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
)

// principal is who made a request.
type principal struct {
	Kind  principalKind
	User  string
	Roles []string
	// Node principals: the node's ID, name and role as the state has them,
	// and whether it leads the grid right now.
	Node     string
	NodeName string
	NodeRole string
	Leader   bool
}

func (p *principal) admin() bool {
	return p.Kind == kindUser && (slices.Contains(p.Roles, RoleMasterAdmin) || slices.Contains(p.Roles, RoleGridAdmin))
}

func (p *principal) String() string {
	switch p.Kind {
	case kindUser:
		return "user " + p.User
	case kindNode:
		return fmt.Sprintf("node %s (%s)", p.NodeName, p.NodeRole)
	}
	return "an anonymous caller"
}

type ctxKey struct{}

// route is one API endpoint with its policy.
type route struct {
	method, pattern string
	allow           allow
	at              where
	// upgrade: the route takes over the connection (exec); it is relayed
	// by splicing, not by copying a body.
	upgrade bool
	h       func(w http.ResponseWriter, r *http.Request, p *principal) error
}

func (rt route) String() string { return rt.method + " " + rt.pattern }

// authorize decides whether p may call rt. It is pure: the principal is
// already resolved against the state.
func authorize(rt route, p *principal, pathName string) error {
	a := rt.allow
	if a&allowPublic != 0 {
		return nil
	}
	switch p.Kind {
	case kindUser:
		if a&allowUser != 0 || (a&allowAdmin != 0 && p.admin()) {
			return nil
		}
		if a&allowAdmin != 0 {
			return api.Errorf(api.CodeForbidden, "%s needs the master_admin or grid_admin role; %s has %v", rt, p, p.Roles)
		}
		return api.Errorf(api.CodeForbidden, "%s is for grid nodes only, not for users", rt)
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
			writeErr(w, authorize(rt, &principal{}, ""))
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
		if err := authorize(rt, p, r.PathValue("name")); err != nil {
			writeErr(w, err)
			return
		}
		if rt.at == atLeader && !rn.IsLeader() {
			n.toLeader(w, r, rt, tok, rn)
			return
		}
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
	if err := authorize(rt, p, r.PathValue("name")); err != nil {
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
		return userPrincipal(rn.Store(), tok, time.Now())
	}
	if id := peerNode(r); id != "" {
		return voterView{rn: rn}.principal(id)
	}
	return nil, authorize(route{}, &principal{}, "")
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

// userPrincipal looks a bearer token up in the state.
func userPrincipal(store *fsm.Store, tok string, now time.Time) (*principal, error) {
	t, err := store.TokenByHash(HashToken(tok))
	if err != nil {
		return nil, api.Errorf(api.CodeUnauthorized, "invalid or revoked token: log in again or create a token with `kontena token create`")
	}
	if t.Expired(now) {
		return nil, api.Errorf(api.CodeUnauthorized, "token %s expired at %s", t.ID, t.ExpiresAt.Format(time.RFC3339))
	}
	u, err := store.User(t.User)
	if err != nil {
		return nil, api.Errorf(api.CodeUnauthorized, "token %s belongs to user %q who no longer exists", t.ID, t.User)
	}
	return &principal{Kind: kindUser, User: u.Name, Roles: u.Roles}, nil
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
