package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/agent"
	"github.com/kontena-ng/kontena/agent/engine"
)

// The engine filters on the agent's labels without importing the agent.
func TestLabelsAreTheAgents(t *testing.T) {
	if engine.LabelManaged != agent.LabelManaged || engine.LabelNode != agent.LabelNode {
		t.Fatalf("engine labels %q, %q; agent labels %q, %q", engine.LabelManaged, engine.LabelNode, agent.LabelManaged, agent.LabelNode)
	}
}

func TestOpenWithoutEngineSaysSo(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+t.TempDir()+"/docker.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e, err := engine.Open(ctx)
	if err == nil {
		e.Close()
		t.Fatal("opened an engine that is not there")
	}
	if !strings.Contains(err.Error(), "does not answer") || !strings.Contains(err.Error(), "is DOCKER_HOST right?") {
		t.Fatalf("unclear error: %v", err)
	}
}

// Real-engine test: fails (never skips) without Docker, as the agent's.
func TestInspectManagedHidesOtherContainers(t *testing.T) {
	ctx := context.Background()
	e, err := engine.Open(ctx)
	if err != nil {
		t.Fatalf("needs Docker: %v", err)
	}
	defer e.Close()
	if _, err := e.InspectManaged(ctx, "kontena-engine-test-no-such-container", ""); !errors.Is(err, engine.ErrNotManaged) {
		t.Fatalf("a missing container: %v, want ErrNotManaged", err)
	}
	if _, err := e.Resources(ctx); err != nil {
		t.Fatal(err)
	}
}
