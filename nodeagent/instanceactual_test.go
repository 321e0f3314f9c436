package nodeagent

import (
	"testing"
	"time"

	"github.com/kontena-ng/kontena/agent"
	"github.com/kontena-ng/kontena/fsm"
)

// The agent's values and fsm's are the same strings: a report converts
// them as they are, and every reader compares with fsm's constants.
func TestInstanceActualOfAgent(t *testing.T) {
	states := map[agent.State]fsm.InstanceState{
		agent.StateRunning: fsm.StateRunning, agent.StateExited: fsm.StateExited, agent.StateUnhealthy: fsm.StateUnhealthy,
		agent.StateFailed: fsm.StateFailed, agent.StateRemoved: fsm.StateRemoved, agent.StateStopped: fsm.StateStopped,
	}
	health := map[agent.Health]fsm.InstanceHealth{
		agent.HealthNone: fsm.HealthNone, agent.HealthUnknown: fsm.HealthUnknown,
		agent.HealthHealthy: fsm.HealthHealthy, agent.HealthUnhealthy: fsm.HealthUnhealthy,
	}
	events := map[string]fsm.InstanceEvent{
		agent.EventDied: fsm.EventDied, agent.EventUnhealthy: fsm.EventUnhealthy,
		agent.EventRestarted: fsm.EventRestarted, agent.EventStarted: fsm.EventStarted,
	}
	ports := map[string]fsm.WaitPortState{agent.WaitPortWaiting: fsm.WaitPortWaiting, agent.WaitPortOpen: fsm.WaitPortOpen, "": ""}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for st, want := range states {
		if a := instanceActual(agent.InstanceStatus{State: st}, now); a.State != want || !a.At.Equal(now) {
			t.Errorf("state %q -> %q, want %q", st, a.State, want)
		}
	}
	for h, want := range health {
		if a := instanceActual(agent.InstanceStatus{Health: h}, now); a.Health != want {
			t.Errorf("health %q -> %q, want %q", h, a.Health, want)
		}
	}
	for ev, want := range events {
		if a := instanceActual(agent.InstanceStatus{Event: ev}, now); a.Event != want {
			t.Errorf("event %q -> %q, want %q", ev, a.Event, want)
		}
	}
	for wp, want := range ports {
		if a := instanceActual(agent.InstanceStatus{WaitPort: wp}, now); a.WaitPort != want {
			t.Errorf("wait port %q -> %q, want %q", wp, a.WaitPort, want)
		}
	}
	s := agent.InstanceStatus{Error: "e", ContainerID: "c", IP: "10.81.1.2", Revision: 3, Restart: 2, EventMessage: "m", EventAt: now}
	a := instanceActual(s, now)
	if a.Error != "e" || a.ContainerID != "c" || a.IP != "10.81.1.2" || a.Revision != 3 || a.Restart != 2 || a.EventMessage != "m" || !a.EventAt.Equal(now) {
		t.Errorf("actual = %+v", a)
	}
}
