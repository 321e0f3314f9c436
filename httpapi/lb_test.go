package httpapi

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/lb"
	"github.com/kontena-ng/kontena/stack"
)

// TestLBRouting: the routing of a load balancer is the services linked to
// it, with their env (secrets opened), their running instances' overlay
// addresses, and the load balancer reads it with its own token.
func TestLBRouting(t *testing.T) {
	g := newTableGrid(t)
	n := g.srv
	ctx := context.Background()
	sealed, err := g.keys.Seal.Seal([]byte("user ann insecure-password s3cret"), sealSecret("web-auth"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := n.apply(ctx, &fsm.SecretWrite{Name: "web-auth", Sealed: sealed, Mode: "create"}, nil); err != nil {
		t.Fatal(err)
	}
	spec := stack.Stack{Name: "shop", Services: []*stack.Service{
		{Name: "lb", Image: "kontena/lb:latest", Instances: 1},
		{Name: "web", Image: "nginx", Instances: 2, Links: []stack.Link{{Service: "lb"}},
			Environment: []stack.EnvVar{{Name: "KONTENA_LB_VIRTUAL_HOSTS", Value: "shop.test"}, {Name: "KONTENA_LB_INTERNAL_PORT", Value: "8080"}},
			Secrets:     []stack.Secret{{Secret: "web-auth", Name: "KONTENA_LB_BASIC_AUTH_SECRETS", Type: "env"}},
			HealthCheck: &stack.HealthCheck{Protocol: "http", URI: "/healthz", Port: 8080}},
		{Name: "db", Image: "postgres", Instances: 1}, // not linked
	}}
	if _, _, err := n.apply(ctx, &fsm.StackInstall{Stack: fsm.Stack{Name: "shop", Spec: spec}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := n.apply(ctx, &fsm.InstancesPlace{ServiceID: "shop/web", Revision: 1, Place: []fsm.Placement{{Number: 1, NodeID: "id1"}, {Number: 2, NodeID: "id1"}}}, nil); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if _, _, err := n.apply(ctx, &fsm.InstancesReport{NodeID: "id1", Reports: []fsm.InstanceReport{
		{ID: "shop/web-1", Actual: fsm.InstanceActual{State: fsm.StateRunning, IP: "10.81.0.5", Revision: 1, At: now}},
		{ID: "shop/web-2", Actual: fsm.InstanceActual{State: fsm.StateRunning, IP: "10.81.0.6", Revision: 1, Health: fsm.HealthUnhealthy, At: now}},
	}}, nil); err != nil {
		t.Fatal(err)
	}
	store, _ := n.store()
	rt, err := n.lbRouting(store.Snapshot(), "shop/lb")
	if err != nil {
		t.Fatal(err)
	}
	// The wire answer is what the load balancer decodes.
	var r lb.Routing
	if err := roundTrip(rt, &r); err != nil {
		t.Fatal(err)
	}
	cfg, warnings := lb.ConfigOf(r)
	if len(warnings) != 0 || len(cfg.Services) != 1 {
		t.Fatalf("config %+v, warnings %v", cfg, warnings)
	}
	svc := cfg.Services[0]
	if svc.Name != "shop/web" || svc.HealthPath != "/healthz" || len(svc.BasicAuth) != 1 || svc.BasicAuth[0].Password != "s3cret" ||
		len(svc.Backends) != 1 || svc.Backends[0].Addr != "10.81.0.5:8080" || svc.Backends[0].ID != "shop.web-1" {
		t.Fatalf("routed service: %+v", svc)
	}
	// A service that is not a load balancer has no routing.
	if _, err := n.lbRouting(store.Snapshot(), "shop/db"); err == nil || !strings.Contains(err.Error(), "not a load balancer") {
		t.Fatalf("routing of a plain service: %v", err)
	}
	// Its token is the load balancer's principal; another service's is not.
	p, err := n.lbPrincipal(store, lbToken(g.keys.Voter.MasterKey, "shop/lb"))
	if err != nil || p.LB != "shop/lb" {
		t.Fatalf("load balancer principal: %+v %v", p, err)
	}
	if _, err := n.lbPrincipal(store, lbToken(g.keys.Voter.MasterKey, "shop/db")); err == nil {
		t.Fatal("a token for a service that is not a load balancer was accepted")
	}
	// Its instances get the token in their assignments.
	if _, _, err := n.apply(ctx, &fsm.InstancesPlace{ServiceID: "shop/lb", Revision: 1, Place: []fsm.Placement{{Number: 1, NodeID: "id1"}}}, nil); err != nil {
		t.Fatal(err)
	}
	as, err := n.nodeAssignments(store.Snapshot(), "id1")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range as.Items {
		if a.Instance.ServiceID == "shop/lb" {
			found = a.SecretEnv["KONTENA_LB_TOKEN"] == lbToken(g.keys.Voter.MasterKey, "shop/lb") && a.SecretEnv["KONTENA_LB_SERVICE"] == "shop/lb"
		} else if _, ok := a.SecretEnv["KONTENA_LB_TOKEN"]; ok {
			t.Errorf("%s got a load balancer token", a.Instance.ID)
		}
	}
	if !found {
		t.Fatalf("the load balancer's assignment lacks its token: %+v", as.Items)
	}
}

func roundTrip(in, out any) error {
	raw, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, out)
}
