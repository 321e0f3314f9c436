package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

// TestGrid runs one 3-voter + 2-worker grid through the faults a grid must
// survive. The steps share the grid (building it is the slow part) and run
// in order; each leaves the grid whole for the next.
func TestGrid(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	tg := newGrid(t, "it", 3, "v1", "v2", "v3", "w1", "w2")

	t.Run("bootstrap and join", func(t *testing.T) {
		nodes, err := tg.nodeList(ctx)
		must(t, err)
		roles := map[string]string{}
		for name, n := range nodes {
			roles[name] = n.Role + "/" + n.Status
		}
		want := map[string]string{"v1": "voter/online", "v2": "voter/online", "v3": "voter/online", "w1": "worker/online", "w2": "worker/online"}
		if fmt.Sprint(roles) != fmt.Sprint(want) {
			t.Fatalf("roles = %v, want %v", roles, want)
		}
		eventually(t, 30*time.Second, "grid health ok", func() error {
			h, code := tg.health(ctx)
			if code != 0 || h.Status != api.HealthOK {
				return fmt.Errorf("health %+v exit %d", h, code)
			}
			return nil
		})
		// Every node answers the API, workers by forwarding to a voter.
		for name, n := range tg.nodes {
			cl := tg.clientFor(t, n.IP())
			if _, err := cl.WhoAmI(ctx); err != nil {
				t.Fatalf("API on %s: %v", name, err)
			}
		}
		// The CLI learnt every master's address.
		raw, _ := os.ReadFile(tg.cfg)
		for _, v := range []string{"v1", "v2", "v3"} {
			if !strings.Contains(string(raw), tg.nodes[v].IP()+":9700") {
				t.Fatalf("CLI config lacks master %s: %s", v, raw)
			}
		}
	})

	t.Run("node labels and availability", func(t *testing.T) {
		tg.mustCLI(ctx, "node", "label", "add", "w1", "az=a", "disk=ssd")
		tg.mustCLI(ctx, "node", "label", "rm", "w1", "disk")
		tg.mustCLI(ctx, "node", "update", "w2", "--availability", "drain")
		out := tg.mustCLI(ctx, "node", "show", "w1", "-o", "json")
		var n fsm.Node
		must(t, json.Unmarshal([]byte(out), &n))
		if fmt.Sprint(n.Labels) != "[az=a]" {
			t.Fatalf("w1 labels = %v", n.Labels)
		}
		nodes, _ := tg.nodeList(ctx)
		if nodes["w2"].Availability != fsm.AvailabilityDrain {
			t.Fatalf("w2 availability = %s", nodes["w2"].Availability)
		}
		tg.mustCLI(ctx, "node", "update", "w2", "--availability", "active")
		// CLI errors: exit codes scripts can trust.
		for _, tc := range []struct {
			args []string
			code int
			msg  string
		}{
			{[]string{"node", "show", "nope"}, 5, `node "nope"`},
			{[]string{"node", "update", "w1", "--availability", "sleepy"}, 2, "expected active or drain"},
			{[]string{"node", "rm", "v2", "--force"}, 6, "only offline nodes can be removed"},
			{[]string{"node", "label", "add", "w1", "novalue"}, 2, "expected key=value"},
			{[]string{"node", "ls", "-o", "yaml"}, 2, "expected table or json"},
		} {
			_, errOut, code := tg.cli(ctx, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.msg) {
				t.Errorf("kontena %v: exit %d %q, want exit %d containing %q", tc.args, code, errOut, tc.code, tc.msg)
			}
		}
	})

	t.Run("refused joins say why", func(t *testing.T) {
		other := newGrid(t, "other", 1, "o1")
		v1 := tg.nodes["v1"]
		tok := strings.Split(tg.token, ".")
		badSecret := strings.Join([]string{tok[0], tok[1], tok[2], strings.Repeat("0", len(tok[3]))}, ".")
		cases := []struct {
			name, node, token, want string
			code                    int
		}{
			{"wrong token", "x1", badSecret, "invalid join token", 6},
			{"token of another grid", "x2", other.token, "CA mismatch", 4},
			{"reused node name", "w1", tg.token, `node name "w1" is already in use`, 6},
			{"malformed token", "x3", "hello", "malformed join token", 1},
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				n := tg.addNode(ctx, fmt.Sprintf("bad%d", i))
				out, errOut, code, err := n.Exec(ctx, append([]string{"kontena"}, upArgs(tc.node, n.IP(), "--join", v1.IP(), "--token", tc.token)...)...)
				must(t, err)
				if code != tc.code || !strings.Contains(errOut, tc.want) {
					t.Fatalf("exit %d, stderr %q (stdout %q); want exit %d and %q", code, errOut, out, tc.code, tc.want)
				}
			})
		}
		// The refused nodes left nothing behind in the grid.
		nodes, _ := tg.nodeList(ctx)
		if len(nodes) != 5 {
			t.Fatalf("grid has %d nodes after refused joins, want 5", len(nodes))
		}
	})

	t.Run("authentication", func(t *testing.T) {
		v2 := tg.nodes["v2"]
		ca := tg.caPEM(t)
		// No token, directly to a voter and through a worker (which
		// forwards with its own certificate: that must not vouch for the
		// anonymous caller).
		var ae *api.Error
		for _, name := range []string{"v2", "w1"} {
			anon, err := api.NewClient([]string{tg.nodes[name].IP() + ":9700"}, ca, "", nil)
			must(t, err)
			if _, _, err := anon.Nodes(ctx, 0, 0); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
				t.Fatalf("no token via %s: %v, want 401", name, err)
			}
		}
		// A token works until it is revoked, on every node.
		out := tg.mustCLI(ctx, "token", "create", "--description", "ci", "-o", "json")
		var created api.TokenCreateResponse
		must(t, json.Unmarshal([]byte(out), &created))
		for _, name := range []string{"v1", "v3", "w1"} {
			cl, _ := api.NewClient([]string{tg.nodes[name].IP() + ":9700"}, ca, created.Value, nil)
			if _, err := cl.WhoAmI(ctx); err != nil {
				t.Fatalf("new token on %s: %v", name, err)
			}
		}
		tg.mustCLI(ctx, "token", "rm", created.Token.ID)
		for _, name := range []string{"v1", "v3", "w1"} {
			cl, _ := api.NewClient([]string{tg.nodes[name].IP() + ":9700"}, ca, created.Value, nil)
			eventually(t, 10*time.Second, "revoked token refused on "+name, func() error {
				if _, err := cl.WhoAmI(ctx); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
					return fmt.Errorf("revoked token: %v", err)
				}
				return nil
			})
		}
		_, errOut, code := runCLI(ctx, []string{"KONTENA_CONFIG=" + tg.cfg, "KONTENA_TOKEN=" + created.Value}, "node", "ls")
		if code != 3 || !strings.Contains(errOut, "invalid or revoked token") {
			t.Fatalf("CLI with revoked token: exit %d %q", code, errOut)
		}
		// Node-to-node endpoints: Raft needs a grid certificate at the TLS
		// layer; internal API calls need one too.
		for _, cert := range []*tls.Certificate{nil, foreignCert(t)} {
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", v2.IP()+":9701", clientTLS(cert))
			if err == nil {
				// TLS 1.3 reports a refused client certificate on first read.
				_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
				_, err = conn.Read(make([]byte, 1))
				conn.Close()
			}
			if err == nil || os.IsTimeout(err) {
				t.Fatalf("raft port accepted a client without a grid certificate (cert=%v): %v", cert != nil, err)
			}
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+v2.IP()+":9700/v1/internal/demote", nil)
		req.Header.Set("Authorization", "Bearer "+tg.adminToken(t))
		resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS(nil)}}).Do(req)
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("internal endpoint with a user token: %s, want 401", resp.Status)
		}
	})

	t.Run("attack with a worker's certificate", func(t *testing.T) {
		attackWorker(ctx, t, tg)
	})

	t.Run("worker killed goes offline and comes back", func(t *testing.T) {
		w2 := tg.nodes["w2"]
		before, _ := tg.nodeList(ctx)
		must(t, w2.KillDaemon(ctx))
		took := tg.waitNode(ctx, "w2", fsm.StatusOffline, 60*time.Second)
		t.Logf("MEASURED worker offline after kill -9: %s", took.Round(10*time.Millisecond))
		out := tg.mustCLI(ctx, "node", "ls")
		if !regexpLine(out, `w2\s+worker\s+offline`) {
			t.Fatalf("node ls does not show w2 offline:\n%s", out)
		}
		// Restart without a token: it resumes with the same identity.
		must(t, w2.StartDaemon(ctx, "up", "--data-dir", dataDir, "--advertise", w2.IP()))
		tg.waitNode(ctx, "w2", fsm.StatusOnline, 60*time.Second)
		after, _ := tg.nodeList(ctx)
		if after["w2"].ID != before["w2"].ID || after["w2"].Number != before["w2"].Number {
			t.Fatalf("w2 came back as %s/%d, was %s/%d", after["w2"].ID, after["w2"].Number, before["w2"].ID, before["w2"].Number)
		}
	})

	t.Run("leader killed: new leader, no acknowledged write lost", func(t *testing.T) {
		h, _ := tg.health(ctx)
		leader := tg.nodes[h.Leader]
		if leader == nil {
			t.Fatalf("no leader in %+v", h)
		}
		cl := tg.adminClient(t)
		// Writers keep adding labels through the API while the leader dies;
		// every label whose write was acknowledged must survive.
		var (
			mu    sync.Mutex
			acked []string
			wg    sync.WaitGroup
		)
		wctx, stopWriters := context.WithCancel(ctx)
		for wr := 0; wr < 4; wr++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; wctx.Err() == nil; i++ {
					label := fmt.Sprintf("k%d-%d=v", wr, i)
					rctx, cancel := context.WithTimeout(wctx, 5*time.Second)
					_, err := cl.UpdateNode(rctx, "w1", api.NodeUpdateRequest{AddLabels: []string{label}})
					cancel()
					if err == nil {
						mu.Lock()
						acked = append(acked, label)
						mu.Unlock()
					} else {
						time.Sleep(100 * time.Millisecond)
					}
				}
			}()
		}
		time.Sleep(time.Second)
		killedAt := time.Now()
		must(t, leader.KillDaemon(ctx))
		var newLeader string
		eventually(t, 60*time.Second, "a new leader", func() error {
			h, _ := tg.health(ctx)
			if h.Leader == "" || h.Leader == leader.Name() {
				return fmt.Errorf("leader %q", h.Leader)
			}
			newLeader = h.Leader
			return nil
		})
		t.Logf("MEASURED new leader %s seen by the CLI %s after kill -9 of %s", newLeader, time.Since(killedAt).Round(10*time.Millisecond), leader.Name())
		// Writes succeed again.
		mu.Lock()
		n0 := len(acked)
		mu.Unlock()
		eventually(t, 30*time.Second, "writes acknowledged after failover", func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(acked) <= n0+10 {
				return fmt.Errorf("%d acknowledged writes so far", len(acked)-n0)
			}
			return nil
		})
		stopWriters()
		wg.Wait()
		node, err := cl.Node(ctx, "w1")
		must(t, err)
		var lost []string
		for _, l := range acked {
			if !slices.Contains(node.Labels, l) {
				lost = append(lost, l)
			}
		}
		t.Logf("MEASURED %d acknowledged writes across the failover, %d lost", len(acked), len(lost))
		if len(lost) > 0 {
			t.Fatalf("%d acknowledged writes lost: %v", len(lost), lost)
		}
		// Clean up the labels and bring the old leader back.
		_, err = cl.UpdateNode(ctx, "w1", api.NodeUpdateRequest{SetLabels: &[]string{"az=a"}})
		must(t, err)
		must(t, leader.StartDaemon(ctx, "up", "--data-dir", dataDir, "--advertise", leader.IP()))
		tg.waitNode(ctx, leader.Name(), fsm.StatusOnline, 60*time.Second)
		tg.waitLevel(ctx)
	})

	t.Run("voter cut off cannot commit, majority can, it catches up", func(t *testing.T) {
		tg.waitLevel(ctx)
		h, _ := tg.health(ctx)
		var cut string
		for _, v := range []string{"v1", "v2", "v3"} {
			if v != h.Leader {
				cut = v
				break
			}
		}
		n := tg.nodes[cut]
		// An admin config inside the node that only knows the node itself.
		inside := tg.insideConfig(t, "https://127.0.0.1:9700")
		must(t, n.CopyIn(ctx, inside, "/tmp/cli.json"))
		must(t, n.Disconnect(ctx))
		cutAt := time.Now()
		phase := func(what string) {
			t.Logf("MEASURED partition of %s: %s after the cut: %s", cut, what, time.Since(cutAt).Round(10*time.Millisecond))
		}
		reconnected := false
		defer func() {
			if !reconnected {
				_ = n.Reconnect(context.Background())
			}
		}()
		// The isolated voter cannot commit: it has no leader.
		eventually(t, 30*time.Second, "isolated voter refuses writes", func() error {
			_, errOut, code, err := n.Exec(ctx, "kontena", "--config", "/tmp/cli.json", "node", "label", "add", cut, "isolated=yes")
			if err != nil {
				return err
			}
			if code != 4 {
				return fmt.Errorf("write on the isolated voter: exit %d %q", code, errOut)
			}
			return nil
		})
		phase("isolated voter refuses writes (exit 4)")
		// Nor does it decide on tokens once it has been cut off for a few
		// seconds: one revoked on the majority's side would look valid here.
		eventually(t, 30*time.Second, "isolated voter refuses tokens", func() error {
			_, errOut, code, err := n.Exec(ctx, "kontena", "--config", "/tmp/cli.json", "node", "ls")
			if err != nil {
				return err
			}
			if code != 4 || !strings.Contains(errOut, "cannot tell whether your token was revoked") {
				return fmt.Errorf("read on the isolated voter: exit %d %q", code, errOut)
			}
			return nil
		})
		phase("isolated voter refuses tokens (exit 4)")
		eventually(t, 30*time.Second, "grid health on the isolated voter says no quorum (exit 8)", func() error {
			out, _, code, err := n.Exec(ctx, "kontena", "--config", "/tmp/cli.json", "grid", "health")
			if err != nil || code != 8 {
				return fmt.Errorf("exit %d %v: %s", code, err, out)
			}
			return nil
		})
		// The majority commits.
		tg.mustCLI(ctx, "node", "label", "add", "w1", "written-during-partition=yes")
		phase("majority committed a write")
		tg.waitNode(ctx, cut, fsm.StatusOffline, 60*time.Second)
		phase("majority shows it offline")
		if h, code := tg.health(ctx); h.Status != api.HealthWarning || code != 7 {
			t.Fatalf("majority health = %+v exit %d, want warning/7", h, code)
		}
		must(t, n.Reconnect(ctx))
		reconnected = true
		healedAt := time.Now()
		tg.waitNode(ctx, cut, fsm.StatusOnline, 60*time.Second)
		t.Logf("MEASURED %s online again %s after the heal", cut, time.Since(healedAt).Round(10*time.Millisecond))
		// It caught up: its own state has the write made while it was away.
		eventually(t, 30*time.Second, cut+" catches up", func() error {
			out, errOut, code, err := n.Exec(ctx, "kontena", "--config", "/tmp/cli.json", "node", "show", "w1", "-o", "json")
			if err != nil || code != 0 {
				return fmt.Errorf("exit %d %v %s", code, err, errOut)
			}
			if !strings.Contains(out, "written-during-partition=yes") {
				return errors.New("label written during the partition not there yet")
			}
			return nil
		})
		t.Logf("MEASURED %s caught up %s after the heal", cut, time.Since(healedAt).Round(10*time.Millisecond))
		nodes, _ := tg.nodeList(ctx)
		if nodes[cut].Labels != nil && slices.Contains(nodes[cut].Labels, "isolated=yes") {
			t.Fatal("a write refused on the isolated voter appeared later")
		}
	})

	t.Run("promote and demote voters", func(t *testing.T) {
		tg.mustCLI(ctx, "node", "promote", "w1")
		eventually(t, 60*time.Second, "w1 is a raft voter", func() error {
			out := tg.mustCLI(ctx, "grid", "show", "-o", "json")
			var g api.GridInfo
			must(t, json.Unmarshal([]byte(out), &g))
			for _, v := range g.Voters {
				if v.Name == "w1" && v.InRaft {
					return nil
				}
			}
			return fmt.Errorf("voters %+v", g.Voters)
		})
		tg.mustCLI(ctx, "node", "demote", "w1")
		eventually(t, 60*time.Second, "w1 left raft and health is ok", func() error {
			out := tg.mustCLI(ctx, "grid", "show", "-o", "json")
			var g api.GridInfo
			must(t, json.Unmarshal([]byte(out), &g))
			for _, v := range g.Voters {
				if v.Name == "w1" {
					return fmt.Errorf("w1 still a voter: %+v", v)
				}
			}
			if h, _ := tg.health(ctx); h.Status != api.HealthOK {
				return fmt.Errorf("health %+v", h)
			}
			return nil
		})
	})

	t.Run("all nodes stopped and started keep nodes, labels and tokens", func(t *testing.T) {
		out := tg.mustCLI(ctx, "token", "create", "--description", "survives", "-o", "json")
		var created api.TokenCreateResponse
		must(t, json.Unmarshal([]byte(out), &created))
		before, err := tg.nodeList(ctx)
		must(t, err)
		for _, name := range []string{"v1", "v2", "v3", "w1", "w2"} {
			must(t, tg.nodes[name].KillDaemon(ctx))
		}
		for _, name := range []string{"w2", "w1", "v3", "v2", "v1"} {
			n := tg.nodes[name]
			must(t, n.StartDaemon(ctx, "up", "--data-dir", dataDir, "--advertise", n.IP()))
		}
		for _, name := range []string{"v1", "v2", "v3", "w1", "w2"} {
			tg.waitNode(ctx, name, fsm.StatusOnline, 90*time.Second)
		}
		after, err := tg.nodeList(ctx)
		must(t, err)
		for name, b := range before {
			a := after[name]
			if a == nil || a.ID != b.ID || a.Role != b.Role || fmt.Sprint(a.Labels) != fmt.Sprint(b.Labels) {
				t.Fatalf("node %s before %+v after %+v", name, b, a)
			}
		}
		cl, _ := api.NewClient([]string{tg.nodes["v2"].IP() + ":9700"}, tg.caPEM(t), created.Value, nil)
		if _, err := cl.WhoAmI(ctx); err != nil {
			t.Fatalf("token created before the restart: %v", err)
		}
		if tok := strings.TrimSpace(tg.mustCLI(ctx, "grid", "token")); tok != tg.token {
			t.Fatalf("join token changed across restart")
		}
	})

	t.Run("offline voter removed and replaced", func(t *testing.T) {
		v3 := tg.nodes["v3"]
		v3cert, _ := stolenCert(ctx, t, v3)
		must(t, v3.KillDaemon(ctx))
		tg.waitNode(ctx, "v3", fsm.StatusOffline, 60*time.Second)
		tg.mustCLI(ctx, "node", "rm", "v3", "--force")
		attackRemoved(ctx, t, tg, v3cert, "v3", time.Now(), []string{"v1", "v2"}, []string{"w1", "w2"})
		tg.mustCLI(ctx, "node", "promote", "w2")
		eventually(t, 60*time.Second, "w2 replaces v3 and health is ok", func() error {
			h, _ := tg.health(ctx)
			if h.Status != api.HealthOK {
				return fmt.Errorf("health %+v", h)
			}
			out := tg.mustCLI(ctx, "grid", "show", "-o", "json")
			var g api.GridInfo
			must(t, json.Unmarshal([]byte(out), &g))
			var names []string
			for _, v := range g.Voters {
				if v.InRaft {
					names = append(names, v.Name)
				}
			}
			slices.Sort(names)
			if fmt.Sprint(names) != "[v1 v2 w2]" {
				return fmt.Errorf("raft voters %v", names)
			}
			return nil
		})
		// The removed node, started again, is told to stop and says why.
		must(t, v3.StartDaemon(ctx, "up", "--data-dir", dataDir, "--advertise", v3.IP()))
		eventually(t, 60*time.Second, "removed node stops", func() error {
			if log := v3.DaemonLog(ctx); !strings.Contains(log, "node v3 was removed from grid it") {
				return errors.New("v3 still running")
			}
			return nil
		})
		nodes, _ := tg.nodeList(ctx)
		if _, ok := nodes["v3"]; ok {
			t.Fatal("removed node v3 is back in the node list")
		}
	})
}
