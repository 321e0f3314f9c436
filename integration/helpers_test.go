package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/integration/harness"
	"github.com/kontena-ng/kontena/pki"
)

type cliConfigFile struct {
	Current string `json:"current"`
	Grids   map[string]struct {
		Addresses []string `json:"addresses"`
		Token     string   `json:"token"`
		CACert    string   `json:"ca_cert"`
	} `json:"grids"`
}

func (tg *testGrid) config(t *testing.T) cliConfigFile {
	t.Helper()
	raw, err := os.ReadFile(tg.cfg)
	must(t, err)
	var c cliConfigFile
	must(t, json.Unmarshal(raw, &c))
	return c
}

func (tg *testGrid) caPEM(t *testing.T) []byte {
	return []byte(tg.config(t).Grids[tg.name].CACert)
}

func (tg *testGrid) adminToken(t *testing.T) string {
	return tg.config(t).Grids[tg.name].Token
}

// adminClient talks to every master, like the CLI.
func (tg *testGrid) adminClient(t *testing.T) *api.Client {
	c := tg.config(t).Grids[tg.name]
	cl, err := api.NewClient(c.Addresses, []byte(c.CACert), c.Token, nil)
	must(t, err)
	return cl
}

// clientFor talks to one node only.
func (tg *testGrid) clientFor(t *testing.T, ip string) *api.Client {
	cl, err := api.NewClient([]string{ip + ":9700"}, tg.caPEM(t), tg.adminToken(t), nil)
	must(t, err)
	return cl
}

// insideConfig writes an admin CLI config that knows only addr.
func (tg *testGrid) insideConfig(t *testing.T, addr string) string {
	c := tg.config(t)
	g := c.Grids[tg.name]
	g.Addresses = []string{addr}
	c.Grids = map[string]struct {
		Addresses []string `json:"addresses"`
		Token     string   `json:"token"`
		CACert    string   `json:"ca_cert"`
	}{tg.name: g}
	c.Current = tg.name
	raw, _ := json.Marshal(c)
	p := filepath.Join(t.TempDir(), "inside.json")
	must(t, os.WriteFile(p, raw, 0o600))
	return p
}

// foreignCert is a certificate from a CA that is not the grid's.
func foreignCert(t *testing.T) *tls.Certificate {
	ca, err := pki.NewCA("intruder")
	must(t, err)
	keyPEM, pub, err := pki.NewNodeKey()
	must(t, err)
	certPEM, err := ca.IssueNode(pub, "intruder", "intruder", nil)
	must(t, err)
	kp, err := pki.KeyPair(certPEM, keyPEM, ca.CertPEM)
	must(t, err)
	return &kp
}

// clientTLS trusts any server (these tests probe the server's refusals).
func clientTLS(cert *tls.Certificate) *tls.Config {
	cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

func regexpLine(text, re string) bool {
	return regexp.MustCompile(`(?m)^` + re).MatchString(text)
}

// newDockerGrid makes a grid of Docker-in-Docker nodes with the demo image
// loaded into each node's engine; start it with tg.start.
func newDockerGrid(ctx context.Context, t *testing.T, grid string, names ...string) *testGrid {
	t.Helper()
	img, err := buildDockerImage()
	must(t, err)
	tg := &testGrid{t: t, g: harness.NewGrid(t, img), nodes: map[string]*harness.Node{}, name: grid,
		cfg: filepath.Join(t.TempDir(), "cli.json"), order: names}
	for _, name := range names {
		must(t, tg.addNode(ctx, name).LoadImage(ctx, demoImage))
	}
	return tg
}

// start bootstraps the grid on the first node (extra `kontena up` flags in
// first), saves the admin CLI config and joins the other nodes (flags in
// join), waiting for each to be online.
func (tg *testGrid) start(ctx context.Context, first, join []string) {
	t := tg.t
	t.Helper()
	boot := tg.nodes[tg.order[0]]
	must(t, boot.StartDaemon(ctx, upArgs(boot.Name(), boot.IP(), append([]string{"--grid", tg.name}, first...)...)...))
	var raw []byte
	eventually(t, 30*time.Second, "bootstrap writes the CLI config", func() (err error) {
		raw, err = boot.ReadFile(ctx, "/root/.kontena/config.json")
		return err
	})
	must(t, os.WriteFile(tg.cfg, raw, 0o600))
	tg.token = strings.TrimSpace(tg.mustCLI(ctx, "grid", "token"))
	for _, name := range tg.order[1:] {
		n := tg.nodes[name]
		must(t, n.StartDaemon(ctx, upArgs(name, n.IP(), append([]string{"--join", boot.IP(), "--token", tg.token}, join...)...)...))
		tg.waitNode(ctx, name, "online", 60*time.Second)
	}
}

// sampleRunning counts, over and over until the returned stop is called,
// the running containers matching a docker ps filter on the given nodes,
// and returns the counts (for "never below min_health" checks).
func (tg *testGrid) sampleRunning(ctx context.Context, nodes []string, filter string) (stop func() []int) {
	done := make(chan struct{})
	sampled := make(chan []int)
	go func() {
		var counts []int
		for {
			select {
			case <-done:
				sampled <- counts
				return
			default:
			}
			total := 0
			for _, name := range nodes {
				out, _, code, err := tg.nodes[name].Exec(ctx, "docker", "ps", "-q", "--filter", filter)
				if err == nil && code == 0 {
					total += len(strings.Fields(out))
				}
			}
			counts = append(counts, total)
		}
	}()
	return func() []int {
		close(done)
		return <-sampled
	}
}

// overlayAddress is node name's overlay address (its resolver), from
// `node show`.
func (tg *testGrid) overlayAddress(ctx context.Context, t *testing.T, name string) string {
	t.Helper()
	var n struct {
		Overlay struct {
			Address string `json:"address"`
		} `json:"overlay"`
	}
	must(t, json.Unmarshal([]byte(tg.mustCLI(ctx, "node", "show", name, "-o", "json")), &n))
	if n.Overlay.Address == "" {
		t.Fatalf("node %s has no overlay address", name)
	}
	return n.Overlay.Address
}

// removeStack removes a stack and waits until no node runs its containers.
func (tg *testGrid) removeStack(ctx context.Context, t *testing.T, nodes []string, name string) {
	t.Helper()
	tg.mustCLI(ctx, "stack", "rm", name, "--force")
	eventually(t, 60*time.Second, "stack "+name+" gone", func() error {
		if all, _ := gridContainers(ctx, t, tg, nodes, name+"."); len(all) > 0 {
			return fmt.Errorf("left: %v", all)
		}
		return nil
	})
}

// lockedBuffer collects a child process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
