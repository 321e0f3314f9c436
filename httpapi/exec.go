package httpapi

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/pkg/stdcopy"

	"github.com/kontena-ng/kontena/agent/engine"
	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

// Exec sessions (see the protocol in api/exec.go) take this path:
//
//	CLI ──upgrade, token──▶ entry node (the admission path, like every route)
//	  worker: splices the connection to a live voter (it has no state)
//	  voter:  authenticates the token (admins only), finds the instance's node in
//	          the state; runs the exec itself if the container is local, else
//	          splices the connection to the node's internal endpoint with its
//	          own certificate (the user's token does not travel further)
//	  node:   /v1/internal/containers/<name>/exec (a voter's certificate, by the
//	          state or the worker's network map):
//	          Docker exec create + attach, then frames ⇄ the process
//
// A node in the middle never parses frames: once both upgrades are answered
// it copies bytes both ways and closes both sides when either ends, or when
// the session has been idle for execIdleTimeout (see limits.go).

// Upgrade answers must come within these bounds.
const (
	execDialTimeout    = 3 * time.Second
	execUpgradeTimeout = 40 * time.Second
)

// serveExec is the user-facing exec endpoint. The admission path has
// checked the token (admins) on a caught-up voter; this finds the
// container's node and runs the session here or splices it there.
func (n *Server) serveExec(w http.ResponseWriter, r *http.Request, p *principal) error {
	if !api.IsExecUpgrade(r.Header) {
		return api.Errorf(api.CodeInvalid, "exec needs an HTTP/1.1 upgrade to %q (use `kontena container exec`)", api.ExecUpgrade)
	}
	rn := n.voter()
	if rn == nil {
		return api.Errorf(api.CodeUnavailable, "this node is not a voter")
	}
	opts, err := api.ParseExecQuery(r.URL.Query())
	if err != nil {
		return err
	}
	l, err := locateLive(rn.Store(), r.PathValue("name"))
	if err != nil {
		return err
	}
	// Every exec is on the record before it starts; the command line may
	// hold secrets: only its program is recorded and logged.
	note := &fsm.AuditNote{Action: "container.exec", Resource: "container/" + l.name, Result: "ok: " + opts.Cmd[0]}
	if _, _, err := n.apply(r.Context(), note, auditOf(r, p)); err != nil {
		return fmt.Errorf("exec refused: it could not be put in the audit log: %w", err)
	}
	n.log.Info("exec session", "user", p.User, "source", sourceIP(r), "container", l.name, "node", l.node.Name,
		"program", opts.Cmd[0], "tty", opts.Tty, "stdin", opts.Stdin)
	if l.node.ID == n.id.ID {
		n.execLocal(w, r)
		return nil
	}
	path := "/v1/internal/containers/" + url.PathEscape(l.name) + "/exec?" + r.URL.RawQuery
	n.proxyUpgrade(w, r, []string{l.addr()}, path, false)
	return nil
}

// serveContainerExec is the internal endpoint: it runs the exec on this
// node's engine. Only a voter (by the state, see the route table) calls it,
// after checking the user's token.
func (n *Server) serveContainerExec(w http.ResponseWriter, r *http.Request) {
	if !api.IsExecUpgrade(r.Header) {
		writeErr(w, api.Errorf(api.CodeInvalid, "exec needs an HTTP/1.1 upgrade to %q", api.ExecUpgrade))
		return
	}
	n.execLocal(w, r)
}

// execLocal starts the process in a container of this node, answers the
// upgrade and runs the session until the process ends or the client leaves.
func (n *Server) execLocal(w http.ResponseWriter, r *http.Request) {
	opts, err := api.ParseExecQuery(r.URL.Query())
	if err != nil {
		writeErr(w, err)
		return
	}
	name := r.PathValue("name")
	// The request's context lives as long as this handler, so for the
	// whole session even after the hijack.
	ctx := r.Context()
	ins, err := n.managedContainer(ctx, name)
	if err != nil {
		writeErr(w, err)
		return
	}
	if ins.State == nil || !ins.State.Running {
		state := "unknown"
		if ins.State != nil {
			state = string(ins.State.Status)
		}
		writeErr(w, api.Errorf(api.CodeConflict, "container %s is not running (%s); see `kontena container ls`", name, state))
		return
	}
	var size *[2]uint
	if opts.Tty && opts.Cols > 0 && opts.Rows > 0 {
		size = &[2]uint{uint(opts.Rows), uint(opts.Cols)}
	}
	ex, err := n.eng.CreateExec(ctx, ins.ID, engine.ExecOptions{Cmd: opts.Cmd, Tty: opts.Tty, Stdin: opts.Stdin, Size: size})
	if err != nil {
		writeErr(w, api.Errorf(api.CodeInternal, "exec in %s on node %s: %v", name, n.id.Name, err))
		return
	}
	if err := ex.Start(ctx); err != nil {
		writeErr(w, api.Errorf(api.CodeInternal, "start exec in %s on node %s: %v", name, n.id.Name, err))
		return
	}
	defer ex.Close()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		writeErr(w, api.Errorf(api.CodeInternal, "exec: cannot take over the connection: %v", err))
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, api.SwitchingProtocols); err != nil {
		return
	}
	// Engines before API 1.42 ignore the size given at creation: set it
	// once the process runs, as the docker CLI does, and before any input
	// reaches it.
	ex.InitSize(ctx)
	start := time.Now()
	runExecSession(brw.Reader, conn, execProcess{
		output:     ex.Output(),
		tty:        opts.Tty,
		stdin:      ex.Stdin(),
		closeStdin: ex.CloseStdin,
		resize: func(cols, rows uint16) error {
			return ex.Resize(ctx, uint(cols), uint(rows))
		},
		exitCode: func() (int, error) { return ex.ExitCode(ctx) },
		close:    ex.Close,
	}, execIdleTimeout)
	n.log.Debug("exec session ended", "container", name, "took", time.Since(start).Round(time.Millisecond))
}

// execProcess is a started exec as the session sees it (Docker in
// production, pipes in tests).
type execProcess struct {
	output     io.Reader // Docker's multiplexed stream, or the raw terminal with tty
	tty        bool
	stdin      io.Writer
	closeStdin func() error
	resize     func(cols, rows uint16) error
	exitCode   func() (int, error)
	close      func() // ends the streams (the client left)
}

// runExecSession moves frames between the client (in, out) and the
// process until the process's output ends, then sends its exit code.
func runExecSession(in io.Reader, out io.Writer, p execProcess, idleFor time.Duration) {
	send := api.NewFrameSender(out)
	left := make(chan struct{}) // closed before the streams are, so the output loop knows why it ended
	// No input and no output for idleFor ends the session: the
	// client learns why in an error frame (which a client that stopped
	// reading cannot hold up: it gets a write deadline), then the process's
	// streams end as when the client leaves.
	idle := newIdleWatch(idleFor, func() {
		if d, ok := out.(interface{ SetWriteDeadline(time.Time) error }); ok {
			_ = d.SetWriteDeadline(time.Now().Add(10 * time.Second))
		}
		_ = send.Send(api.FrameError, []byte(fmt.Sprintf("exec session closed: no input or output for %s", idleFor)))
		p.close()
	})
	defer idle.stop()
	go func() {
		for {
			typ, payload, err := api.ReadFrame(in)
			if err != nil {
				close(left)
				p.close() // the client left: end the process's streams
				return
			}
			idle.touch()
			switch typ {
			case api.FrameStdin:
				if len(payload) == 0 {
					_ = p.closeStdin()
					continue
				}
				_, _ = p.stdin.Write(payload) // a process that closed its stdin drops input, like a pipe
			case api.FrameResize:
				if cols, rows, err := api.ParseResize(payload); err == nil && p.tty && cols > 0 && rows > 0 {
					_ = p.resize(cols, rows)
				}
			}
		}
	}()
	var err error
	if p.tty {
		_, err = io.Copy(idle.writer(send.Writer(api.FrameStdout)), p.output)
	} else {
		_, err = stdcopy.StdCopy(idle.writer(send.Writer(api.FrameStdout)), idle.writer(send.Writer(api.FrameStderr)), p.output)
	}
	select {
	case <-left:
		return
	default:
	}
	if idle.fired.Load() {
		return // the error frame is sent
	}
	if err != nil {
		_ = send.Send(api.FrameError, []byte("reading the process's output: "+err.Error()))
		return
	}
	code, err := p.exitCode()
	if err != nil {
		_ = send.Send(api.FrameError, []byte(err.Error()))
		return
	}
	_ = send.Send(api.FrameExit, api.ExitPayload(code))
}

// proxyUpgrade forwards an upgrade request to the first target that can
// be dialled, with this node's certificate, and once the target switched
// protocols splices the two connections. keepToken forwards the caller's
// bearer token (to a voter that must check it); the hop to the node that
// runs the container goes without it.
func (n *Server) proxyUpgrade(w http.ResponseWriter, r *http.Request, targets []string, path string, keepToken bool) {
	hops, _ := strconv.Atoi(r.Header.Get(api.HeaderHops))
	if hops >= 3 {
		writeErr(w, api.Errorf(api.CodeUnavailable, "exec forwarded too many times (leadership is changing); retry"))
		return
	}
	// The answer may take longer than the server's read timeout, whose
	// expiry would cancel r.Context(). The hijack clears the deadlines.
	extendDeadline(w, execUpgradeTimeout+execDialTimeout+5*time.Second)
	if len(targets) == 0 {
		writeErr(w, api.Errorf(api.CodeUnavailable, "this worker cannot see any voter through gossip"))
		return
	}
	hdr := r.Header.Clone()
	hdr.Set(api.HeaderHops, strconv.Itoa(hops+1))
	hdr.Set(api.HeaderForwardedBy, n.id.ID)
	hdr.Set(api.HeaderSourceIP, sourceIP(r))
	if !keepToken {
		hdr.Del("Authorization")
	}
	var lastErr error
	for _, t := range targets {
		backend, err := api.DialTLS(r.Context(), t, n.clientTLS, execDialTimeout)
		if err != nil {
			lastErr = err
			continue
		}
		br, resp, err := api.Upgrade(r.Context(), backend, r.Method, api.BaseURL(t)+path, hdr, execUpgradeTimeout-time.Duration(hops)*5*time.Second)
		if err != nil {
			backend.Close()
			writeErr(w, api.Errorf(api.CodeUnavailable, "node %s did not start the exec session: %v", t, err))
			return
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			for k, v := range resp.Header {
				w.Header()[k] = v
			}
			w.WriteHeader(resp.StatusCode)
			_, _ = io.Copy(w, io.LimitReader(resp.Body, 1<<20))
			backend.Close()
			return
		}
		client, cbrw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			backend.Close()
			writeErr(w, api.Errorf(api.CodeInternal, "exec: cannot take over the connection: %v", err))
			return
		}
		_ = client.SetDeadline(time.Time{})
		if _, err := io.WriteString(client, api.SwitchingProtocols); err != nil {
			client.Close()
			backend.Close()
			return
		}
		splice(client, cbrw.Reader, backend, br, execIdleTimeout)
		return
	}
	writeErr(w, api.Errorf(api.CodeUnavailable, "could not reach %s: %v", strings.Join(targets, ", "), lastErr))
}

// splice copies a⇄b (reading through ar and br, which may hold buffered
// bytes) until either side ends, then closes both. No byte either way for
// spliceIdleTimeout closes both too: the node that runs the process ends
// an idle session a little earlier and says why in a frame, so this only
// catches a hop whose other end vanished (or a client that stopped
// reading, blocking a write here).
func splice(a net.Conn, ar io.Reader, b net.Conn, br io.Reader, idleFor time.Duration) {
	done := make(chan struct{}, 2)
	idle := newIdleWatch(spliceIdle(idleFor), func() {
		a.Close()
		b.Close()
	})
	defer idle.stop()
	cp := func(dst net.Conn, src io.Reader) {
		_, _ = io.Copy(idle.writer(dst), src)
		done <- struct{}{}
	}
	go cp(b, ar)
	go cp(a, br)
	<-done
	a.Close()
	b.Close()
	<-done
}

// voterTargets are the API addresses of the live voters gossip knows.
func (n *Server) voterTargets() []string {
	var targets []string
	for _, m := range n.gossip.Members() {
		if m.Meta.Role == fsm.RoleVoter && m.ID != n.id.ID {
			targets = append(targets, m.APIAddr())
		}
	}
	slices.Sort(targets)
	return targets
}
