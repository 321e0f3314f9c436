package harness

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// Node is one test host: a container on the grid network.
type Node struct {
	g         *Grid
	name      string
	container string
	ip        string
	index     int
}

const daemonLog = "/var/log/kontena.log"

// Name is the node's hostname (and network alias on the grid).
func (n *Node) Name() string { return n.name }

// IP is the node's fixed grid address.
func (n *Node) IP() string { return n.ip }

// Container is the docker container name (<network>-<name>).
func (n *Node) Container() string { return n.container }

// Exec runs args in the node (docker exec). A non-zero exit code of the
// command is not an error; err is set only when docker could not run it
// (node stopped or paused, executable not found, ...).
func (n *Node) Exec(ctx context.Context, args ...string) (stdout, stderr string, exitCode int, err error) {
	return n.exec(ctx, nil, args...)
}

func (n *Node) exec(ctx context.Context, stdin io.Reader, args ...string) (stdout, stderr string, code int, err error) {
	dargs := []string{"exec"}
	if stdin != nil {
		dargs = append(dargs, "-i")
	}
	dargs = append(append(dargs, n.container), args...)
	stdout, stderr, err = dockerRun(ctx, stdin, dargs...)
	if err == nil {
		return stdout, stderr, 0, nil
	}
	code, isExit := exitCode(err)
	if !isExit || ctx.Err() != nil || dockerFailed(code, stdout, stderr) {
		return stdout, stderr, code, cmdError(dargs, err, stderr)
	}
	return stdout, stderr, code, nil
}

// dockerFailed tells docker's own errors from the command's output.
func dockerFailed(code int, stdout, stderr string) bool {
	for _, s := range []string{"Error response from daemon", "No such container", "Cannot connect to the Docker daemon"} {
		if strings.Contains(stderr, s) {
			return true
		}
	}
	// "executable file not found" and friends (the CLI prints it on stdout)
	return (code == 126 || code == 127) && strings.Contains(stdout+stderr, "OCI runtime exec failed")
}

// run is Exec that turns a non-zero exit code into an error.
func (n *Node) run(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	out, errOut, code, err := n.exec(ctx, stdin, args...)
	if err != nil {
		return out, err
	}
	if code != 0 {
		return out, fmt.Errorf("docker exec %s %s: exit %d: %s", n.container, shortArgs(args), code, strings.TrimSpace(tail(errOut+out, 2000)))
	}
	return out, nil
}

// StartDaemon starts `kontena args...` in the background inside the node,
// appending its stdout and stderr to /var/log/kontena.log.
func (n *Node) StartDaemon(ctx context.Context, args ...string) error {
	return n.StartDaemonEnv(ctx, nil, args...)
}

// StartDaemonEnv is StartDaemon with extra environment variables ("K=V").
func (n *Node) StartDaemonEnv(ctx context.Context, env []string, args ...string) error {
	dargs := []string{"exec", "-d"}
	for _, e := range env {
		dargs = append(dargs, "-e", e)
	}
	// record the pid (sh execs into kontena, keeping it) so KillDaemon kills
	// exactly the daemons started here, not kontena processes of inner containers.
	script := `echo $$ >>/run/kontena-daemon.pids; echo "=== $(date '+%F %T') kontena $*" >>` + daemonLog +
		`; exec kontena "$@" >>` + daemonLog + ` 2>&1`
	dargs = append(dargs, n.container, "sh", "-c", script, "kontena")
	dargs = append(dargs, args...)
	_, err := dockerCmd(ctx, nil, dargs...)
	return err
}

// KillDaemon SIGKILLs the kontena daemons started by StartDaemon and waits
// until they are gone. No daemon running is not an error.
func (n *Node) KillDaemon(ctx context.Context) error {
	const script = `f=/run/kontena-daemon.pids
pids=
for p in $(cat $f 2>/dev/null); do
	[ "$(cat /proc/$p/comm 2>/dev/null)" = kontena ] && pids="$pids $p"
done
: >$f
[ -n "$pids" ] || exit 0
kill -9 $pids
i=0
for p in $pids; do
	while [ -e /proc/$p ]; do
		i=$((i+1)); [ $i -gt 200 ] && { echo "kontena pid $p still there" >&2; exit 1; }
		sleep 0.05
	done
done`
	_, err := n.run(ctx, nil, "sh", "-c", script)
	return err
}

// DaemonLog returns /var/log/kontena.log ("" if there is none). It works on
// stopped nodes too.
func (n *Node) DaemonLog(ctx context.Context) string {
	b, _ := n.ReadFile(ctx, daemonLog)
	return string(b)
}

// ReadFile reads a file from the node's filesystem (docker cp; works when
// the node is stopped).
func (n *Node) ReadFile(ctx context.Context, path string) ([]byte, error) {
	out, err := dockerCmd(ctx, nil, "cp", n.container+":"+path, "-")
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(strings.NewReader(out))
	for {
		h, err := tr.Next()
		if err != nil {
			return nil, fmt.Errorf("harness: reading %s from %s: %w", path, n.name, err)
		}
		if h.Typeflag == tar.TypeReg {
			return io.ReadAll(tr)
		}
	}
}

// CopyIn copies a host file or directory into the node (docker cp).
func (n *Node) CopyIn(ctx context.Context, hostPath, nodePath string) error {
	_, err := dockerCmd(ctx, nil, "cp", hostPath, n.container+":"+nodePath)
	return err
}

// LoadImage copies a host image into the node's own engine:
// docker save image | docker exec -i node docker load.
func (n *Node) LoadImage(ctx context.Context, image string) error {
	save := exec.CommandContext(ctx, "docker", "save", image)
	var saveErr bytes.Buffer
	save.Stderr = &saveErr
	pipe, err := save.StdoutPipe()
	if err != nil {
		return err
	}
	if err := save.Start(); err != nil {
		return fmt.Errorf("docker save %s: %w", image, err)
	}
	_, loadErr := n.run(ctx, pipe, "docker", "load", "-q")
	if loadErr != nil {
		_, _ = io.Copy(io.Discard, pipe)
	}
	if err := save.Wait(); err != nil {
		return fmt.Errorf("docker save %s: %w: %s", image, err, strings.TrimSpace(saveErr.String()))
	}
	return loadErr
}

// Kill SIGKILLs the whole node (docker kill) and waits until it has stopped.
func (n *Node) Kill(ctx context.Context) error {
	if _, err := dockerCmd(ctx, nil, "kill", n.container); err != nil {
		return err
	}
	_, err := dockerCmd(ctx, nil, "wait", n.container)
	return err
}

// Start starts a stopped node again (same address, same filesystem; its init
// restarts the inner dockerd) and waits until it is ready. Daemons are not
// restarted.
func (n *Node) Start(ctx context.Context) error {
	if _, err := dockerCmd(ctx, nil, "start", n.container); err != nil {
		return err
	}
	return n.waitReady(ctx)
}

// Pause freezes every process of the node (docker pause).
func (n *Node) Pause(ctx context.Context) error {
	_, err := dockerCmd(ctx, nil, "pause", n.container)
	return err
}

// Unpause thaws a paused node.
func (n *Node) Unpause(ctx context.Context) error {
	_, err := dockerCmd(ctx, nil, "unpause", n.container)
	return err
}

// Disconnect cuts the node off the grid network (its interface disappears).
func (n *Node) Disconnect(ctx context.Context) error {
	_, err := dockerCmd(ctx, nil, "network", "disconnect", n.g.network, n.container)
	return err
}

// Reconnect attaches the node to the grid again with the same address.
func (n *Node) Reconnect(ctx context.Context) error {
	_, err := dockerCmd(ctx, nil, "network", "connect", "--ip", n.ip, "--alias", n.name, n.g.network, n.container)
	return err
}

func (n *Node) waitReady(ctx context.Context) error {
	const script = `i=0
while [ ! -s ` + readyFile + ` ]; do
	i=$((i+1)); [ $i -gt 1500 ] && { echo "timeout waiting for node init"; exit 0; }
	sleep 0.05
done
cat ` + readyFile
	out, err := n.run(ctx, nil, "sh", "-c", script)
	if err != nil {
		return fmt.Errorf("harness: node %s not ready: %w", n.name, err)
	}
	if s := strings.TrimSpace(out); s != "ok" {
		initLog, _ := n.ReadFile(ctx, "/var/log/node-init.log")
		return fmt.Errorf("harness: node %s not ready: %s\nnode-init.log:\n%s", n.name, s, tail(string(initLog), 2000))
	}
	return nil
}

func (n *Node) dumpLogs(ctx context.Context, t testing.TB) {
	log, err := n.ReadFile(ctx, daemonLog)
	switch {
	case err != nil && strings.Contains(err.Error(), "Could not find the file"):
		t.Logf("harness: node %s (%s): no %s", n.name, n.ip, daemonLog)
	case err != nil:
		t.Logf("harness: node %s (%s): no kontena log (%v)", n.name, n.ip, firstLine(err.Error()))
	default:
		t.Logf("harness: node %s (%s) %s:\n%s", n.name, n.ip, daemonLog, tail(string(log), 64<<10))
	}
	if n.g.withDocker {
		if dl, err := n.ReadFile(ctx, "/var/log/dockerd.log"); err == nil {
			lines := strings.Split(strings.TrimRight(string(dl), "\n"), "\n")
			if len(lines) > 30 {
				lines = lines[len(lines)-30:]
			}
			t.Logf("harness: node %s /var/log/dockerd.log (last %d lines):\n%s", n.name, len(lines), strings.Join(lines, "\n"))
		}
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
