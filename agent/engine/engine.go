// Package engine is the node's Docker engine: the one place that talks to
// it through github.com/docker/docker/client. A node process opens one
// Engine at start and hands it to whoever needs the engine (the agent's
// runtime, the data plane's network, the container endpoints).
//
// It speaks Docker's own types (api/types/...) and its own small ones, and
// knows nothing of the agent: the agent imports it, never the reverse.
package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/docker/docker/client"
)

// Labels the engine filters on. They have the values of agent.LabelManaged
// and agent.LabelNode (a test checks).
const (
	// LabelManaged is "true" on every container, volume and network the
	// agent creates.
	LabelManaged = "io.kontena.managed"
	// LabelNode is the ID of the node whose agent made the container.
	LabelNode = "io.kontena.node.id"
)

// pingTimeout bounds the first call to an engine that may not be there.
const pingTimeout = 10 * time.Second

// Engine is a client of the Docker engine named by the DOCKER_*
// environment (default: the local socket). It is safe for concurrent use.
type Engine struct {
	cli *client.Client
}

// Open connects to the engine, negotiating the API version so that old
// engines (20.10, API 1.41) work, and checks that it answers. Close it when
// done.
func Open(ctx context.Context) (*Engine, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if _, err := cli.Ping(pctx); err != nil {
		cli.Close()
		return nil, fmt.Errorf("docker engine at %s does not answer: %w (is dockerd running? is DOCKER_HOST right?)", cli.DaemonHost(), err)
	}
	return &Engine{cli: cli}, nil
}

// Close releases the client's idle connections. Calls already under way
// finish; later ones open new connections.
func (e *Engine) Close() error { return e.cli.Close() }

// Host is the engine's address (unix:///var/run/docker.sock, tcp://...).
func (e *Engine) Host() string { return e.cli.DaemonHost() }

// Ping tells whether the engine answers now.
func (e *Engine) Ping(ctx context.Context) error {
	_, err := e.cli.Ping(ctx)
	return err
}

// unavailable marks an error of an engine that did not answer a request
// it should have (as opposed to an answer that could not be read).
type unavailable struct{ err error }

func (u unavailable) Error() string { return u.err.Error() }
func (u unavailable) Unwrap() error { return u.err }

// IsUnavailable tells whether err says the engine did not answer.
func IsUnavailable(err error) bool {
	var u unavailable
	return errors.As(err, &u)
}
