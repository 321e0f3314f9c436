package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/integration/harness"
)

// BenchmarkOverlayThroughput measures TCP throughput (iperf3, one stream)
// between two Docker-in-Docker nodes three ways in the same run: the bare
// link, a plain wireguard-go tunnel set up with the stock tools, and the
// kontena overlay (node address to node address through kontena0). Rounds
// alternate so machine noise hits all three alike; it reports medians and
// the ratios. Run it with bench/overlay.sh.
func BenchmarkOverlayThroughput(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	img, err := buildDockerImage()
	if err != nil {
		b.Fatal(err)
	}
	g := harness.NewGrid(b, img)
	n1, err := g.AddNode(ctx, "b1")
	if err != nil {
		b.Fatal(err)
	}
	n2, err := g.AddNode(ctx, "b2")
	if err != nil {
		b.Fatal(err)
	}
	run := func(n *harness.Node, args ...string) string {
		out, errOut, code, err := n.Exec(ctx, args...)
		if err != nil || code != 0 {
			b.Fatalf("%s on %s: exit %d %v %s %s", strings.Join(args, " "), n.Name(), code, err, out, errOut)
		}
		return out
	}

	// Plain wireguard-go between the same two nodes, on its own port.
	wgGo := buildWireguardGo(ctx, b)
	keys := map[string][2]string{}
	for _, n := range []*harness.Node{n1, n2} {
		if err := n.CopyIn(ctx, wgGo, "/usr/local/bin/wireguard-go"); err != nil {
			b.Fatal(err)
		}
		priv := strings.TrimSpace(run(n, "sh", "-c", "wg genkey | tee /tmp/wgb.key"))
		pub := strings.TrimSpace(run(n, "sh", "-c", "wg pubkey < /tmp/wgb.key"))
		keys[n.Name()] = [2]string{priv, pub}
	}
	for i, pair := range [][2]*harness.Node{{n1, n2}, {n2, n1}} {
		me, peer := pair[0], pair[1]
		run(me, "sh", "-c", fmt.Sprintf(`set -e
wireguard-go wgb
wg set wgb listen-port 51820 private-key /tmp/wgb.key peer %s allowed-ips 192.168.77.%d/32 endpoint %s:51820
ip addr add 192.168.77.%d/24 dev wgb
ip link set wgb mtu 1420 up`, keys[peer.Name()][1], 2-i, peer.IP(), i+1))
	}

	// The kontena overlay: a two-node grid.
	if err := n1.StartDaemon(ctx, "up", "--name", "b1", "--data-dir", dataDir, "--advertise", n1.IP(), "--grid", "bench"); err != nil {
		b.Fatal(err)
	}
	var cfgRaw []byte
	deadline := time.Now().Add(60 * time.Second)
	for {
		if cfgRaw, err = n1.ReadFile(ctx, "/root/.kontena/config.json"); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		b.Fatal(err)
	}
	cfg := filepath.Join(b.TempDir(), "cli.json")
	if err := os.WriteFile(cfg, cfgRaw, 0o600); err != nil {
		b.Fatal(err)
	}
	tok, errOut, code := runCLI(ctx, []string{"KONTENA_CONFIG=" + cfg}, "grid", "token")
	if code != 0 {
		b.Fatal(errOut)
	}
	if err := n2.StartDaemon(ctx, "up", "--name", "b2", "--data-dir", dataDir, "--advertise", n2.IP(), "--join", n1.IP(), "--token", strings.TrimSpace(tok)); err != nil {
		b.Fatal(err)
	}
	overlay2 := ""
	for deadline := time.Now().Add(90 * time.Second); overlay2 == ""; {
		var ns struct {
			Overlay struct {
				Address string `json:"address"`
				Port    int    `json:"port"`
			} `json:"overlay"`
		}
		out, _, code := runCLI(ctx, []string{"KONTENA_CONFIG=" + cfg}, "node", "show", "b2", "-o", "json")
		if code == 0 && json.Unmarshal([]byte(out), &ns) == nil && ns.Overlay.Port != 0 {
			if _, _, c, _ := n1.Exec(ctx, "ping", "-c", "1", "-W", "1", ns.Overlay.Address); c == 0 {
				overlay2 = ns.Overlay.Address
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("b2's overlay not reachable from b1")
		}
		time.Sleep(500 * time.Millisecond)
	}
	run(n2, "iperf3", "-s", "-D")
	time.Sleep(500 * time.Millisecond)

	iperf := func(target string) float64 {
		out := run(n1, "iperf3", "-c", target, "-t", "5", "-J")
		var r struct {
			End struct {
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			b.Fatalf("iperf3 output: %v", err)
		}
		return r.End.SumReceived.BitsPerSecond / 1e9
	}
	rssMB := func(n *harness.Node) float64 {
		out := run(n, "sh", "-c", "grep VmHWM /proc/$(pidof kontena)/status | tr -s ' ' | cut -d' ' -f2")
		kb, _ := strconv.ParseFloat(strings.TrimSpace(out), 64)
		return kb / 1024
	}
	var bare, plain, kontena []float64
	b.ResetTimer()
	for round := 0; round < 3; round++ {
		bare = append(bare, iperf(n2.IP()))
		plain = append(plain, iperf("192.168.77.2"))
		kontena = append(kontena, iperf(overlay2))
	}
	b.StopTimer()
	med := func(v []float64) float64 { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] }
	mb, mp, mk := med(bare), med(plain), med(kontena)
	b.ReportMetric(mk, "overlay-Gbit/s")
	b.ReportMetric(mk/mp, "x-plain-wireguard-go")
	b.ReportMetric(mk/mb, "x-bare-link")
	fmt.Printf("RESULT bare_gbps=%.2f plain_wg_gbps=%.2f kontena_gbps=%.2f overlay_vs_plain=%.2f overlay_vs_bare=%.3f kontena_peak_rss_mb=%.0f/%.0f rounds=%v/%v/%v\n",
		mb, mp, mk, mk/mp, mk/mb, rssMB(n1), rssMB(n2), fmtRounds(bare), fmtRounds(plain), fmtRounds(kontena))
}

func fmtRounds(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = strconv.FormatFloat(x, 'f', 2, 64)
	}
	return strings.Join(parts, ",")
}
