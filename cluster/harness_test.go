package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/agent/agenttest"
	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/pki"
)

// The in-process harness: several real nodes (Raft, gossip, the API, the
// agent) in one test process, each on its own loopback address
// (127.0.0.x), each with an in-memory container runtime. It is the fast
// companion of the Docker-in-Docker suite in integration/: leader,
// admission and failover logic get tests that run in seconds.

type testGrid struct {
	t     *testing.T
	nodes []*testNode
	admin *api.Client
	token string // join token
	ca    []byte
}

type testNode struct {
	name string
	n    *Node
	cfg  Config
	rt   *agenttest.Runtime
	stop context.CancelFunc
	done chan error
	info ReadyInfo
}

var harnessAddr struct {
	mu   sync.Mutex
	next int
}

// nextLoopback hands out 127.0.0.10, .11, ... so that nodes of every grid
// of the test binary have addresses of their own.
func nextLoopback() string {
	harnessAddr.mu.Lock()
	defer harnessAddr.mu.Unlock()
	harnessAddr.next++
	return fmt.Sprintf("127.0.0.%d", 10+harnessAddr.next%200)
}

// newTestGrid starts voters+workers nodes: the first bootstraps a grid of
// initial size voters, the others join it.
func newTestGrid(t *testing.T, voters, workers int) *testGrid {
	t.Helper()
	g := &testGrid{t: t}
	first := g.start("n1", voters, "")
	g.token, g.ca = first.info.JoinToken, first.info.CACert
	tlsCfg, err := pki.ClientConfig(g.ca, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.admin = api.NewClientTLS([]string{first.info.APIAddr}, tlsCfg, first.info.AdminToken)
	for i := 2; i <= voters+workers; i++ {
		g.start(fmt.Sprintf("n%d", i), voters, first.info.APIAddr)
	}
	g.waitFor("every node online", 30*time.Second, func() bool {
		var nodes []*fsm.Node
		if _, err := g.admin.Do(context.Background(), "GET", "/v1/nodes", nil, &nodes); err != nil || len(nodes) != voters+workers {
			return false
		}
		for _, nd := range nodes {
			if nd.Status != fsm.StatusOnline {
				return false
			}
		}
		return true
	})
	return g
}

func (g *testGrid) start(name string, initial int, join string) *testNode {
	g.t.Helper()
	addr := nextLoopback()
	tn := &testNode{name: name, rt: agenttest.New(), done: make(chan error, 1)}
	tn.cfg = Config{DataDir: filepath.Join(g.t.TempDir(), name), Name: name, Grid: "unit", InitialSize: initial,
		Subnet: "10.81.0.0/16", Supernet: "10.80.0.0/12", BindAddr: addr, AdvertiseAddr: addr,
		APIPort: freePort(g.t), RaftPort: freePort(g.t), GossipPort: freePort(g.t), DNSListen: "off", Overlay: "off",
		Runtime: tn.rt, SecretsDir: filepath.Join(g.t.TempDir(), name+"-secrets"), Timing: Timing{ProbeInterval: 200 * time.Millisecond, ProbeTimeout: 150 * time.Millisecond, Reconcile: 300 * time.Millisecond}}
	if join != "" {
		tn.cfg.Join, tn.cfg.Token = []string{join}, g.token
	}
	g.run(tn)
	g.nodes = append(g.nodes, tn)
	return tn
}

// run starts (or restarts) a node with its config and waits until it
// serves its API.
func (g *testGrid) run(tn *testNode) {
	g.t.Helper()
	ready := make(chan ReadyInfo, 1)
	nodeCh := make(chan *Node, 1)
	cfg := tn.cfg
	cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("KONTENA_TEST_LOG") != "" {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("test-node", tn.name)
	}
	cfg.OnReady = func(i ReadyInfo) { ready <- i }
	cfg.onNode = func(n *Node) { nodeCh <- n }
	ctx, cancel := context.WithCancel(context.Background())
	tn.stop, tn.done = cancel, make(chan error, 1)
	go func() { tn.done <- Run(ctx, cfg) }()
	g.t.Cleanup(func() { tn.kill() })
	select {
	case info := <-ready:
		tn.info, tn.n = info, <-nodeCh
	case err := <-tn.done:
		tn.stop = nil // nothing left to stop: cleanup must not wait for it
		g.t.Fatalf("node %s stopped: %v", tn.name, err)
	case <-time.After(30 * time.Second):
		g.t.Fatalf("node %s did not start", tn.name)
	}
}

// kill stops a node's process part (Raft, gossip, API) at once.
func (tn *testNode) kill() {
	if tn.stop != nil {
		tn.stop()
		<-tn.done
		tn.stop = nil
	}
}

func (g *testGrid) node(name string) *testNode {
	for _, tn := range g.nodes {
		if tn.name == name {
			return tn
		}
	}
	g.t.Fatalf("no node %s", name)
	return nil
}

func (g *testGrid) leader() *testNode {
	for _, tn := range g.nodes {
		if tn.stop != nil && tn.n.isLeader() {
			return tn
		}
	}
	return nil
}

// adminTLS is a client config that trusts the grid CA (for a token).
func (g *testGrid) adminTLS() *tls.Config {
	cfg, err := pki.ClientConfig(g.ca, nil)
	if err != nil {
		g.t.Fatal(err)
	}
	return cfg
}

// nodeTLS is a client config with the certificate of node tn.
func (g *testGrid) nodeTLS(tn *testNode) *tls.Config {
	cfg, err := pki.ClientConfig(g.ca, &tn.n.kp)
	if err != nil {
		g.t.Fatal(err)
	}
	return cfg
}

func (g *testGrid) waitFor(what string, d time.Duration, ok func() bool) {
	g.t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			g.t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// apiCode is the error code of err, or "" for none.
func apiCode(err error) string {
	var ae *api.Error
	if err == nil {
		return ""
	}
	if e, ok := err.(*api.Error); ok {
		ae = e
		return ae.Code
	}
	return "other: " + err.Error()
}

func contains(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }
