package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/kontena-ng/kontena/api"
)

// overlayStack: web runs only on o2 and o3; a client runs on every node.
const overlayStack = `stack: it/net
services:
  web:
    image: kontena-demo-busybox
    command: sh -c 'mkdir -p /www && echo payload-$$KONTENA_NODE_NAME-c0ffee > /www/index.html && exec httpd -f -vv -p 8080 -h /www'
    instances: 2
    affinity:
      - node!=o1
    stop_signal: SIGKILL
  client:
    image: kontena-demo-busybox
    command: sleep 1000000
    deploy:
      strategy: daemon
    stop_signal: SIGKILL
`

// upstreamDNS is the "outside world" resolver the nodes forward to: the
// test machine has no internet, so it serves one name itself.
func upstreamDNS(t *testing.T, addr string) string {
	pc, err := net.ListenPacket("udp", addr)
	must(t, err)
	srv := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		switch {
		case len(r.Question) == 1 && r.Question[0].Name == "outside.example." && r.Question[0].Qtype == mdns.TypeA:
			rr, _ := mdns.NewRR("outside.example. 60 IN A 192.0.2.7")
			m.Answer = append(m.Answer, rr)
		case len(r.Question) == 1 && r.Question[0].Name == "outside.example.":
			// The name exists, without records of this type (NODATA).
		default:
			m.Rcode = mdns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// TestOverlay runs services across three Docker-in-Docker nodes joined by
// the WireGuard overlay: cross-node HTTP by DNS name with source addresses
// kept, the resolver's answers (A records, NXDOMAIN, forwarding), DNS after
// a scale, only WireGuard on the wire, a VPN client made by `vpn create`,
// and the data plane with the only master frozen.
func TestOverlay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	names := []string{"o1", "o2", "o3"}
	tg := newDockerGrid(ctx, t, "ovl", names...)
	// o1 forwards to an upstream given with --dns-upstream; o2 and o3 to
	// the one their host's /etc/resolv.conf names (port 53 on the test
	// host), as a node on a real machine does.
	upstream := upstreamDNS(t, tg.g.Gateway()+":0")
	upstreamDNS(t, tg.g.Gateway()+":53")
	for _, name := range names[1:] {
		if _, errOut, code, err := tg.nodes[name].Exec(ctx, "sh", "-c", "echo nameserver "+tg.g.Gateway()+" > /etc/resolv.conf"); err != nil || code != 0 {
			t.Fatalf("resolv.conf on %s: %v %s", name, err, errOut)
		}
	}
	tg.start(ctx, []string{"--dns-upstream", upstream}, nil)
	file := filepath.Join(t.TempDir(), "kontena.yml")
	must(t, os.WriteFile(file, []byte(overlayStack), 0o644))
	tg.mustCLI(ctx, "stack", "install", file, "--timeout", "3m")

	// Every node's overlay address, from `node show`.
	overlayAddr := map[string]string{}
	eventually(t, 30*time.Second, "every node reports its overlay", func() error {
		for _, name := range names {
			var n struct {
				Overlay struct {
					Address string `json:"address"`
					Port    int    `json:"port"`
				} `json:"overlay"`
				OverlayStatus *api.OverlayStatus `json:"overlay_status"`
			}
			out, errOut, code := tg.cli(ctx, "node", "show", name, "-o", "json")
			if code != 0 {
				return fmt.Errorf("node show %s: %s", name, errOut)
			}
			must(t, json.Unmarshal([]byte(out), &n))
			if n.Overlay.Port == 0 || n.OverlayStatus == nil || n.OverlayStatus.Interface == "" || len(n.OverlayStatus.Peers) != 2 {
				return fmt.Errorf("node %s overlay not up: %s", name, out)
			}
			overlayAddr[name] = n.Overlay.Address
		}
		return nil
	})
	webIPs := func() map[string]string { // instance -> IP of running web instances
		var svc api.ServiceInfo
		var svcs []api.ServiceInfo
		must(t, json.Unmarshal([]byte(tg.mustCLI(ctx, "service", "ls", "-o", "json")), &svcs))
		for _, s := range svcs {
			if s.ID == "net/web" {
				svc = s
			}
		}
		ips := map[string]string{}
		for _, in := range svc.Instances {
			if in.Actual.State == "running" && in.Actual.IP != "" {
				ips[in.Node+"/"+in.Name] = in.Actual.IP
			}
		}
		return ips
	}
	clientOn := func(node string) string {
		for name := range containers(ctx, t, tg.nodes[node]) {
			if strings.HasPrefix(name, "net.client-") {
				return name
			}
		}
		t.Fatalf("no client container on %s", node)
		return ""
	}
	execIn := func(node, ctr string, args ...string) (string, error) {
		out, errOut, code, err := tg.nodes[node].Exec(ctx, append([]string{"docker", "exec", ctr}, args...)...)
		if err != nil || code != 0 {
			return out, fmt.Errorf("%s on %s: exit %d %v %s%s", strings.Join(args, " "), node, code, err, out, errOut)
		}
		return out, nil
	}
	dig := func(node string, args ...string) string {
		out, errOut, code, err := tg.nodes[node].Exec(ctx, append([]string{"dig", "+time=2", "+tries=1", "@" + overlayAddr[node]}, args...)...)
		if err != nil || code != 0 {
			t.Fatalf("dig %v on %s: %v %s", args, node, err, errOut)
		}
		return out
	}
	digSet := func(node, name string) []string {
		out := strings.Fields(dig(node, "+short", name))
		slices.Sort(out)
		return out
	}

	t.Run("a container reaches the service on other nodes by name, source kept", func(t *testing.T) {
		client := clientOn("o1")
		seen := map[string]bool{}
		for i := 0; i < 30 && len(seen) < 2; i++ {
			out, err := execIn("o1", client, "timeout", "5", "wget", "-qO-", "http://web:8080/")
			if err != nil {
				t.Fatal(err)
			}
			seen[strings.TrimSpace(out)] = true
		}
		if !seen["payload-o2-c0ffee"] || !seen["payload-o3-c0ffee"] {
			t.Fatalf("answers %v: want both instances (o2 and o3) behind the name web", seen)
		}
		clientIP, errOut, _, err := tg.nodes["o1"].Exec(ctx, "docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", client)
		if err != nil {
			t.Fatal(err, errOut)
		}
		clientIP = strings.TrimSpace(clientIP)
		if !strings.HasPrefix(clientIP, strings.TrimSuffix(overlayAddr["o1"], "1")) {
			t.Fatalf("client address %s is not in o1's overlay subnet (o1 is %s)", clientIP, overlayAddr["o1"])
		}
		eventually(t, 10*time.Second, "the servers log the client's overlay address", func() error {
			logs := tg.mustCLI(ctx, "service", "logs", "net/web")
			if !strings.Contains(logs, clientIP+"]:") && !strings.Contains(logs, clientIP+":") {
				return fmt.Errorf("web logs lack %s:\n%s", clientIP, logs)
			}
			return nil
		})
	})

	t.Run("traffic leaving the grid is masqueraded as the node", func(t *testing.T) {
		// An "outside" server on the test host answers with the address it
		// sees: the node's own, never a container's overlay address.
		ln, err := net.Listen("tcp", tg.g.Gateway()+":0")
		must(t, err)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			fmt.Fprint(w, host)
		})}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		out, err := execIn("o1", clientOn("o1"), "timeout", "5", "wget", "-qO-", "http://"+ln.Addr().String()+"/")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(out); got != tg.nodes["o1"].IP() {
			t.Fatalf("outside server saw %q, want o1's address %s (NAT for traffic leaving the grid)", got, tg.nodes["o1"].IP())
		}
	})

	t.Run("dig on a node host and lookups in a container", func(t *testing.T) {
		ips := webIPs()
		var want []string
		for _, ip := range ips {
			want = append(want, ip)
		}
		slices.Sort(want)
		if len(want) != 2 {
			t.Fatalf("web instances %v", ips)
		}
		if got := digSet("o2", "web.net.ovl.kontena.local"); !slices.Equal(got, want) {
			t.Fatalf("dig web on o2 = %v, want %v", got, want)
		}
		if got := digSet("o1", "web-1.net.ovl.kontena.local"); len(got) != 1 || !slices.Contains(want, got[0]) {
			t.Fatalf("dig web-1 on o1 = %v", got)
		}
		if out := dig("o3", "nope.net.ovl.kontena.local"); !strings.Contains(out, "status: NXDOMAIN") {
			t.Fatalf("unknown name:\n%s", out)
		}
		for _, node := range []string{"o1", "o3"} { // --dns-upstream, and the host's resolv.conf
			if got := digSet(node, "outside.example"); !slices.Equal(got, []string{"192.0.2.7"}) {
				t.Fatalf("forwarded name on %s = %v, want the upstream's 192.0.2.7", node, got)
			}
		}
		client := clientOn("o3")
		// (Short names through the search path: the first subtest's wget of
		// http://web:8080/. busybox nslookup fails when any search domain
		// does not have the name.)
		out, err := execIn("o3", client, "nslookup", "web.net.ovl.kontena.local")
		if err != nil {
			t.Fatal(err)
		}
		for _, ip := range want {
			if !strings.Contains(out, ip) {
				t.Fatalf("nslookup in a container lacks %s:\n%s", ip, out)
			}
		}
		if out, err := execIn("o3", client, "nslookup", "outside.example"); err != nil || !strings.Contains(out, "192.0.2.7") {
			t.Fatalf("forwarded name from a container: %v\n%s", err, out)
		}
		out, errOut, code, err := tg.nodes["o3"].Exec(ctx, "docker", "exec", client, "nslookup", "nope.net.ovl.kontena.local")
		if err != nil || code == 0 || !strings.Contains(out+errOut, "NXDOMAIN") {
			t.Fatalf("unknown name from a container: exit %d %v\n%s%s", code, err, out, errOut)
		}
		conf, err := execIn("o3", client, "cat", "/etc/resolv.conf")
		if err != nil || !regexpLine(conf, `search net\.ovl\.kontena\.local ovl\.kontena\.local`) {
			t.Fatalf("container resolv.conf lacks the grid's search path: %v\n%s", err, conf)
		}
	})

	t.Run("DNS follows a scale and a death", func(t *testing.T) {
		// Poll o1's resolver (a node that runs no web instance) while the
		// scale runs, and time the change from when the instance's node
		// reported it running (its state's "at", stamped by that node).
		// wait returns when the resolver first answered n addresses, or
		// zero if it did not within limit.
		watch := func(n int) (wait func(limit time.Duration) time.Time) {
			done := make(chan time.Time, 1)
			quit := make(chan struct{})
			go func() {
				for {
					select {
					case <-quit:
						done <- time.Time{}
						return
					default:
					}
					out, _, code, _ := tg.nodes["o1"].Exec(ctx, "dig", "+short", "+time=1", "+tries=1", "@"+overlayAddr["o1"], "web.net.ovl.kontena.local")
					if code == 0 && len(strings.Fields(out)) == n {
						done <- time.Now()
						return
					}
				}
			}()
			return func(limit time.Duration) time.Time {
				select {
				case at := <-done:
					return at
				case <-time.After(limit):
					close(quit)
					return <-done
				}
			}
		}
		wait := watch(3)
		start := time.Now()
		tg.mustCLI(ctx, "service", "scale", "net/web", "3", "--timeout", "3m")
		var seenAt time.Time
		eventually(t, 10*time.Second, "three web addresses in DNS on o1", func() error {
			if got := digSet("o1", "web.net.ovl.kontena.local"); len(got) != 3 {
				return fmt.Errorf("dig web = %v", got)
			}
			return nil
		})
		seenAt = wait(5 * time.Second)
		var reported time.Time
		for _, in := range tg.serviceInfo(ctx, t, "net/web").Instances {
			if in.Number == 3 {
				reported = in.Actual.At
			}
		}
		t.Logf("MEASURED DNS after scale 2->3: the new instance in DNS on another node %s after its node reported it running (%s after the scale command)",
			seenAt.Sub(reported).Round(time.Millisecond), seenAt.Sub(start).Round(time.Millisecond))

		wait = watch(2)
		start = time.Now()
		tg.mustCLI(ctx, "service", "scale", "net/web", "2", "--no-wait")
		eventually(t, 10*time.Second, "two web addresses in DNS after scaling down", func() error {
			if got := digSet("o1", "web.net.ovl.kontena.local"); len(got) != 2 {
				return fmt.Errorf("dig web = %v", got)
			}
			return nil
		})
		t.Logf("MEASURED DNS after scale 3->2: the removed instance out of DNS %s after the scale command", wait(5*time.Second).Sub(start).Round(time.Millisecond))

		// A killed instance leaves DNS until its agent has it running again.
		var victim, node string
		for k := range webIPs() {
			node, victim, _ = strings.Cut(k, "/")
			break
		}
		ipsBefore := digSet("o1", "web.net.ovl.kontena.local")
		wait = watch(1)
		killed := time.Now()
		_, errOut, code, err := tg.nodes[node].Exec(ctx, "docker", "kill", victim)
		if err != nil || code != 0 {
			t.Fatalf("docker kill %s: %v %s", victim, err, errOut)
		}
		if gone := wait(5 * time.Second); !gone.IsZero() {
			t.Logf("MEASURED DNS after docker kill of %s: out of DNS %s after the kill", victim, gone.Sub(killed).Round(time.Millisecond))
		} else {
			t.Logf("MEASURED DNS after docker kill of %s: its agent restarted it before DNS dropped it", victim)
		}
		eventually(t, 30*time.Second, "both web addresses back in DNS", func() error {
			if got := digSet("o1", "web.net.ovl.kontena.local"); !slices.Equal(got, ipsBefore) {
				return fmt.Errorf("dig web = %v, want %v", got, ipsBefore)
			}
			return nil
		})
	})

	t.Run("only WireGuard crosses the link", func(t *testing.T) {
		bridge := bridgeOf(ctx, t, tg.g.Network())
		var target string // the web instance on o2
		for k, ip := range webIPs() {
			if strings.HasPrefix(k, "o2/") {
				target = ip
			}
		}
		if target == "" {
			t.Fatal("no web instance on o2")
		}
		pcap := filepath.Join(t.TempDir(), "link.pcap")
		// -Z root: tcpdump would otherwise drop to its own user before it
		// writes the file into the test's private temp dir.
		cap := exec.CommandContext(ctx, "tcpdump", "-Z", "root", "-i", bridge, "-U", "-w", pcap,
			fmt.Sprintf("host %s and host %s", tg.nodes["o1"].IP(), tg.nodes["o2"].IP()))
		capErr := &strings.Builder{}
		cap.Stderr = capErr
		must(t, cap.Start())
		time.Sleep(time.Second) // tcpdump attaches
		client := clientOn("o1")
		for i := 0; i < 10; i++ {
			if out, err := execIn("o1", client, "timeout", "5", "wget", "-qO-", "http://"+target+":8080/"); err != nil || !strings.Contains(out, "c0ffee") {
				t.Fatalf("fetch %d: %q %v", i, out, err)
			}
		}
		time.Sleep(500 * time.Millisecond)
		_ = cap.Process.Signal(os.Interrupt)
		_ = cap.Wait()
		text, err := exec.CommandContext(ctx, "tcpdump", "-nn", "-A", "-r", pcap).CombinedOutput()
		if err != nil {
			t.Fatalf("read capture: %v %s (capture: %s)", err, text, capErr)
		}
		if strings.Contains(string(text), "c0ffee") || strings.Contains(string(text), "GET /") {
			t.Fatalf("plaintext HTTP on the link between o1 and o2")
		}
		brief, err := exec.CommandContext(ctx, "tcpdump", "-nn", "-q", "-r", pcap).Output()
		must(t, err)
		var wg, http8080 int
		for _, line := range strings.Split(string(brief), "\n") {
			switch {
			case strings.Contains(line, ".9703 ") || strings.Contains(line, ".9703:"):
				wg++
			case strings.Contains(line, ".8080"):
				http8080++
			}
		}
		t.Logf("MEASURED capture o1<->o2: %d WireGuard packets, %d port-8080 packets", wg, http8080)
		if wg < 10 || http8080 > 0 {
			t.Fatalf("capture: %d WireGuard packets, %d to port 8080 (tcpdump: %s)", wg, http8080, capErr)
		}
	})

	t.Run("a vpn create config reaches a service by name from another namespace", func(t *testing.T) {
		conf := filepath.Join(t.TempDir(), "vpn.conf")
		tg.mustCLI(ctx, "vpn", "create", "laptop", "--node", "o2", "-f", conf)
		vpnConf, err := os.ReadFile(conf)
		must(t, err)
		address, dnsLine, wgConf := splitWGQuick(t, string(vpnConf))
		wgGo := buildWireguardGo(ctx, t)
		v := tg.addNode(ctx, "laptop")
		must(t, v.CopyIn(ctx, wgGo, "/usr/local/bin/wireguard-go"))
		must(t, os.WriteFile(conf+".wg", []byte(wgConf), 0o600))
		must(t, v.CopyIn(ctx, conf+".wg", "/etc/wg0.conf"))
		dnsServer, search, _ := strings.Cut(dnsLine, ",")
		// What wg-quick does, with the stock tools: device, keys and peer,
		// address, route, resolver.
		setup := fmt.Sprintf(`set -e
wireguard-go wg0
wg setconf wg0 /etc/wg0.conf
ip addr add %s dev wg0
ip link set wg0 up
ip route add 10.81.0.0/16 dev wg0
printf 'nameserver %s\nsearch %s\n' > /etc/resolv.conf`, address, strings.TrimSpace(dnsServer), strings.TrimSpace(search))
		if out, errOut, code, err := v.Exec(ctx, "sh", "-c", setup); err != nil || code != 0 {
			t.Fatalf("bring up the VPN peer: %v %s %s", err, out, errOut)
		}
		eventually(t, 30*time.Second, "the VPN peer fetches web by name", func() error {
			out, errOut, code, err := v.Exec(ctx, "timeout", "3", "wget", "-qO-", "http://web.net.ovl.kontena.local:8080/")
			if err != nil || code != 0 || !strings.Contains(out, "c0ffee") {
				return fmt.Errorf("wget: %v %s %s", err, out, errOut)
			}
			return nil
		})
		tg.mustCLI(ctx, "vpn", "rm", "laptop")
		eventually(t, 30*time.Second, "the revoked peer is cut off", func() error {
			if out, _, code, _ := v.Exec(ctx, "timeout", "2", "wget", "-qO-", "http://web.net.ovl.kontena.local:8080/"); code == 0 {
				return fmt.Errorf("still fetches web: %s", out)
			}
			return nil
		})
	})

	t.Run("with every master frozen, then stopped, traffic, DNS and a restarted node keep working", func(t *testing.T) {
		// o1 is the grid's only voter: freezing it (a hung machine: its
		// kernel still answers) and then stopping its kontena process (a
		// crashed master) leaves no master at all.
		must(t, tg.nodes["o1"].Pause(ctx))
		paused := true
		defer func() {
			if paused {
				must(t, tg.nodes["o1"].Unpause(ctx))
			}
		}()
		client := clientOn("o2")
		check := func() error {
			got := digSet("o2", "web.net.ovl.kontena.local")
			if len(got) != 2 {
				return fmt.Errorf("dig web on o2 = %v", got)
			}
			for _, ip := range got { // one instance is on o2, the other across the overlay on o3
				if out, err := execIn("o2", client, "timeout", "5", "wget", "-qO-", "http://"+ip+":8080/"); err != nil || !strings.Contains(out, "c0ffee") {
					return fmt.Errorf("fetch %s: %q %v", ip, out, err)
				}
			}
			if out, err := execIn("o2", client, "timeout", "5", "wget", "-qO-", "http://web:8080/"); err != nil || !strings.Contains(out, "c0ffee") {
				return fmt.Errorf("fetch by name: %q %v", out, err)
			}
			return nil
		}
		time.Sleep(3 * time.Second) // long enough for gossip to see the master gone
		must(t, check())
		must(t, tg.nodes["o1"].Unpause(ctx))
		paused = false
		must(t, tg.nodes["o1"].KillDaemon(ctx))
		if _, errOut, code := tg.cli(ctx, "node", "ls"); code != 4 {
			t.Fatalf("with no master the CLI must say so (exit 4), got exit %d: %s", code, errOut)
		}
		time.Sleep(3 * time.Second)
		must(t, check())
		// A node restarted while no master answers resumes from its cached
		// network map (tunnel, addresses, resolver) and its cached
		// assignments (a container that dies is started again).
		o3 := tg.nodes["o3"]
		must(t, o3.KillDaemon(ctx))
		must(t, o3.StartDaemon(ctx, upArgs("o3", o3.IP())...))
		eventually(t, 30*time.Second, "o3 serves DNS again from its cache", func() error {
			out, _, code, err := o3.Exec(ctx, "dig", "+short", "+time=1", "+tries=1", "@"+overlayAddr["o3"], "web.net.ovl.kontena.local")
			if err != nil || code != 0 || len(strings.Fields(out)) != 2 {
				return fmt.Errorf("dig on o3: %q %v", out, err)
			}
			return nil
		})
		eventually(t, 30*time.Second, "cross-node traffic after o3's restart", check)
		victim := clientOn("o3")
		if _, errOut, code, err := o3.Exec(ctx, "docker", "kill", victim); err != nil || code != 0 {
			t.Fatalf("docker kill %s: %v %s", victim, err, errOut)
		}
		eventually(t, 60*time.Second, victim+" running again with no master", func() error {
			if _, ok := containers(ctx, t, o3)[victim]; !ok {
				return fmt.Errorf("%s not running", victim)
			}
			return nil
		})
		must(t, tg.nodes["o1"].StartDaemon(ctx, upArgs("o1", tg.nodes["o1"].IP(), "--dns-upstream", upstream)...))
		tg.waitNode(ctx, "o3", "online", 60*time.Second)
	})
}

// bridgeOf is the Linux bridge of a Docker network on this host.
func bridgeOf(ctx context.Context, t *testing.T, network string) string {
	out, err := exec.CommandContext(ctx, "docker", "network", "inspect", "-f",
		`{{index .Options "com.docker.network.bridge.name"}}|{{.Id}}`, network).Output()
	must(t, err)
	name, id, _ := strings.Cut(strings.TrimSpace(string(out)), "|")
	if name != "" && name != "<no value>" {
		return name
	}
	return "br-" + id[:12]
}

// splitWGQuick separates the wg-quick-only lines (Address, DNS) from what
// `wg setconf` reads.
func splitWGQuick(t *testing.T, conf string) (address, dns, wgConf string) {
	var b strings.Builder
	for _, line := range strings.Split(conf, "\n") {
		k, v, ok := strings.Cut(line, "=")
		switch key := strings.TrimSpace(k); {
		case ok && key == "Address":
			address = strings.TrimSpace(v)
		case ok && key == "DNS":
			dns = strings.TrimSpace(v)
		default:
			b.WriteString(line + "\n")
		}
	}
	if address == "" || dns == "" {
		t.Fatalf("vpn config without Address or DNS:\n%s", conf)
	}
	return address, dns, b.String()
}

// buildWireguardGo builds the stock userspace WireGuard (wireguard-go) from
// the module this project already depends on.
func buildWireguardGo(ctx context.Context, t testing.TB) string {
	out := filepath.Join(t.TempDir(), "wireguard-go")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "golang.zx2c4.com/wireguard")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build wireguard-go: %v\n%s", err, b)
	}
	return out
}
