package fsm

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/stack"
)

// linkedStack is web (3) -> api (2, depends on db) -> db (1).
func linkedStack(name string) *StackInstall {
	return &StackInstall{Stack: Stack{Name: name, Source: "stack: me/linked\n",
		Spec: stack.Stack{Name: name, Expose: "web", Services: []*stack.Service{
			{Name: "web", Image: "web:1", Instances: 3, Links: []stack.Link{{Service: "api", Alias: "api"}}},
			{Name: "api", Image: "api:1", Instances: 2, DependsOn: []string{"db"}},
			{Name: "db", Image: "db:1", Instances: 1, Stateful: true},
			{Name: "cron", Image: "cron:1", Instances: 1},
		}}}}
}

func svcOf(t *testing.T, s *Store, id string) *Service {
	t.Helper()
	svc, err := s.Service(id)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func instOf(t *testing.T, s *Store, id string) *Instance {
	t.Helper()
	insts, _ := s.Instances("")
	for _, in := range insts {
		if in.ID == id {
			return in
		}
	}
	t.Fatalf("no instance %s", id)
	return nil
}

func eventTypes(t *testing.T, s *Store, serviceID string) string {
	t.Helper()
	evs, err := s.ServiceEvents(serviceID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Type)
	}
	return strings.Join(out, " ")
}

func TestServiceLifecycleCommands(t *testing.T) {
	s := newStore(t)
	mustApply(t, s, 2, &NodeRegister{Node: Node{ID: "id-2", Name: "n2"}})
	tests := []struct {
		name    string
		cmd     Command
		wantErr error
		check   func(t *testing.T)
	}{
		{"install --no-deploy stores services that are not deployed", &StackInstall{Stack: linkedStack("shop").Stack, NoDeploy: true}, nil, func(t *testing.T) {
			web := svcOf(t, s, "shop/web")
			if !web.Undeployed || web.Deploy.State != "" || web.Status() != "not deployed" {
				t.Fatalf("web = %+v", web)
			}
		}},
		{"restart of a service never deployed is refused", &ServiceRestart{IDs: []string{"shop/web"}}, ErrConflict, nil},
		{"deploy clears undeployed and starts a deploy", &ServiceRedeploy{IDs: []string{"shop/web", "shop/api", "shop/db", "shop/cron"}}, nil, func(t *testing.T) {
			web := svcOf(t, s, "shop/web")
			if web.Undeployed || web.Deploy.State != DeployDeploying || web.Deploy.Reason != ReasonDeploy || web.Revision != 1 || web.Deploy.ID == 0 {
				t.Fatalf("web = %+v", web)
			}
		}},
		{"place", &InstancesPlace{ServiceID: "shop/web", Revision: 1, Place: []Placement{{Number: 1, NodeID: "id-1"}, {Number: 2, NodeID: "id-2"}, {Number: 3, NodeID: "id-1"}}}, nil, func(t *testing.T) {
			if got := eventTypes(t, s, "shop/web"); got != "service.deploying instance.placed instance.placed instance.placed" {
				t.Fatalf("events %s", got)
			}
		}},
		{"verdict: running", &ServiceDeployState{ID: "shop/web", DeployID: 5, State: DeployRunning}, nil, func(t *testing.T) {
			web := svcOf(t, s, "shop/web")
			if web.Deploy.State != DeployRunning || web.Deploy.FinishedAt.IsZero() || web.Status() != "running" {
				t.Fatalf("web deploy = %+v", web.Deploy)
			}
		}},
		{"verdict on an older deploy is ignored", &ServiceDeployState{ID: "shop/web", DeployID: 4, State: DeployFailed, Error: "old"}, nil, func(t *testing.T) {
			if web := svcOf(t, s, "shop/web"); web.Deploy.State != DeployRunning {
				t.Fatalf("stale verdict applied: %+v", web.Deploy)
			}
		}},
		{"bad verdict", &ServiceDeployState{ID: "shop/web", DeployID: 4, State: "meh"}, ErrInvalid, nil},
		{"force deploy bumps the revision", &ServiceRedeploy{IDs: []string{"shop/web"}, Force: true}, nil, func(t *testing.T) {
			web := svcOf(t, s, "shop/web")
			if web.Revision != 2 || web.Deploy.Reason != ReasonForce || web.Deploy.Revision != 2 || web.Deploy.State != DeployDeploying {
				t.Fatalf("web = %+v", web)
			}
		}},
		{"restart bumps the restart generation, not the revision", &ServiceRestart{IDs: []string{"shop/web"}}, nil, func(t *testing.T) {
			web := svcOf(t, s, "shop/web")
			if web.Revision != 2 || web.RestartGen != 1 || web.Deploy.Reason != ReasonRestart {
				t.Fatalf("web = %+v", web)
			}
			if in := instOf(t, s, "shop/web-1"); in.Restart != 0 {
				t.Fatalf("the leader rolls restarts, the command must not touch instances: %+v", in)
			}
		}},
		{"placement carries the restart generation", &InstancesPlace{ServiceID: "shop/web", Revision: 2, Place: []Placement{{Number: 1, NodeID: "id-1", Restart: 1}, {Number: 2, NodeID: "id-2", Revision: 1}, {Number: 3, NodeID: "id-1", Revision: 1}}}, nil, func(t *testing.T) {
			if in := instOf(t, s, "shop/web-1"); in.Restart != 1 || in.Revision != 2 {
				t.Fatalf("web-1 = %+v", in)
			}
			if in := instOf(t, s, "shop/web-2"); in.Restart != 0 || in.Revision != 1 {
				t.Fatalf("web-2 = %+v", in)
			}
		}},
		{"stop marks the service and its instances", &ServiceStop{IDs: []string{"shop/web"}}, nil, func(t *testing.T) {
			web := svcOf(t, s, "shop/web")
			if !web.Stopped || web.Status() != "stopped" {
				t.Fatalf("web = %+v", web)
			}
			insts, _ := s.Instances("shop/web")
			for _, in := range insts {
				if !in.Stopped || in.NodeID == "" {
					t.Fatalf("instance after stop: %+v (must keep its node)", in)
				}
			}
		}},
		{"instances placed while stopped are stopped", &InstancesPlace{ServiceID: "shop/web", Revision: 2, Place: []Placement{{Number: 2, NodeID: "id-1"}}}, nil, func(t *testing.T) {
			if in := instOf(t, s, "shop/web-2"); !in.Stopped || in.NodeID != "id-1" {
				t.Fatalf("moved web-2 = %+v", in)
			}
		}},
		{"restart of a stopped service is refused", &ServiceRestart{IDs: []string{"shop/web"}}, ErrConflict, nil},
		{"deploy of a stopped service is refused", &ServiceRedeploy{IDs: []string{"shop/web"}}, ErrConflict, nil},
		{"scale of a stopped service starts no deploy", &ServiceScale{ID: "shop/web", Instances: 4}, nil, func(t *testing.T) {
			if web := svcOf(t, s, "shop/web"); web.Deploy.Reason != ReasonRestart || web.Instances != 4 {
				t.Fatalf("web = %+v", web)
			}
		}},
		{"stop twice is a no-op", &ServiceStop{IDs: []string{"shop/web"}}, nil, nil},
		{"start restarts every instance at once", &ServiceStart{IDs: []string{"shop/web"}}, nil, func(t *testing.T) {
			web := svcOf(t, s, "shop/web")
			if web.Stopped || web.RestartGen != 2 || web.Deploy.Reason != ReasonStart || web.Deploy.State != DeployDeploying {
				t.Fatalf("web = %+v", web)
			}
			insts, _ := s.Instances("shop/web")
			for _, in := range insts {
				if in.Stopped || in.Restart != 2 {
					t.Fatalf("instance after start: %+v", in)
				}
			}
		}},
		{"unknown service", &ServiceStop{IDs: []string{"shop/nope"}}, ErrNotFound, nil},
		{"no service", &ServiceStart{}, ErrInvalid, nil},
		{"remove a service others depend on (depends_on)", &ServiceRemove{ID: "shop/db"}, ErrConflict, nil},
		{"remove a service others link to", &ServiceRemove{ID: "shop/api"}, ErrConflict, nil},
		{"remove the exposed service", &ServiceRemove{ID: "shop/web"}, ErrConflict, nil},
		{"remove a free service", &ServiceRemove{ID: "shop/cron"}, nil, func(t *testing.T) {
			if _, err := s.Service("shop/cron"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("cron still there: %v", err)
			}
			st, _ := s.Stack("shop")
			if st.Spec.Service("cron") != nil || len(st.Spec.Services) != 3 || st.Revision != 2 {
				t.Fatalf("stack after service rm: rev %d, %d services", st.Revision, len(st.Spec.Services))
			}
			if got := eventTypes(t, s, "shop/cron"); !strings.HasSuffix(got, "service.removed") {
				t.Fatalf("cron events %s", got)
			}
		}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Apply(uint64(3+i), tc.cmd, audit("admin"))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.check != nil {
				tc.check(t)
			}
		})
	}
	t.Run("the error of a refused removal names the dependents", func(t *testing.T) {
		_, err := s.Apply(100, &ServiceRemove{ID: "shop/db"}, audit("admin"))
		if err == nil || !strings.Contains(err.Error(), "shop/api depend on it") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("the last service cannot be removed", func(t *testing.T) {
		s2 := newStore(t)
		mustApply(t, s2, 2, &StackInstall{Stack: Stack{Name: "one", Spec: stack.Stack{Name: "one", Services: []*stack.Service{{Name: "x", Image: "x", Instances: 1}}}}})
		if _, err := s2.Apply(3, &ServiceRemove{ID: "one/x"}, audit("admin")); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "stack rm") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("lifecycle survives a snapshot", func(t *testing.T) {
		s2 := roundTrip(t, s)
		web := svcOf(t, s2, "shop/web")
		if web.RestartGen != 2 || web.Deploy.Reason != ReasonStart || web.Revision != 2 {
			t.Fatalf("restored web = %+v", web)
		}
	})
}

func TestDeployStartsWithChanges(t *testing.T) {
	s := newStore(t)
	mustApply(t, s, 2, webStack("shop"))
	web := svcOf(t, s, "shop/web")
	if web.Deploy.State != DeployDeploying || web.Deploy.Reason != ReasonInstall || web.Deploy.ID != 2 || !web.Deploy.StartedAt.Equal(t0) {
		t.Fatalf("install deploy = %+v", web.Deploy)
	}
	mustApply(t, s, 3, &ServiceDeployState{ID: "shop/web", DeployID: 2, State: DeployFailed, Error: "boom"})
	mustApply(t, s, 4, &ServiceDeployState{ID: "shop/db", DeployID: 2, State: DeployRunning})
	if web := svcOf(t, s, "shop/web"); web.Deploy.State != DeployFailed || web.Deploy.Error != "boom" {
		t.Fatalf("web = %+v", web.Deploy)
	}
	// A failed deploy that converges after all is running again.
	mustApply(t, s, 5, &ServiceDeployState{ID: "shop/web", DeployID: 2, State: DeployRunning})
	evs, _ := s.ServiceEvents("shop/web", 0)
	if last := evs[len(evs)-1]; last.Type != "service.deployed" || !strings.Contains(last.Message, "after it had failed") {
		t.Fatalf("last event %+v", last)
	}
	mustApply(t, s, 6, &ServiceScale{ID: "shop/web", Instances: 4})
	if web := svcOf(t, s, "shop/web"); web.Deploy.Reason != ReasonScale || web.Deploy.ID != 6 {
		t.Fatalf("scale deploy = %+v", web.Deploy)
	}
	// An upgrade starts a deploy of the changed services only, and keeps
	// the lifecycle of the others.
	mustApply(t, s, 7, &ServiceStop{IDs: []string{"shop/db"}})
	up := webStack("shop")
	up.Stack.Spec.Services[0].Image = "web:2"
	up.Stack.Spec.Services[0].Instances = 4
	mustApply(t, s, 8, &StackUpgrade{Stack: up.Stack})
	web = svcOf(t, s, "shop/web")
	db := svcOf(t, s, "shop/db")
	if web.Deploy.ID != 8 || web.Deploy.Reason != ReasonUpgrade || web.Deploy.Revision != 2 {
		t.Fatalf("web deploy after upgrade = %+v", web.Deploy)
	}
	if !db.Stopped || db.Deploy.ID != 2 {
		t.Fatalf("db after upgrade = %+v (stays stopped, no new deploy)", db)
	}
}

func TestServiceDeployInterval(t *testing.T) {
	svc := &Service{Spec: stack.Service{Deploy: stack.Deploy{Interval: stack.Duration(time.Hour)}}, Deploy: DeployState{StartedAt: t0}}
	if got := svc.NextDeploy(); !got.Equal(t0.Add(time.Hour)) {
		t.Fatalf("next = %v", got)
	}
	svc.Stopped = true
	if !svc.NextDeploy().IsZero() {
		t.Fatal("a stopped service has no next deploy")
	}
}

func TestInstanceEventsFromReports(t *testing.T) {
	s := newStore(t)
	mustApply(t, s, 2, webStack("shop"))
	mustApply(t, s, 3, &InstancesPlace{ServiceID: "shop/web", Revision: 1, Place: []Placement{{Number: 1, NodeID: "id-1"}}})
	died := InstanceActual{State: "running", Revision: 1, Event: "died", EventMessage: "exited with code 137; started again", EventAt: t0}
	mustApply(t, s, 4, &InstancesReport{NodeID: "id-1", Reports: []InstanceReport{{ID: "shop/web-1", Actual: died}}})
	// The same event reported again is not a new event.
	mustApply(t, s, 5, &InstancesReport{NodeID: "id-1", Reports: []InstanceReport{{ID: "shop/web-1", Actual: died}}})
	// A restarted agent that forgot it does not erase it.
	mustApply(t, s, 6, &InstancesReport{NodeID: "id-1", Reports: []InstanceReport{{ID: "shop/web-1", Actual: InstanceActual{State: "running", Revision: 1}}}})
	if in := instOf(t, s, "shop/web-1"); in.Actual.Event != EventDied || !in.Actual.At.Equal(t0) {
		t.Fatalf("web-1 actual = %+v", in.Actual)
	}
	unhealthy := InstanceActual{State: "unhealthy", Revision: 1, Event: "unhealthy", EventMessage: "GET / status 404; restarted", EventAt: t0.Add(time.Minute)}
	mustApply(t, s, 7, &InstancesReport{NodeID: "id-1", Reports: []InstanceReport{{ID: "shop/web-1", Actual: unhealthy}}})
	if got := eventTypes(t, s, "shop/web"); got != "service.deploying instance.placed instance.died service.deploy_failed instance.unhealthy" {
		t.Fatalf("events %s", got)
	}
	evs, _ := s.ServiceEvents("shop/web", 0)
	if msg := evs[len(evs)-1].Message; msg != "shop/web-1 on n1 unhealthy: GET / status 404; restarted" {
		t.Fatalf("message %q", msg)
	}
	// Events of shop/web-2... never leak into shop/web.
	if EventOfService(&Event{Resource: "instance/shop/web-2-1"}, "shop/web") || !EventOfService(&Event{Resource: "instance/shop/web-12"}, "shop/web") {
		t.Fatal("EventOfService mixes services up")
	}
}

func TestDeathFailsTheDeployThatStartedIt(t *testing.T) {
	died := func(rev uint64, at time.Time) *InstancesReport {
		return &InstancesReport{NodeID: "id-1", Reports: []InstanceReport{{ID: "shop/web-1", Actual: InstanceActual{State: "running", Revision: rev,
			Event: "died", EventMessage: "exited with code 1; started again", EventAt: at}}}}
	}
	tests := []struct {
		name     string
		before   []Command
		report   *InstancesReport
		wantFail bool
	}{
		{"a new revision that dies fails its deploy", []Command{&ServiceRedeploy{IDs: []string{"shop/web"}, Force: true},
			&InstancesPlace{ServiceID: "shop/web", Revision: 2, Place: []Placement{{Number: 1, NodeID: "id-1"}}}}, died(2, t0), true},
		{"an old container dying is not the new deploy's failure", []Command{&ServiceRedeploy{IDs: []string{"shop/web"}, Force: true}}, died(1, t0), false},
		{"a death during a scale is not its failure", []Command{&ServiceScale{ID: "shop/web", Instances: 2}}, died(1, t0), false},
		{"a death after the deploy finished", nil, died(1, t0), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			mustApply(t, s, 2, webStack("shop"))
			mustApply(t, s, 3, &InstancesPlace{ServiceID: "shop/web", Revision: 1, Place: []Placement{{Number: 1, NodeID: "id-1"}}})
			mustApply(t, s, 4, &ServiceDeployState{ID: "shop/web", DeployID: 2, State: DeployRunning})
			for i, c := range tc.before {
				mustApply(t, s, uint64(5+i), c)
			}
			mustApply(t, s, 10, tc.report)
			web := svcOf(t, s, "shop/web")
			if failed := web.Deploy.State == DeployFailed; failed != tc.wantFail {
				t.Fatalf("deploy = %+v, want failed %v", web.Deploy, tc.wantFail)
			}
			if tc.wantFail && !strings.Contains(web.Deploy.Error, "shop/web-1 on n1 died: exited with code 1") {
				t.Fatalf("error %q", web.Deploy.Error)
			}
		})
	}
}
