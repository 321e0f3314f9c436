package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/membership"
	"github.com/kontena-ng/kontena/pki"
	"github.com/kontena-ng/kontena/raftnode"
	"github.com/kontena-ng/kontena/stack"
	"github.com/kontena-ng/kontena/vault"
)

// tableGrid is an API server on a one-voter in-memory Raft with a real
// grid CA: the leader is node id1 (the voter's own ID), and the test signs
// certificates for the other principals with the CA.
type tableGrid struct {
	srv   *Server
	rn    *raftnode.Node
	ca    *pki.CA
	admin string
	keys  Keys
}

// keyed is a voter's node actions with its keys.
type keyed struct {
	noActions
	k Keys
}

func (k keyed) Keys() (Keys, bool) { return k.k, true }

func newTableGrid(t *testing.T) *tableGrid {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rn, err := raftnode.StartInmem("id1", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rn.Shutdown() })
	ca, err := pki.NewCA("unit")
	if err != nil {
		t.Fatal(err)
	}
	g := &tableGrid{rn: rn, ca: ca, admin: "ktn_" + pki.RandomHex(24)}
	mk := make([]byte, vault.KeySize)
	_, _ = rand.Read(mk)
	seal, err := vault.NewSealer(mk)
	if err != nil {
		t.Fatal(err)
	}
	g.keys = Keys{CA: ca, Seal: seal, CAPEM: ca.CertPEM, Voter: api.VoterKeys{MasterKey: mk}}
	g.srv = New(Config{ID: "id1", Name: "n1", Voter: func() *raftnode.Node { return rn }, Gossip: noMembers{}, Node: keyed{k: g.keys}, Log: log})
	if _, _, err := g.srv.apply(context.Background(), &fsm.GridInit{Grid: fsm.Grid{Name: "unit", Subnet: "10.81.0.0/16", Supernet: "10.80.0.0/12", InitialSize: 1},
		Node:  fsm.Node{ID: "id1", Name: "n1", Role: fsm.RoleVoter, Status: fsm.StatusOnline},
		Admin: fsm.User{Name: "admin", Roles: []string{fsm.RoleMasterAdmin}}, AdminToken: fsm.Token{ID: "t1", Hash: HashToken(g.admin), User: "admin"}}, nil); err != nil {
		t.Fatal(err)
	}
	return g
}

// cert signs a certificate for node id.
func (g *tableGrid) cert(t *testing.T, id, name string) *tls.Certificate {
	t.Helper()
	keyPEM, pubPEM, err := pki.NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := g.ca.IssueNode(pubPEM, id, name, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := pki.KeyPair(certPEM, keyPEM, g.ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &kp
}

type noMembers struct{}

func (noMembers) Members() map[string]membership.Member { return map[string]membership.Member{} }

type noActions struct{}

func (noActions) Keys() (Keys, bool)          { return Keys{}, false }
func (noActions) Promote(api.VoterKeys) error { return nil }
func (noActions) Demote() error               { return nil }
func (noActions) Removed()                    {}
func (noActions) Locked() bool                { return false }
func (noActions) Unlock([]byte, uint64) error { return nil }

// caller is one principal of the table: a token, a certificate, or both.
type caller struct {
	name  string
	token string
	cert  *tls.Certificate
}

// registerFake puts a node into the state (nothing runs it) and returns a
// certificate the grid CA signed for it.
func registerFake(t *testing.T, g *tableGrid, name, role string) (*tls.Certificate, string) {
	t.Helper()
	id := pki.RandomHex(16)
	node := fsm.Node{ID: id, Name: name, Role: role, Status: fsm.StatusOnline, Availability: "active", Addr: "127.0.0.9",
		APIPort: 1, RaftPort: 2, GossipPort: 3, Version: "test", JoinedAt: time.Now().UTC()}
	if _, _, err := g.srv.apply(context.Background(), &fsm.NodeRegister{Node: node}, nil); err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	return g.cert(t, id, name), id
}

func addToken(t *testing.T, n *Server, expires time.Time) string {
	t.Helper()
	value := "ktn_" + pki.RandomHex(24)
	tok := fsm.Token{ID: pki.RandomHex(4), User: "admin", Hash: HashToken(value), CreatedAt: time.Now().UTC().Add(-2 * time.Hour), ExpiresAt: expires}
	if _, _, err := n.apply(context.Background(), &fsm.TokenCreate{Token: tok}, nil); err != nil {
		t.Fatal(err)
	}
	return value
}

// addUser makes a user through an invite, as `user invite` and `grid
// login --code` do, and returns the access and refresh tokens of its login.
func addUser(t *testing.T, n *Server, email string, roles, stacks []string) (access, refresh string) {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC()
	code := "kti_" + pki.RandomHex(16)
	if _, _, err := n.apply(ctx, &fsm.InviteCreate{Invite: fsm.Invite{ID: pki.RandomHex(4), Hash: HashToken(code), Email: email,
		Roles: roles, Stacks: stacks, CreatedBy: "admin", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}}, nil); err != nil {
		t.Fatal(err)
	}
	rt, at, rv, av := session(email, now)
	if _, _, err := n.apply(ctx, &fsm.InviteRedeem{Hash: HashToken(code), Refresh: rt, Access: at}, &fsm.AuditInfo{User: email, Time: now}); err != nil {
		t.Fatal(err)
	}
	return av, rv
}

func userToken(t *testing.T, n *Server, email, role string) string {
	t.Helper()
	tok, _ := addUser(t, n, email, []string{role}, nil)
	return tok
}

func scopedToken(t *testing.T, n *Server, email, pattern string) string {
	t.Helper()
	tok, _ := addUser(t, n, email, []string{fsm.RoleDeveloper}, []string{pattern})
	return tok
}

// TestAdmissionTable sends every route of the table as every principal
// through the one admission middleware of a real node (real TLS, real
// state), with the handlers replaced by a stub that answers 200: what is
// tested is who gets through. A route without an expected row fails.
func TestAdmissionTable(t *testing.T) {
	g := newTableGrid(t)
	n := g.srv
	ctx := context.Background()

	w1, _ := registerFake(t, g, "w1", fsm.RoleWorker)
	w2, _ := registerFake(t, g, "w2", fsm.RoleWorker)
	v2, _ := registerFake(t, g, "v2", fsm.RoleVoter)
	gone, goneID := registerFake(t, g, "gone", fsm.RoleWorker)
	if _, _, err := n.apply(ctx, &fsm.NodeStatus{Updates: []fsm.NodeStatusUpdate{{ID: goneID, Status: fsm.StatusOffline, At: time.Now().UTC()}}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := n.apply(ctx, &fsm.NodeRemove{ID: goneID}, nil); err != nil {
		t.Fatalf("remove: %v", err)
	}
	expired := addToken(t, n, time.Now().UTC().Add(-time.Hour))
	revoked := addToken(t, n, time.Time{})
	store, _ := n.store()
	toks, _ := store.Tokens("")
	for _, tk := range toks {
		if tk.Hash == HashToken(revoked) {
			if _, _, err := n.apply(ctx, &fsm.TokenRemove{ID: tk.ID}, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	leader := g.cert(t, "id1", "n1")
	_, refresh := addUser(t, n, "refresh@example.com", []string{fsm.RoleViewer}, nil)
	// Load balancer s/x (paths name stack s, service x) and another one.
	if _, _, err := n.apply(ctx, &fsm.StackInstall{Stack: fsm.Stack{Name: "s", Spec: stack.Stack{Name: "s", Services: []*stack.Service{
		{Name: "x", Image: "kontena/lb:latest", Instances: 1}, {Name: "other", Image: "kontena/lb:latest", Instances: 1}}}}, NoDeploy: true}, nil); err != nil {
		t.Fatal(err)
	}

	callers := []caller{
		{name: "none"},
		{name: "garbage", token: "ktn_garbage"},
		{name: "expired", token: expired},
		{name: "revoked", token: revoked},
		{name: "refresh", token: refresh}, // a refresh token used as a bearer token
		{name: "master", token: g.admin},
		{name: "useradm", token: userToken(t, n, "ua@example.com", fsm.RoleUserAdmin)},
		{name: "gridadm", token: userToken(t, n, "ga@example.com", fsm.RoleGridAdmin)},
		{name: "dev", token: userToken(t, n, "dev@example.com", fsm.RoleDeveloper)},
		{name: "devshop", token: scopedToken(t, n, "shop@example.com", "shop-*")}, // a developer of stacks shop-*; paths name stack w1 or s
		{name: "viewer", token: userToken(t, n, "view@example.com", fsm.RoleViewer)},
		{name: "lb", token: lbToken(g.keys.Voter.MasterKey, "s/x")},          // the load balancer the paths name
		{name: "otherlb", token: lbToken(g.keys.Voter.MasterKey, "s/other")}, // another load balancer
		{name: "fakelb", token: lbToken([]byte("not the grid's master key......."), "s/x")},
		{name: "self", cert: w1},  // worker w1; node paths name w1
		{name: "other", cert: w2}, // worker w2 acting on w1
		{name: "voter", cert: v2}, // a voter that does not lead
		{name: "leader", cert: leader},
		{name: "removed", cert: gone},
	}
	// A: admitted (the stub answered), U: 401, F: 403; one letter per
	// caller above.
	const (
		anyUser     = "UUUUUAAAAAAFFUFFFFU"
		read        = "UUUUUAFAAAAFFUFFFFU"
		readStack   = "UUUUUAFAAFAFFUFFFFU"
		dev         = "UUUUUAFAAAFFFUFFFFU"
		devStack    = "UUUUUAFAAFFFFUFFFFU"
		admin       = "UUUUUAFAFFFFFUFFFFU"
		users       = "UUUUUAAFFFFFFUFFFFU"
		nodeOrAdmin = "UUUUUAFAFFFFFUAFFFU"
		nodeOnly    = "UUUUUFFFFFFFFUAFFFU"
		publicRoute = "AAAAAAAAAAAAAAAAAAA"
		voterCall   = "UUUUUFFFFFFFFUFFAAU"
		leaderOnly  = "UUUUUUUUUUUUUUFFFAU"
		voterOnly   = "UUUUUUUUUUUUUUFFAAU"
		lbRoute     = "UUUUUAFAFFFAFUFFFFU"
	)
	want := map[string]string{
		"GET /v1/whoami":                              anyUser,
		"GET /v1/nodes":                               read,
		"GET /v1/nodes/{name}":                        read,
		"PATCH /v1/nodes/{name}":                      admin,
		"DELETE /v1/nodes/{name}":                     admin,
		"POST /v1/nodes/{name}/promote":               admin,
		"POST /v1/nodes/{name}/demote":                admin,
		"GET /v1/grid":                                read,
		"GET /v1/grid/health":                         read,
		"PATCH /v1/grid":                              admin,
		"GET /v1/grid/token":                          admin,
		"POST /v1/grid/token/rotate":                  admin,
		"POST /v1/grid/lock":                          admin,
		"GET /v1/grid/backup":                         admin,
		"POST /v1/grid/master-key/rotate":             admin,
		"POST /v1/grid/unlock-key/rotate":             admin,
		"POST /v1/grid/unlock":                        admin,
		"GET /v1/tokens":                              anyUser,
		"POST /v1/tokens":                             anyUser,
		"DELETE /v1/tokens/{id}":                      anyUser,
		"POST /v1/tokens/used":                        voterCall,
		"GET /v1/users":                               users,
		"GET /v1/users/{name}":                        users,
		"DELETE /v1/users/{name}":                     users,
		"POST /v1/users/{name}/roles":                 users,
		"GET /v1/invites":                             users,
		"POST /v1/invites":                            users,
		"GET /v1/events":                              read,
		"GET /v1/audit":                               admin,
		"POST /v1/stacks":                             dev,
		"GET /v1/stacks":                              read,
		"GET /v1/stacks/{name}":                       readStack,
		"DELETE /v1/stacks/{name}":                    devStack,
		"PUT /v1/stacks/{name}":                       devStack,
		"POST /v1/stacks/{name}/deploy":               devStack,
		"POST /v1/stacks/{name}/stop":                 devStack,
		"POST /v1/stacks/{name}/start":                devStack,
		"POST /v1/stacks/{name}/restart":              devStack,
		"GET /v1/stacks/{name}/logs":                  devStack,
		"GET /v1/services":                            read,
		"GET /v1/services/{stack}/{service}":          readStack,
		"DELETE /v1/services/{stack}/{service}":       devStack,
		"POST /v1/services/{stack}/{service}/scale":   devStack,
		"GET /v1/services/{stack}/{service}/logs":     devStack,
		"GET /v1/services/{stack}/{service}/events":   readStack,
		"POST /v1/services/{stack}/{service}/deploy":  devStack,
		"POST /v1/services/{stack}/{service}/stop":    devStack,
		"POST /v1/services/{stack}/{service}/start":   devStack,
		"POST /v1/services/{stack}/{service}/restart": devStack,
		"GET /v1/containers":                          read,
		"GET /v1/containers/{name}":                   devStack,
		"GET /v1/containers/{name}/logs":              devStack,
		"POST /v1/containers/{name}/exec":             devStack,
		"GET /v1/stats":                               read,
		"GET /v1/vault":                               read,
		"GET /v1/vault/{name...}":                     admin,
		"PUT /v1/vault/{name...}":                     dev,
		"DELETE /v1/vault/{name...}":                  dev,
		"GET /v1/lb/{stack}/{service}/routing":        lbRoute,
		"GET /v1/certificates":                        read,
		"POST /v1/certificates":                       admin,
		"POST /v1/certificates/register":              admin,
		"POST /v1/certificates/request":               admin,
		"GET /v1/certificates/{subject}":              read,
		"GET /v1/certificates/{subject}/export":       admin,
		"DELETE /v1/certificates/{subject}":           admin,
		"GET /v1/vpn":                                 admin,
		"POST /v1/vpn":                                admin,
		"DELETE /v1/vpn/{name}":                       admin,
		"GET /v1/nodes/{name}/assignments":            nodeOrAdmin,
		"POST /v1/nodes/{name}/instances":             nodeOnly,
		"GET /v1/nodes/{name}/netmap":                 nodeOrAdmin,
		"GET /v1/nodes/{name}/overlay":                read,
		"PUT /v1/nodes/{name}/overlay":                nodeOnly,
		"PUT /v1/nodes/{name}/resources":              nodeOnly,
		"POST /v1/join":                               publicRoute,
		"POST /v1/login":                              publicRoute,
		"GET /v1/login/oidc":                          publicRoute,
		"POST /v1/login/device":                       publicRoute,
		"POST /v1/login/recover":                      voterCall,
		"POST /v1/internal/promote":                   leaderOnly,
		"POST /v1/internal/demote":                    leaderOnly,
		"POST /v1/internal/removed":                   leaderOnly,
		"GET /v1/internal/status":                     voterOnly,
		"GET /v1/internal/containers/{name}/logs":     voterOnly,
		"GET /v1/internal/containers/{name}/inspect":  voterOnly,
		"GET /v1/internal/containers/{name}/stats":    voterOnly,
		"POST /v1/internal/containers/{name}/exec":    voterOnly,
	}

	routes := n.routes()
	seen := map[string]bool{}
	for i := range routes {
		key := routes[i].String()
		seen[key] = true
		routes[i].h = func(w http.ResponseWriter, r *http.Request, p *principal) error {
			return writeJSON(w, 0, map[string]string{"reached": key, "as": p.String()})
		}
	}
	for key := range want {
		if !seen[key] {
			t.Errorf("the table expects %s, which the API no longer has", key)
		}
	}
	srv := httptest.NewUnstartedServer(n.mux(routes))
	srvTLS, err := pki.ServerConfig(*g.cert(t, "id1", "n1"), g.ca.CertPEM, false)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = srvTLS
	srv.StartTLS()
	defer srv.Close()

	clients := map[string]*http.Client{}
	for _, c := range callers {
		cfg, err := pki.ClientConfig(g.ca.CertPEM, c.cert)
		if err != nil {
			t.Fatal(err)
		}
		clients[c.name] = &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	}
	for _, rt := range routes {
		key := rt.String()
		row, ok := want[key]
		if !ok {
			t.Errorf("route %s has no row in the admission table: declare who may call it", key)
			continue
		}
		path := strings.NewReplacer("{name...}", "db/password", "{name}", "w1", "{stack}", "s", "{service}", "x", "{id}", "tok", "{subject}", "shop.test").Replace(rt.pattern)
		for i, c := range callers {
			req, _ := http.NewRequest(rt.method, srv.URL+path, strings.NewReader("{}"))
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			resp, err := clients[c.name].Do(req)
			if err != nil {
				t.Errorf("%s as %s: %v", key, c.name, err)
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got := map[int]byte{200: 'A', 401: 'U', 403: 'F'}[resp.StatusCode]
			if got == 0 {
				got = '?'
			}
			if got != row[i] {
				t.Errorf("%s as %s: got %d (%s), want %c", key, c.name, resp.StatusCode, strings.TrimSpace(string(body)), row[i])
			}
		}
	}
}

// TestAuthorize covers what the in-process table cannot: users without
// roles, a stack pattern, and the answers' wording.
func TestAuthorize(t *testing.T) {
	user := &principal{Kind: kindUser, User: "dev"}
	admin := &principal{Kind: kindUser, User: "root", Roles: []string{fsm.RoleMasterAdmin}}
	viewer := &principal{Kind: kindUser, User: "v", Roles: []string{fsm.RoleViewer}}
	shop := &principal{Kind: kindUser, User: "s", Roles: []string{fsm.RoleDeveloper}, Stacks: []string{"shop-*"}}
	ga := &principal{Kind: kindUser, User: "g", Roles: []string{fsm.RoleGridAdmin}, Stacks: []string{"shop-*"}}
	w1 := &principal{Kind: kindNode, Node: "id1", NodeName: "w1", NodeRole: fsm.RoleWorker}
	v1 := &principal{Kind: kindNode, Node: "id2", NodeName: "v1", NodeRole: fsm.RoleVoter}
	tests := []struct {
		allow allow
		p     *principal
		path  string
		stack string
		want  string // "" admitted, else part of the error
	}{
		{allowAnyUser, user, "", "", ""},
		{allowViewer, user, "", "", "needs the viewer role or one above it; user dev acts with []"},
		{allowGridAdmin, user, "", "", "needs the grid_admin role or one above it"},
		{allowGridAdmin, admin, "", "", ""},
		{allowUserAdmin, admin, "", "", ""},
		{allowUserAdmin, ga, "", "", "needs the user_admin role"},
		{allowDeveloper, viewer, "", "", "needs the developer role or one above it; user v acts with [viewer]"},
		{allowViewer, viewer, "", "web", ""},
		{allowDeveloper, shop, "", "shop-web", ""},
		{allowDeveloper, shop, "", "billing", `may act only on stacks matching [shop-*], not on stack "billing"`},
		{allowDeveloper, ga, "", "billing", ""}, // patterns limit developers, not grid admins
		{allowNodeSelf, w1, "w1", "", ""},
		{allowNodeSelf, w1, "id1", "", ""},
		{allowNodeSelf, w1, "w2", "", `may act only on its own resources, not on node "w2"`},
		{allowNodeSelf, w1, "", "", "may act only on its own resources"},
		{allowNodeSelf, user, "w1", "", "is for grid nodes only"},
		{allowVoter, w1, "", "", "accepted only from a voter"},
		{allowVoter, v1, "", "", ""},
		{allowLeader, v1, "", "", "accepted only from the grid's leader"},
		{allowViewer, w1, "", "", "needs a user token"},
		{allowViewer, &principal{}, "", "", "authentication required"},
		{allowPublic, &principal{}, "", "", ""},
	}
	for _, tc := range tests {
		err := authorize(route{method: "GET", pattern: "/x", allow: tc.allow}, tc.p, tc.path, tc.stack)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v as %s on %q: refused: %v", tc.allow, tc.p, tc.path, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v as %s on %q: got %v, want %q", tc.allow, tc.p, tc.path, err, tc.want)
		}
	}
}

func TestWorkerView(t *testing.T) {
	v := workerView{voters: []api.NetVoter{{ID: "v1", Name: "m1"}}}
	if p, err := v.principal("v1"); err != nil || p.NodeRole != fsm.RoleVoter || p.NodeName != "m1" {
		t.Fatalf("voter of the netmap: %+v %v", p, err)
	}
	if _, err := v.principal("w9"); err == nil || !strings.Contains(err.Error(), "not a voter of this grid") {
		t.Fatalf("worker certificate: %v", err)
	}
	if _, err := (workerView{}).principal("v1"); err == nil || !strings.Contains(err.Error(), "no network map yet") {
		t.Fatalf("no netmap: %v", err)
	}
}
