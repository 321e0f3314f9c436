package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/integration/harness"
	"github.com/kontena-ng/kontena/pki"
)

// The attack suite: what a stolen worker certificate, or the certificate of
// a node removed with `node rm`, can do to a grid of real nodes. Each case
// is an attack that worked before the control plane had one admission path.

// stolenCert takes a node's certificate and key out of its data dir, as
// an attacker who owns that machine would.
func stolenCert(ctx context.Context, t *testing.T, n *harness.Node) (*tls.Certificate, string) {
	t.Helper()
	certPEM, err := n.ReadFile(ctx, dataDir+"/node.pem")
	must(t, err)
	keyPEM, err := n.ReadFile(ctx, dataDir+"/node-key.pem")
	must(t, err)
	caPEM, err := n.ReadFile(ctx, dataDir+"/ca.pem")
	must(t, err)
	kp, err := pki.KeyPair(certPEM, keyPEM, caPEM)
	must(t, err)
	cert, err := pki.ParseCert(certPEM)
	must(t, err)
	return &kp, cert.Subject.CommonName
}

// raftAppend sends one AppendEntries with cert to a Raft port: the
// attacker claims a higher term and appends a command that would create an
// admin token.
func raftAppend(cert *tls.Certificate, addr string, term uint64) error {
	cfg := clientTLS(cert)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{*cert}})
	if err != nil {
		return err
	}
	layer := &dialLayer{Listener: ln, cfg: cfg}
	trans := raft.NewNetworkTransport(layer, 1, 5*time.Second, io.Discard)
	defer trans.Close()
	data, err := fsm.Encode(&fsm.TokenCreate{Token: fsm.Token{ID: "evil", User: "admin", Hash: strings.Repeat("e", 64)}}, &fsm.AuditInfo{})
	if err != nil {
		return err
	}
	req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("evil"), Addr: []byte("evil")},
		Term: term, LeaderCommitIndex: 1 << 40,
		Entries: []*raft.Log{{Index: 1 << 30, Term: term, Type: raft.LogCommand, Data: data}}}
	var resp raft.AppendEntriesResponse
	return trans.AppendEntries("evil", raft.ServerAddress(addr), req, &resp)
}

// dialLayer is a raft.StreamLayer that dials with a given TLS config.
type dialLayer struct {
	net.Listener
	cfg *tls.Config
}

func (d *dialLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", string(addr), d.cfg)
}

// call sends one request with cert (no token) and returns the status and
// body.
func call(ctx context.Context, cert *tls.Certificate, method, url string, body any, hdr map[string]string) (int, string) {
	var rd io.Reader = http.NoBody
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, err.Error()
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS(cert)}, Timeout: 15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(b)
}

// gridFingerprint is what an attack must not change: nodes with their
// roles, keys and labels, the tokens, and the grid's Raft term and voters.
func (tg *testGrid) gridFingerprint(ctx context.Context, t *testing.T) string {
	t.Helper()
	nodes, err := tg.nodeList(ctx)
	must(t, err)
	var lines []string
	for name, n := range nodes {
		lines = append(lines, fmt.Sprintf("node %s %s %s key=%s labels=%v", name, n.ID, n.Role, n.Overlay.PublicKey, n.Labels))
	}
	var toks []*fsm.Token
	_, err = tg.adminClient(t).Do(ctx, "GET", "/v1/tokens", nil, &toks)
	must(t, err)
	for _, tk := range toks {
		lines = append(lines, "token "+tk.ID+" "+tk.User)
	}
	var g api.GridInfo
	out := tg.mustCLI(ctx, "grid", "show", "-o", "json")
	must(t, json.Unmarshal([]byte(out), &g))
	for _, v := range g.Voters {
		lines = append(lines, fmt.Sprintf("voter %s in_raft=%v", v.Name, v.InRaft))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// attackAsNode runs every attack of the suite with cert (the node named
// self) against the nodes of tg, and says what got through.
func attackAsNode(ctx context.Context, t *testing.T, tg *testGrid, cert *tls.Certificate, self string, voters, others []string, victim string) {
	t.Helper()
	victimID := ""
	if nodes, err := tg.nodeList(ctx); err == nil && nodes[victim] != nil {
		victimID = nodes[victim].ID
	}
	// Raft: an AppendEntries with a higher term is refused by every voter.
	for _, v := range voters {
		if err := raftAppend(cert, tg.nodes[v].IP()+":9701", 1<<20); err == nil {
			t.Errorf("raft on %s accepted AppendEntries from %s", v, self)
		}
	}
	forged := map[string]string{"X-Kontena-Forwarded-By": victimID, "X-Kontena-Caller-Node": victimID}
	all := append(append([]string{}, voters...), others...)
	for _, via := range all {
		base := "https://" + tg.nodes[via].IP() + ":9700"
		for _, tc := range []struct {
			method, path string
			body         any
			hdr          map[string]string
		}{
			// Internal control endpoints.
			{"POST", "/v1/internal/demote", nil, nil},
			{"POST", "/v1/internal/removed", nil, nil},
			{"POST", "/v1/internal/promote", api.VoterKeys{CAKey: "attacker", MasterKey: []byte("attacker")}, nil},
			{"GET", "/v1/internal/status", nil, nil},
			{"GET", "/v1/internal/containers/x/logs", nil, nil},
			{"GET", "/v1/internal/containers/x/inspect", nil, nil},
			{"GET", "/v1/internal/containers/x/stats", nil, nil},
			// Another node's resources, with and without forged headers.
			{"GET", "/v1/nodes/" + victim + "/assignments", nil, nil},
			{"GET", "/v1/nodes/" + victim + "/assignments", nil, forged},
			{"GET", "/v1/nodes/" + victim + "/netmap", nil, forged},
			{"POST", "/v1/nodes/" + victim + "/instances", []fsm.InstanceReport{{ID: "x", Actual: fsm.InstanceActual{State: "running", IP: "10.0.0.66"}}}, forged},
			{"PUT", "/v1/nodes/" + victim + "/overlay", api.OverlaySetRequest{PublicKey: "q1mzfu6a0zqWq0N1tCv4mU9hZJd0qWvXl0bD1ZrV+0k=", Port: 1}, forged},
			{"PUT", "/v1/nodes/" + victim + "/resources", fsm.NodeResources{CPUs: 1}, forged},
			// User routes: logs and inspect of any container, the state.
			{"GET", "/v1/containers/x/logs", nil, nil},
			{"GET", "/v1/containers/x", nil, nil},
			{"GET", "/v1/nodes", nil, forged},
			{"POST", "/v1/tokens", api.TokenCreateRequest{Description: "evil"}, forged},
		} {
			code, body := call(ctx, cert, tc.method, base+tc.path, tc.body, tc.hdr)
			if code != http.StatusForbidden && code != http.StatusUnauthorized {
				t.Errorf("%s via %s: %s %s (headers %v) = %d %s; want 401 or 403", self, via, tc.method, tc.path, tc.hdr != nil, code, body)
			}
		}
	}
}

// attackWorker is the "worker's certificate" half of the suite, run
// inside TestGrid on its five nodes.
func attackWorker(ctx context.Context, t *testing.T, tg *testGrid) {
	before := tg.gridFingerprint(ctx, t)
	cert, _ := stolenCert(ctx, t, tg.nodes["w1"])
	attackAsNode(ctx, t, tg, cert, "w1", []string{"v1", "v2", "v3"}, []string{"w1", "w2"}, "w2")
	// Its own resources it still reads (the suite refuses the right things,
	// not everything).
	if code, body := call(ctx, cert, "GET", "https://"+tg.nodes["v2"].IP()+":9700/v1/nodes/w1/assignments", nil, nil); code != http.StatusOK {
		t.Errorf("w1 reading its own assignments: %d %s", code, body)
	}
	time.Sleep(time.Second) // anything that got through would be committed by now
	if after := tg.gridFingerprint(ctx, t); after != before {
		t.Fatalf("the grid changed under the attack:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	health, _ := tg.health(ctx)
	if health.Status != api.HealthOK {
		t.Fatalf("grid health after the attack: %+v", health)
	}
}

// attackRemoved is the "removed node's certificate" half: cert belonged
// to a node that `node rm` took out at removedAt.
func attackRemoved(ctx context.Context, t *testing.T, tg *testGrid, cert *tls.Certificate, self string, removedAt time.Time, voters, others []string) {
	// Refused by the API of every voter within a second of the removal.
	for _, v := range voters {
		for {
			code, body := call(ctx, cert, "GET", "https://"+tg.nodes[v].IP()+":9700/v1/nodes/"+self+"/assignments", nil, nil)
			if code == http.StatusUnauthorized {
				break
			}
			if time.Since(removedAt) > time.Second {
				t.Errorf("voter %s still accepts removed node %s %s after node rm: %d %s", v, self, time.Since(removedAt).Round(time.Millisecond), code, body)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	before := tg.gridFingerprint(ctx, t)
	attackAsNode(ctx, t, tg, cert, self, voters, others, others[0])
	time.Sleep(time.Second)
	if after := tg.gridFingerprint(ctx, t); after != before {
		t.Fatalf("the grid changed under the attack:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
