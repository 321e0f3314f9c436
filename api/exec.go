package api

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The exec protocol.
//
// `kontena container exec` opens an HTTP/1.1 request to any node:
//
//	POST /v1/containers/<name>/exec?cmd=sh&cmd=-c&cmd=...&stdin=true&tty=true&cols=80&rows=24
//	Connection: Upgrade
//	Upgrade: kontena-exec
//	Authorization: Bearer <token>
//
// Errors found before the session starts (unknown container, node offline,
// not allowed) are ordinary JSON error answers. Otherwise the answer is
// "101 Switching Protocols" and from then on both directions carry frames:
//
//	+--------+----------------------+-----------------+
//	| type 1B| length uint32 BE (4B)| payload (length)|
//	+--------+----------------------+-----------------+
//
// Client to node:
//
//	0 stdin    bytes for the process's stdin; an empty payload closes stdin (EOF)
//	3 resize   cols uint16 BE, rows uint16 BE: the terminal size (only with tty)
//
// Node to client:
//
//	1 stdout   output (with tty: the terminal's output, stdout and stderr together)
//	2 stderr   error output (never with tty)
//	4 exit     exit code int32 BE; the last frame, then the node closes
//	5 error    a UTF-8 message: the session failed (the node closes after it)
//
// A payload is at most MaxFramePayload bytes. A node that does not run the
// container forwards the upgraded connection byte for byte (workers to a
// voter, the voter to the node that runs the container), so frames are only
// read at the two ends.
const (
	ExecUpgrade = "kontena-exec"

	FrameStdin  byte = 0
	FrameStdout byte = 1
	FrameStderr byte = 2
	FrameResize byte = 3
	FrameExit   byte = 4
	FrameError  byte = 5

	MaxFramePayload = 1 << 20
	frameChunk      = 32 << 10
)

// WriteFrame writes one frame in a single Write, so that writers sharing a
// connection under a mutex never interleave.
func WriteFrame(w io.Writer, typ byte, payload []byte) error {
	if len(payload) > MaxFramePayload {
		return fmt.Errorf("exec frame of %d bytes: more than %d", len(payload), MaxFramePayload)
	}
	buf := make([]byte, 5+len(payload))
	buf[0] = typ
	binary.BigEndian.PutUint32(buf[1:5], uint32(len(payload)))
	copy(buf[5:], payload)
	_, err := w.Write(buf)
	return err
}

// ReadFrame reads one frame. io.EOF means the peer closed between frames.
func ReadFrame(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, fmt.Errorf("exec stream cut inside a frame header: %w", err)
		}
		return 0, nil, err
	}
	k := binary.BigEndian.Uint32(hdr[1:5])
	if k > MaxFramePayload {
		return 0, nil, fmt.Errorf("exec frame of %d bytes: more than %d (not a kontena exec stream?)", k, MaxFramePayload)
	}
	payload := make([]byte, k)
	if _, err := io.ReadFull(r, payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, fmt.Errorf("exec stream cut inside a frame: %w", err)
	}
	return hdr[0], payload, nil
}

// ResizePayload encodes a terminal size for a FrameResize.
func ResizePayload(cols, rows uint16) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint16(b[0:2], cols)
	binary.BigEndian.PutUint16(b[2:4], rows)
	return b
}

// ParseResize decodes a FrameResize payload.
func ParseResize(p []byte) (cols, rows uint16, err error) {
	if len(p) != 4 {
		return 0, 0, fmt.Errorf("resize frame of %d bytes, want 4", len(p))
	}
	return binary.BigEndian.Uint16(p[0:2]), binary.BigEndian.Uint16(p[2:4]), nil
}

// ExitPayload encodes an exit code for a FrameExit.
func ExitPayload(code int) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, uint32(int32(code)))
	return b
}

// ParseExit decodes a FrameExit payload.
func ParseExit(p []byte) (int, error) {
	if len(p) != 4 {
		return 0, fmt.Errorf("exit frame of %d bytes, want 4", len(p))
	}
	return int(int32(binary.BigEndian.Uint32(p))), nil
}

// FrameSender writes frames to one connection from several goroutines.
type FrameSender struct {
	mu sync.Mutex
	w  io.Writer
}

// NewFrameSender returns a FrameSender writing to w.
func NewFrameSender(w io.Writer) *FrameSender { return &FrameSender{w: w} }

// Send writes one frame.
func (s *FrameSender) Send(typ byte, payload []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return WriteFrame(s.w, typ, payload)
}

// Writer is an io.Writer whose writes become frames of type typ, split in
// chunks.
func (s *FrameSender) Writer(typ byte) io.Writer { return frameWriter{s: s, typ: typ} }

type frameWriter struct {
	s   *FrameSender
	typ byte
}

func (f frameWriter) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		k := min(len(p)-done, frameChunk)
		if err := f.s.Send(f.typ, p[done:done+k]); err != nil {
			return done, err
		}
		done += k
	}
	return done, nil
}

// ExecOptions is what to run in a container.
type ExecOptions struct {
	Cmd   []string `json:"cmd"`
	Stdin bool     `json:"stdin,omitempty"` // attach stdin
	Tty   bool     `json:"tty,omitempty"`   // allocate a terminal
	Cols  uint16   `json:"cols,omitempty"`  // initial terminal size (tty only)
	Rows  uint16   `json:"rows,omitempty"`
}

// Query encodes the options as URL query values.
func (o ExecOptions) Query() url.Values {
	v := url.Values{"cmd": o.Cmd}
	if o.Stdin {
		v.Set("stdin", "true")
	}
	if o.Tty {
		v.Set("tty", "true")
	}
	if o.Cols > 0 && o.Rows > 0 {
		v.Set("cols", strconv.Itoa(int(o.Cols)))
		v.Set("rows", strconv.Itoa(int(o.Rows)))
	}
	return v
}

// ParseExecQuery is the node's side of Query.
func ParseExecQuery(v url.Values) (ExecOptions, error) {
	o := ExecOptions{Cmd: v["cmd"], Stdin: v.Get("stdin") == "true", Tty: v.Get("tty") == "true"}
	if len(o.Cmd) == 0 || o.Cmd[0] == "" {
		return o, Errorf(CodeInvalid, "exec: no command given (cmd=...)")
	}
	for _, f := range []struct {
		name string
		dst  *uint16
	}{{"cols", &o.Cols}, {"rows", &o.Rows}} {
		if s := v.Get(f.name); s != "" {
			k, err := strconv.ParseUint(s, 10, 16)
			if err != nil {
				return o, Errorf(CodeInvalid, "exec: %s=%q: expected a number up to 65535", f.name, s)
			}
			*f.dst = uint16(k)
		}
	}
	return o, nil
}

// IsExecUpgrade tells whether r asks to switch to the exec protocol.
func IsExecUpgrade(h http.Header) bool {
	return strings.EqualFold(h.Get("Upgrade"), ExecUpgrade) && headerHasToken(h, "Connection", "upgrade")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// SwitchingProtocols is the answer that starts an exec session.
const SwitchingProtocols = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + ExecUpgrade + "\r\n\r\n"

// DialTLS connects to a node ("host:port" or https URL) with HTTP/1.1 only
// (an upgrade cannot ride HTTP/2). The dial and handshake are bounded by
// timeout.
func DialTLS(ctx context.Context, addr string, cfg *tls.Config, timeout time.Duration) (*tls.Conn, error) {
	u, err := url.Parse(BaseURL(addr))
	if err != nil {
		return nil, err
	}
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := &tls.Dialer{NetDialer: Dialer(timeout), Config: cfg}
	c, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	return c.(*tls.Conn), nil
}

// Upgrade sends an upgrade request on conn and reads the answer, within
// timeout (the request may cross up to three nodes and an engine). On
// "101 Switching Protocols" it returns the reader to use for the rest of the
// stream (it may hold bytes already read) with no deadline left on conn. Any
// other answer is returned as resp, whose body reads from conn.
func Upgrade(ctx context.Context, conn net.Conn, method, rawURL string, header http.Header, timeout time.Duration) (*bufio.Reader, *http.Response, error) {
	req, err := http.NewRequest(method, rawURL, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header = header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", ExecUpgrade)
	_ = conn.SetDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := req.Write(conn); err != nil {
		return nil, nil, fmt.Errorf("send exec request: %w", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, fmt.Errorf("read exec answer: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, resp, nil
	}
	if !stop() {
		return nil, nil, ctx.Err()
	}
	_ = conn.SetDeadline(time.Time{})
	return br, resp, nil
}

// ExecSession is a running exec: frames to and from the container's process.
type ExecSession struct {
	conn net.Conn
	r    *bufio.Reader
	send *FrameSender
	stop func() bool
}

// Exec starts cmd in container name, through any node of the grid.
// Errors before the session starts are *Error (not found, offline node, ...)
// or *UnreachableError.
func (c *Client) Exec(ctx context.Context, name string, opts ExecOptions) (*ExecSession, error) {
	tlsCfg := c.http.Transport.(*http.Transport).TLSClientConfig
	path := "/v1/containers/" + url.PathEscape(name) + "/exec?" + opts.Query().Encode()
	hdr := http.Header{"User-Agent": {"kontena-cli"}}
	if c.token != "" {
		hdr.Set("Authorization", "Bearer "+c.token)
	}
	c.mu.Lock()
	start := c.good
	c.mu.Unlock()
	unreach := &UnreachableError{}
	var unavailable error
	for i := range c.addrs {
		k := (start + i) % len(c.addrs)
		conn, err := DialTLS(ctx, c.addrs[k], tlsCfg, 5*time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			unreach.Addrs = append(unreach.Addrs, c.addrs[k])
			unreach.Errs = append(unreach.Errs, err)
			continue
		}
		br, resp, err := Upgrade(ctx, conn, http.MethodPost, c.addrs[k]+path, hdr, 45*time.Second)
		if err != nil {
			conn.Close()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			unreach.Addrs = append(unreach.Addrs, c.addrs[k])
			unreach.Errs = append(unreach.Errs, err)
			continue
		}
		c.mu.Lock()
		c.good = k
		c.mu.Unlock()
		if resp.StatusCode != http.StatusSwitchingProtocols {
			_, err := decode(resp, nil)
			conn.Close()
			// As in send: a node without a leader or voter in sight may
			// be the only one; another may do better.
			if resp.StatusCode == http.StatusServiceUnavailable {
				unavailable = err
				continue
			}
			return nil, err
		}
		s := &ExecSession{conn: conn, r: br, send: NewFrameSender(conn)}
		s.stop = context.AfterFunc(ctx, func() { conn.Close() })
		return s, nil
	}
	if unavailable != nil {
		return nil, unavailable
	}
	return nil, unreach
}

// Stdin sends bytes to the process's stdin.
func (s *ExecSession) Stdin(p []byte) error {
	for len(p) > 0 {
		k := min(len(p), frameChunk)
		if err := s.send.Send(FrameStdin, p[:k]); err != nil {
			return err
		}
		p = p[k:]
	}
	return nil
}

// CloseStdin closes the process's stdin.
func (s *ExecSession) CloseStdin() error { return s.send.Send(FrameStdin, nil) }

// Resize sets the terminal size (tty sessions).
func (s *ExecSession) Resize(cols, rows uint16) error {
	return s.send.Send(FrameResize, ResizePayload(cols, rows))
}

// CopyStdin sends everything src yields, then closes stdin.
func (s *ExecSession) CopyStdin(src io.Reader) error {
	buf := make([]byte, frameChunk)
	for {
		k, err := src.Read(buf)
		if k > 0 {
			if serr := s.Stdin(buf[:k]); serr != nil {
				return serr
			}
		}
		if errors.Is(err, io.EOF) {
			return s.CloseStdin()
		}
		if err != nil {
			return err
		}
	}
}

// Wait copies the process's output until it exits, and returns its exit
// code.
func (s *ExecSession) Wait(stdout, stderr io.Writer) (int, error) {
	for {
		typ, p, err := ReadFrame(s.r)
		if err != nil {
			return -1, Errorf(CodeUnavailable, "exec session ended without an exit code (connection to the grid lost?): %v", err)
		}
		switch typ {
		case FrameStdout:
			if _, err := stdout.Write(p); err != nil {
				return -1, err
			}
		case FrameStderr:
			if _, err := stderr.Write(p); err != nil {
				return -1, err
			}
		case FrameExit:
			return ParseExit(p)
		case FrameError:
			return -1, Errorf(CodeInternal, "exec: %s", p)
		}
	}
}

// Close ends the session (the node closes the process's streams).
func (s *ExecSession) Close() error {
	if s.stop != nil {
		s.stop()
	}
	return s.conn.Close()
}
