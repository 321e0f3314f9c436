package cluster

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/pki"
)

const lockStack = `stack: test/locked
version: 0.1.0
services:
  app:
    image: app:fake
    affinity: ["node==n3"]
    secrets:
      - secret: app-key
        name: APP_KEY
        type: env
`

// TestGridLock: once locked, no voter keeps the master key on disk; a
// voter restarted serves no secrets (its node's assignments, joins) until
// unlocked with the key, while its containers keep running; a rotated key
// replaces the old one.
func TestGridLock(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes")
	}
	g := newTestGrid(t, 3, 0)
	ctx := context.Background()
	if _, err := g.admin.WriteSecret(ctx, "app-key", api.SecretWriteRequest{Value: "the-app-key"}); err != nil {
		t.Fatal(err)
	}
	g.installStack(lockStack)
	n3 := g.node("n3")
	g.waitFor("app-1 running on n3", 30*time.Second, func() bool { return len(n3.rt.Running()) == 1 })

	var key api.UnlockKey
	if _, err := g.admin.Do(ctx, "POST", "/v1/grid/lock", nil, &key); err != nil || !strings.HasPrefix(key.Key, "KNTN-UNLOCK-") {
		t.Fatalf("lock: %+v %v", key, err)
	}
	if _, err := g.admin.Do(ctx, "POST", "/v1/grid/lock", nil, nil); !api.IsCode(err, api.CodeConflict) {
		t.Fatalf("second lock: %v", err)
	}
	for _, tn := range g.nodes {
		g.waitFor(tn.name+" removes its master key from disk", 10*time.Second, func() bool {
			_, err := os.Stat(filepath.Join(tn.cfg.DataDir, fileMasterKey))
			return os.IsNotExist(err)
		})
	}
	// The grid works on: secrets are still served by the running voters.
	if v, err := g.admin.ReadSecret(ctx, "app-key"); err != nil || v.Value != "the-app-key" {
		t.Fatalf("read on a locked grid whose voters run: %v", err)
	}

	n3.kill()
	g.run(n3)
	n3c := &http.Client{Transport: &http.Transport{TLSClientConfig: g.nodeTLS(n3)}, Timeout: 10 * time.Second}
	assignments := "https://" + n3.info.APIAddr + "/v1/nodes/n3/assignments"
	g.waitFor("n3 caught up", 20*time.Second, func() bool {
		code, body := rawCall(t, n3c, "GET", assignments, nil, nil)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "locked")
	})
	if got := n3.rt.Running(); len(got) != 1 {
		t.Fatalf("the locked voter's container stopped: %v", got)
	}
	tlsCfg, err := pki.ClientConfig(g.ca, nil)
	if err != nil {
		t.Fatal(err)
	}
	at3 := api.NewClientTLS([]string{n3.info.APIAddr}, tlsCfg, g.nodes[0].info.AdminToken)
	var h api.Health
	if _, err := at3.Do(ctx, "GET", "/v1/grid/health", nil, &h); err != nil || !strings.Contains(strings.Join(h.Messages, ";"), "voter n3 is locked") {
		t.Fatalf("health of a grid with a locked voter: %+v %v", h, err)
	}
	if _, err := at3.Do(ctx, "POST", "/v1/grid/unlock", api.UnlockRequest{Key: "KNTN-UNLOCK-" + strings.Repeat("A", 43)}, nil); !api.IsCode(err, api.CodeForbidden) {
		t.Fatalf("unlock with a wrong key: %v", err)
	}
	if _, err := at3.Do(ctx, "POST", "/v1/grid/unlock", api.UnlockRequest{Key: "not a key"}, nil); !api.IsCode(err, api.CodeInvalid) {
		t.Fatalf("unlock with garbage: %v", err)
	}
	var res api.UnlockResult
	if _, err := at3.Do(ctx, "POST", "/v1/grid/unlock", api.UnlockRequest{Key: key.Key}, &res); err != nil || !res.Unlocked || res.Already {
		t.Fatalf("unlock: %+v %v", res, err)
	}
	if code, body := rawCall(t, n3c, "GET", assignments, nil, nil); code != http.StatusOK || !strings.Contains(body, "the-app-key") {
		t.Fatalf("n3's assignments after unlock: %d %s", code, body)
	}
	if _, err := os.Stat(filepath.Join(n3.cfg.DataDir, fileMasterKey)); !os.IsNotExist(err) {
		t.Fatalf("unlock wrote the master key to disk: %v", err)
	}

	// Rotation: the old key no longer unlocks a voter that restarts.
	var key2 api.UnlockKey
	if _, err := g.admin.Do(ctx, "POST", "/v1/grid/unlock-key/rotate", nil, &key2); err != nil || key2.Key == key.Key {
		t.Fatalf("rotate: %v", err)
	}
	n3.kill()
	g.run(n3)
	g.waitFor("n3 locked again", 20*time.Second, func() bool {
		code, _ := rawCall(t, n3c, "GET", assignments, nil, nil)
		return code == http.StatusServiceUnavailable
	})
	g.waitFor("n3 knows the rotated key", 20*time.Second, func() bool {
		_, err := at3.Do(ctx, "POST", "/v1/grid/unlock", api.UnlockRequest{Key: key.Key}, nil)
		return api.IsCode(err, api.CodeForbidden)
	})
	if _, err := at3.Do(ctx, "POST", "/v1/grid/unlock", api.UnlockRequest{Key: key2.Key}, &res); err != nil || !res.Unlocked {
		t.Fatalf("unlock with the rotated key: %+v %v", res, err)
	}
}

// TestMasterKeyRotation: after a rotation every secret and the join token
// open under the new key on every voter; a voter that was down derives it
// from the old key on its disk; a locked grid's unlock key, made before a
// rotation, still unlocks after it.
func TestMasterKeyRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes")
	}
	g := newTestGrid(t, 3, 0)
	ctx := context.Background()
	if _, err := g.admin.WriteSecret(ctx, "app-key", api.SecretWriteRequest{Value: "the-app-key"}); err != nil {
		t.Fatal(err)
	}
	g.installStack(lockStack)
	n3 := g.node("n3")
	g.waitFor("app-1 running on n3", 30*time.Second, func() bool { return len(n3.rt.Running()) == 1 })
	oldKey, err := os.ReadFile(filepath.Join(n3.cfg.DataDir, fileMasterKey))
	if err != nil {
		t.Fatal(err)
	}
	n3.kill() // down during the rotation: it comes back with the old key
	g.waitFor("a leader", 20*time.Second, func() bool { return g.leader() != nil })

	leaderAPI := api.NewClientTLS([]string{g.leader().info.APIAddr}, g.adminTLS(), g.nodes[0].info.AdminToken)
	var rot api.KeyRotation
	if _, err := leaderAPI.Do(ctx, "POST", "/v1/grid/master-key/rotate", nil, &rot); err != nil || rot.Generation != 1 || rot.Secrets != 1 {
		t.Fatalf("rotate: %+v %v", rot, err)
	}
	if v, err := leaderAPI.ReadSecret(ctx, "app-key"); err != nil || v.Value != "the-app-key" {
		t.Fatalf("read after rotation: %v", err)
	}
	var tok api.JoinTokenResponse
	if _, err := leaderAPI.Do(ctx, "GET", "/v1/grid/token", nil, &tok); err != nil || tok.Token != g.token {
		t.Fatalf("the join token after rotation: %v (changed: %v)", err, tok.Token != g.token)
	}

	g.run(n3)
	n3c := &http.Client{Transport: &http.Transport{TLSClientConfig: g.nodeTLS(n3)}, Timeout: 10 * time.Second}
	g.waitFor("n3 derives the new key and serves its assignments", 20*time.Second, func() bool {
		code, body := rawCall(t, n3c, "GET", "https://"+n3.info.APIAddr+"/v1/nodes/n3/assignments", nil, nil)
		return code == http.StatusOK && strings.Contains(body, "the-app-key") && n3.n.voterKeys().Generation == 1
	})
	if newKey, _ := os.ReadFile(filepath.Join(n3.cfg.DataDir, fileMasterKey)); string(newKey) == string(oldKey) {
		t.Fatal("n3 keeps the old master key on disk")
	}

	// Lock at generation 1, rotate to 2, restart n3: the unlock key of
	// generation 1 still unlocks it, to generation 2.
	var key api.UnlockKey
	if _, err := leaderAPI.Do(ctx, "POST", "/v1/grid/lock", nil, &key); err != nil {
		t.Fatal(err)
	}
	g.waitFor("n3 drops its master key from disk", 10*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(n3.cfg.DataDir, fileMasterKey))
		return os.IsNotExist(err)
	})
	if _, err := leaderAPI.Do(ctx, "POST", "/v1/grid/master-key/rotate", nil, &rot); err != nil || rot.Generation != 2 {
		t.Fatalf("second rotation: %+v %v", rot, err)
	}
	g.waitFor("n3 takes up generation 2", 10*time.Second, func() bool { return n3.n.voterKeys().Generation == 2 })
	n3.kill()
	g.run(n3)
	at3 := api.NewClientTLS([]string{n3.info.APIAddr}, g.adminTLS(), g.nodes[0].info.AdminToken)
	var res api.UnlockResult
	g.waitFor("n3 unlocked with the key made before the rotation", 20*time.Second, func() bool {
		_, err := at3.Do(ctx, "POST", "/v1/grid/unlock", api.UnlockRequest{Key: key.Key}, &res)
		return err == nil && res.Unlocked && !res.Already
	})
	if gen := n3.n.voterKeys().Generation; gen != 2 {
		t.Fatalf("n3 unlocked at generation %d, want 2", gen)
	}
	if code, body := rawCall(t, n3c, "GET", "https://"+n3.info.APIAddr+"/v1/nodes/n3/assignments", nil, nil); code != http.StatusOK || !strings.Contains(body, "the-app-key") {
		t.Fatalf("n3's assignments after unlock: %d %s", code, body)
	}
}
