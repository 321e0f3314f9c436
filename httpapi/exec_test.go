package httpapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/stack"
)

// fakeProcess is `cat` with a greeting on stderr: what it reads on stdin
// it writes to stdout; it ends when stdin closes (or when closed).
type fakeProcess struct {
	stdinR  *io.PipeReader
	stdinW  *io.PipeWriter
	outR    *io.PipeReader
	outW    *io.PipeWriter
	mu      sync.Mutex
	resizes [][2]uint16
	exited  bool
}

func newFakeProcess(tty bool, code int) (*fakeProcess, execProcess) {
	f := &fakeProcess{}
	f.stdinR, f.stdinW = io.Pipe()
	f.outR, f.outW = io.Pipe()
	go func() {
		stdout, stderr := io.Writer(f.outW), io.Writer(f.outW)
		if !tty {
			stdout, stderr = stdcopy.NewStdWriter(f.outW, stdcopy.Stdout), stdcopy.NewStdWriter(f.outW, stdcopy.Stderr)
		}
		_, _ = io.WriteString(stderr, "ready\n")
		_, _ = io.Copy(stdout, f.stdinR)
		f.mu.Lock()
		f.exited = true
		f.mu.Unlock()
		f.outW.Close()
	}()
	return f, execProcess{
		output: f.outR, tty: tty, stdin: f.stdinW,
		closeStdin: f.stdinW.Close,
		resize: func(cols, rows uint16) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.resizes = append(f.resizes, [2]uint16{cols, rows})
			return nil
		},
		exitCode: func() (int, error) { return code, nil },
		close: func() {
			f.stdinW.CloseWithError(errors.New("closed"))
			f.outW.CloseWithError(errors.New("use of closed network connection"))
		},
	}
}

// readFrames reads frames until the exit or error frame (or EOF).
func readFrames(t *testing.T, r io.Reader) (stdout, stderr string, exit int, errMsg string) {
	t.Helper()
	exit = -100
	var o, e bytes.Buffer
	for {
		typ, p, err := api.ReadFrame(r)
		if err != nil {
			return o.String(), e.String(), exit, "EOF: " + err.Error()
		}
		switch typ {
		case api.FrameStdout:
			o.Write(p)
		case api.FrameStderr:
			e.Write(p)
		case api.FrameExit:
			exit, _ = api.ParseExit(p)
			return o.String(), e.String(), exit, ""
		case api.FrameError:
			return o.String(), e.String(), exit, string(p)
		}
	}
}

func TestRunExecSession(t *testing.T) {
	t.Run("stdin, stdout, stderr and the exit code", func(t *testing.T) {
		client, server := net.Pipe()
		_, proc := newFakeProcess(false, 3)
		done := make(chan struct{})
		go func() { runExecSession(server, server, proc, execIdleTimeout); server.Close(); close(done) }()
		go func() {
			_ = api.WriteFrame(client, api.FrameStdin, []byte("hello "))
			_ = api.WriteFrame(client, api.FrameResize, api.ResizePayload(10, 10)) // ignored without tty
			_ = api.WriteFrame(client, api.FrameStdin, []byte("world\n"))
			_ = api.WriteFrame(client, api.FrameStdin, nil)
		}()
		out, errOut, code, msg := readFrames(t, client)
		if out != "hello world\n" || errOut != "ready\n" || code != 3 || msg != "" {
			t.Fatalf("stdout %q stderr %q exit %d error %q", out, errOut, code, msg)
		}
		client.Close()
		<-done
	})
	t.Run("tty: raw output and resizes", func(t *testing.T) {
		client, server := net.Pipe()
		f, proc := newFakeProcess(true, 0)
		go func() { runExecSession(server, server, proc, execIdleTimeout); server.Close() }()
		go func() {
			_ = api.WriteFrame(client, api.FrameResize, api.ResizePayload(120, 40))
			_ = api.WriteFrame(client, api.FrameStdin, []byte("x"))
			_ = api.WriteFrame(client, api.FrameStdin, nil)
		}()
		out, errOut, code, msg := readFrames(t, client)
		if out != "ready\nx" || errOut != "" || code != 0 || msg != "" {
			t.Fatalf("stdout %q stderr %q exit %d error %q", out, errOut, code, msg)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.resizes) != 1 || f.resizes[0] != [2]uint16{120, 40} {
			t.Fatalf("resizes %v", f.resizes)
		}
	})
	t.Run("a client that leaves ends the session without an exit code", func(t *testing.T) {
		client, server := net.Pipe()
		_, proc := newFakeProcess(false, 0)
		called := make(chan struct{}, 1)
		proc.exitCode = func() (int, error) { called <- struct{}{}; return 0, nil }
		done := make(chan struct{})
		go func() { runExecSession(server, server, proc, execIdleTimeout); close(done) }()
		if typ, p, err := api.ReadFrame(client); err != nil || typ != api.FrameStderr || string(p) != "ready\n" {
			t.Fatalf("first frame %d %q %v", typ, p, err)
		}
		client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("session still runs after the client left")
		}
		select {
		case <-called:
			t.Fatal("exit code read for a client that left")
		default:
		}
	})
}

// TestProxyUpgrade runs the exec path through a forwarding node: the CLI's
// client → front (proxyUpgrade, with a dead target first) → back (a node
// that runs the session with a fake process).
func TestProxyUpgrade(t *testing.T) {
	var mu sync.Mutex
	var seen http.Header
	back := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r.Header.Clone()
		mu.Unlock()
		if strings.Contains(r.URL.Path, "ghost") {
			writeErr(w, api.Errorf(api.CodeNotFound, "no container ghost; see `kontena container ls`"))
			return
		}
		if !api.IsExecUpgrade(r.Header) || r.URL.Query().Get("cmd") != "cat" {
			writeErr(w, api.Errorf(api.CodeInvalid, "bad request %s", r.URL))
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, api.SwitchingProtocols)
		_, proc := newFakeProcess(false, 42)
		runExecSession(brw.Reader, conn, proc, execIdleTimeout)
	}))
	back.StartTLS()
	defer back.Close()
	dead := freeAddr(t)
	n := New(Config{ID: "front-id", PeerTLS: &tls.Config{InsecureSkipVerify: true}})
	front := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.proxyUpgrade(w, r, []string{dead, strings.TrimPrefix(back.URL, "https://")},
			"/v1/internal/containers/"+r.PathValue("name")+"/exec?"+r.URL.RawQuery, false)
	}))
	mux := http.NewServeMux()
	mux.Handle("POST /v1/containers/{name}/exec", front.Config.Handler)
	front.Config.Handler = mux
	front.StartTLS()
	defer front.Close()

	cl := api.NewClientTLS([]string{front.URL}, &tls.Config{InsecureSkipVerify: true}, "secret-token")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	sess, err := cl.Exec(ctx, "shop.web-1", api.ExecOptions{Cmd: []string{"cat"}, Stdin: true})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = sess.CopyStdin(strings.NewReader("ping\n")) }()
	var out, errOut bytes.Buffer
	code, err := sess.Wait(&out, &errOut)
	t.Logf("exec round trip through one forwarding hop (in process): %s", time.Since(start).Round(time.Microsecond))
	sess.Close()
	if err != nil || code != 42 || out.String() != "ping\n" || errOut.String() != "ready\n" {
		t.Fatalf("exit %d err %v stdout %q stderr %q", code, err, out.String(), errOut.String())
	}
	mu.Lock()
	if seen.Get("Authorization") != "" {
		t.Fatal("the user's token travelled to the container's node")
	}
	if seen.Get(api.HeaderHops) != "1" || seen.Get(api.HeaderForwardedBy) != "front-id" {
		t.Fatalf("forwarding headers: %v", seen)
	}
	mu.Unlock()

	// An error answer before the upgrade keeps its code.
	_, err = cl.Exec(ctx, "ghost", api.ExecOptions{Cmd: []string{"cat"}})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeNotFound || !strings.Contains(ae.Message, "no container ghost") {
		t.Fatalf("unknown container: %v", err)
	}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestCPUPercent(t *testing.T) {
	cpu := func(total, system uint64, online uint32, percpu int) container.CPUStats {
		return container.CPUStats{CPUUsage: container.CPUUsage{TotalUsage: total, PercpuUsage: make([]uint64, percpu)}, SystemUsage: system, OnlineCPUs: online}
	}
	tests := []struct {
		name      string
		prev, cur container.CPUStats
		want      float64
	}{
		// 0.5 s of CPU while the 4-CPU host ran 4 s (1 s wall): half a CPU.
		{"half a CPU on 4", cpu(1e9, 100e9, 4, 0), cpu(1.5e9, 104e9, 4, 0), 50},
		{"two full CPUs", cpu(0, 0, 2, 0), cpu(2e9, 2e9, 2, 0), 200},
		{"online CPUs from per-CPU usage", cpu(0, 10, 0, 0), cpu(1e9, 4e9+10, 0, 4), 100},
		{"no previous system reading", cpu(0, 0, 2, 0), cpu(0, 0, 2, 0), 0},
		{"counter reset", cpu(5e9, 10, 2, 0), cpu(1e9, 20, 2, 0), 0},
	}
	for _, tc := range tests {
		if got := cpuPercent(tc.prev, tc.cur); got < tc.want-0.001 || got > tc.want+0.001 {
			t.Errorf("%s: %.3f, want %.3f", tc.name, got, tc.want)
		}
	}
}

func TestStatsFrom(t *testing.T) {
	cur := &container.StatsResponse{
		Read:        time.Unix(100, 0),
		CPUStats:    container.CPUStats{CPUUsage: container.CPUUsage{TotalUsage: 2e9}, SystemUsage: 20e9, OnlineCPUs: 2},
		MemoryStats: container.MemoryStats{Usage: 100 << 20, Limit: 400 << 20, Stats: map[string]uint64{"inactive_file": 20 << 20}},
		Networks:    map[string]container.NetworkStats{"eth0": {RxBytes: 1000, TxBytes: 10}, "eth1": {RxBytes: 24, TxBytes: 5}},
		PidsStats:   container.PidsStats{Current: 3},
	}
	prev := container.CPUStats{CPUUsage: container.CPUUsage{TotalUsage: 1e9}, SystemUsage: 10e9}
	st := statsFrom(prev, cur)
	if st.CPUPercent != 20 || st.MemoryUsage != 80<<20 || st.MemoryLimit != 400<<20 || st.MemoryPercent != 20 ||
		st.NetRx != 1024 || st.NetTx != 15 || st.PIDs != 3 {
		t.Fatalf("%+v", st)
	}
	// cgroup v1 reports the page cache as total_inactive_file.
	if got := memoryUsage(container.MemoryStats{Usage: 50, Stats: map[string]uint64{"total_inactive_file": 20, "inactive_file": 1}}); got != 30 {
		t.Fatalf("v1 usage %d", got)
	}
	if got := memoryUsage(container.MemoryStats{Usage: 50, Stats: map[string]uint64{"inactive_file": 60}}); got != 50 {
		t.Fatalf("cache above usage: %d", got)
	}
}

func TestTrimInspectHidesEnvValues(t *testing.T) {
	ins := container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{ID: "abc", Name: "/shop.web-1", Image: "sha256:1",
			State: &container.State{Status: "running", Running: true, StartedAt: "2026-01-01T00:00:00Z"}, RestartCount: 2},
		Config: &container.Config{Image: "web:1", Env: []string{"PASSWORD=hunter2", "A=b=c", "EMPTY"}, Labels: map[string]string{"io.kontena.managed": "true"}},
	}
	d := trimInspect(ins)
	raw := strings.Join(d.EnvNames, ",")
	if raw != "A,EMPTY,PASSWORD" || d.Name != "shop.web-1" || d.State != "running" || d.RestartCount != 2 {
		t.Fatalf("%+v", d)
	}
	for _, secret := range []string{"hunter2", "b=c"} {
		if strings.Contains(strings.Join(d.EnvNames, " "), secret) {
			t.Fatalf("env value %q leaked", secret)
		}
	}
}

func TestFindContainers(t *testing.T) {
	store, err := fsm.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	apply := func(idx uint64, cmd fsm.Command) {
		t.Helper()
		if _, err := store.Apply(idx, cmd, &fsm.AuditInfo{User: "t", Time: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}); err != nil {
			t.Fatalf("%T: %v", cmd, err)
		}
	}
	apply(1, &fsm.GridInit{Grid: fsm.Grid{Name: "g", Subnet: "10.81.0.0/16", Supernet: "10.80.0.0/12", InitialSize: 1},
		Node: fsm.Node{ID: "id1", Name: "n1", Role: fsm.RoleVoter}, Admin: fsm.User{Name: "admin", Roles: []string{fsm.RoleMasterAdmin}},
		AdminToken: fsm.Token{ID: "t1", Hash: "h", User: "admin"}})
	apply(2, &fsm.NodeRegister{Node: fsm.Node{ID: "id2", Name: "n2", Role: fsm.RoleWorker}})
	apply(3, &fsm.StackInstall{Stack: fsm.Stack{Name: "shop", Spec: stack.Stack{Name: "shop", Services: []*stack.Service{
		{Name: "web", Image: "web:1", Instances: 2}, {Name: "db", Image: "db:1", Instances: 1}}}}})
	apply(4, &fsm.InstancesPlace{ServiceID: "shop/web", Revision: 1, Place: []fsm.Placement{{Number: 1, NodeID: "id1"}, {Number: 2, NodeID: "id2"}}})
	apply(5, &fsm.InstancesPlace{ServiceID: "shop/db", Revision: 1, Place: []fsm.Placement{{Number: 1, NodeID: "id2"}}})
	apply(6, &fsm.NodeStatus{Updates: []fsm.NodeStatusUpdate{{ID: "id2", Status: fsm.StatusOffline, At: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC), LastSeen: time.Date(2026, 1, 1, 11, 59, 0, 0, time.UTC)}}})

	names := func(f containerFilter) string {
		t.Helper()
		ls, err := findContainers(store, f)
		if err != nil {
			return "error: " + err.Error()
		}
		var out []string
		for _, l := range ls {
			out = append(out, l.name+"@"+l.nodeName())
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		f    containerFilter
		want string
	}{
		{containerFilter{}, "shop.db-1@n2 shop.web-1@n1 shop.web-2@n2"},
		{containerFilter{service: "shop/web"}, "shop.web-1@n1 shop.web-2@n2"},
		{containerFilter{node: "n2"}, "shop.db-1@n2 shop.web-2@n2"},
		{containerFilter{names: []string{"shop.web-2"}}, "shop.web-2@n2"},
		{containerFilter{names: []string{"shop.web-9"}}, "error: no container shop.web-9; see `kontena container ls`"},
		{containerFilter{service: "shop/nope"}, "error: no service shop/nope; see `kontena service ls`"},
		{containerFilter{service: "web"}, `error: service "web": expected STACK/SERVICE`},
		{containerFilter{node: "n9"}, "error: no node n9; see `kontena node ls`"},
		{containerFilter{stack: "other"}, ""},
	} {
		if got := names(tc.f); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.f, got, tc.want)
		}
	}
	l, err := locate(store, "shop.web-1")
	if err != nil || l.reachable() != nil || l.addr() == "" {
		t.Fatalf("web-1: %+v %v %v", l, err, l.reachable())
	}
	l, _ = locate(store, "shop.web-2")
	var ae *api.Error
	if err := l.reachable(); !errors.As(err, &ae) || ae.Code != api.CodeUnavailable || !strings.Contains(ae.Message, "runs on node n2, which is offline") {
		t.Fatalf("offline node: %v", err)
	}
	if _, err := locate(store, "nope"); !errors.As(err, &ae) || ae.Code != api.CodeNotFound {
		t.Fatalf("unknown: %v", err)
	}
}
