package cluster

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/agent/agenttest"
	"github.com/kontena-ng/kontena/api"
)

const restoreStack = `stack: test/keep
version: 0.1.0
services:
  app:
    image: app:fake
    instances: 2
    secrets:
      - secret: keep-key
        name: KEEP_KEY
        type: env
`

// TestBackupRestore: a backup taken from a running grid starts, on a fresh
// data dir at another address, a grid with the same CA, tokens, join token,
// stacks and vault; its services run there; it survives a restart.
func TestBackupRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes")
	}
	g := newTestGrid(t, 1, 1)
	ctx := context.Background()
	if _, err := g.admin.WriteSecret(ctx, "keep-key", api.SecretWriteRequest{Value: "kept-value"}); err != nil {
		t.Fatal(err)
	}
	g.installStack(restoreStack)
	g.waitFor("2 instances running", 30*time.Second, func() bool { return g.running() == 2 })
	var before api.GridInfo
	if _, err := g.admin.Do(ctx, "GET", "/v1/grid", nil, &before); err != nil {
		t.Fatal(err)
	}
	var bk api.BackupResponse
	if _, err := g.admin.Do(ctx, "GET", "/v1/grid/backup", nil, &bk); err != nil {
		t.Fatal(err)
	}
	if bk.Backup.Index == 0 || len(bk.Backup.State) == 0 || len(bk.Key) < 20 {
		t.Fatalf("backup %d bytes at %d, key %q", len(bk.Backup.State), bk.Backup.Index, bk.Key)
	}
	file, _ := json.Marshal(bk.Backup)
	for _, tn := range g.nodes {
		tn.kill()
	}

	// A wrong key is refused before anything is written.
	bad := g.restoreNode(file, "KNTN-BACKUP-"+"AAAA")
	if err := bad; err == nil {
		t.Fatal("restore with a wrong key started")
	}
	tn, err := g.startRestored(file, bk.Key)
	if err != nil {
		t.Fatal(err)
	}
	admin := api.NewClientTLS([]string{tn.info.APIAddr}, g.adminTLS(), g.nodes[0].info.AdminToken)
	var after api.GridInfo
	g.waitFor("the restored grid answers with the old admin token", 20*time.Second, func() bool {
		_, err := admin.Do(ctx, "GET", "/v1/grid", nil, &after)
		return err == nil
	})
	if after.Name != before.Name || after.CADigest != before.CADigest || after.Leader != "n1" {
		t.Fatalf("restored grid %+v, was %+v", after, before)
	}
	if v, err := admin.ReadSecret(ctx, "keep-key"); err != nil || v.Value != "kept-value" {
		t.Fatalf("the vault after restore: %v", err)
	}
	var tok api.JoinTokenResponse
	if _, err := admin.Do(ctx, "GET", "/v1/grid/token", nil, &tok); err != nil || tok.Token != g.token {
		t.Fatalf("join token after restore: %v", err)
	}
	var svc api.ServiceInfo
	g.waitFor("the stack's instances run on the restored node", 60*time.Second, func() bool {
		_, err := admin.Do(ctx, "GET", "/v1/services/keep/app", nil, &svc)
		return err == nil && len(tn.rt.Running()) >= 1
	})
	var nodes []*struct{ Name, Role, Status string }
	if _, err := admin.Do(ctx, "GET", "/v1/nodes", nil, &nodes); err != nil || len(nodes) != 2 {
		t.Fatalf("nodes after restore: %v %v", nodes, err)
	}
	for _, n := range nodes {
		if n.Name == "n2" && (n.Role != "worker" || n.Status != "offline") {
			t.Fatalf("the other node after restore: %+v", n)
		}
	}
	// The restored state is the grid's own now: it survives a restart.
	tn.kill()
	tn.cfg.Restore = nil
	g.run(tn)
	g.waitFor("the restored grid after a restart", 20*time.Second, func() bool {
		v, err := admin.ReadSecret(ctx, "keep-key")
		return err == nil && v.Value == "kept-value"
	})
	// --restore never writes over a node.
	tn.kill()
	tn.cfg.Restore = &Restore{Backup: file, Key: bk.Key}
	if err := Run(ctx, tn.cfg); err == nil {
		t.Fatal("--restore over a data dir that holds a node started")
	}
}

// restoreNode runs a restore that must fail, and returns its error.
func (g *testGrid) restoreNode(file []byte, key string) error {
	addr := nextLoopback()
	cfg := Config{DataDir: filepath.Join(g.t.TempDir(), "bad"), Name: "n1", Grid: "unit", InitialSize: 1, Subnet: "10.81.0.0/16", Supernet: "10.80.0.0/12", BindAddr: addr, AdvertiseAddr: addr,
		APIPort: freePort(g.t), RaftPort: freePort(g.t), GossipPort: freePort(g.t), DNSListen: "off", Overlay: "off",
		Runtime: agenttest.New(), Restore: &Restore{Backup: file, Key: key}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return Run(ctx, cfg)
}

// startRestored starts node n1 from a backup in a fresh data dir at a new
// address.
func (g *testGrid) startRestored(file []byte, key string) (*testNode, error) {
	addr := nextLoopback()
	tn := &testNode{name: "n1", rt: agenttest.New(), done: make(chan error, 1)}
	tn.cfg = Config{DataDir: filepath.Join(g.t.TempDir(), "restored"), Name: "n1", Grid: "unit", InitialSize: 1, Subnet: "10.81.0.0/16", Supernet: "10.80.0.0/12", BindAddr: addr, AdvertiseAddr: addr,
		APIPort: freePort(g.t), RaftPort: freePort(g.t), GossipPort: freePort(g.t), DNSListen: "off", Overlay: "off",
		Runtime: tn.rt, SecretsDir: filepath.Join(g.t.TempDir(), "restored-secrets"),
		Timing:  Timing{ProbeInterval: 200 * time.Millisecond, ProbeTimeout: 150 * time.Millisecond, Reconcile: 300 * time.Millisecond},
		Restore: &Restore{Backup: file, Key: key}}
	g.run(tn)
	return tn, nil
}
