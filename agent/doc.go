// Package agent is the node's container reconciler: it takes the desired
// containers of this node as a value (ContainerSpec), makes the local Docker
// engine match them, and reports what actually runs through a Reporter.
//
// The agent is deliberately ignorant of the grid: whoever watches the
// assignments (blocking queries) feeds Agent.Run a channel of desired states.
// When that feed stops (masters unreachable) the agent keeps reconciling the
// last state it got, so workloads keep running.
//
// Containers are identified only by labels (see labels.go), so an agent
// restart adopts what already runs instead of restarting it.
package agent
