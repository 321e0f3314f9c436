package lb

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The load balancer's own HTTP/1.1 loop. Most of its traffic is plain
// keep-alive requests to routes without sessions or authentication; for
// those, net/http's server and transport cost more than the proxying
// (a goroutine pair per backend connection with channel handoffs, header
// maps parsed and written again on both sides). Here one goroutine per
// client connection reads a request head into a reused buffer, writes it
// on to a pooled backend connection with the forwarding headers added,
// and copies the answer back as it comes, chunked or not.
//
// Whatever the loop does not do itself goes to net/http, between two
// requests, with what was read of the connection: upgrades, Expect,
// chunked request bodies, HTTP/1.0, escaped paths, absolute targets,
// routes with basic auth, sticky sessions or an HTTPS redirect, and the
// load balancer's own answers (ACME challenges, its health URI, 404).

const (
	h1IdleTimeout = 120 * time.Second // a client connection between requests
	h1MaxHead     = 64 << 10          // longer heads go to net/http (it answers 431)
	upMaxIdle     = 256               // idle connections kept per backend
	upIdleFor     = 50 * time.Second  // an idle backend connection older than this is closed
	upFreshFor    = 2 * time.Second   // a request that cannot be repeated reuses only a connection this fresh
	upDialTimeout = 2 * time.Second
)

// errHandOff: the request is for net/http.
var errHandOff = errors.New("lb: hand the connection to net/http")

// h1conn is one client connection served by the loop.
type h1conn struct {
	s      *Server
	c      net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	https  bool
	remote string // the client's IP, for X-Forwarded-For and source balancing
	head   []byte // the current request's head as read
	req    h1req
	out    []byte // the upstream request head being built
	resp   []byte // the backend's answer head as read
	idle   bool   // between requests (shutdown closes it)
	mu     sync.Mutex
}

// h1req is a parsed request head; its slices point into h1conn.head.
type h1req struct {
	method, target, host []byte
	contentLength        int64
	close                bool
	teTrailers           bool
	fields               []field
}

// field is one header line of a head: name and value.
type field struct{ name, value []byte }

var (
	bufReaders sync.Pool
	bufWriters sync.Pool
)

func getReader(r io.Reader) *bufio.Reader {
	if br, ok := bufReaders.Get().(*bufio.Reader); ok {
		br.Reset(r)
		return br
	}
	return bufio.NewReaderSize(r, 8<<10)
}

func getWriter(w io.Writer) *bufio.Writer {
	if bw, ok := bufWriters.Get().(*bufio.Writer); ok {
		bw.Reset(w)
		return bw
	}
	return bufio.NewWriterSize(w, 8<<10)
}

func putReader(br *bufio.Reader) { br.Reset(nil); bufReaders.Put(br) }
func putWriter(bw *bufio.Writer) { bw.Reset(nil); bufWriters.Put(bw) }

// serveH1 runs the loop on c until the client leaves, a request needs
// net/http (then handOff gets the connection), or the server shuts down.
func (s *Server) serveH1(c net.Conn, https bool, handOff func(net.Conn, []byte, *bufio.Reader)) {
	h := &h1conn{s: s, c: c, https: https, remote: clientHost(c.RemoteAddr().String())}
	h.br, h.bw = getReader(c), getWriter(c)
	if !s.conns.add(h) {
		_ = c.Close()
		return
	}
	defer s.conns.remove(h)
	for {
		err := h.serveOne()
		if errors.Is(err, errHandOff) {
			head := append([]byte(nil), h.head...)
			if h.bw.Flush() != nil {
				break
			}
			putWriter(h.bw)
			handOff(c, head, h.br) // the reader goes with the connection
			return
		}
		if err != nil {
			break
		}
	}
	_ = h.bw.Flush()
	_ = c.Close()
	putReader(h.br)
	putWriter(h.bw)
}

// setIdle marks the connection as waiting for a request; false when the
// server is shutting down (the connection should close).
func (h *h1conn) setIdle(idle bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.idle = idle
	return !idle || !h.s.conns.closing()
}

func (h *h1conn) shutdownIdle() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.idle {
		_ = h.c.SetReadDeadline(time.Now())
	}
}

// serveOne reads one request and answers it. A nil error means the
// connection stays open for the next one.
func (h *h1conn) serveOne() error {
	if h.br.Buffered() == 0 {
		// Nothing more pipelined: what is answered goes out now. (No
		// yield before the next read, as before a backend's answer: the
		// client's next request comes late, and a yield here cost the p99
		// a fifth, measured.)
		if h.bw.Buffered() > 0 {
			if err := h.bw.Flush(); err != nil {
				return err
			}
		}
	}
	if !h.setIdle(true) {
		return net.ErrClosed
	}
	_ = h.c.SetReadDeadline(time.Now().Add(h1IdleTimeout))
	err := h.readHead()
	h.setIdle(false)
	if err != nil {
		return err
	}
	if h.req.contentLength > 0 {
		// The idle deadline bounds the head; a body takes what it takes.
		_ = h.c.SetReadDeadline(time.Time{})
	}
	rt, err := h.route()
	if err != nil {
		return err
	}
	keep, err := h.proxy(rt)
	if err != nil {
		return err
	}
	if !keep || h.req.close || h.s.conns.closing() {
		return io.EOF
	}
	return nil
}

// readHead reads the request head into h.head and parses it. A head the
// loop does not handle, or a malformed one (net/http answers it 400), is
// errHandOff; a client that left is its read error.
func (h *h1conn) readHead() error {
	h.head = h.head[:0]
	h.req = h1req{fields: h.req.fields[:0], contentLength: 0}
	for {
		line, err := h.br.ReadSlice('\n')
		h.head = append(h.head, line...)
		if err != nil {
			if len(h.head) == 0 {
				return err // the client left, or stayed idle too long
			}
			return errHandOff // a line longer than the buffer, or a head cut short: net/http decides
		}
		if len(h.head) > h1MaxHead {
			return errHandOff
		}
		if len(line) == 2 && line[0] == '\r' || len(line) == 1 {
			break
		}
		if len(h.head) == len(line) && !h.headBuffered() {
			// The head has begun and the rest is not here yet: it gets
			// HeadTimeout, not the idle timeout (slowloris).
			_ = h.c.SetReadDeadline(time.Now().Add(h.s.cfg.HeadTimeout))
		}
	}
	return h.parseHead()
}

// headBuffered: the rest of the head (after its first line) is in the
// read buffer already, as it is for nearly every request.
func (h *h1conn) headBuffered() bool {
	rest, _ := h.br.Peek(h.br.Buffered())
	return bytes.HasPrefix(rest, []byte("\r\n")) || bytes.Contains(rest, []byte("\r\n\r\n"))
}

// parseHead parses h.head; anything unusual is errHandOff.
func (h *h1conn) parseHead() error {
	rest := h.head
	line, rest, ok := cutLine(rest)
	if !ok {
		return errHandOff
	}
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp1 <= 0 || sp2 <= sp1+1 || string(line[sp2+1:]) != "HTTP/1.1" {
		return errHandOff
	}
	r := &h.req
	r.method, r.target = line[:sp1], line[sp1+1:sp2]
	if !isToken(r.method) || string(r.method) == "CONNECT" || string(r.method) == "PRI" ||
		r.target[0] != '/' || bytes.IndexByte(r.target, '%') >= 0 || bytes.IndexByte(r.target, ' ') >= 0 || !printable(r.target) {
		return errHandOff
	}
	hosts, lengths := 0, 0
	for {
		line, rest, ok = cutLine(rest)
		if !ok {
			return errHandOff
		}
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			return errHandOff
		}
		name, value := line[:colon], bytes.Trim(line[colon+1:], " \t")
		if !printable(value) {
			return errHandOff
		}
		switch {
		case equalFold(name, "Host"):
			r.host = value
			hosts++
		case equalFold(name, "Content-Length"):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || value[0] == '+' {
				return errHandOff
			}
			r.contentLength = n
			lengths++
		case equalFold(name, "Connection"):
			for _, tok := range bytes.Split(value, []byte(",")) {
				tok = bytes.TrimSpace(tok)
				switch {
				case equalFold(tok, "close"):
					r.close = true
				case equalFold(tok, "keep-alive"), len(tok) == 0:
				default:
					return errHandOff // it names other hop-by-hop fields
				}
			}
			continue
		case equalFold(name, "Te"):
			r.teTrailers = bytes.Contains(bytes.ToLower(value), []byte("trailers"))
			continue
		case equalFold(name, "Transfer-Encoding"), equalFold(name, "Upgrade"), equalFold(name, "Expect"),
			equalFold(name, "Http2-Settings"):
			return errHandOff
		case equalFold(name, "Keep-Alive"), equalFold(name, "Proxy-Connection"), equalFold(name, "Proxy-Authorization"),
			equalFold(name, "Trailer"), equalFold(name, "X-Forwarded-For"), equalFold(name, "X-Forwarded-Host"),
			equalFold(name, "X-Forwarded-Proto"), equalFold(name, "Forwarded"):
			continue // hop-by-hop, or set by the load balancer
		}
		r.fields = append(r.fields, field{name: name, value: value})
	}
	if hosts != 1 || len(r.host) == 0 || lengths > 1 {
		return errHandOff
	}
	return nil
}

// cutLine splits b at its first CRLF; a bare LF is not a line here.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 1 || b[i-1] != '\r' {
		return nil, nil, false
	}
	return b[:i-1], b[i+1:], true
}

// route finds the request's route when the loop proxies it itself.
func (h *h1conn) route() (*route, error) {
	path := h.req.target
	if q := bytes.IndexByte(path, '?'); q >= 0 {
		path = path[:q]
	}
	if rt := h.s.table.Load().plainRoute(string(h.req.host), string(path), h.https); rt != nil {
		return rt, nil
	}
	return nil, errHandOff
}

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || bytes.IndexByte([]byte(`"(),/:;<=>?@[\]{}`), c) >= 0 {
			return false
		}
	}
	return true
}

// printable: no control characters other than tab.
func printable(b []byte) bool {
	for _, c := range b {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// equalFold compares an ASCII header name case-insensitively.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c, d := b[i], s[i]
		if c|0x20 != d|0x20 || (c|0x20 < 'a' || c|0x20 > 'z') && c != d {
			return false
		}
	}
	return true
}

// h1conns are the connections the load balancer serves itself (HTTP/1.1
// and HTTP/2), for a graceful shutdown: idle ones close at once, busy ones
// after their answers.
type h1conns struct {
	mu   sync.Mutex
	set  map[tracked]struct{}
	shut atomic.Bool
	wg   sync.WaitGroup
}

// tracked is a connection a shutdown tells to close when idle.
type tracked interface{ shutdownIdle() }

func (cs *h1conns) add(h tracked) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.shut.Load() {
		return false
	}
	if cs.set == nil {
		cs.set = map[tracked]struct{}{}
	}
	cs.set[h] = struct{}{}
	cs.wg.Add(1)
	return true
}

func (cs *h1conns) remove(h tracked) {
	cs.mu.Lock()
	delete(cs.set, h)
	cs.mu.Unlock()
	cs.wg.Done()
}

func (cs *h1conns) closing() bool { return cs.shut.Load() }

// shutdown closes the idle connections and waits for the busy ones until
// done ends.
func (cs *h1conns) shutdown(done <-chan struct{}) {
	cs.mu.Lock()
	cs.shut.Store(true)
	conns := make([]tracked, 0, len(cs.set))
	for h := range cs.set {
		conns = append(conns, h)
	}
	cs.mu.Unlock()
	for _, h := range conns {
		h.shutdownIdle()
	}
	finished := make(chan struct{})
	go func() { cs.wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-done:
	}
}
