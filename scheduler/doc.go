// Package scheduler decides where the instances of a service run.
//
// Placement is a pure function: Place reads a State snapshot (nodes, every
// current instance, the grid's default affinity) and a Service, and returns
// a Plan — the node of each instance number and the instances to remove. It
// never reads the clock, the network or package-level state, so the same
// inputs (and the same random seed for the random strategy) always give the
// same plan. That is what lets the leader re-run it every reconcile pass and
// lets the tests pin every decision.
//
// The work is a chain of small filters, in the order Kontena 1.x users knew:
//
//	availability → ephemeral → volume driver → volume instance (preferred) →
//	affinity → ports → cpus → memory → dependency
//
// followed by a strategy that ranks the survivors (ha, random) or walks every
// node (daemon). When no node survives, the NoFitError names every filter
// that rejected a node and why, so "did not find any node" never reaches a
// user without a reason.
//
// For speed, filters whose verdict cannot change between instances of one
// Place call (a node's drain state, its labels, another service's ports) run
// once per call; only the ones that depend on the instance number or on this
// plan's own placements (memory, own ports, %s affinities) run per instance.
package scheduler
