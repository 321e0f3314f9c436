package agent

import (
	"context"
	"time"

	dockerengine "github.com/kontena-ng/kontena/agent/engine"
)

// The engine's network and resources live in agent/engine now. These
// wrappers are for callers that have no engine at hand: each opens one of
// its own. A node has one (cluster's Node.eng) and calls it directly.

// NetworkSpec is the engine network a node's overlay containers join.
type NetworkSpec = dockerengine.NetworkSpec

// EngineResources is what the node's engine offers to containers.
type EngineResources = dockerengine.Resources

// EnsureDockerNetwork is engine.EnsureNetwork on an engine of its own.
//
// Deprecated: use (*engine.Engine).EnsureNetwork on the node's engine.
func EnsureDockerNetwork(ctx context.Context, spec NetworkSpec) error {
	eng, err := dockerengine.Open(ctx)
	if err != nil {
		return err
	}
	defer eng.Close()
	return eng.EnsureNetwork(ctx, spec)
}

// RemoveDockerNetwork is engine.RemoveNetwork on an engine of its own.
//
// Deprecated: use (*engine.Engine).RemoveNetwork on the node's engine.
func RemoveDockerNetwork(ctx context.Context, name string) error {
	eng, err := dockerengine.Open(ctx)
	if err != nil {
		return err
	}
	defer eng.Close()
	return eng.RemoveNetwork(ctx, name)
}

// EngineAvailable tells whether a Docker engine answers (DOCKER_HOST or the
// default socket).
//
// Deprecated: a node has an engine (cluster's Node.eng) or none.
func EngineAvailable(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	eng, err := dockerengine.Open(ctx)
	if err != nil {
		return false
	}
	eng.Close()
	return true
}

// Resources asks the Docker engine for its CPUs, memory and volume drivers.
//
// Deprecated: use (*engine.Engine).Resources on the node's engine.
func Resources(ctx context.Context) (EngineResources, error) {
	eng, err := dockerengine.Open(ctx)
	if err != nil {
		return EngineResources{}, err
	}
	defer eng.Close()
	return eng.Resources(ctx)
}
