package main

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/kontena-ng/kontena"

// pkgInfo is what `go list -json` says of one package.
type pkgInfo struct {
	ImportPath string
	Imports    []string // non-test imports only
}

func listPackages(t *testing.T) map[string]pkgInfo {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	pkgs := map[string]pkgInfo{}
	for {
		var p pkgInfo
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs[strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")] = p
	}
	return pkgs
}

// TestImportRules enforces the architecture ARCHITECTURE.md draws: the
// decision packages stay pure (no HTTP, no Raft, no wire types), the
// wiring package is imported by the CLI alone, and one package talks to
// the Docker engine.
func TestImportRules(t *testing.T) {
	pkgs := listPackages(t)
	const (
		nethttp = "net/http"
		raft    = "github.com/hashicorp/raft"
		apiPkg  = module + "/api"
		docker  = "github.com/docker/docker/client"
	)
	forbidden := []struct {
		pkg  string
		deny []string
		why  string
	}{
		{"scheduler", []string{nethttp, raft, apiPkg}, "placement is a pure function of its inputs"},
		{"fsm", []string{nethttp, apiPkg}, "the state machine knows no transport"},
		{"stack", []string{nethttp, raft, apiPkg, module + "/fsm"}, "the stack language is used by the CLI without a grid"},
		{"membership", []string{raft, apiPkg, module + "/fsm"}, "gossip reports liveness; what a node may do comes from the state"},
		{"orchestrator", []string{nethttp, raft, apiPkg, module + "/agent", module + "/raftnode"}, "planning is a pure function of a state view and the clock"},
		{"dispatcher", []string{nethttp, raft, apiPkg}, "the node protocol is built from the state alone; the API serves it"},
		{"nodeagent", []string{raft, module + "/raftnode"}, "a node acts through its own API, never on a store"},
		{"dataplane", []string{raft, module + "/raftnode"}, "the data plane runs from its network map, with or without the masters"},
		{"httpapi", []string{module + "/leader", module + "/nodeagent", module + "/dataplane"}, "the API reads and writes the state; it does not run the node's loops"},
		{"raftnode", []string{nethttp, module + "/membership", module + "/leader"}, "Raft knows nothing of the API or of gossip"},
		{"leader", []string{nethttp, module + "/agent"}, "the leader decides through the state; node calls go through its Caller"},
		{"pki", []string{nethttp, raft, apiPkg, module + "/fsm"}, "the CA is a leaf"},
		{"vault", []string{nethttp, raft, apiPkg}, "sealing is a leaf"},
		{"lb", []string{raft, apiPkg, module + "/fsm", module + "/httpapi", module + "/dispatcher", module + "/stack"}, "the load balancer serves a Config and knows nothing of the grid"},
	}
	for _, f := range forbidden {
		p, ok := pkgs[f.pkg]
		if !ok {
			t.Errorf("package %s is gone: update the import rules and ARCHITECTURE.md", f.pkg)
			continue
		}
		for _, imp := range p.Imports {
			if slices.Contains(f.deny, imp) {
				t.Errorf("%s imports %s, but %s", f.pkg, imp, f.why)
			}
		}
	}
	for name, p := range pkgs {
		for _, imp := range p.Imports {
			if imp == module+"/cluster" && name != "cmd" {
				t.Errorf("%s imports cluster: only cmd may import the wiring package", name)
			}
			if imp == docker && name != "agent/engine" {
				t.Errorf("%s imports the Docker client: only agent/engine talks to the engine", name)
			}
		}
	}
}
