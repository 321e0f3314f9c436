package overlay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// The device test runs each node as a child process of the test binary
// inside its own network namespace (`ip netns exec`). In-process namespace
// switching does not work for the userspace device: wireguard-go opens its
// UDP sockets and netlink listeners from goroutines on arbitrary OS
// threads, which would land in the test's own namespace.

const testNodeEnv = "KONTENA_OVERLAY_TEST_NODE"

func TestMain(m *testing.M) {
	if spec := os.Getenv(testNodeEnv); spec != "" {
		os.Exit(runTestNode(spec))
	}
	os.Exit(m.Run())
}

// testNodeSpec is what the parent hands a node process.
type testNodeSpec struct {
	Iface, KeyPath        string
	Address, Subnet, Grid string
	Port                  int
	PeerKey, PeerEndpoint string
	PeerSubnet, PeerAddr  string
	Probes                bool
	BulkSeconds           float64
}

const (
	echoPort = 7946
	sinkPort = 7947
)

// requireNetAdmin skips tests that need to create namespaces and TUN
// devices where that is impossible.
func requireNetAdmin(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, TUN devices, iptables)")
	}
	if _, err := os.Stat(tunDevice); err != nil {
		t.Skipf("needs %s: %v", tunDevice, err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNetns creates a network namespace that is deleted when the test ends.
func newNetns(t *testing.T, name string) {
	t.Helper()
	exec.Command("ip", "netns", "del", name).Run() // leftover of a killed run
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
}

// nodeProc is a running node child process.
type nodeProc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startNode(t *testing.T, netns, name string, spec testNodeSpec) *nodeProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(spec)
	cmd := exec.Command("ip", "netns", "exec", netns, exe)
	cmd.Env = append(os.Environ(), testNodeEnv+"="+string(js))
	p := &nodeProc{t: t, name: name, cmd: cmd, lines: make(chan string, 16), stderr: &lockedBuffer{}}
	cmd.Stderr = p.stderr
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), "OVL "); ok {
				p.lines <- line
			}
		}
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		if t.Failed() {
			t.Logf("node %s log:\n%s", name, p.stderr.String())
		}
		if !uapiInUse(spec.Iface) {
			os.Remove(uapiPath(spec.Iface))
		}
	})
	return p
}

// expect waits for the node's next reply, which must be verb, and decodes
// its payload into v.
func (p *nodeProc) expect(verb string, v any) {
	p.t.Helper()
	select {
	case line, ok := <-p.lines:
		if !ok {
			p.t.Fatalf("node %s exited while waiting for %q", p.name, verb)
		}
		got, payload, _ := strings.Cut(line, " ")
		if got == "error" {
			p.t.Fatalf("node %s: %s", p.name, payload)
		}
		if got != verb {
			p.t.Fatalf("node %s: got %q, want %q: %s", p.name, got, verb, payload)
		}
		if v != nil {
			if err := json.Unmarshal([]byte(payload), v); err != nil {
				p.t.Fatalf("node %s: decode %s: %v", p.name, verb, err)
			}
		}
	case <-time.After(15 * time.Second):
		p.t.Fatalf("node %s: no %q within 15s", p.name, verb)
	}
}

func (p *nodeProc) send(cmd string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, cmd+"\n"); err != nil {
		p.t.Fatalf("node %s: send %q: %v", p.name, cmd, err)
	}
}

func TestDeviceTunnel(t *testing.T) {
	requireNetAdmin(t)
	id := strconv.Itoa(os.Getpid())
	nsA, nsB := "kt-ovl-a-"+id, "kt-ovl-b-"+id
	newNetns(t, nsA)
	newNetns(t, nsB)
	vethA, vethB := "ktva"+id, "ktvb"+id
	run(t, "ip", "link", "add", vethA, "netns", nsA, "type", "veth", "peer", "name", vethB, "netns", nsB)
	run(t, "ip", "-n", nsA, "addr", "add", "192.168.250.1/24", "dev", vethA)
	run(t, "ip", "-n", nsB, "addr", "add", "192.168.250.2/24", "dev", vethB)
	run(t, "ip", "-n", nsA, "link", "set", vethA, "up")
	run(t, "ip", "-n", nsB, "link", "set", vethB, "up")

	dir := t.TempDir()
	keyA, err := LoadOrCreateKey(filepath.Join(dir, "a.key"))
	if err != nil {
		t.Fatal(err)
	}
	keyB, err := LoadOrCreateKey(filepath.Join(dir, "b.key"))
	if err != nil {
		t.Fatal(err)
	}
	const grid = "10.99.0.0/16"
	specA := testNodeSpec{
		Iface: "kt-a0", KeyPath: filepath.Join(dir, "a.key"),
		Address: "10.99.1.1", Subnet: "10.99.1.0/24", Grid: grid, Port: 51901,
		PeerKey: keyB.PublicKey().String(), PeerEndpoint: "192.168.250.2:51902",
		PeerSubnet: "10.99.2.0/24", PeerAddr: "10.99.2.1",
		BulkSeconds: 1,
	}
	specB := testNodeSpec{
		Iface: "kt-b0", KeyPath: filepath.Join(dir, "b.key"),
		Address: "10.99.2.1", Subnet: "10.99.2.0/24", Grid: grid, Port: 51902,
		PeerKey: keyA.PublicKey().String(), PeerEndpoint: "192.168.250.1:51901",
		PeerSubnet: "10.99.1.0/24", PeerAddr: "10.99.1.1",
		Probes: true,
	}
	if s := os.Getenv("KONTENA_OVERLAY_BULK_SECONDS"); s != "" {
		specA.BulkSeconds, _ = strconv.ParseFloat(s, 64)
	}
	// Leftovers of a crashed run in A: a TUN interface with the grid route
	// and a UAPI socket file nobody listens on. Up must take them over.
	run(t, "ip", "-n", nsA, "tuntap", "add", "kt-a0", "mode", "tun")
	run(t, "ip", "-n", nsA, "link", "set", "kt-a0", "up")
	run(t, "ip", "-n", nsA, "route", "add", grid, "dev", "kt-a0")
	staleSocket(t, uapiPath("kt-a0"))

	a := startNode(t, nsA, "a", specA)
	b := startNode(t, nsB, "b", specB)

	var kernel struct{ Supported bool }
	b.expect("kernel", &kernel)
	var probes struct{ Errors []string }
	b.expect("probes", &probes)
	for _, e := range probes.Errors {
		t.Logf("expected failure: %s", e)
	}
	var readyA, readyB struct{ Mode string }
	a.expect("ready", &readyA)
	b.expect("ready", &readyB)
	if !strings.Contains(a.stderr.String(), "removing stale interface") {
		t.Errorf("node a did not report taking over the stale kt-a0")
	}
	t.Logf("modes: a=%s b=%s (kernel WireGuard available: %v)", readyA.Mode, readyB.Mode, kernel.Supported)
	if !kernel.Supported && (readyA.Mode != ModeUserspace || readyB.Mode != ModeUserspace) {
		t.Fatalf("auto mode without kernel WireGuard chose %q/%q", readyA.Mode, readyB.Mode)
	}

	// The grid route is in place, with the node address as source.
	if out := run(t, "ip", "-n", nsA, "route", "show", grid); !strings.Contains(out, "dev kt-a0") || !strings.Contains(out, "src 10.99.1.1") {
		t.Fatalf("grid route in %s: %q", nsA, out)
	}
	if out := run(t, "ip", "-n", nsA, "-4", "addr", "show", "dev", "kt-a0"); !strings.Contains(out, "10.99.1.1/32") || !strings.Contains(out, "mtu 1420") {
		t.Fatalf("kt-a0 in %s: %q", nsA, out)
	}

	// TCP both ways across the tunnel; each side sees the other's overlay
	// address as the source.
	var dialA, dialB struct{ Reply string }
	a.send("dial")
	a.expect("dial", &dialA)
	if want := "echo hello from 10.99.1.1"; !strings.HasPrefix(dialA.Reply, want) {
		t.Fatalf("a dialled b: reply %q, want %q...", dialA.Reply, want)
	}
	b.send("dial")
	b.expect("dial", &dialB)
	if want := "echo hello from 10.99.2.1"; !strings.HasPrefix(dialB.Reply, want) {
		t.Fatalf("b dialled a: reply %q, want %q...", dialB.Reply, want)
	}

	for _, n := range []*nodeProc{a, b} {
		var peers []PeerStatus
		n.send("peers")
		n.expect("peers", &peers)
		if len(peers) != 1 || peers[0].LastHandshake.IsZero() || peers[0].RxBytes == 0 || peers[0].TxBytes == 0 || peers[0].Name != "peer" {
			t.Fatalf("node %s peers after traffic: %+v", n.name, peers)
		}
		t.Logf("node %s peer: %+v", n.name, peers[0])
	}

	var reconcile struct{ Steps []string }
	a.send("reconcile")
	a.expect("reconcile", &reconcile)
	for _, s := range reconcile.Steps {
		t.Logf("reconcile: %s", s)
	}

	if specA.BulkSeconds > 0 {
		var bulk struct {
			Bytes   int64
			Seconds float64
			HWM     string
		}
		a.send("bulk")
		a.expect("bulk", &bulk)
		var mem struct{ HWM string }
		b.send("mem")
		b.expect("mem", &mem)
		t.Logf("bulk TCP a->b: %d MB in %.1fs = %.0f Mbit/s; peak RSS a=%s b=%s",
			bulk.Bytes>>20, bulk.Seconds, float64(bulk.Bytes)*8/bulk.Seconds/1e6, bulk.HWM, mem.HWM)
	}

	// Close removes interface, route and UAPI socket.
	for _, n := range []*nodeProc{a, b} {
		n.stdin.Close()
		n.expect("closed", nil)
		if err := n.cmd.Wait(); err != nil {
			t.Fatalf("node %s exit: %v", n.name, err)
		}
	}
	for ns, iface := range map[string]string{nsA: "kt-a0", nsB: "kt-b0"} {
		if out, err := exec.Command("ip", "-n", ns, "link", "show", iface).CombinedOutput(); err == nil {
			t.Errorf("%s still exists in %s after Close: %s", iface, ns, out)
		}
		if out := run(t, "ip", "-n", ns, "route", "show", grid); strings.TrimSpace(out) != "" {
			t.Errorf("grid route still in %s after Close: %s", ns, out)
		}
		if _, err := os.Stat(uapiPath(iface)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("UAPI socket %s left after Close (%v)", uapiPath(iface), err)
		}
	}
}

// runTestNode is the child side of TestDeviceTunnel: one node in the
// namespace it was started in, driven by commands on stdin.
func runTestNode(specJSON string) int {
	var spec testNodeSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fmt.Printf("OVL error bad spec: %v\n", err)
		return 2
	}
	n := &testNode{spec: spec}
	if err := n.run(); err != nil {
		fmt.Printf("OVL error %v\n", err)
		return 1
	}
	return 0
}

type testNode struct {
	spec testNodeSpec
	dev  *Device
	peer Peer
}

func emit(verb string, v any) {
	js, _ := json.Marshal(v)
	fmt.Printf("OVL %s %s\n", verb, js)
}

func (n *testNode) run() error {
	s := n.spec
	log := slogTo(os.Stderr)
	key, err := LoadOrCreateKey(s.KeyPath)
	if err != nil {
		return err
	}
	peerKey, err := wgtypes.ParseKey(s.PeerKey)
	if err != nil {
		return err
	}
	cfg := Config{
		Interface: s.Iface, ListenPort: s.Port, PrivateKey: key,
		Address: mustAddr(s.Address), Subnet: mustPrefix(s.Subnet), Grid: mustPrefix(s.Grid),
		Logger: log,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if s.Probes {
		k := cfg
		k.Interface, k.Mode, k.ListenPort = "kt-k0", ModeKernel, s.Port+100
		d, err := Up(ctx, k)
		if err == nil {
			d.Close()
		} else if !strings.Contains(err.Error(), "kernel") {
			return fmt.Errorf("kernel mode error does not say why: %v", err)
		}
		emit("kernel", map[string]bool{"Supported": err == nil})
	}

	n.dev, err = Up(ctx, cfg)
	if err != nil {
		return err
	}
	defer n.dev.Close()
	if s.Probes {
		if err := probeFailures(ctx, cfg); err != nil {
			return err
		}
	}
	n.peer = Peer{
		PublicKey:  peerKey,
		Endpoint:   udp(s.PeerEndpoint),
		AllowedIPs: []netip.Prefix{mustPrefix(s.PeerSubnet)},
		Name:       "peer",
	}
	if err := n.dev.SetPeers([]Peer{n.peer}); err != nil {
		return err
	}
	if err := n.serve(); err != nil {
		return err
	}
	emit("ready", map[string]string{"Mode": n.dev.Mode()})

	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var err error
		switch sc.Text() {
		case "dial":
			err = n.cmdDial()
		case "peers":
			var peers []PeerStatus
			if peers, err = n.dev.Peers(); err == nil {
				emit("peers", peers)
			}
		case "reconcile":
			err = n.cmdReconcile()
		case "bulk":
			err = n.cmdBulk()
		case "mem":
			emit("mem", map[string]string{"HWM": peakRSS()})
		default:
			err = fmt.Errorf("unknown command %q", sc.Text())
		}
		if err != nil {
			return err
		}
	}
	err = n.dev.Close()
	emit("closed", map[string]string{"Err": fmt.Sprint(err)})
	return err
}

func testPID() int { return os.Getpid() }

// staleSocket leaves a UAPI socket file behind as a killed process would.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !uapiInUse(filepath.Base(strings.TrimSuffix(path, ".sock"))) {
			os.Remove(path)
		}
	})
}
