package scheduler

import (
	"math/rand/v2"
	"strconv"
)

// Strategy names, as written in a stack file's deploy.strategy.
const (
	StrategyHA     = "ha"
	StrategyDaemon = "daemon"
	StrategyRandom = "random"
)

// Service is the part of a service's desired state that placement needs.
type Service struct {
	Stack     string
	Name      string
	Instances int    // ha, random: total; daemon: per eligible node
	Strategy  string // "ha" (default when empty), "daemon" or "random"
	// Affinity rules; when empty the grid's default affinity applies.
	Affinity []string
	Ports    []Port
	CPUs     float64 // the node must have at least this many CPUs
	Memory   int64   // bytes each instance needs free on its node; 0 = not checked
	Stateful bool
	Volumes  []Volume
	// VolumesFrom and NetworkMode "container:X" pin each instance next to
	// the named containers; "%s" is replaced by the instance number.
	VolumesFrom []string
	NetworkMode string
	// MinHealth is the share of instances that must stay up during a
	// rolling deploy (the stack loader defaults it to 0.8); it sets
	// Plan.MaxInFlight.
	MinHealth float64
}

// ID is the stack-qualified name, "stack/name" ("name" without a stack).
func (s *Service) ID() string { return qualify(s.Stack, s.Name) }

func (s *Service) strategy() string {
	if s.Strategy == "" {
		return StrategyHA
	}
	return s.Strategy
}

// Port is a port published on the node.
type Port struct {
	HostIP   string // "" or 0.0.0.0 = every address of the node
	HostPort int
	Protocol string // "tcp" (default) or "udp"
}

func (p Port) proto() string {
	if p.Protocol == "" {
		return "tcp"
	}
	return p.Protocol
}

func (p Port) String() string { return strconv.Itoa(p.HostPort) + "/" + p.proto() }

// Volume is a named volume a service mounts; Driver is the volume plugin it
// needs on the node ("" and "local" are built into every Docker engine).
type Volume struct {
	Name   string
	Driver string
}

// Instance is one running (or last placed) instance of a service.
type Instance struct {
	Service string // "stack/name"
	Number  int
	NodeID  string
	Ports   []Port // published on NodeID; keeps other services off them
	// Volumes is true when the instance's volumes live on NodeID: a
	// stateless instance prefers to come back to them, a stateful one
	// never leaves them.
	Volumes bool
}

// Name is the container name used by container affinities and
// dependencies: "stack/name-N".
func (i Instance) Name() string { return i.Service + "-" + strconv.Itoa(i.Number) }

// Placement puts instance Number on node NodeID.
type Placement struct {
	Number   int
	NodeID   string
	Previous string // node the same instance number ran on before, "" if new
}

// Moved tells whether the instance changes node (its old container must go).
func (p Placement) Moved() bool { return p.Previous != "" && p.Previous != p.NodeID }

// Plan is the outcome of Place for one service.
type Plan struct {
	Service    string      // "stack/name"
	Placements []Placement // ascending by Number
	// Remove lists current instances that the plan drops: numbers above
	// Instances, duplicates, and daemon instances on nodes that no longer
	// qualify. Stateful instances that cannot stay are reported as errors
	// instead, never removed.
	Remove []Instance
	// Unplaced lists every instance number that could not be placed; the
	// error of Place explains the first few.
	Unplaced []int
	// Skipped (daemon only) says why nodes get fewer than Instances.
	Skipped []Rejection
	// MaxInFlight is how many instances a rolling deploy may replace at
	// once: max(1, floor(N*(1-MinHealth))).
	MaxInFlight int
}

// Options tune a Place call without changing its inputs.
type Options struct {
	// Rand drives the random strategy. Nil means a generator seeded from
	// the service ID, so plans stay reproducible.
	Rand *rand.Rand

	scan bool // tests: filter every node for every instance, no incremental sets
}

func qualify(stack, name string) string {
	if stack == "" {
		return name
	}
	return stack + "/" + name
}
