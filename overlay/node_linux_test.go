package overlay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
)

// Helpers of the node child process of TestDeviceTunnel.

func slogTo(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func hostPort(addr string, port int) string { return net.JoinHostPort(addr, strconv.Itoa(port)) }

// serve runs an echo server (which names the caller's address) and a sink
// on the node's overlay address: only traffic through the tunnel reaches it.
func (n *testNode) serve() error {
	echo, err := net.Listen("tcp", hostPort(n.spec.Address, echoPort))
	if err != nil {
		return err
	}
	sink, err := net.Listen("tcp", hostPort(n.spec.Address, sinkPort))
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					return
				}
				from, _, _ := net.SplitHostPort(c.RemoteAddr().String())
				fmt.Fprintf(c, "echo %s from %s\n", strings.TrimSpace(line), from)
			}()
		}
	}()
	go func() {
		for {
			c, err := sink.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return nil
}

// dial talks to the peer's echo server, retrying while the first handshake
// is under way.
func (n *testNode) dial(within time.Duration) (string, error) {
	deadline := time.Now().Add(within)
	var lastErr error
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", hostPort(n.spec.PeerAddr, echoPort), time.Second)
		if err != nil {
			lastErr = err
			time.Sleep(100 * time.Millisecond)
			continue
		}
		c.SetDeadline(time.Now().Add(3 * time.Second))
		fmt.Fprintf(c, "hello\n")
		reply, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil {
			lastErr = err
			continue
		}
		return strings.TrimSpace(reply) + " to " + n.spec.PeerAddr, nil
	}
	return "", fmt.Errorf("dial %s through the tunnel: %w", n.spec.PeerAddr, lastErr)
}

func (n *testNode) cmdDial() error {
	reply, err := n.dial(10 * time.Second)
	if err != nil {
		return err
	}
	emit("dial", map[string]string{"Reply": reply})
	return nil
}

func (n *testNode) onlyPeer() (PeerStatus, error) {
	peers, err := n.dev.Peers()
	if err != nil {
		return PeerStatus{}, err
	}
	if len(peers) != 1 {
		return PeerStatus{}, fmt.Errorf("want exactly one peer, have %+v", peers)
	}
	return peers[0], nil
}

// cmdReconcile exercises SetPeers against the live device.
func (n *testNode) cmdReconcile() error {
	var steps []string
	before, err := n.onlyPeer()
	if err != nil {
		return err
	}
	if before.LastHandshake.IsZero() {
		return errors.New("no handshake before reconcile")
	}

	// The same set again changes nothing: same session, counters go on.
	if err := n.dev.SetPeers([]Peer{n.peer}); err != nil {
		return err
	}
	after, err := n.onlyPeer()
	if err != nil {
		return err
	}
	if !after.LastHandshake.Equal(before.LastHandshake) || after.RxBytes < before.RxBytes {
		return fmt.Errorf("unchanged SetPeers disturbed the peer: before %+v after %+v", before, after)
	}
	steps = append(steps, "same set: untouched (handshake "+after.LastHandshake.Format(time.RFC3339Nano)+")")

	// Our own key is ignored; changed allowed IPs and keepalive are updated
	// in place, keeping the session.
	changed := n.peer
	changed.AllowedIPs = append([]netip.Prefix{mustPrefix("10.99.200.0/24")}, n.peer.AllowedIPs...)
	changed.Keepalive = 5 * time.Second
	self := Peer{PublicKey: n.dev.PublicKey(), AllowedIPs: []netip.Prefix{mustPrefix(n.spec.Subnet)}, Name: "self"}
	if err := n.dev.SetPeers([]Peer{self, changed}); err != nil {
		return err
	}
	after, err = n.onlyPeer()
	if err != nil {
		return err
	}
	if strings.Join(after.AllowedIPs, ",") != n.spec.PeerSubnet+",10.99.200.0/24" || !after.LastHandshake.Equal(before.LastHandshake) {
		return fmt.Errorf("update: got %+v", after)
	}
	steps = append(steps, "allowed IPs updated in place: "+strings.Join(after.AllowedIPs, ","))

	// Removing the peer cuts the tunnel.
	if err := n.dev.SetPeers(nil); err != nil {
		return err
	}
	if peers, err := n.dev.Peers(); err != nil || len(peers) != 0 {
		return fmt.Errorf("after removing all: %+v, %v", peers, err)
	}
	if reply, err := n.dial(1500 * time.Millisecond); err == nil {
		return fmt.Errorf("dial succeeded without a peer: %s", reply)
	}
	steps = append(steps, "removed: tunnel closed")

	// Adding it back restores it with a fresh handshake.
	if err := n.dev.SetPeers([]Peer{n.peer}); err != nil {
		return err
	}
	reply, err := n.dial(10 * time.Second)
	if err != nil {
		return fmt.Errorf("after re-adding the peer: %w", err)
	}
	after, err = n.onlyPeer()
	if err != nil {
		return err
	}
	if after.LastHandshake.IsZero() {
		return fmt.Errorf("re-added peer has no handshake: %+v", after)
	}
	steps = append(steps, "re-added: "+reply)
	emit("reconcile", map[string][]string{"Steps": steps})
	return nil
}

// cmdBulk pushes TCP data through the tunnel for BulkSeconds.
func (n *testNode) cmdBulk() error {
	c, err := net.DialTimeout("tcp", hostPort(n.spec.PeerAddr, sinkPort), 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 64<<10)
	start := time.Now()
	end := start.Add(time.Duration(n.spec.BulkSeconds * float64(time.Second)))
	var total int64
	for time.Now().Before(end) {
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		w, err := c.Write(buf)
		total += int64(w)
		if err != nil {
			return err
		}
	}
	emit("bulk", map[string]any{"Bytes": total, "Seconds": time.Since(start).Seconds(), "HWM": peakRSS()})
	return nil
}

// peakRSS is the process's peak resident set (VmHWM).
func peakRSS() string {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// probeFailures checks that Up refuses, with a helpful error, what it must
// not take over, and that a failed Up leaves the running device (cfg) alone.
func probeFailures(ctx context.Context, cfg Config) error {
	var errs []string
	expectErr := func(what, want string, c Config) error {
		d, err := Up(ctx, c)
		if err == nil {
			d.Close()
			return fmt.Errorf("%s: Up succeeded", what)
		}
		if !strings.Contains(err.Error(), want) {
			return fmt.Errorf("%s: error %q does not mention %q", what, err, want)
		}
		errs = append(errs, what+": "+err.Error())
		if err := hasRoute(cfg.Grid); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}

	// The interface of a running device (the UAPI socket answers).
	same := cfg
	same.ListenPort++
	if err := expectErr("interface in use", "served by a running process", same); err != nil {
		return err
	}
	// Someone else's interface of another type.
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "kt-d0"
	if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
		return err
	}
	other := cfg
	other.Interface = "kt-d0"
	other.ListenPort++
	if err := expectErr("foreign interface", "is a bridge device", other); err != nil {
		return err
	}
	if _, err := netlink.LinkByName("kt-d0"); err != nil {
		return fmt.Errorf("foreign interface was removed: %w", err)
	}
	// A second overlay for the same grid under another name.
	twin := cfg
	twin.Interface = "kt-t0"
	twin.ListenPort++
	if err := expectErr("grid routed elsewhere", "already routed via "+cfg.Interface, twin); err != nil {
		return err
	}
	// The UDP port of the running device (another grid, so that the route
	// check passes).
	clash := cfg
	clash.Interface = "kt-p0"
	clash.Grid = mustPrefix("10.98.0.0/16")
	clash.Subnet = mustPrefix("10.98.2.0/24")
	clash.Address = mustAddr("10.98.2.1")
	if err := expectErr("port in use", "port", clash); err != nil {
		return err
	}
	for _, name := range []string{"kt-t0", "kt-p0"} {
		if _, err := netlink.LinkByName(name); err == nil {
			return fmt.Errorf("failed Up left %s behind", name)
		}
	}
	// The running device is unharmed: its route is still there.
	if err := hasRoute(cfg.Grid); err != nil {
		return fmt.Errorf("after a failed Up: %w", err)
	}
	emit("probes", map[string][]string{"Errors": errs})
	return nil
}

func hasRoute(dst netip.Prefix) error {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return err
	}
	for _, r := range routes {
		if r.Dst != nil && r.Dst.String() == dst.String() {
			return nil
		}
	}
	return fmt.Errorf("no route to %s", dst)
}
