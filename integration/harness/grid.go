package harness

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Labels put on every container and network the harness creates.
const (
	labelGrid    = "kontena-it.grid"    // network name of the grid
	labelOwner   = "kontena-it.owner"   // host-pid of the creating process
	labelExpires = "kontena-it.expires" // unix time after which anyone may remove it
)

// Grid is a private Docker bridge network with a fixed /24 subnet, plus the
// node containers on it. All of it is removed by a t.Cleanup registered by
// NewGrid; leftovers of crashed test processes (go test timeouts) are removed
// by later NewGrid calls once their expiry label has passed.
type Grid struct {
	// DockerdArgs are extra dockerd arguments (space separated) for the inner
	// engine of nodes added after it is set (WithDocker images only).
	DockerdArgs string
	// Tmpfs are extra tmpfs mounts ("PATH:OPTIONS", as docker run --tmpfs)
	// of nodes added after it is set: e.g. a data dir on a small file
	// system, to fill it up.
	Tmpfs []string

	t          testing.TB
	network    string
	image      string
	subnet     netip.Prefix
	withDocker bool
	expires    int64

	mu    sync.Mutex
	nodes []*Node
}

var owner = func() string {
	h, _ := os.Hostname()
	return fmt.Sprintf("%s-%d", h, os.Getpid())
}()

// NewGrid creates the grid network for image (made by BuildNodeImage). It
// fails the test if docker is unusable.
func NewGrid(t testing.TB, image string) *Grid {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := dockerCmd(ctx, nil, "version", "--format", "{{.Server.Version}}"); err != nil {
		t.Fatalf("harness: docker is required: %v", err)
	}
	reapExpired(ctx)

	lbl, err := dockerCmd(ctx, nil, "image", "inspect", "--format", `{{index .Config.Labels "kontena-it.docker"}}`, image)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	g := &Grid{t: t, image: image, withDocker: strings.TrimSpace(lbl) == "1"}
	g.expires = expiry(t)

	var lastErr error
	for attempt := 0; attempt < 30; attempt++ {
		subnet, err := pickSubnet()
		if err != nil {
			t.Fatalf("harness: %v", err)
		}
		name := "kontena-it-" + randHex(4)
		gw := subnet.Addr().Next()
		_, err = dockerCmd(ctx, nil, "network", "create", "--driver", "bridge",
			"--subnet", subnet.String(), "--gateway", gw.String(),
			"--label", "kontena-it=1", "--label", labelGrid+"="+name,
			"--label", labelOwner+"="+owner, "--label", labelExpires+"="+strconv.FormatInt(g.expires, 10),
			name)
		if err == nil {
			g.network, g.subnet = name, subnet
			break
		}
		lastErr = err
		if !strings.Contains(err.Error(), "overlap") && !strings.Contains(err.Error(), "already exists") {
			break
		}
	}
	if g.network == "" {
		t.Fatalf("harness: creating grid network: %v", lastErr)
	}
	t.Cleanup(g.cleanup)
	return g
}

// expiry: the test binary's deadline (+ margin) or, without one, 6 hours.
// KONTENA_IT_KEEP=1 keeps grids for a day (and skips cleanup).
func expiry(t testing.TB) int64 {
	if os.Getenv("KONTENA_IT_KEEP") != "" {
		return time.Now().Add(24 * time.Hour).Unix()
	}
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			return dl.Add(2 * time.Minute).Unix()
		}
	}
	return time.Now().Add(6 * time.Hour).Unix()
}

// Network is the docker network name (kontena-it-<random>).
func (g *Grid) Network() string { return g.network }

// Subnet is the grid's /24.
func (g *Grid) Subnet() netip.Prefix { return g.subnet }

// Gateway is the bridge address on the host (x.y.z.1).
func (g *Grid) Gateway() string { return g.subnet.Addr().Next().String() }

// IP is the fixed address of the i-th node (0-based, in AddNode order): x.y.z.(10+i).
func (g *Grid) IP(i int) string {
	a := g.subnet.Addr().As4()
	a[3] = byte(10 + i)
	return netip.AddrFrom4(a).String()
}

// Nodes returns the nodes in AddNode order.
func (g *Grid) Nodes() []*Node {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]*Node(nil), g.nodes...)
}

// Node returns the node with that name, or nil.
func (g *Grid) Node(name string) *Node {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, n := range g.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// AddNode starts a node container named name (hostname and network alias
// name, address g.IP(index)) and waits until its init is ready (its inner
// dockerd answers, for WithDocker images). It does not start kontena.
// Safe for concurrent use.
func (g *Grid) AddNode(ctx context.Context, name string) (*Node, error) {
	g.mu.Lock()
	for _, n := range g.nodes {
		if n.name == name {
			g.mu.Unlock()
			return nil, fmt.Errorf("harness: node %q already exists", name)
		}
	}
	idx := len(g.nodes)
	if idx >= 240 {
		g.mu.Unlock()
		return nil, fmt.Errorf("harness: too many nodes")
	}
	n := &Node{g: g, name: name, index: idx, container: g.network + "-" + name, ip: g.IP(idx)}
	g.nodes = append(g.nodes, n)
	dockerdArgs, tmpfs := g.DockerdArgs, g.Tmpfs
	g.mu.Unlock()

	args := []string{"run", "-d", "--name", n.container, "--hostname", name,
		"--network", g.network, "--ip", n.ip, "--network-alias", name,
		"--init",
		"--label", "kontena-it=1", "--label", labelGrid + "=" + g.network,
		"--label", labelOwner + "=" + owner, "--label", labelExpires + "=" + strconv.FormatInt(g.expires, 10),
		"--cap-add", "NET_ADMIN", "--device", "/dev/net/tun",
		"--tmpfs", "/run:rw,exec,mode=755",
	}
	dataVolume := true
	for _, m := range tmpfs {
		args = append(args, "--tmpfs", m)
		dataVolume = dataVolume && !strings.HasPrefix(m, "/var/lib/kontena:")
	}
	if dataVolume {
		args = append(args, "-v", "/var/lib/kontena")
	}
	args = append(args, "-e", "HOME=/root")
	if g.withDocker {
		args = append(args,
			"--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
			"--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
			"--security-opt", "systempaths=unconfined",
			"--device-cgroup-rule", "a *:* rwm",
			"-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
			"-v", "/var/lib/docker",
			"-e", "KONTENA_IT_DOCKERD_ARGS="+dockerdArgs,
		)
	}
	args = append(args, g.image)
	if _, err := dockerCmd(ctx, nil, args...); err != nil {
		return n, fmt.Errorf("harness: AddNode %s: %w", name, err)
	}
	if err := n.waitReady(ctx); err != nil {
		return n, err
	}
	return n, nil
}

func (g *Grid) cleanup() {
	t := g.t
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if t.Failed() {
		for _, n := range g.Nodes() {
			n.dumpLogs(ctx, t)
		}
	}
	if os.Getenv("KONTENA_IT_KEEP") != "" {
		t.Logf("harness: KONTENA_IT_KEEP set: keeping grid; remove with: docker rm -f -v $(docker ps -aq --filter label=%s=%s); docker network rm %s",
			labelGrid, g.network, g.network)
		return
	}
	if err := removeGrid(ctx, g.network); err != nil {
		t.Errorf("harness: cleanup: %v", err)
	}
}

// removeGrid removes all containers (with their anonymous volumes) labelled
// with the grid, then the network.
func removeGrid(ctx context.Context, network string) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 500 * time.Millisecond)
		}
		var out string
		out, err = dockerCmd(ctx, nil, "ps", "-aq", "--filter", "label="+labelGrid+"="+network)
		if err != nil {
			continue
		}
		if ids := strings.Fields(out); len(ids) > 0 {
			// a paused container can't be killed by rm -f on every engine
			_, _, _ = dockerRun(ctx, nil, append([]string{"unpause"}, ids...)...)
			if _, err = dockerCmd(ctx, nil, append([]string{"rm", "-f", "-v"}, ids...)...); err != nil {
				continue
			}
		}
		out, err = dockerCmd(ctx, nil, "network", "ls", "-q", "--filter", "name=^"+network+"$")
		if err != nil {
			continue
		}
		if strings.TrimSpace(out) != "" {
			if _, err = dockerCmd(ctx, nil, "network", "rm", network); err != nil {
				continue
			}
		}
		return nil
	}
	return err
}

// reapExpired removes harness containers and networks whose expiry passed
// (left behind by test processes that died without running their cleanups).
func reapExpired(ctx context.Context) {
	now := time.Now().Unix()
	expired := func(args ...string) []string {
		out, err := dockerCmd(ctx, nil, append(args, "--filter", "label="+labelExpires,
			"--format", `{{.ID}}	{{.Label "`+labelExpires+`"}}`)...)
		if err != nil {
			return nil
		}
		var ids []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			id, exp, ok := strings.Cut(line, "\t")
			if e, err := strconv.ParseInt(strings.TrimSpace(exp), 10, 64); ok && err == nil && e < now {
				ids = append(ids, id)
			}
		}
		return ids
	}
	if ids := expired("container", "ls", "-a"); len(ids) > 0 {
		_, _, _ = dockerRun(ctx, nil, append([]string{"unpause"}, ids...)...)
		_, _, _ = dockerRun(ctx, nil, append([]string{"rm", "-f", "-v"}, ids...)...)
	}
	if ids := expired("network", "ls"); len(ids) > 0 {
		_, _, _ = dockerRun(ctx, nil, append([]string{"network", "rm"}, ids...)...)
	}
}

// Leftovers lists containers and networks created by this process that
// still exist (for a TestMain check after m.Run()).
func Leftovers(ctx context.Context) ([]string, error) {
	var left []string
	out, err := dockerCmd(ctx, nil, "ps", "-a", "--filter", "label="+labelOwner+"="+owner, "--format", "container {{.Names}}")
	if err != nil {
		return nil, err
	}
	left = append(left, strings.Fields(strings.ReplaceAll(out, "container ", "container:"))...)
	out, err = dockerCmd(ctx, nil, "network", "ls", "--filter", "label="+labelOwner+"="+owner, "--format", "network:{{.Name}}")
	if err != nil {
		return nil, err
	}
	left = append(left, strings.Fields(out)...)
	return left, nil
}

// pickSubnet picks a random 10.(200-249).x.0/24 that overlaps no address or
// route of this host. (10.80.0.0/12 is avoided: kontena's default overlay.)
func pickSubnet() (netip.Prefix, error) {
	taken := hostPrefixes()
	for i := 0; i < 1000; i++ {
		b := make([]byte, 2)
		if _, err := rand.Read(b); err != nil {
			return netip.Prefix{}, err
		}
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200 + b[0]%50, b[1], 0}), 24)
		free := true
		for _, q := range taken {
			if p.Overlaps(q) {
				free = false
				break
			}
		}
		if free {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("no free 10.200-249.x.0/24 subnet")
}

// hostPrefixes: this host's IPv4 interface networks and non-default routes.
func hostPrefixes() []netip.Prefix {
	var ps []netip.Prefix
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if p, err := netip.ParsePrefix(n.String()); err == nil && p.Addr().Is4() {
					ps = append(ps, p.Masked())
				}
			}
		}
	}
	if f, err := os.Open("/proc/net/route"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 8 || fs[0] == "Iface" {
				continue
			}
			dst, err1 := strconv.ParseUint(fs[1], 16, 32)
			mask, err2 := strconv.ParseUint(fs[7], 16, 32)
			if err1 != nil || err2 != nil || mask == 0 {
				continue
			}
			var d, m [4]byte
			binary.LittleEndian.PutUint32(d[:], uint32(dst))
			binary.LittleEndian.PutUint32(m[:], uint32(mask))
			bits, _ := net.IPMask(m[:]).Size()
			ps = append(ps, netip.PrefixFrom(netip.AddrFrom4(d), bits).Masked())
		}
	}
	return ps
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
