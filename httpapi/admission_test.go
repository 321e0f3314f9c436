package httpapi

import (
	"context"
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
)

// tableGrid is an API server on a one-voter in-memory Raft with a real
// grid CA: the leader is node id1 (the voter's own ID), and the test signs
// certificates for the other principals with the CA.
type tableGrid struct {
	srv   *Server
	rn    *raftnode.Node
	ca    *pki.CA
	admin string
}

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
	g.srv = New(Config{ID: "id1", Name: "n1", Voter: func() *raftnode.Node { return rn }, Gossip: noMembers{}, Node: noActions{}, Log: log})
	if _, _, err := g.srv.apply(context.Background(), &fsm.GridInit{Grid: fsm.Grid{Name: "unit", Subnet: "10.81.0.0/16", Supernet: "10.80.0.0/12", InitialSize: 1},
		Node:  fsm.Node{ID: "id1", Name: "n1", Role: fsm.RoleVoter, Status: fsm.StatusOnline},
		Admin: fsm.User{Name: "admin", Roles: []string{RoleMasterAdmin}}, AdminToken: fsm.Token{ID: "t1", Hash: HashToken(g.admin), User: "admin"}}, nil); err != nil {
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

	callers := []caller{
		{name: "none"},
		{name: "garbage", token: "ktn_garbage"},
		{name: "expired", token: expired},
		{name: "revoked", token: revoked},
		{name: "admin", token: g.admin},
		{name: "self", cert: w1},  // worker w1; node paths name w1
		{name: "other", cert: w2}, // worker w2 acting on w1
		{name: "voter", cert: v2}, // a voter that does not lead
		{name: "leader", cert: leader},
		{name: "removed", cert: gone},
	}
	// A: admitted (the stub answered), U: 401, F: 403; one letter per
	// caller above.
	const (
		userRoute   = "UUUUAFFFFU"
		adminRoute  = "UUUUAFFFFU"
		nodeOrAdmin = "UUUUAAFFFU"
		nodeOnly    = "UUUUFAFFFU"
		publicRoute = "AAAAAAAAAA"
		leaderOnly  = "UUUUUFFFAU"
		voterOnly   = "UUUUUFFAAU"
	)
	want := map[string]string{
		"GET /v1/whoami":                              userRoute,
		"GET /v1/nodes":                               userRoute,
		"GET /v1/nodes/{name}":                        userRoute,
		"PATCH /v1/nodes/{name}":                      adminRoute,
		"DELETE /v1/nodes/{name}":                     adminRoute,
		"POST /v1/nodes/{name}/promote":               adminRoute,
		"POST /v1/nodes/{name}/demote":                adminRoute,
		"GET /v1/grid":                                userRoute,
		"GET /v1/grid/health":                         userRoute,
		"PATCH /v1/grid":                              adminRoute,
		"GET /v1/grid/token":                          adminRoute,
		"POST /v1/grid/token/rotate":                  adminRoute,
		"POST /v1/grid/lock":                          adminRoute,
		"GET /v1/grid/backup":                         adminRoute,
		"POST /v1/grid/master-key/rotate":             adminRoute,
		"POST /v1/grid/unlock-key/rotate":             adminRoute,
		"POST /v1/grid/unlock":                        adminRoute,
		"GET /v1/tokens":                              userRoute,
		"POST /v1/tokens":                             userRoute,
		"DELETE /v1/tokens/{id}":                      userRoute,
		"GET /v1/events":                              userRoute,
		"GET /v1/audit":                               adminRoute,
		"POST /v1/stacks":                             adminRoute,
		"GET /v1/stacks":                              userRoute,
		"GET /v1/stacks/{name}":                       userRoute,
		"DELETE /v1/stacks/{name}":                    adminRoute,
		"PUT /v1/stacks/{name}":                       adminRoute,
		"POST /v1/stacks/{name}/deploy":               adminRoute,
		"POST /v1/stacks/{name}/stop":                 adminRoute,
		"POST /v1/stacks/{name}/start":                adminRoute,
		"POST /v1/stacks/{name}/restart":              adminRoute,
		"GET /v1/stacks/{name}/logs":                  adminRoute,
		"GET /v1/services":                            userRoute,
		"GET /v1/services/{stack}/{service}":          userRoute,
		"DELETE /v1/services/{stack}/{service}":       adminRoute,
		"POST /v1/services/{stack}/{service}/scale":   adminRoute,
		"GET /v1/services/{stack}/{service}/logs":     adminRoute,
		"GET /v1/services/{stack}/{service}/events":   userRoute,
		"POST /v1/services/{stack}/{service}/deploy":  adminRoute,
		"POST /v1/services/{stack}/{service}/stop":    adminRoute,
		"POST /v1/services/{stack}/{service}/start":   adminRoute,
		"POST /v1/services/{stack}/{service}/restart": adminRoute,
		"GET /v1/containers":                          userRoute,
		"GET /v1/containers/{name}":                   adminRoute,
		"GET /v1/containers/{name}/logs":              adminRoute,
		"POST /v1/containers/{name}/exec":             adminRoute,
		"GET /v1/stats":                               userRoute,
		"GET /v1/vault":                               adminRoute,
		"GET /v1/vault/{name...}":                     adminRoute,
		"PUT /v1/vault/{name...}":                     adminRoute,
		"DELETE /v1/vault/{name...}":                  adminRoute,
		"GET /v1/vpn":                                 adminRoute,
		"POST /v1/vpn":                                adminRoute,
		"DELETE /v1/vpn/{name}":                       adminRoute,
		"GET /v1/nodes/{name}/assignments":            nodeOrAdmin,
		"POST /v1/nodes/{name}/instances":             nodeOnly,
		"GET /v1/nodes/{name}/netmap":                 nodeOrAdmin,
		"GET /v1/nodes/{name}/overlay":                userRoute,
		"PUT /v1/nodes/{name}/overlay":                nodeOnly,
		"PUT /v1/nodes/{name}/resources":              nodeOnly,
		"POST /v1/join":                               publicRoute,
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
		path := strings.NewReplacer("{name...}", "db/password", "{name}", "w1", "{stack}", "s", "{service}", "x", "{id}", "tok").Replace(rt.pattern)
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

// TestAuthorize covers what the in-process table cannot: a user without
// an admin role, and the answers' wording.
func TestAuthorize(t *testing.T) {
	user := &principal{Kind: kindUser, User: "dev"}
	admin := &principal{Kind: kindUser, User: "root", Roles: []string{RoleMasterAdmin}}
	w1 := &principal{Kind: kindNode, Node: "id1", NodeName: "w1", NodeRole: fsm.RoleWorker}
	v1 := &principal{Kind: kindNode, Node: "id2", NodeName: "v1", NodeRole: fsm.RoleVoter}
	tests := []struct {
		allow allow
		p     *principal
		path  string
		want  string // "" admitted, else part of the error
	}{
		{allowUser | allowAdmin, user, "", ""},
		{allowAdmin, user, "", "needs the master_admin or grid_admin role"},
		{allowAdmin, admin, "", ""},
		{allowNodeSelf, w1, "w1", ""},
		{allowNodeSelf, w1, "id1", ""},
		{allowNodeSelf, w1, "w2", `may act only on its own resources, not on node "w2"`},
		{allowNodeSelf, w1, "", "may act only on its own resources"},
		{allowNodeSelf, user, "w1", "is for grid nodes only"},
		{allowVoter, w1, "", "accepted only from a voter"},
		{allowVoter, v1, "", ""},
		{allowLeader, v1, "", "accepted only from the grid's leader"},
		{allowUser, w1, "", "needs a user token"},
		{allowUser, &principal{}, "", "authentication required"},
		{allowPublic, &principal{}, "", ""},
	}
	for _, tc := range tests {
		err := authorize(route{method: "GET", pattern: "/x", allow: tc.allow}, tc.p, tc.path)
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
