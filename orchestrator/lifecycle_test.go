package orchestrator

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/stack"
)

// running returns instances 1..n of s/web on nodes id1..idk, reported
// running at revision rev and restart generation gen.
func runningInstances(n, k int, rev, gen uint64) []*fsm.Instance {
	var out []*fsm.Instance
	for i := 1; i <= n; i++ {
		out = append(out, &fsm.Instance{ID: fmt.Sprintf("s/web-%d", i), ServiceID: "s/web", Number: i,
			NodeID: fmt.Sprintf("id%d", (i-1)%k+1), Revision: rev, Restart: gen,
			Actual: fsm.InstanceActual{State: fsm.StateRunning, Revision: rev, Restart: gen}})
	}
	return out
}

// moves describes a placement command as "n@node:rRev/gGen" per instance.
func moves(cmd *fsm.InstancesPlace) string {
	if cmd == nil {
		return "none"
	}
	var out []string
	for _, p := range cmd.Place {
		out = append(out, fmt.Sprintf("%d@%s:r%d/g%d", p.Number, p.NodeID, p.Revision, p.Restart))
	}
	if len(cmd.Remove) > 0 {
		out = append(out, fmt.Sprintf("remove %v", cmd.Remove))
	}
	return strings.Join(out, " ")
}

// applyPlace does what the FSM does with a placement, for the next pass.
func applyPlace(insts []*fsm.Instance, cmd *fsm.InstancesPlace) {
	for _, p := range cmd.Place {
		for _, in := range insts {
			if in.Number == p.Number {
				in.NodeID, in.Revision = p.NodeID, p.Revision
				if p.Restart > 0 {
					in.Restart = p.Restart
				}
			}
		}
	}
}

func onePlan(t *testing.T, svc *fsm.Service, insts []*fsm.Instance, ns []*fsm.Node) *fsm.InstancesPlace {
	t.Helper()
	cmds, errs := PlanDeploys(View{Now: now, Nodes: ns, Services: []*fsm.Service{svc}, Instances: insts}, rand.New(rand.NewPCG(1, 2)))
	if len(errs) > 0 {
		t.Fatalf("errs %v", errs)
	}
	if len(cmds) == 0 {
		return nil
	}
	return cmds[0]
}

func TestPlanDeploysLifecycle(t *testing.T) {
	three := nodes("online", "online", "online")
	t.Run("restart rolls one instance at a time (min_health 0.8 of 3)", func(t *testing.T) {
		svc := service(3, "ha")
		svc.RestartGen = 1
		insts := runningInstances(3, 3, 1, 0)
		cmd := onePlan(t, svc, insts, three)
		if got := moves(cmd); got != "1@id1:r1/g1 2@id2:r1/g0 3@id3:r1/g0" {
			t.Fatalf("first pass: %s", got)
		}
		applyPlace(insts, cmd)
		// Instance 1 is asked to restart but has not reported it: wait.
		if got := moves(onePlan(t, svc, insts, three)); got != "none" {
			t.Fatalf("second instance restarted before the first is back: %s", got)
		}
		insts[0].Actual.Restart = 1
		if got := moves(onePlan(t, svc, insts, three)); got != "1@id1:r1/g1 2@id2:r1/g1 3@id3:r1/g0" {
			t.Fatalf("third pass: %s", got)
		}
	})
	t.Run("restart with min_health 0.5 of 4 takes two at a time", func(t *testing.T) {
		svc := service(4, "ha")
		svc.Spec.Deploy.MinHealth = 0.5
		svc.RestartGen = 3
		insts := runningInstances(4, 4, 1, 2)
		if got := moves(onePlan(t, svc, insts, nodes("online", "online", "online", "online"))); got != "1@id1:r1/g3 2@id2:r1/g3 3@id3:r1/g2 4@id4:r1/g2" {
			t.Fatalf("plan: %s", got)
		}
	})
	t.Run("force deploy is a new revision: a rolling replace", func(t *testing.T) {
		svc := service(3, "ha")
		svc.Revision = 2 // what ServiceRedeploy{Force} does
		insts := runningInstances(3, 3, 1, 0)
		if got := moves(onePlan(t, svc, insts, three)); got != "1@id1:r2/g0 2@id2:r1/g0 3@id3:r1/g0" {
			t.Fatalf("plan: %s", got)
		}
	})
	t.Run("wait_for_port: an instance is in flight until its port is open", func(t *testing.T) {
		svc := service(3, "ha")
		svc.Revision = 2
		svc.Spec.Deploy.WaitForPort = 5432
		insts := runningInstances(3, 3, 1, 0)
		insts[0].Revision = 2
		insts[0].Actual = fsm.InstanceActual{State: fsm.StateRunning, Revision: 2, WaitPort: fsm.WaitPortWaiting}
		for _, in := range insts[1:] {
			in.Actual.WaitPort = fsm.WaitPortOpen
		}
		if got := moves(onePlan(t, svc, insts, three)); got != "none" {
			t.Fatalf("rolled on while instance 1 waits for its port: %s", got)
		}
		insts[0].Actual.WaitPort = fsm.WaitPortOpen
		if got := moves(onePlan(t, svc, insts, three)); got != "1@id1:r2/g0 2@id2:r2/g0 3@id3:r1/g0" {
			t.Fatalf("after the port opened: %s", got)
		}
	})
	t.Run("a stopped service keeps its nodes and moves on all at once", func(t *testing.T) {
		svc := service(3, "ha")
		svc.Stopped, svc.Revision = true, 2
		insts := runningInstances(3, 3, 1, 0)
		for _, in := range insts {
			in.Stopped, in.Actual.State = true, "stopped"
		}
		if got := moves(onePlan(t, svc, insts, three)); got != "1@id1:r2/g0 2@id2:r2/g0 3@id3:r2/g0" {
			t.Fatalf("plan: %s", got)
		}
		// Unchanged, it is left alone: stopping moves nothing.
		svc.Revision = 1
		if got := moves(onePlan(t, svc, insts, three)); got != "none" {
			t.Fatalf("plan of a stopped, placed service: %s", got)
		}
	})
	t.Run("a started service does not roll: its instances are already at the generation", func(t *testing.T) {
		svc := service(3, "ha")
		svc.RestartGen = 1 // ServiceStart bumped it on the service and every instance
		insts := runningInstances(3, 3, 1, 1)
		for _, in := range insts {
			in.Actual = fsm.InstanceActual{State: "stopped", Revision: 1}
		}
		if got := moves(onePlan(t, svc, insts, three)); got != "none" {
			t.Fatalf("plan: %s", got)
		}
	})
	t.Run("a stopped service moves off a dead node like any other", func(t *testing.T) {
		svc := service(2, "ha")
		svc.Stopped = true
		insts := runningInstances(2, 2, 1, 0)
		if got := moves(onePlan(t, svc, insts, nodes("online", "offline@3m", "online"))); got != "1@id1:r1/g0 2@id3:r1/g0" {
			t.Fatalf("plan: %s", got)
		}
	})
	t.Run("a service installed with --no-deploy is not placed", func(t *testing.T) {
		svc := service(3, "ha")
		svc.Undeployed = true
		if got := moves(onePlan(t, svc, nil, three)); got != "none" {
			t.Fatalf("plan: %s", got)
		}
	})
	t.Run("a failed deploy halts the rollout; new instances are still placed", func(t *testing.T) {
		svc := service(4, "ha")
		svc.Revision = 2
		svc.Deploy.State = fsm.DeployFailed
		insts := runningInstances(3, 3, 1, 0)
		if got := moves(onePlan(t, svc, insts, three)); got != "1@id1:r1/g0 2@id2:r1/g0 3@id3:r1/g0 4@id2:r2/g0" {
			t.Fatalf("plan: %s", got)
		}
	})
	t.Run("stateful instances stay on their node when it goes away", func(t *testing.T) {
		svc := service(2, "ha")
		svc.Spec.Stateful = true
		insts := runningInstances(2, 2, 1, 0)
		ns := nodes("online", "offline@10m", "online") // long past ha's grace
		cmds, errs := PlanDeploys(View{Now: now, Nodes: ns, Services: []*fsm.Service{svc}, Instances: insts}, rand.New(rand.NewPCG(1, 2)))
		for _, c := range cmds {
			for _, p := range c.Place {
				if p.Number == 2 && p.NodeID != "id2" {
					t.Fatalf("stateful instance 2 moved to %s", p.NodeID)
				}
			}
			for _, r := range c.Remove {
				if r == 2 {
					t.Fatal("stateful instance 2 removed")
				}
			}
		}
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), "stateful") || !strings.Contains(errs[0].Error(), "n2") {
			t.Fatalf("errs = %v (must say it stays on n2)", errs)
		}
		// The same service, stateless, moves.
		svc.Spec.Stateful = false
		if got := moves(onePlan(t, svc, insts, ns)); !strings.Contains(got, "2@id3") {
			t.Fatalf("stateless plan: %s", got)
		}
		// Stateful, with an extra node: scaling up places the new one, the
		// old ones stay.
		svc.Spec.Stateful, svc.Instances = true, 3
		cmds, _ = PlanDeploys(View{Now: now, Nodes: nodes("online", "online", "online"), Services: []*fsm.Service{svc}, Instances: insts}, rand.New(rand.NewPCG(1, 2)))
		if len(cmds) != 1 || placed(cmds[0])[1] != "id1" || placed(cmds[0])[2] != "id2" {
			t.Fatalf("stateful scale-up moved instances: %+v", cmds)
		}
	})
}

func deploying(svc *fsm.Service, id uint64, started time.Time) *fsm.Service {
	svc.Deploy = fsm.DeployState{ID: id, State: fsm.DeployDeploying, Reason: fsm.ReasonUpgrade, Revision: svc.Revision, StartedAt: started}
	return svc
}

func verdicts(cmds []fsm.Command) string {
	var out []string
	for _, c := range cmds {
		switch c := c.(type) {
		case *fsm.ServiceDeployState:
			s := c.ID + " " + c.State
			if c.Error != "" {
				s += ": " + c.Error
			}
			out = append(out, s)
		case *fsm.ServiceRedeploy:
			out = append(out, fmt.Sprintf("redeploy %v force=%v %s", c.IDs, c.Force, c.Reason))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, "; ")
}

func TestPlanLifecycle(t *testing.T) {
	ns := nodes("online", "online", "online")
	t.Run("converged: running", func(t *testing.T) {
		svc := deploying(service(3, "ha"), 7, now)
		got := verdicts(PlanLifecycle(now, NewTracker(), ns, []*fsm.Service{svc}, runningInstances(3, 3, 1, 0), nil, nil))
		if got != "s/web running" {
			t.Fatalf("%s", got)
		}
	})
	t.Run("pending placements, missing or queued instances: still deploying", func(t *testing.T) {
		svc := deploying(service(3, "ha"), 7, now)
		tr := NewTracker()
		if got := verdicts(PlanLifecycle(now, tr, ns, []*fsm.Service{svc}, runningInstances(3, 3, 1, 0), map[string]bool{"s/web": true}, nil)); got != "none" {
			t.Fatalf("pending: %s", got)
		}
		if got := verdicts(PlanLifecycle(now, tr, ns, []*fsm.Service{svc}, runningInstances(2, 3, 1, 0), nil, nil)); got != "none" {
			t.Fatalf("2 of 3: %s", got)
		}
		svc.Revision = 2
		insts := runningInstances(3, 3, 1, 0)
		insts[0].Revision, insts[0].Actual.Revision = 2, 2
		if got := verdicts(PlanLifecycle(now, tr, ns, []*fsm.Service{svc}, insts, nil, nil)); got != "none" {
			t.Fatalf("queued: %s", got)
		}
	})
	t.Run("placement error: failed", func(t *testing.T) {
		svc := deploying(service(3, "ha"), 7, now)
		got := verdicts(PlanLifecycle(now, NewTracker(), ns, []*fsm.Service{svc}, nil, nil, map[string]string{"s/web": "affinity rejected n1, n2"}))
		if got != "s/web failed: cannot place every instance: affinity rejected n1, n2" {
			t.Fatalf("%s", got)
		}
	})
	t.Run("an instance failing after the deploy started: failed", func(t *testing.T) {
		svc := deploying(service(3, "ha"), 7, now)
		insts := runningInstances(3, 3, 1, 0)
		insts[1].Actual = fsm.InstanceActual{State: fsm.StateFailed, Error: `image "nope" not found`, At: now.Add(-time.Second)}
		if got := verdicts(PlanLifecycle(now, NewTracker(), ns, []*fsm.Service{svc}, insts, nil, nil)); got != "none" {
			t.Fatalf("a report from before the deploy counted: %s", got)
		}
		insts[1].Actual.At = now.Add(time.Second)
		got := verdicts(PlanLifecycle(now.Add(time.Second), NewTracker(), ns, []*fsm.Service{svc}, insts, nil, nil))
		if got != `s/web failed: s.web-2 on n2 failed: image "nope" not found` {
			t.Fatalf("%s", got)
		}
	})
	t.Run("no progress for the timeout: failed, naming what it waits for", func(t *testing.T) {
		svc := deploying(service(2, "ha"), 7, now)
		svc.Spec.Deploy.WaitForPort = 8080
		insts := runningInstances(2, 2, 1, 0)
		insts[0].Actual.WaitPort = fsm.WaitPortOpen
		insts[1].Actual.WaitPort = fsm.WaitPortWaiting
		tr := NewTracker()
		for _, d := range []time.Duration{0, time.Second, 4 * time.Minute, 4*time.Minute + 59*time.Second} {
			// The leader passes every second; the gap check must not reset.
			tr.last = now.Add(d - time.Second)
			if got := verdicts(PlanLifecycle(now.Add(d), tr, ns, []*fsm.Service{svc}, insts, nil, nil)); got != "none" {
				t.Fatalf("at +%s: %s", d, got)
			}
		}
		tr.last = now.Add(5*time.Minute - time.Second)
		got := verdicts(PlanLifecycle(now.Add(5*time.Minute), tr, ns, []*fsm.Service{svc}, insts, nil, nil))
		if got != "s/web failed: timed out: no instance came up for 5m0s (1 of 2 up); waiting for s.web-2 on n2 (port 8080 not open yet)" {
			t.Fatalf("%s", got)
		}
	})
	t.Run("progress resets the timeout; a leader that was away forgets", func(t *testing.T) {
		svc := deploying(service(2, "ha"), 7, now)
		insts := runningInstances(2, 2, 1, 0)
		insts[1].Actual.State = fsm.StateExited
		insts[0].Actual.State = fsm.StateExited
		tr := NewTracker()
		PlanLifecycle(now, tr, ns, []*fsm.Service{svc}, insts, nil, nil)
		insts[0].Actual.State = fsm.StateRunning
		tr.last = now.Add(4*time.Minute - time.Second)
		PlanLifecycle(now.Add(4*time.Minute), tr, ns, []*fsm.Service{svc}, insts, nil, nil)
		tr.last = now.Add(8*time.Minute - time.Second)
		if got := verdicts(PlanLifecycle(now.Add(8*time.Minute), tr, ns, []*fsm.Service{svc}, insts, nil, nil)); got != "none" {
			t.Fatalf("timed out 4 minutes after progress: %s", got)
		}
		// Not the leader for a while: the clock starts again.
		if got := verdicts(PlanLifecycle(now.Add(20*time.Minute), tr, ns, []*fsm.Service{svc}, insts, nil, nil)); got != "none" {
			t.Fatalf("after a gap: %s", got)
		}
	})
	t.Run("a failed deploy that converges after all is running", func(t *testing.T) {
		svc := deploying(service(2, "ha"), 7, now)
		svc.Deploy.State = fsm.DeployFailed
		if got := verdicts(PlanLifecycle(now, NewTracker(), ns, []*fsm.Service{svc}, runningInstances(2, 2, 1, 0), nil, nil)); got != "s/web running" {
			t.Fatalf("%s", got)
		}
		insts := runningInstances(2, 2, 1, 0)
		insts[1].Actual.State = fsm.StateExited
		if got := verdicts(PlanLifecycle(now.Add(time.Hour), NewTracker(), ns, []*fsm.Service{svc}, insts, nil, nil)); got != "none" {
			t.Fatalf("a failed deploy timed out again: %s", got)
		}
	})
	t.Run("restart and start deploys wait for the restart generation", func(t *testing.T) {
		svc := deploying(service(2, "ha"), 7, now)
		svc.RestartGen = 1
		insts := runningInstances(2, 2, 1, 1)
		insts[1].Actual.Restart = 0
		if got := verdicts(PlanLifecycle(now, NewTracker(), ns, []*fsm.Service{svc}, insts, nil, nil)); got != "none" {
			t.Fatalf("%s", got)
		}
		insts[1].Actual.Restart = 1
		if got := verdicts(PlanLifecycle(now, NewTracker(), ns, []*fsm.Service{svc}, insts, nil, nil)); got != "s/web running" {
			t.Fatalf("%s", got)
		}
	})
	t.Run("interval: a force deploy once the interval passed since the last one", func(t *testing.T) {
		svc := service(2, "ha")
		svc.Spec.Deploy.Interval = stack.Duration(time.Hour)
		svc.Deploy = fsm.DeployState{ID: 3, State: fsm.DeployRunning, StartedAt: now.Add(-59 * time.Minute)}
		tr := NewTracker()
		if got := verdicts(PlanLifecycle(now, tr, ns, []*fsm.Service{svc}, runningInstances(2, 2, 1, 0), nil, nil)); got != "none" {
			t.Fatalf("before the interval: %s", got)
		}
		got := verdicts(PlanLifecycle(now.Add(time.Minute), tr, ns, []*fsm.Service{svc}, runningInstances(2, 2, 1, 0), nil, nil))
		if got != "redeploy [s/web] force=true interval" {
			t.Fatalf("at the interval: %s", got)
		}
		svc.Deploy.State = fsm.DeployFailed // a failed one is retried too
		if got := verdicts(PlanLifecycle(now.Add(2*time.Minute), tr, ns, []*fsm.Service{svc}, runningInstances(1, 2, 1, 0), nil, nil)); got != "redeploy [s/web] force=true interval" {
			t.Fatalf("failed, at the interval: %s", got)
		}
		for name, change := range map[string]func(*fsm.Service){
			"deploying":    func(s *fsm.Service) { s.Deploy.State = fsm.DeployDeploying },
			"stopped":      func(s *fsm.Service) { s.Stopped = true },
			"not deployed": func(s *fsm.Service) { s.Undeployed = true },
		} {
			cp := *svc
			change(&cp)
			if got := verdicts(PlanLifecycle(now.Add(2*time.Minute), NewTracker(), ns, []*fsm.Service{&cp}, runningInstances(2, 2, 1, 0), nil, nil)); strings.Contains(got, "redeploy") {
				t.Fatalf("%s service redeployed: %s", name, got)
			}
		}
		if next := svc.NextDeploy(); !next.Equal(now.Add(time.Minute)) {
			t.Fatalf("next deploy %v", next)
		}
	})
	t.Run("stopped and undeployed services are not tracked", func(t *testing.T) {
		a := deploying(service(2, "ha"), 7, now)
		a.Stopped = true
		if got := verdicts(PlanLifecycle(now.Add(time.Hour), NewTracker(), ns, []*fsm.Service{a}, nil, nil, nil)); got != "none" {
			t.Fatalf("%s", got)
		}
	})
}
