package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/api"
)

// toolsStack runs one instance pinned to d3, a worker, so that every
// command below crosses nodes: the CLI talks to d1 (a voter) or d2 (a
// worker that forwards to d1), never to d3.
const toolsStack = `stack: it/tools
version: 1.0.0
services:
  box:
    image: kontena-demo-busybox
    command: sh -c 'echo started on $$KONTENA_NODE_NAME; while true; do sleep 1; done'
    instances: 1
    stop_signal: SIGKILL
    affinity:
      - node==d3
    environment:
      SECRET_TOKEN: s3cr3t-value
`

// TestExec covers the commands that reach containers on other nodes:
// container ls/inspect/logs/exec/stats and service exec/stats, through a
// voter and through a forwarding worker, and what happens when the
// container's node goes offline.
func TestExec(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	tg := newDockerGrid(ctx, t, "ex", "d1", "d2", "d3")
	tg.start(ctx, nil, nil)
	file := filepath.Join(t.TempDir(), "kontena.yml")
	must(t, os.WriteFile(file, []byte(toolsStack), 0o644))
	tg.mustCLI(ctx, "stack", "install", file, "--timeout", "3m")
	if cs := containers(ctx, t, tg.nodes["d3"]); len(cs) != 1 {
		t.Fatalf("d3 runs %v, want tools.box-1", cs)
	}

	// The worker's CLI: a config that knows only d2.
	workerCfg := tg.insideConfig(t, tg.nodes["d2"].IP()+":9700")
	viaWorker := func(args ...string) (string, string, int) {
		return runCLI(ctx, []string{"KONTENA_CONFIG=" + workerCfg}, args...)
	}
	viaVoter := func(args ...string) (string, string, int) { return tg.cli(ctx, args...) }
	paths := []struct {
		name string
		cli  func(args ...string) (string, string, int)
	}{{"voter d1", viaVoter}, {"worker d2", viaWorker}}

	t.Run("container ls -o json", func(t *testing.T) {
		out, errOut, code := viaWorker("container", "ls", "-o", "json")
		var list []api.ContainerInfo
		if code != 0 || json.Unmarshal([]byte(out), &list) != nil {
			t.Fatalf("exit %d: %s %s", code, out, errOut)
		}
		if len(list) != 1 || list[0].Name != "tools.box-1" || list[0].Node != "d3" || list[0].State != "running" ||
			list[0].ContainerID == "" || list[0].Image != demoImage || list[0].Service != "tools/box" {
			t.Fatalf("container ls: %+v", list)
		}
		table, _, _ := viaWorker("container", "ls")
		if !regexpLine(table, `tools\.box-1\s+d3\s+running\s+`) {
			t.Fatalf("container ls table:\n%s", table)
		}
	})

	t.Run("exec echo and exit codes, through a voter and a worker", func(t *testing.T) {
		for _, p := range paths {
			var took []time.Duration
			for range 5 {
				start := time.Now()
				out, errOut, code := p.cli("container", "exec", "tools.box-1", "--", "sh", "-c", "echo hello from $KONTENA_NODE_NAME")
				took = append(took, time.Since(start))
				if code != 0 || out != "hello from d3\n" {
					t.Fatalf("%s: exec echo: exit %d stdout %q stderr %q", p.name, code, out, errOut)
				}
			}
			slices.Sort(took)
			t.Logf("MEASURED `kontena container exec ... echo` (whole CLI run) via %s to d3: median %s, min %s, max %s",
				p.name, took[2].Round(time.Millisecond), took[0].Round(time.Millisecond), took[4].Round(time.Millisecond))
			out, errOut, code := p.cli("container", "exec", "tools.box-1", "--", "sh", "-c", "echo out; echo oops >&2; exit 3")
			if code != 3 || out != "out\n" || errOut != "oops\n" {
				t.Fatalf("%s: exit 3: got exit %d stdout %q stderr %q", p.name, code, out, errOut)
			}
		}
		// The top-level alias, and the command line of a CLI on the worker
		// itself.
		out, errOut, code := viaWorker("exec", "tools.box-1", "--", "sh", "-c", "exit 0")
		if code != 0 {
			t.Fatalf("kontena exec: exit %d %s %s", code, out, errOut)
		}
		d2 := tg.nodes["d2"]
		must(t, d2.CopyIn(ctx, workerCfg, "/root/worker-cli.json"))
		out, errOut, code, err := d2.Exec(ctx, "kontena", "--config", "/root/worker-cli.json", "service", "exec", "tools/box", "--", "sh", "-c", "echo $KONTENA_NODE_NAME")
		must(t, err)
		if code != 0 || out != "d3\n" {
			t.Fatalf("CLI inside d2: exit %d stdout %q stderr %q", code, out, errOut)
		}
	})

	t.Run("exec latency through the forwarding worker", func(t *testing.T) {
		for _, p := range []struct{ name, addr string }{{"voter d1", tg.nodes["d1"].IP()}, {"worker d2", tg.nodes["d2"].IP()}} {
			cl := tg.clientFor(t, p.addr)
			var setup []time.Duration
			for range 9 {
				start := time.Now()
				sess, err := cl.Exec(ctx, "tools.box-1", api.ExecOptions{Cmd: []string{"echo"}})
				must(t, err)
				code, err := sess.Wait(io.Discard, io.Discard)
				sess.Close()
				if err != nil || code != 0 {
					t.Fatalf("exec echo: %d %v", code, err)
				}
				setup = append(setup, time.Since(start))
			}
			// Keystroke latency inside an established session: a line to
			// cat and back.
			sess, err := cl.Exec(ctx, "tools.box-1", api.ExecOptions{Cmd: []string{"cat"}, Stdin: true})
			must(t, err)
			pr, pw := io.Pipe()
			go func() { _, _ = sess.Wait(pw, io.Discard); pw.Close() }()
			rd := bufio.NewReader(pr)
			var echo []time.Duration
			for i := range 21 {
				start := time.Now()
				must(t, sess.Stdin([]byte(fmt.Sprintf("line %d\n", i))))
				l, err := rd.ReadString('\n')
				if err != nil || l != fmt.Sprintf("line %d\n", i) {
					t.Fatalf("cat echo %q %v", l, err)
				}
				echo = append(echo, time.Since(start))
			}
			must(t, sess.CloseStdin())
			sess.Close()
			slices.Sort(setup)
			slices.Sort(echo)
			var stats []time.Duration
			for range 3 {
				start := time.Now()
				rows, err := cl.ContainerStats(ctx, api.ContainerFilter{})
				if err != nil || len(rows) != 1 || rows[0].Error != "" {
					t.Fatalf("stats: %+v %v", rows, err)
				}
				stats = append(stats, time.Since(start))
			}
			t.Logf("MEASURED stats call (API client; two one-shot samples on d3, paced by the engine) via %s: %v", p.name, stats)
			t.Logf("MEASURED exec via %s to d3: whole `exec echo` session median %s (min %s, max %s, n=9); line echo in an open session median %s (max %s, n=21)",
				p.name, setup[4].Round(100*time.Microsecond), setup[0].Round(100*time.Microsecond), setup[8].Round(100*time.Microsecond),
				echo[10].Round(10*time.Microsecond), echo[20].Round(10*time.Microsecond))
		}
	})

	t.Run("exec -i with stdin piped", func(t *testing.T) {
		run := func(stdin []byte, args ...string) ([]byte, string, int) {
			cmd := exec.CommandContext(ctx, kontenaBin, args...)
			cmd.Env = append(os.Environ(), "KONTENA_CONFIG="+workerCfg)
			cmd.Stdin = bytes.NewReader(stdin)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			return out.Bytes(), errb.String(), code
		}
		out, errOut, code := run([]byte("hi\n"), "service", "exec", "-i", "tools/box", "--", "cat")
		if code != 0 || string(out) != "hi\n" {
			t.Fatalf("echo hi | service exec -i cat: exit %d stdout %q stderr %q", code, out, errOut)
		}
		// Without -i the command gets no input at all.
		out, _, code = run([]byte("ignored\n"), "service", "exec", "tools/box", "--", "cat")
		if code != 0 || len(out) != 0 {
			t.Fatalf("cat without -i: exit %d stdout %q", code, out)
		}
		big := bytes.Repeat([]byte("0123456789abcdef"), 4<<20/16) // 4 MiB, there and back
		start := time.Now()
		out, errOut, code = run(big, "container", "exec", "-i", "tools.box-1", "--", "cat")
		took := time.Since(start)
		if code != 0 || sha256.Sum256(out) != sha256.Sum256(big) {
			t.Fatalf("4 MiB through cat: exit %d, %d bytes back, stderr %q", code, len(out), errOut)
		}
		t.Logf("MEASURED 4 MiB stdin→cat→stdout via worker d2 → d1 → d3: %s (%.1f MiB/s each way)", took.Round(time.Millisecond), 4/took.Seconds())
	})

	t.Run("exec -t allocates a terminal", func(t *testing.T) {
		// stdin is not a terminal here: -t still gives the command one.
		out, errOut, code := viaWorker("container", "exec", "-t", "tools.box-1", "--", "busybox", "tty")
		if code != 0 || !strings.HasPrefix(out, "/dev/pts/") || !strings.HasSuffix(out, "\r\n") {
			t.Fatalf("exec -t tty: exit %d stdout %q stderr %q", code, out, errOut)
		}
		out, _, _ = viaWorker("container", "exec", "tools.box-1", "--", "busybox", "tty")
		if !strings.Contains(out, "not a tty") {
			t.Fatalf("exec without -t: tty says %q", out)
		}
		// A real local terminal (script(1) gives the CLI a pty): raw mode,
		// the terminal size travels, keys reach the shell, its exit code
		// comes back.
		if _, err := exec.LookPath("script"); err != nil {
			t.Skip("no script(1) on this host")
		}
		cmd := exec.CommandContext(ctx, "script", "-qec",
			"stty cols 111 rows 33; "+kontenaBin+" --config "+workerCfg+" container exec -it tools.box-1 -- sh", "/dev/null")
		cmd.Stdin = strings.NewReader("busybox stty size; echo $((6*7))\nexit 9\n")
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		err := cmd.Run()
		code = 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != 9 || !strings.Contains(buf.String(), "33 111") || !strings.Contains(buf.String(), "42") {
			t.Fatalf("exec -it under script: exit %d (%v), output %q", code, err, buf.String())
		}
	})

	t.Run("container logs --follow sees new lines", func(t *testing.T) {
		for _, p := range []struct{ name, cfg string }{{"voter d1", tg.cfg}, {"worker d2", workerCfg}} {
			fctx, fcancel := context.WithCancel(ctx)
			cmd := exec.CommandContext(fctx, kontenaBin, "container", "logs", "tools.box-1", "--follow", "--tail", "0")
			cmd.Env = append(os.Environ(), "KONTENA_CONFIG="+p.cfg)
			stdout, err := cmd.StdoutPipe()
			must(t, err)
			var errb bytes.Buffer
			cmd.Stderr = &errb
			must(t, cmd.Start())
			lines := make(chan string, 16)
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			// Lines are written by PID 1 of the container, so they are in
			// its log; keep writing until the stream shows one (it may take a
			// moment to be established).
			marker := "marker-" + strings.ReplaceAll(p.name, " ", "-")
			deadline := time.After(60 * time.Second)
			tick := time.NewTicker(time.Second)
			var written time.Time
			seen := false
			for !seen {
				select {
				case <-tick.C:
					written = time.Now()
					if _, errOut, code := tg.cli(ctx, "container", "exec", "tools.box-1", "--", "sh", "-c", "echo "+marker+" > /proc/1/fd/1"); code != 0 {
						t.Fatalf("write a log line: exit %d %s", code, errOut)
					}
				case l, ok := <-lines:
					if !ok {
						t.Fatalf("%s: logs -f ended: %s", p.name, errb.String())
					}
					if strings.HasSuffix(l, " "+marker) {
						seen = true
						t.Logf("MEASURED log line seen by `container logs -f` via %s %s after the exec that wrote it started", p.name, time.Since(written).Round(time.Millisecond))
					}
				case <-deadline:
					t.Fatalf("%s: no %s line in 60 s; stderr %s", p.name, marker, errb.String())
				}
			}
			tick.Stop()
			fcancel()
			_ = cmd.Wait()
		}
		out, errOut, code := viaWorker("container", "logs", "tools.box-1", "--tail", "500")
		if code != 0 || !strings.Contains(out, "started on d3") {
			t.Fatalf("container logs: exit %d %q %s", code, out, errOut)
		}
	})

	t.Run("inspect and stats come from the right node", func(t *testing.T) {
		out, errOut, code := viaWorker("container", "inspect", "tools.box-1", "-o", "json")
		var d api.ContainerDetails
		if code != 0 || json.Unmarshal([]byte(out), &d) != nil {
			t.Fatalf("inspect: exit %d %s %s", code, out, errOut)
		}
		if d.Node != "d3" || d.State != "running" || d.Name != "tools.box-1" || !slices.Contains(d.EnvNames, "SECRET_TOKEN") ||
			d.Labels["io.kontena.managed"] != "true" || len(d.Networks) == 0 {
			t.Fatalf("inspect: %+v", d)
		}
		table, _, _ := viaWorker("container", "inspect", "tools.box-1")
		for _, o := range []string{out, table} {
			if strings.Contains(o, "s3cr3t-value") {
				t.Fatal("inspect shows an environment value")
			}
		}
		if !regexpLine(table, `node:\s+d3`) || !regexpLine(table, `state:\s+running`) {
			t.Fatalf("inspect table:\n%s", table)
		}
		for _, p := range paths {
			start := time.Now()
			out, errOut, code := p.cli("stats", "-o", "json")
			took := time.Since(start)
			var rows []api.ContainerStats
			if code != 0 || json.Unmarshal([]byte(out), &rows) != nil {
				t.Fatalf("%s: stats: exit %d %s %s", p.name, code, out, errOut)
			}
			if len(rows) != 1 || rows[0].Name != "tools.box-1" || rows[0].Node != "d3" || rows[0].Error != "" || rows[0].MemoryUsage == 0 || rows[0].PIDs == 0 {
				t.Fatalf("%s: stats: %+v", p.name, rows)
			}
			t.Logf("MEASURED `kontena stats` via %s: %s (memory %d B, cpu %.2f%%)", p.name, took.Round(time.Millisecond), rows[0].MemoryUsage, rows[0].CPUPercent)
		}
		table, _, code = viaWorker("service", "stats", "tools/box")
		if code != 0 || !regexpLine(table, `tools\.box-1\s+d3\s+\d+\.\d+%`) {
			t.Fatalf("service stats: exit %d\n%s", code, table)
		}
	})

	t.Run("unknown container", func(t *testing.T) {
		for _, args := range [][]string{
			{"container", "exec", "tools.box-9", "--", "true"},
			{"container", "inspect", "tools.box-9"},
			{"container", "logs", "tools.box-9"},
			{"service", "exec", "tools/box", "--instance", "9", "--", "true"},
		} {
			_, errOut, code := viaWorker(args...)
			if code != 5 || !strings.Contains(errOut, "no container tools.box-9; see `kontena container ls`") {
				t.Fatalf("%v: exit %d %s", args, code, errOut)
			}
		}
	})

	t.Run("container on an offline node", func(t *testing.T) {
		d3 := tg.nodes["d3"]
		must(t, d3.Kill(ctx))
		tg.waitNode(ctx, "d3", "offline", 60*time.Second)
		for _, args := range [][]string{
			{"container", "exec", "tools.box-1", "--", "true"},
			{"container", "inspect", "tools.box-1"},
			{"container", "logs", "tools.box-1"},
		} {
			_, errOut, code := viaWorker(args...)
			if code != 4 || !strings.Contains(errOut, "runs on node d3, which is offline") {
				t.Fatalf("%v: exit %d %s", args, code, errOut)
			}
		}
		// stats still answers, with an error row for the unreachable node.
		out, errOut, code := viaWorker("stats", "-o", "json")
		var rows []api.ContainerStats
		if code != 0 || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 1 || !strings.Contains(rows[0].Error, "offline") {
			t.Fatalf("stats with d3 offline: exit %d %s %s", code, out, errOut)
		}
		table, _, _ := viaWorker("stats")
		if !strings.Contains(table, "which is offline") {
			t.Fatalf("stats table:\n%s", table)
		}
	})
}
