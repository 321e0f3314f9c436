package orchestrator

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/stack"
)

// A leader pass over a state that holds what the API now refuses (written
// before it did) neither panics nor stops planning the other services.
func TestLeaderPassOverBadState(t *testing.T) {
	ns := nodes("online", "online")
	good := service(2, "ha")
	huge := &fsm.Service{ID: "s/huge", Stack: "s", Name: "huge", Revision: 1, Instances: 1 << 62,
		Spec: stack.Service{Name: "huge", Image: "x", Instances: 1 << 62}, Deploy: fsm.DeployState{ID: 3, State: fsm.DeployDeploying}}
	vol := &fsm.Service{ID: "s/vol", Stack: "s", Name: "vol", Revision: 1, Instances: 1,
		Spec: stack.Service{Name: "vol", Image: "x", Instances: 1, Volumes: []stack.Mount{{Volume: "data", Path: "/d"}, {}}}}
	v := View{Now: now, Nodes: ns, Services: []*fsm.Service{huge, vol, good},
		Volumes: map[string][]*stack.Volume{"s": {nil, {Name: "data", Driver: "local", Scope: "instance"}}}}
	cmds, errs := PlanDeploys(v, rand.New(rand.NewPCG(1, 2)))
	got := map[string]bool{}
	for _, c := range cmds {
		got[c.ServiceID] = true
	}
	if !got["s/web"] || !got["s/vol"] || got["s/huge"] {
		t.Fatalf("planned %v, want s/web and s/vol", got)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "s/huge") || !strings.Contains(errs[0].Error(), "instances") {
		t.Fatalf("errs %v", errs)
	}
	out := PlanLifecycle(now, NewTracker(), ns, v.Services, nil, map[string]bool{"s/web": true, "s/vol": true},
		map[string]string{"s/huge": errs[0].(*ServiceError).Err.Error()})
	if len(out) != 1 || out[0].(*fsm.ServiceDeployState).ID != "s/huge" || out[0].(*fsm.ServiceDeployState).State != fsm.DeployFailed {
		t.Fatalf("lifecycle %+v", out)
	}
}

// A panic while one service is planned (a bug the checks miss) marks that
// service failed with the reason; the others still get their plans and
// their verdicts.
func TestLeaderPassRecoversPerService(t *testing.T) {
	hook := func(pass string, svc *fsm.Service) {
		if svc.Name == "bad" {
			panic("boom in " + pass)
		}
	}
	ns := nodes("online", "online")
	mk := func(name string) *fsm.Service {
		s := service(1, "ha")
		s.ID, s.Name, s.Spec.Name = "s/"+name, name, name
		s.Deploy = fsm.DeployState{ID: 7, State: fsm.DeployDeploying}
		return s
	}
	a, bad, b := mk("a"), mk("bad"), mk("b")
	services := []*fsm.Service{a, bad, b}
	cmds, errs := PlanDeploys(View{Now: now, Nodes: ns, Services: services, Hook: hook}, rand.New(rand.NewPCG(1, 2)))
	if len(cmds) != 2 || cmds[0].ServiceID != "s/a" || cmds[1].ServiceID != "s/b" {
		t.Fatalf("cmds %+v", cmds)
	}
	var se *ServiceError
	if len(errs) != 1 || !errors.As(errs[0], &se) || se.ID != "s/bad" || !strings.Contains(se.Err.Error(), "boom in deploy") {
		t.Fatalf("errs %v", errs)
	}
	// Tracking: a and b are placed and running now; bad panics again.
	insts := []*fsm.Instance{}
	for _, s := range []*fsm.Service{a, b} {
		insts = append(insts, &fsm.Instance{ID: s.ID + "-1", ServiceID: s.ID, Number: 1, NodeID: "id1", Revision: 1,
			Actual: fsm.InstanceActual{State: fsm.StateRunning, Revision: 1}})
	}
	tracker := NewTracker()
	tracker.Hook = hook
	out := PlanLifecycle(now, tracker, ns, services, insts, nil, nil)
	verdicts := map[string]string{}
	for _, c := range out {
		d := c.(*fsm.ServiceDeployState)
		verdicts[d.ID] = d.State + " " + d.Error
	}
	if verdicts["s/a"] != "running " || verdicts["s/b"] != "running " || !strings.HasPrefix(verdicts["s/bad"], "failed internal error") ||
		!strings.Contains(verdicts["s/bad"], "boom in lifecycle") {
		t.Fatalf("verdicts %v", verdicts)
	}
}
