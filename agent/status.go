package agent

import (
	"context"
	"time"
)

// State is the reported state of an instance.
type State string

const (
	StateRunning   State = "running"
	StateExited    State = "exited"
	StateUnhealthy State = "unhealthy" // health check failed; the agent restarted it
	StateFailed    State = "failed"    // the agent could not run it; see Error
	StateRemoved   State = "removed"   // no longer desired; the agent removed it
	StateStopped   State = "stopped"   // its service is stopped; the container is kept, stopped
)

// Health is the last health-check result of an instance.
type Health string

const (
	HealthNone      Health = ""        // no health check
	HealthUnknown   Health = "unknown" // not probed yet (initial delay)
	HealthHealthy   Health = "healthy"
	HealthUnhealthy Health = "unhealthy"
)

// InstanceStatus is the actual state of one instance after a pass.
type InstanceStatus struct {
	Name        string
	Stack       string
	Service     string
	Instance    int
	Revision    uint64 // revision of the container that runs (0 if none)
	ContainerID string
	IP          string // overlay (or engine) address of the container
	State       State
	Health      Health
	Error       string // why State is failed/unhealthy; never contains env values
	// Restart is the restart generation the container has reached.
	Restart uint64
	// WaitPort is WaitPortWaiting or WaitPortOpen for specs with
	// WaitForPort, "" otherwise.
	WaitPort string
	// Event is the last thing the agent did to the instance on its own
	// (EventDied, EventUnhealthy, EventRestarted, EventStarted), with a
	// message and when; the grid records each new one as an event.
	Event        string
	EventMessage string
	EventAt      time.Time
}

// Reporter receives the actual state after every reconcile pass. It must not
// block for long: the agent calls it inline.
type Reporter interface {
	Report(ctx context.Context, statuses []InstanceStatus)
}

// ReporterFunc adapts a function to Reporter.
type ReporterFunc func(ctx context.Context, statuses []InstanceStatus)

// Report calls f.
func (f ReporterFunc) Report(ctx context.Context, s []InstanceStatus) { f(ctx, s) }
