package httpapi

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/leader"
	"github.com/kontena-ng/kontena/raftnode"
	"github.com/kontena-ng/kontena/stack"
)

// testVoter is an API server whose node is the leader of a one-voter
// in-memory Raft over a real fsm.FSM: handlers run their whole path, Raft
// apply included.
func testVoter(t *testing.T) *testServer {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rn, err := raftnode.StartInmem("id1", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rn.Shutdown() })
	n := &testServer{Server: New(Config{ID: "id1", Name: "n1", Voter: func() *raftnode.Node { return rn }, Log: log}), rn: rn, log: log}
	if _, _, err := n.apply(t.Context(), &fsm.GridInit{Grid: fsm.Grid{Name: "g", Subnet: "10.81.0.0/16", Supernet: "10.80.0.0/12", InitialSize: 1},
		Node: fsm.Node{ID: "id1", Name: "n1", Role: fsm.RoleVoter}, Admin: fsm.User{Name: "admin", Roles: []string{fsm.RoleMasterAdmin}},
		AdminToken: fsm.Token{ID: "t1", Hash: "h", User: "admin"}}, nil); err != nil {
		t.Fatal(err)
	}
	return n
}

// testServer is a Server with the voter it serves.
type testServer struct {
	*Server
	rn  *raftnode.Node
	log *slog.Logger
}

var admin = &principal{Kind: kindUser, User: "admin", Roles: []string{fsm.RoleMasterAdmin}}

// call runs a handler on a request as the admin; path values are given
// as name=value pairs.
func call(h func(http.ResponseWriter, *http.Request, *principal) error, method, target, body string, pathValues ...string) (*httptest.ResponseRecorder, error) {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	for i := 0; i+1 < len(pathValues); i += 2 {
		r.SetPathValue(pathValues[i], pathValues[i+1])
	}
	w := httptest.NewRecorder()
	return w, h(w, r, admin)
}

// wantInvalid checks err is a 400 naming every part of want.
func wantInvalid(t *testing.T, err error, want ...string) {
	t.Helper()
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeInvalid || ae.Status != http.StatusBadRequest {
		t.Fatalf("want a 400 %s, got %T %v", api.CodeInvalid, err, err)
	}
	for _, w := range want {
		if !strings.Contains(ae.Message, w) {
			t.Fatalf("error %q does not name %q", ae.Message, w)
		}
	}
}

const goodService = `{"name":"web","image":"web:1","instances":1,"deploy":{"strategy":"ha","min_health":0.8},"stop_grace_period":"10s"}`

func stackBody(name, spec string) string {
	return fmt.Sprintf(`{"name":%q,"file_name":"kontena.yml","source":"stack: a/b","spec":%s}`, name, spec)
}

func TestInstallStackValidates(t *testing.T) {
	n := testVoter(t)
	many := make([]string, stack.MaxServices+1)
	for i := range many {
		many[i] = fmt.Sprintf(`{"name":"s%d","image":"x"}`, i)
	}
	labels := make([]string, stack.MaxLabels+1)
	for i := range labels {
		labels[i] = fmt.Sprintf(`"k%d":"v"`, i)
	}
	cases := []struct {
		name, body string
		want       []string
	}{
		{"service volumes [null]", stackBody("shop", `{"services":[{"name":"web","image":"web:1","instances":1,"volumes":[null]}]}`),
			[]string{"stack shop", "services.web.volumes[0]"}},
		{"stack volumes [null]", stackBody("shop", `{"volumes":[null],"services":[{"name":"web","image":"web:1","volumes":[{"volume":"data","path":"/d"}]}]}`),
			[]string{"stack shop", "volumes[0]", "null"}},
		{"services [null]", stackBody("shop", `{"services":[null]}`), []string{"services[0]", "null"}},
		{"instances 2^62", stackBody("shop", `{"services":[{"name":"web","image":"web:1","instances":4611686018427387904}]}`),
			[]string{"services.web.instances", "between 0 and 10000"}},
		{"instances above the bound", stackBody("shop", `{"services":[{"name":"web","image":"web:1","instances":10001}]}`),
			[]string{"services.web.instances"}},
		{"negative instances", stackBody("shop", `{"services":[{"name":"web","image":"web:1","instances":-1}]}`),
			[]string{"services.web.instances"}},
		{"too many services", stackBody("shop", `{"services":[`+strings.Join(many, ",")+`]}`), []string{"services", "at most 256"}},
		{"too many labels", stackBody("shop", `{"labels":{`+strings.Join(labels, ",")+`},"services":[`+goodService+`]}`), []string{"labels"}},
		{"service name not a DNS label", stackBody("shop", `{"services":[{"name":"Web.1","image":"x"}]}`), []string{"services[0].name"}},
		{"service name too long", stackBody("shop", `{"services":[{"name":"`+strings.Repeat("a", 64)+`","image":"x"}]}`), []string{"services[0].name"}},
		{"duplicate services", stackBody("shop", `{"services":[`+goodService+`,`+goodService+`]}`), []string{"services.web", "twice"}},
		{"stack name", stackBody("Shop_1", `{"services":[`+goodService+`]}`), []string{"stack name"}},
		{"stack name ends with -", stackBody("shop-", `{"services":[`+goodService+`]}`), []string{"stack name"}},
		{"ports [null]", stackBody("shop", `{"services":[{"name":"web","image":"x","ports":[null]}]}`), []string{"services.web.ports[0]"}},
		{"port out of range", stackBody("shop", `{"services":[{"name":"web","image":"x","ports":[{"node_port":70000,"container_port":80,"protocol":"tcp"}]}]}`),
			[]string{"services.web.ports[0]"}},
		{"links [null]", stackBody("shop", `{"services":[{"name":"web","image":"x","links":[null]}]}`), []string{"services.web.links[0]"}},
		{"link to a missing service", stackBody("shop", `{"services":[{"name":"web","image":"x","links":[{"service":"db","alias":"db"}]}]}`),
			[]string{"services.web.links[0]", `"db"`}},
		{"depends_on a missing service", stackBody("shop", `{"services":[{"name":"web","image":"x","depends_on":["db"]}]}`),
			[]string{"services.web.depends_on[0]"}},
		{"undeclared volume", stackBody("shop", `{"services":[{"name":"web","image":"x","volumes":[{"volume":"data","path":"/d"}]}]}`),
			[]string{"services.web.volumes[0]", "not declared"}},
		{"env name empty", stackBody("shop", `{"services":[{"name":"web","image":"x","environment":[{"name":"","value":"v"}]}]}`),
			[]string{"services.web.environment[0]"}},
		{"env too large", stackBody("shop", `{"services":[{"name":"web","image":"x","environment":[{"name":"A","value":"`+strings.Repeat("x", stack.MaxStringLen+1)+`"}]}]}`),
			[]string{"services.web.environment[0].value"}},
		{"strategy", stackBody("shop", `{"services":[{"name":"web","image":"x","deploy":{"strategy":"all"}}]}`), []string{"services.web.deploy.strategy"}},
		{"min_health", stackBody("shop", `{"services":[{"name":"web","image":"x","deploy":{"min_health":2}}]}`), []string{"services.web.deploy.min_health"}},
		{"negative memory", stackBody("shop", `{"services":[{"name":"web","image":"x","mem_limit":-1}]}`), []string{"services.web.mem_limit"}},
		{"expose a missing service", stackBody("shop", `{"expose":"lb","services":[`+goodService+`]}`), []string{"expose"}},
		{"no image", stackBody("shop", `{"services":[{"name":"web"}]}`), []string{"service web has no image"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := call(n.installStack, http.MethodPost, "/v1/stacks", c.body)
			wantInvalid(t, err, c.want...)
		})
	}
	if sts, _ := n.rn.Store().Stacks(); len(sts) != 0 {
		t.Fatalf("refused stacks were stored: %v", sts)
	}
	w, err := call(n.installStack, http.MethodPost, "/v1/stacks", stackBody("shop", `{"services":[`+goodService+`]}`))
	if err != nil || w.Code != http.StatusOK {
		t.Fatalf("a good stack: %v %d %s", err, w.Code, w.Body)
	}
}

func TestUpgradeStackValidates(t *testing.T) {
	n := testVoter(t)
	if _, err := call(n.installStack, http.MethodPost, "/v1/stacks", stackBody("shop", `{"services":[`+goodService+`]}`)); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"", "?dry_run=true"} {
		_, err := call(n.upgradeStack, http.MethodPut, "/v1/stacks/shop"+q,
			stackBody("", `{"volumes":[null],"services":[{"name":"web","image":"web:2","volumes":[null]}]}`), "name", "shop")
		wantInvalid(t, err, "stack shop", "volumes[0]", "services.web.volumes[0]")
		_, err = call(n.upgradeStack, http.MethodPut, "/v1/stacks/shop"+q, stackBody("", `{"services":[null]}`), "name", "shop")
		wantInvalid(t, err, "services[0]")
	}
	st, err := n.rn.Store().Stack("shop")
	if err != nil || st.Revision != 1 {
		t.Fatalf("the refused upgrade changed the stack: %+v %v", st, err)
	}
}

func TestScaleServiceValidates(t *testing.T) {
	n := testVoter(t)
	if _, err := call(n.installStack, http.MethodPost, "/v1/stacks", stackBody("shop", `{"services":[`+goodService+`]}`)); err != nil {
		t.Fatal(err)
	}
	for _, count := range []string{"4611686018427387904", "10001", "-1"} {
		_, err := call(n.scaleService, http.MethodPost, "/v1/services/shop/web/scale", `{"instances":`+count+`}`, "stack", "shop", "service", "web")
		wantInvalid(t, err, "shop/web", "instances", "between 0 and 10000")
	}
	svc, _ := n.rn.Store().Service("shop/web")
	if svc.Instances != 1 {
		t.Fatalf("instances %d after refused scales", svc.Instances)
	}
	if _, err := call(n.scaleService, http.MethodPost, "/v1/services/shop/web/scale", `{"instances":1000}`, "stack", "shop", "service", "web"); err != nil {
		t.Fatalf("scale to the bound: %v", err)
	}
	// The FSM refuses what the handler would (a command from elsewhere).
	_, _, err := n.apply(t.Context(), &fsm.ServiceScale{ID: "shop/web", Instances: 1 << 62}, nil)
	if !errors.Is(err, fsm.ErrInvalid) {
		t.Fatalf("fsm scale 2^62: %v", err)
	}
	// The leader's pass over what is stored survives and plans.
	leader.New(leader.Config{Raft: func() (leader.Raft, bool) { return n.rn, true }, Log: n.log, Rand: rand.New(rand.NewPCG(1, 2))}).Pass(t.Context())
	if insts, _ := n.rn.Store().Instances("shop/web"); len(insts) != 1000 {
		t.Fatalf("%d instances placed, want 1000", len(insts))
	}
}
