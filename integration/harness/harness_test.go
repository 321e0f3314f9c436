package harness

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// A static stand-in for kontena: serves its hostname over HTTP.
const fakeKontena = `package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	h, _ := os.Hostname()
	addr := ":8080"
	if len(os.Args) > 1 {
		addr = os.Args[1]
	}
	fmt.Println("fake kontena listening on", addr)
	err := http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, h)
	}))
	fmt.Println(err)
	os.Exit(1)
}
`

var tmpDir string

func TestMain(m *testing.M) {
	var err error
	tmpDir, err = os.MkdirTemp("", "kontena-harness-test-")
	if err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(tmpDir)
	if _, err := exec.LookPath("docker"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		left, err := Leftovers(ctx)
		cancel()
		if err != nil || len(left) > 0 {
			fmt.Fprintf(os.Stderr, "harness: leftovers after tests: %v %v\n", left, err)
			code = 1
		}
	}
	os.Exit(code)
}

var fakeOnce struct {
	sync.Once
	path string
	err  error
}

func fakeBinary(t *testing.T) string {
	t.Helper()
	fakeOnce.Do(func() {
		start := time.Now()
		defer func() { t.Logf("built fake kontena in %v", time.Since(start)) }()
		dir := filepath.Join(tmpDir, "fake")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fakeOnce.err = err
			return
		}
		os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module fakekontena\n\ngo 1.21\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "main.go"), []byte(fakeKontena), 0o644)
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", "kontena", ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			fakeOnce.err = fmt.Errorf("go build fake kontena: %v\n%s", err, out)
			return
		}
		fakeOnce.path = filepath.Join(dir, "kontena")
	})
	if fakeOnce.err != nil {
		t.Fatal(fakeOnce.err)
	}
	return fakeOnce.path
}

func requireDocker(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Fatalf("docker CLI is required: %v", err)
	}
	if out, err := exec.Command("docker", "version", "--format", "{{.Server.Version}}").CombinedOutput(); err != nil {
		t.Fatalf("docker engine is required: %v: %s", err, out)
	}
}

func buildImage(t *testing.T, ctx context.Context, withDocker bool) string {
	t.Helper()
	requireDocker(t)
	start := time.Now()
	img, err := BuildNodeImage(ctx, ImageOptions{KontenaBinary: fakeBinary(t), WithDocker: withDocker})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("BuildNodeImage(WithDocker=%v) = %s in %v", withDocker, img, time.Since(start))
	start = time.Now()
	img2, err := BuildNodeImage(ctx, ImageOptions{KontenaBinary: fakeBinary(t), WithDocker: withDocker})
	if err != nil || img2 != img {
		t.Fatalf("rebuild: %q %v, want cached %q", img2, err, img)
	}
	t.Logf("cached BuildNodeImage in %v", time.Since(start))
	return img
}

func addNode(t *testing.T, ctx context.Context, g *Grid, name string) *Node {
	t.Helper()
	start := time.Now()
	n, err := g.AddNode(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("AddNode(%s) = %s in %v", name, n.IP(), time.Since(start))
	return n
}

func mustExec(t *testing.T, ctx context.Context, n *Node, args ...string) string {
	t.Helper()
	out, errOut, code, err := n.Exec(ctx, args...)
	if err != nil || code != 0 {
		t.Fatalf("%s: %v: exit %d, err %v: %s%s", n.Name(), args, code, err, out, errOut)
	}
	return out
}

// fetch asks node from for http://host:8080/ with a 3 s timeout.
func fetch(ctx context.Context, from *Node, host string) (string, bool) {
	out, _, code, err := from.Exec(ctx, "timeout", "3", "wget", "-qO-", "http://"+host+":8080/")
	return out, err == nil && code == 0
}

func eventually(t *testing.T, what string, d time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestGrid(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	img := buildImage(t, ctx, false)
	g := NewGrid(t, img)
	t.Logf("grid %s subnet %s", g.Network(), g.Subnet())
	a := addNode(t, ctx, g, "a")
	b := addNode(t, ctx, g, "b")
	if a.IP() != g.IP(0) || b.IP() != g.IP(1) || g.Node("b") != b {
		t.Fatalf("addresses: a=%s b=%s, want %s %s", a.IP(), b.IP(), g.IP(0), g.IP(1))
	}
	if h := strings.TrimSpace(mustExec(t, ctx, b, "hostname")); h != "b" {
		t.Fatalf("hostname %q", h)
	}
	if home := strings.TrimSpace(mustExec(t, ctx, b, "sh", "-c", "echo $HOME")); home != "/root" {
		t.Fatalf("HOME=%q", home)
	}
	if _, _, code, err := b.Exec(ctx, "sh", "-c", "exit 3"); err != nil || code != 3 {
		t.Fatalf("exit code: %d %v", code, err)
	}
	if _, _, _, err := b.Exec(ctx, "no-such-binary"); err == nil {
		t.Fatal("exec of a missing binary: want error")
	}
	mustExec(t, ctx, b, "test", "-c", "/dev/net/tun")

	for _, n := range []*Node{a, b} {
		if err := n.StartDaemon(ctx, ":8080"); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "a reaches b", 10*time.Second, func() bool { out, ok := fetch(ctx, a, b.IP()); return ok && out == "b" })
	if out, ok := fetch(ctx, a, "b"); !ok || out != "b" {
		t.Fatalf("a -> b by name: %q %v", out, ok)
	}
	if out, ok := fetch(ctx, b, a.IP()); !ok || out != "a" {
		t.Fatalf("b -> a: %q %v", out, ok)
	}
	// the test process itself reaches the nodes
	hc := &http.Client{Timeout: 3 * time.Second}
	resp, err := hc.Get("http://" + b.IP() + ":8080/")
	if err != nil {
		t.Fatalf("host -> b: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "b" {
		t.Fatalf("host -> b: %q", body)
	}

	// Disconnect / Reconnect
	if err := b.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	if out, ok := fetch(ctx, a, b.IP()); ok {
		t.Fatalf("a reached disconnected b: %q", out)
	}
	if err := b.Reconnect(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a reaches reconnected b", 10*time.Second, func() bool { out, ok := fetch(ctx, a, b.IP()); return ok && out == "b" })
	if out, ok := fetch(ctx, b, a.IP()); !ok || out != "a" {
		t.Fatalf("reconnected b -> a: %q %v", out, ok)
	}

	// Pause / Unpause
	if err := b.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if out, ok := fetch(ctx, a, b.IP()); ok {
		t.Fatalf("a got an answer from paused b: %q", out)
	}
	if _, _, _, err := b.Exec(ctx, "true"); err == nil {
		t.Fatal("exec in a paused node: want error")
	}
	if err := b.Unpause(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a reaches unpaused b", 10*time.Second, func() bool { _, ok := fetch(ctx, a, b.IP()); return ok })

	// KillDaemon
	if err := b.KillDaemon(ctx); err != nil {
		t.Fatal(err)
	}
	if out, ok := fetch(ctx, a, b.IP()); ok {
		t.Fatalf("a reached b after KillDaemon: %q", out)
	}
	if err := b.KillDaemon(ctx); err != nil {
		t.Fatalf("KillDaemon without daemon: %v", err)
	}
	if log := b.DaemonLog(ctx); !strings.Contains(log, "fake kontena listening on :8080") || !strings.Contains(log, "=== ") {
		t.Fatalf("daemon log: %q", log)
	}

	// Kill / Start keeps the filesystem and the address
	mustExec(t, ctx, b, "sh", "-c", "echo keep >/root/marker && echo data >/var/lib/kontena/marker")
	start := time.Now()
	if err := b.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := b.Exec(ctx, "true"); err == nil {
		t.Fatal("exec in a killed node: want error")
	}
	if log := b.DaemonLog(ctx); !strings.Contains(log, "listening") {
		t.Fatalf("DaemonLog of a stopped node: %q", log)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("Kill+Start in %v", time.Since(start))
	if out := mustExec(t, ctx, b, "cat", "/root/marker", "/var/lib/kontena/marker"); out != "keep\ndata\n" {
		t.Fatalf("files after restart: %q", out)
	}
	if out := mustExec(t, ctx, b, "ip", "-4", "addr"); !strings.Contains(out, b.IP()+"/24") {
		t.Fatalf("address after restart: %s", out)
	}
	if err := b.StartDaemon(ctx, ":8080"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a reaches restarted b", 10*time.Second, func() bool { out, ok := fetch(ctx, a, b.IP()); return ok && out == "b" })

	// CopyIn
	p := filepath.Join(t.TempDir(), "hello.txt")
	os.WriteFile(p, []byte("hello"), 0o644)
	if err := a.CopyIn(ctx, p, "/tmp/hello.txt"); err != nil {
		t.Fatal(err)
	}
	if out := mustExec(t, ctx, a, "cat", "/tmp/hello.txt"); out != "hello" {
		t.Fatalf("CopyIn: %q", out)
	}
}

// fakeTB captures a grid's cleanup so the test can run it as a failed test.
type fakeTB struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
	logs     []string
	errs     []string
}

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Failed() bool      { return true }
func (f *fakeTB) Logf(s string, a ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logs = append(f.logs, fmt.Sprintf(s, a...))
}
func (f *fakeTB) Errorf(s string, a ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, fmt.Sprintf(s, a...))
}

func TestCleanupOnFailure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	img := buildImage(t, ctx, false)
	f := &fakeTB{TB: t}
	g := NewGrid(f, img)
	n, err := g.AddNode(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.StartDaemon(ctx, ":8080"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "daemon log", 5*time.Second, func() bool { return strings.Contains(n.DaemonLog(ctx), "listening") })
	if err := n.Pause(ctx); err != nil { // cleanup must cope with paused nodes
		t.Fatal(err)
	}
	if len(f.cleanups) != 1 {
		t.Fatalf("%d cleanups registered", len(f.cleanups))
	}
	f.cleanups[0]()
	if len(f.errs) > 0 {
		t.Fatalf("cleanup errors: %v", f.errs)
	}
	if all := strings.Join(f.logs, "\n"); !strings.Contains(all, "fake kontena listening on :8080") {
		t.Fatalf("daemon log not dumped on failure: %q", all)
	}
	out, err := exec.Command("docker", "ps", "-a", "--filter", "label="+labelGrid+"="+g.Network(), "-q").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("containers left: %q %v", out, err)
	}
	out, err = exec.Command("docker", "network", "ls", "-q", "--filter", "name=^"+g.Network()+"$").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("network left: %q %v", out, err)
	}
}

// tinyImage imports a busybox-only image into the host engine.
func tinyImage(t *testing.T, ctx context.Context) (tag, tarPath string) {
	t.Helper()
	r := newRootfs()
	bb, err := findHost("busybox")
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(bb)
	r.add(&entry{name: "/bin/busybox", typ: tar.TypeReg, mode: 0o755, host: bb, size: st.Size(), mtime: st.ModTime()})
	for _, a := range []string{"sh", "echo", "cat", "wget", "timeout", "hostname", "sleep"} {
		r.add(&entry{name: "/bin/" + a, typ: tar.TypeSymlink, mode: 0o777, link: "busybox"})
	}
	tarPath = filepath.Join(t.TempDir(), "tiny.tar")
	fh, err := os.Create(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.writeTar(fh); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	tag = "kontena-it-test-tiny:" + r.hash()
	if !imageExists(ctx, tag) {
		if _, err := dockerCmd(ctx, nil, "import", "--change", "ENV PATH=/bin", tarPath, tag); err != nil {
			t.Fatal(err)
		}
	}
	return tag, tarPath
}

func TestDockerInDocker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	img := buildImage(t, ctx, true)
	tiny, tinyTar := tinyImage(t, ctx)
	g := NewGrid(t, img)

	// two nodes started concurrently
	nodes := make([]*Node, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	start := time.Now()
	for i, name := range []string{"d1", "d2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i], errs[i] = g.AddNode(ctx, name)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("2 docker nodes started concurrently in %v", time.Since(start))
	d1, d2 := g.Node("d1"), g.Node("d2")

	info := mustExec(t, ctx, d1, "docker", "info", "--format", "{{.Driver}} {{.CgroupDriver}}")
	t.Logf("inner docker info: %s", strings.TrimSpace(info))

	start = time.Now()
	if err := d1.LoadImage(ctx, tiny); err != nil {
		t.Fatal(err)
	}
	t.Logf("LoadImage in %v", time.Since(start))
	if out := mustExec(t, ctx, d1, "docker", "run", "--rm", tiny, "echo", "hi"); out != "hi\n" {
		t.Fatalf("inner docker run: %q", out)
	}
	// docker import inside the node
	if err := d2.CopyIn(ctx, tinyTar, "/tmp/tiny.tar"); err != nil {
		t.Fatal(err)
	}
	mustExec(t, ctx, d2, "docker", "import", "--change", "ENV PATH=/bin", "/tmp/tiny.tar", "tiny:imported")
	if out := mustExec(t, ctx, d2, "docker", "run", "--rm", "tiny:imported", "hostname"); strings.TrimSpace(out) == "" {
		t.Fatal("no hostname from inner container")
	}

	// an inner container on d1 reaches a daemon on d2 through the grid
	if err := d2.StartDaemon(ctx, ":8080"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "d1 reaches d2", 10*time.Second, func() bool { out, ok := fetch(ctx, d1, d2.IP()); return ok && out == "d2" })
	out := mustExec(t, ctx, d1, "docker", "run", "--rm", tiny, "timeout", "3", "wget", "-qO-", "http://"+d2.IP()+":8080/")
	if out != "d2" {
		t.Fatalf("inner container -> d2: %q", out)
	}

	// inner containers' cgroups nest under the node's (so Pause freezes them too)
	mustExec(t, ctx, d1, "docker", "run", "-d", "--name", "sleeper", tiny, "sleep", "600")
	pid := strings.TrimSpace(mustExec(t, ctx, d1, "docker", "inspect", "--format", "{{.State.Pid}}", "sleeper"))
	self := strings.TrimSpace(mustExec(t, ctx, d1, "sed", "-n", "s/^[0-9]*:freezer://p", "/proc/1/cgroup"))
	inner := strings.TrimSpace(mustExec(t, ctx, d1, "sed", "-n", "s/^[0-9]*:freezer://p", "/proc/"+pid+"/cgroup"))
	if self != "" && self != "/" && !strings.HasPrefix(inner, self+"/docker/") {
		t.Fatalf("inner container cgroup %q is not under the node's %q", inner, self)
	}

	// Kill / Start: the inner engine comes back with its images
	start = time.Now()
	if err := d1.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d1.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("docker node Kill+Start in %v", time.Since(start))
	if out := mustExec(t, ctx, d1, "docker", "run", "--rm", tiny, "echo", "again"); out != "again\n" {
		t.Fatalf("inner docker run after restart: %q", out)
	}
}
