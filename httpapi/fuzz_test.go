package httpapi

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/orchestrator"
	"github.com/kontena-ng/kontena/scheduler"
	"github.com/kontena-ng/kontena/stack"
)

// fuzzBodies are the request types the handlers decode, by the first byte
// of a fuzz input.
var fuzzBodies = []func() any{
	func() any { return &api.StackInstallRequest{} },
	func() any { return &api.ScaleRequest{} },
	func() any { return &api.ServiceDeployRequest{} },
	func() any { return &[]fsm.InstanceReport{} },
	func() any { return &api.NodeUpdateRequest{} },
	func() any { return &api.GridUpdateRequest{} },
	func() any { return &api.TokenCreateRequest{} },
	func() any { return &api.OverlaySetRequest{} },
	func() any { return &fsm.NodeResources{} },
	func() any { return &api.VPNCreateRequest{} },
}

func fuzzStore(t *testing.T) *fsm.Store {
	t.Helper()
	store, err := fsm.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	for i, cmd := range []fsm.Command{
		&fsm.GridInit{Grid: fsm.Grid{Name: "g", Subnet: "10.81.0.0/16", Supernet: "10.80.0.0/12", InitialSize: 1},
			Node: fsm.Node{ID: "id1", Name: "n1", Role: fsm.RoleVoter}, Admin: fsm.User{Name: "admin", Roles: []string{fsm.RoleMasterAdmin}},
			AdminToken: fsm.Token{ID: "t1", Hash: "h", User: "admin"}},
		&fsm.NodeRegister{Node: fsm.Node{ID: "id2", Name: "n2", Role: fsm.RoleWorker, Labels: []string{"az=b"}}},
	} {
		if _, err := store.Apply(uint64(i+1), cmd, &fsm.AuditInfo{User: "admin", Time: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}); err != nil {
			t.Fatal(err)
		}
	}
	return store
}

func FuzzDecodeBody(f *testing.F) {
	seeds := []struct {
		kind byte
		body string
	}{
		{0, stackBody("shop", `{"services":[`+goodService+`]}`)},
		{0, stackBody("shop", `{"volumes":[{"name":"data","driver":"local","scope":"instance"}],"services":[{"name":"db","image":"db:1","instances":1,"stateful":true,`+
			`"volumes":[{"volume":"data","path":"/var/lib/db"}],"ports":[{"node_port":5432,"container_port":5432,"protocol":"tcp"}],"deploy":{"strategy":"daemon","min_health":0.5}},`+
			`{"name":"web","image":"web:1","instances":3,"links":[{"service":"db","alias":"db"}],"depends_on":["db"],"environment":[{"name":"A","value":"1"}],`+
			`"health_check":{"protocol":"http","port":80,"uri":"/","timeout":10,"interval":60,"initial_delay":10},"deploy":{"strategy":"random","min_health":0.8,"wait_for_port":80}}],"expose":"web"}`)},
		{0, stackBody("shop", `{"services":[{"name":"web","image":"web:1","instances":1,"volumes":[null]}]}`)},
		{0, stackBody("shop", `{"volumes":[null],"services":[{"name":"web","image":"web:1","volumes":[{"volume":"data","path":"/d"}]}]}`)},
		{0, stackBody("shop", `{"services":[null]}`)},
		{0, stackBody("shop", `{"services":[{"name":"web","image":"web:1","instances":4611686018427387904}]}`)},
		{1, `{"instances":4611686018427387904}`},
		{1, `{"instances":3}`},
		{2, `{"force":true}`},
		{3, `[{"id":"shop/web-1","actual":{"state":"running","revision":1}},null]`},
		{4, `{"availability":"drain","add_labels":["az=a"]}`},
		{5, `{"default_affinity":["label==az=a"],"offline_grace":"1m"}`},
		{6, `{"description":"ci","expires_in":"1h"}`},
		{7, `{"public_key":"k","port":51820}`},
		{8, `{"cpus":4,"memory_total":1024}`},
		{9, `{"name":"laptop","node":"n1"}`},
	}
	for _, s := range seeds {
		f.Add(s.kind, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, kind byte, body []byte) {
		v := fuzzBodies[int(kind)%len(fuzzBodies)]()
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(string(body)))
		if err := decodeBody(r, v); err != nil {
			if !api.IsCode(err, api.CodeInvalid) {
				t.Fatalf("decode error is not %s: %T %v", api.CodeInvalid, err, err)
			}
			return
		}
		switch req := v.(type) {
		case *api.StackInstallRequest:
			checkStack(t, req)
		case *api.ScaleRequest:
			if err := stack.ValidateInstances(req.Instances); err == nil && (req.Instances < 0 || req.Instances > stack.MaxInstances) {
				t.Fatalf("instances %d accepted", req.Instances)
			}
		case *api.GridUpdateRequest:
			if req.DefaultAffinity != nil {
				for _, rule := range *req.DefaultAffinity {
					_ = scheduler.CheckAffinity(rule)
				}
			}
		case *[]fsm.InstanceReport:
			store := fuzzStore(t)
			if _, err := store.Apply(10, &fsm.InstancesReport{NodeID: "id1", Reports: *req}, nil); errors.Is(err, fsm.ErrApplyPanic) {
				t.Fatalf("report: %v", err)
			}
		}
	})
}

// checkStack runs install's validation; what it accepts must install in
// the FSM and be planned by the leader without a panic.
func checkStack(t *testing.T, req *api.StackInstallRequest) {
	err := checkStackRequest(req)
	if err != nil {
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Code != api.CodeInvalid || ae.Message == "" {
			t.Fatalf("validation error is not a 400: %T %v", err, err)
		}
		return
	}
	for _, svc := range req.Spec.Services {
		if svc == nil || svc.Instances < 0 || svc.Instances > stack.MaxInstances || svc.Image == "" {
			t.Fatalf("accepted service %+v", svc)
		}
	}
	store := fuzzStore(t)
	if _, err := store.Apply(10, &fsm.StackInstall{Stack: fsm.Stack{Name: req.Name, Source: req.Source, Values: req.Values, Spec: req.Spec}},
		&fsm.AuditInfo{User: "admin", Time: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatalf("a stack the API accepts is refused by the FSM: %v", err)
	}
	nodes, _ := store.Nodes()
	services, _ := store.Services("")
	st, _ := store.Stack(req.Name)
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	v := orchestrator.View{Now: now, Nodes: nodes, Services: services, Volumes: map[string][]*stack.Volume{req.Name: st.Spec.Volumes}}
	_, errs := orchestrator.PlanDeploys(v, rand.New(rand.NewPCG(1, 2)))
	for _, e := range errs {
		if strings.Contains(e.Error(), "internal error") {
			t.Fatalf("planning an accepted stack panicked: %v", e)
		}
	}
	_ = orchestrator.PlanLifecycle(now, orchestrator.NewTracker(), nodes, services, nil, nil, nil)
}
