package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/internal/testport"
	"github.com/kontena-ng/kontena/pki"
)

// freePort is a port for a node of this test (see testport).
func freePort(t *testing.T) int { return testport.Free(t) }

// startGrid bootstraps a real one-node grid in this process.
func startGrid(t *testing.T) ReadyInfo {
	t.Helper()
	ready := make(chan ReadyInfo, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cfg := Config{DataDir: t.TempDir(), Name: "n1", Grid: "unit", InitialSize: 1, Subnet: "10.81.0.0/16", Supernet: "10.80.0.0/12",
		BindAddr: "127.0.0.1", APIPort: freePort(t), RaftPort: freePort(t), GossipPort: freePort(t),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), OnReady: func(i ReadyInfo) { ready <- i }}
	go func() { done <- Run(ctx, cfg) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case info := <-ready:
		return info
	case err := <-done:
		t.Fatalf("node stopped: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("node did not start")
	}
	return ReadyInfo{}
}

func TestJoinRefusals(t *testing.T) {
	info := startGrid(t)
	tok, err := parseJoinToken(info.JoinToken)
	if err != nil {
		t.Fatal(err)
	}
	_, pub, _ := pki.NewNodeKey()
	base := api.JoinRequest{Grid: tok.Grid, Secret: tok.Secret, Protocol: api.ProtocolVersion, Version: Version,
		NodeID: newID(), Name: "n2", PublicKey: string(pub), Addr: "127.0.0.9", APIPort: 1, RaftPort: 2, GossipPort: 3}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.PinnedConfig(tok.CADigest, nil)}}
	post := func(req api.JoinRequest) (int, string) {
		body, _ := json.Marshal(req)
		resp, err := hc.Post("https://"+info.APIAddr+"/v1/join", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		var eb api.ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error != nil {
			return resp.StatusCode, eb.Error.Code + ": " + eb.Error.Message
		}
		return resp.StatusCode, string(data)
	}
	tests := []struct {
		name   string
		mutate func(*api.JoinRequest)
		want   string
	}{
		{"newer protocol", func(r *api.JoinRequest) { r.Protocol, r.Version = api.ProtocolVersion+1, "9.0.0" }, "incompatible version: the joining node runs kontena 9.0.0"},
		{"other grid", func(r *api.JoinRequest) { r.Grid = "prod" }, `the join token is for grid "prod" but this master serves grid "unit"`},
		{"wrong secret", func(r *api.JoinRequest) { r.Secret = strings.Repeat("0", len(tok.Secret)) }, "invalid join token"},
		{"name of a live node", func(r *api.JoinRequest) { r.Name = "n1" }, `node name "n1" is already in use`},
		{"bad name", func(r *api.JoinRequest) { r.Name = "N_2" }, "is not valid"},
		{"bad public key", func(r *api.JoinRequest) { r.PublicKey = "nope" }, "bad public key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := base
			tc.mutate(&req)
			code, body := post(req)
			if code != http.StatusForbidden || !strings.Contains(body, tc.want) || !strings.Contains(body, api.CodeJoinRefused) {
				t.Fatalf("status %d body %s; want 403 join_refused with %q", code, body, tc.want)
			}
		})
	}
	// The good request is admitted once; the same ID again is refused.
	if code, body := post(base); code != http.StatusOK {
		t.Fatalf("valid join: %d %s", code, body)
	}
	again := base
	again.Name = "n3"
	if code, body := post(again); code != http.StatusForbidden || !strings.Contains(body, fmt.Sprintf("node ID %s is already in use", base.NodeID)) {
		t.Fatalf("reused ID: %d %s", code, body)
	}
}
