package cluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kontena-ng/kontena/agent"
	"github.com/kontena-ng/kontena/agent/agenttest"
	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/pki"
	"github.com/kontena-ng/kontena/stack"
)

const inprocStack = `stack: test/web
version: 0.1.0
services:
  web:
    image: nginx:fake
    instances: 4
    environment:
      - SECRET_ENV=only-for-its-nodes
`

// installStack sends a stack file as the CLI does.
func (g *testGrid) installStack(src string) {
	g.t.Helper()
	res, err := stack.LoadBytes(context.Background(), "kontena.yml", []byte(src), stack.Options{Grid: "unit"})
	if err != nil {
		g.t.Fatal(err)
	}
	req := api.StackInstallRequest{Name: res.Name, FileName: "kontena.yml", Source: res.Source, Values: res.Variables, Spec: *res.Stack}
	if _, err := g.admin.Do(context.Background(), "POST", "/v1/stacks", req, nil); err != nil {
		g.t.Fatalf("install: %v", err)
	}
}

func (g *testGrid) running() int {
	total := 0
	for _, tn := range g.nodes {
		total += len(tn.rt.Running())
	}
	return total
}

// TestInProcessGrid runs a stack on 3 voters and a worker: every node's
// agent gets its assignments and reports through the admission path (a
// worker's reports reach the leader by a follower's redirect, with the
// worker's own certificate), then a leader failover keeps it running.
func TestInProcessGrid(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four nodes")
	}
	g := newTestGrid(t, 3, 1)
	g.installStack(inprocStack)
	g.waitFor("4 instances running and reported", 30*time.Second, func() bool {
		var svc api.ServiceInfo
		if _, err := g.admin.Do(context.Background(), "GET", "/v1/services/web/web", nil, &svc); err != nil {
			return false
		}
		return svc.Running == 4 && g.running() == 4
	})
	if got := len(g.node("n4").rt.Running()); got != 1 {
		t.Fatalf("the worker runs %d instances, want 1 (spread over 4 nodes)", got)
	}

	// The leader goes: a new one is elected, the instances keep running,
	// and writes work again (scale through any node).
	old := g.leader()
	old.kill()
	g.waitFor("a new leader", 20*time.Second, func() bool { return g.leader() != nil })
	var rest []string
	for _, tn := range g.nodes {
		if tn != old {
			rest = append(rest, tn.info.APIAddr)
		}
	}
	tlsCfg, err := pki.ClientConfig(g.ca, nil)
	if err != nil {
		t.Fatal(err)
	}
	admin := api.NewClientTLS(rest, tlsCfg, g.nodes[0].info.AdminToken)
	g.waitFor("scale to 6 accepted by the new leader", 30*time.Second, func() bool {
		_, err := admin.Do(context.Background(), "POST", "/v1/services/web/web/scale", api.ScaleRequest{Instances: 6}, nil)
		return err == nil
	})
}

// TestNodeActsOnlyAsItself: a worker's certificate reads and writes only
// its own node's resources, whatever headers it sends and through whichever
// node it goes; a worker does not relay another node's certificate.
func TestNodeActsOnlyAsItself(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four nodes")
	}
	g := newTestGrid(t, 3, 1)
	g.installStack(inprocStack)
	w := g.node("n4")
	var follower *testNode
	for _, tn := range g.nodes[:3] {
		if !tn.n.isLeader() {
			follower = tn
		}
	}
	forged := http.Header{}
	forged.Set("X-Kontena-Forwarded-By", follower.n.id.ID)
	forged.Set("X-Kontena-Caller-Node", g.node("n2").n.id.ID)
	targets := []*testNode{g.leader(), follower, w}
	for _, via := range targets {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: g.nodeTLS(w)}, Timeout: 10 * time.Second}
		for _, tc := range []struct {
			method, path string
			body         any
		}{
			{"GET", "/v1/nodes/n2/assignments", nil},
			{"GET", "/v1/nodes/n2/netmap", nil},
			{"POST", "/v1/nodes/n2/instances", []fsm.InstanceReport{}},
			{"PUT", "/v1/nodes/n2/overlay", api.OverlaySetRequest{PublicKey: "AAAA", Port: 1}},
			{"PUT", "/v1/nodes/n2/resources", fsm.NodeResources{}},
			{"GET", "/v1/nodes", nil},
			{"GET", "/v1/services", nil},
			{"GET", "/v1/containers/web.web-1/logs", nil},
			{"GET", "/v1/internal/containers/web.web-1/logs", nil},
			{"GET", "/v1/internal/containers/web.web-1/inspect", nil},
			{"POST", "/v1/internal/demote", nil},
			{"POST", "/v1/internal/removed", nil},
			{"POST", "/v1/internal/promote", api.VoterKeys{CAKey: "x"}},
		} {
			code, body := rawCall(t, c, tc.method, "https://"+via.info.APIAddr+tc.path, tc.body, forged)
			if code != http.StatusForbidden {
				t.Errorf("worker cert via %s: %s %s = %d %s; want 403", via.name, tc.method, tc.path, code, body)
			}
		}
		// Its own resources it may read, through any node.
		if code, body := rawCall(t, c, "GET", "https://"+via.info.APIAddr+"/v1/nodes/n4/assignments", nil, nil); code != http.StatusOK {
			t.Errorf("own assignments via %s: %d %s", via.name, code, body)
		}
	}
	// The worker does not relay another node's certificate: n2's request
	// sent to n4 is refused there, not passed on as n4's.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: g.nodeTLS(g.node("n2"))}, Timeout: 10 * time.Second}
	if code, body := rawCall(t, c, "GET", "https://"+w.info.APIAddr+"/v1/nodes/n4/assignments", nil, nil); code != http.StatusForbidden || !strings.Contains(body, "relays only user tokens and its own requests") {
		t.Errorf("n2's cert relayed by worker n4: %d %s", code, body)
	}
}

// TestRaftRefusesNonVoters: Raft's transport drops a connection whose
// certificate is not a voter's of the configuration, before reading a
// byte of it: a worker's AppendEntries with a higher term neither appends
// nor moves the term.
func TestRaftRefusesNonVoters(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four nodes")
	}
	g := newTestGrid(t, 3, 1)
	l := g.leader()
	w := g.node("n4")
	term := l.n.voter().Term()
	before := l.n.voter().CommitIndex()
	cmd, err := fsm.Encode(&fsm.TokenCreate{Token: fsm.Token{ID: "evil", User: "admin", Hash: hashToken("ktn_evil")}}, &fsm.AuditInfo{})
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range g.nodes[:3] {
		addr := net.JoinHostPort(target.cfg.AdvertiseAddr, strconv.Itoa(target.cfg.RaftPort))
		err := appendAs(g.nodeTLS(w), addr, term+5, before+1, cmd)
		if err == nil {
			t.Fatalf("raft on %s accepted AppendEntries from worker %s", target.name, w.name)
		}
		t.Logf("raft on %s refused worker %s: %v", target.name, w.name, err)
	}
	time.Sleep(500 * time.Millisecond)
	if got := l.n.voter().Term(); got != term {
		t.Fatalf("term moved from %d to %d", term, got)
	}
	store := l.n.voter().Store()
	if _, err := store.TokenByHash(hashToken("ktn_evil")); err == nil {
		t.Fatal("the worker's forged token is in the state")
	}
	// A voter's certificate is accepted (the same call from n2 reaches
	// Raft, which answers; the term it sends is old, so nothing changes).
	addr := net.JoinHostPort(l.cfg.AdvertiseAddr, strconv.Itoa(l.cfg.RaftPort))
	var follower *testNode
	for _, tn := range g.nodes[:3] {
		if tn != l {
			follower = tn
		}
	}
	if err := appendAs(g.nodeTLS(follower), addr, 0, 0, nil); err != nil {
		t.Fatalf("raft refused voter %s: %v", follower.name, err)
	}
}

// appendAs sends one AppendEntries over a Raft transport of its own that
// dials with cfg.
func appendAs(cfg *tls.Config, addr string, term, index uint64, data []byte) error {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: cfg.Certificates})
	if err != nil {
		return err
	}
	trans := raft.NewNetworkTransport(tlsDialer{ln, cfg}, 1, 3*time.Second, nil)
	defer trans.Close()
	req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("evil"), Addr: []byte(ln.Addr().String())},
		Term: term, PrevLogEntry: 0, PrevLogTerm: 0, LeaderCommitIndex: index}
	if data != nil {
		req.Entries = []*raft.Log{{Index: index, Term: term, Type: raft.LogCommand, Data: data}}
	}
	var resp raft.AppendEntriesResponse
	return trans.AppendEntries("x", raft.ServerAddress(addr), req, &resp)
}

// TestRemovedNodeRefused: once `node rm` commits, the removed node's
// certificate is refused by the API of every voter and by Raft.
func TestRemovedNodeRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four nodes")
	}
	g := newTestGrid(t, 3, 1)
	w := g.node("n4")
	wTLS := g.nodeTLS(w)
	w.kill()
	g.waitFor("n4 offline", 20*time.Second, func() bool {
		var nd fsm.Node
		_, err := g.admin.Do(context.Background(), "GET", "/v1/nodes/n4", nil, &nd)
		return err == nil && nd.Status == fsm.StatusOffline
	})
	if _, err := g.admin.Do(context.Background(), "DELETE", "/v1/nodes/n4", nil, nil); err != nil {
		t.Fatal(err)
	}
	removedAt := time.Now()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: wTLS}, Timeout: 10 * time.Second}
	for _, v := range g.nodes[:3] {
		deadline := removedAt.Add(time.Second)
		for {
			code, body := rawCall(t, c, "GET", "https://"+v.info.APIAddr+"/v1/nodes/n4/assignments", nil, nil)
			if code == http.StatusUnauthorized && strings.Contains(body, "removed") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("voter %s still answers the removed node %d s after node rm: %d %s", v.name, int(time.Since(removedAt).Seconds()), code, body)
			}
			time.Sleep(50 * time.Millisecond)
		}
		addr := net.JoinHostPort(v.cfg.AdvertiseAddr, strconv.Itoa(v.cfg.RaftPort))
		if err := appendAs(wTLS, addr, 0, 0, nil); err == nil {
			t.Fatalf("raft on %s accepted the removed node", v.name)
		}
	}
}

func rawCall(t *testing.T, c *http.Client, method, url string, body any, hdr http.Header) (int, string) {
	t.Helper()
	var rd *strings.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = strings.NewReader(string(data))
	} else {
		rd = strings.NewReader("")
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		k, err := resp.Body.Read(buf)
		sb.Write(buf[:k])
		if err != nil || sb.Len() > 1<<16 {
			break
		}
	}
	return resp.StatusCode, sb.String()
}

// tlsDialer is the smallest raft.StreamLayer: it dials with one TLS config.
type tlsDialer struct {
	net.Listener
	cfg *tls.Config
}

func (d tlsDialer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", string(addr), d.cfg)
}

const secretStack = `stack: test/sec
version: 0.1.0
services:
  a:
    image: a:fake
    affinity: ["node==n1"]
    secrets:
      - secret: only-a
        name: SECRET_A
        type: env
  b:
    image: b:fake
    affinity: ["node==n2"]
    secrets:
      - secret: only-b
        name: SECRET_B
        type: env
      - secret: bundle
        name: SECRET_B
        type: env
      - secret: only-b
        name: b.txt
        type: file
`

// TestSecretsReachOnlyTheirNode: a stack naming a secret the vault lacks is
// refused with the name; a vault secret reaches the environment of the
// instances that use it, and a node's assignments hold only the secrets of
// its own instances.
func TestSecretsReachOnlyTheirNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two nodes")
	}
	g := newTestGrid(t, 1, 1)
	ctx := context.Background()
	res, err := stack.LoadBytes(ctx, "kontena.yml", []byte(secretStack), stack.Options{Grid: "unit"})
	if err != nil {
		t.Fatal(err)
	}
	req := api.StackInstallRequest{Name: res.Name, FileName: "kontena.yml", Source: res.Source, Values: res.Variables, Spec: *res.Stack}
	if _, err := g.admin.Do(ctx, "POST", "/v1/stacks", req, nil); err == nil || !strings.Contains(err.Error(), "only-a") || !strings.Contains(err.Error(), "not in the vault") {
		t.Fatalf("install naming missing secrets: %v", err)
	}
	for name, value := range map[string]string{"only-a": "value-of-a", "only-b": "value-of-b", "bundle": "second-part"} {
		if _, err := g.admin.WriteSecret(ctx, name, api.SecretWriteRequest{Value: value}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := g.admin.Do(ctx, "POST", "/v1/stacks", req, nil); err != nil {
		t.Fatalf("install: %v", err)
	}
	g.waitFor("both instances running", 30*time.Second, func() bool { return g.running() == 2 })
	if env := strings.Join(g.node("n2").rt.Env("sec.b-1"), ";"); !strings.Contains(env, "SECRET_B=value-of-b\nsecond-part") || strings.Contains(env, "value-of-a") {
		t.Fatalf("b-1's environment on n2: %s", env)
	}
	if env := strings.Join(g.node("n1").rt.Env("sec.a-1"), ";"); !strings.Contains(env, "SECRET_A=value-of-a") || strings.Contains(env, "value-of-b") {
		t.Fatalf("a-1's environment on n1: %s", env)
	}
	// What n2 itself reads: its own instance's secrets, nobody else's.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: g.nodeTLS(g.node("n2"))}, Timeout: 10 * time.Second}
	code, body := rawCall(t, c, "GET", "https://"+g.node("n1").info.APIAddr+"/v1/nodes/n2/assignments", nil, nil)
	if code != http.StatusOK || !strings.Contains(body, "value-of-b") || strings.Contains(body, "value-of-a") {
		t.Fatalf("n2's assignments: %d %s", code, body)
	}
	// Listings and service show carry names only.
	var svc api.ServiceInfo
	if _, err := g.admin.Do(ctx, "GET", "/v1/services/sec/b", nil, &svc); err != nil {
		t.Fatal(err)
	}
	if data, _ := json.Marshal(svc); strings.Contains(string(data), "value-of-b") {
		t.Fatalf("service show holds a secret value: %s", data)
	}
	if got := secretFile(t, g.node("n2").rt, "sec.b-1", "b.txt"); got != "value-of-b" {
		t.Fatalf("b-1's /run/secrets/b.txt: %q", got)
	}

	// Rotation: the same value again redeploys nothing; a new one rolls
	// exactly the services that use it, and their new containers see it.
	ch, err := g.admin.WriteSecret(ctx, "only-b", api.SecretWriteRequest{Value: "value-of-b", Mode: fsm.SecretUpdate})
	if err != nil || len(ch.Rolling) != 0 {
		t.Fatalf("rewrite of the same value: %+v %v", ch, err)
	}
	ch, err = g.admin.WriteSecret(ctx, "only-b", api.SecretWriteRequest{Value: "rotated-b", Mode: fsm.SecretUpdate})
	if err != nil || fmt.Sprint(ch.Rolling) != "[sec/b]" {
		t.Fatalf("rotation: %+v %v", ch, err)
	}
	g.waitFor("b-1 runs the rotated secret", 30*time.Second, func() bool {
		env := strings.Join(g.node("n2").rt.Env("sec.b-1"), ";")
		return strings.Contains(env, "SECRET_B=rotated-b\nsecond-part") && len(g.node("n2").rt.Running()) == 1
	})
	if got := secretFile(t, g.node("n2").rt, "sec.b-1", "b.txt"); got != "rotated-b" {
		t.Fatalf("b-1's /run/secrets/b.txt after rotation: %q", got)
	}
	var a api.ServiceInfo
	if _, err := g.admin.Do(ctx, "GET", "/v1/services/sec/a", nil, &a); err != nil || a.Revision != 1 {
		t.Fatalf("service a, which does not use only-b, was redeployed: revision %d %v", a.Revision, err)
	}
	// Removing a secret in use is refused, naming its users.
	if _, err := g.admin.RemoveSecret(ctx, "only-b", false); !api.IsCode(err, api.CodeConflict) || !strings.Contains(err.Error(), "sec/b") {
		t.Fatalf("rm of a secret in use: %v", err)
	}
}

// secretFile reads file of container name's /run/secrets mount on the
// fake runtime, checking it is mounted read-only with mode 0400.
func secretFile(t *testing.T, rt *agenttest.Runtime, name, file string) string {
	t.Helper()
	for _, m := range rt.Mounts(name) {
		if m.Target != agent.SecretsPath {
			continue
		}
		if !m.ReadOnly || m.Kind != agent.VolumeBind {
			t.Fatalf("%s: secrets mount %+v is not a read-only bind", name, m)
		}
		path := filepath.Join(m.Source, file)
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o400 {
			t.Fatalf("%s: mode %v, want 0400", path, st.Mode().Perm())
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	t.Fatalf("%s has no mount at %s: %+v", name, agent.SecretsPath, rt.Mounts(name))
	return ""
}

// TestConsistentReads: ?consistent is answered by the leader (a follower
// relays it), so it sees every acknowledged write; with no majority a
// consistent read fails while a default read still answers from the
// voter's last state.
func TestConsistentReads(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes")
	}
	g := newTestGrid(t, 3, 0)
	ctx := context.Background()
	leader := g.leader()
	var follower *testNode
	for _, tn := range g.nodes {
		if tn != leader {
			follower = tn
			break
		}
	}
	at := func(tn *testNode) *api.Client {
		return api.NewClientTLS([]string{tn.info.APIAddr}, g.adminTLS(), g.nodes[0].info.AdminToken)
	}
	for i := range 20 {
		label := fmt.Sprintf("seq=%d", i)
		if _, err := at(leader).Do(ctx, "PATCH", "/v1/nodes/n1", api.NodeUpdateRequest{AddLabels: []string{label}}, nil); err != nil {
			t.Fatal(err)
		}
		var n fsm.Node
		if _, err := at(follower).Consistent().Do(ctx, "GET", "/v1/nodes/n1", nil, &n); err != nil || !slices.Contains(n.Labels, label) {
			t.Fatalf("consistent read on a follower right after write %d: %v %v", i, n.Labels, err)
		}
	}
	for _, tn := range g.nodes {
		if tn != follower {
			tn.kill()
		}
	}
	if _, err := at(follower).Do(ctx, "GET", "/v1/nodes/n1", nil, nil); err != nil {
		t.Fatalf("a default read from the last state: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := at(follower).Consistent().Do(cctx, "GET", "/v1/nodes/n1", nil, nil); err == nil {
		t.Fatal("a consistent read without a majority answered")
	}
}
