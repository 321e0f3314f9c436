package lb

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// The loop's side towards the backends: pooled keep-alive connections,
// one request at a time on each, and the answer copied back as it comes.

// upConn is a connection to a backend.
type upConn struct {
	c        net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	since    time.Time // when it last went idle
	reused   bool
	deadline bool // a read deadline is set (timeout server)
}

func (u *upConn) close() {
	_ = u.c.Close()
	putReader(u.br)
	putWriter(u.bw)
}

// idleConns are a backend's idle connections, newest last.
type idleConns struct {
	mu     sync.Mutex
	conns  []*upConn
	closed bool
}

// get is the newest idle connection; with fresh, only one idle for less
// than upFreshFor (a backend may close an idle connection just as a
// request that cannot be repeated goes out on it).
func (ic *idleConns) get(now time.Time, fresh bool) *upConn {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	for len(ic.conns) > 0 {
		u := ic.conns[len(ic.conns)-1]
		age := now.Sub(u.since)
		if fresh && age > upFreshFor {
			return nil
		}
		ic.conns = ic.conns[:len(ic.conns)-1]
		if age <= upIdleFor {
			return u
		}
		u.close()
	}
	return nil
}

func (ic *idleConns) put(u *upConn, now time.Time) {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	if ic.closed || len(ic.conns) >= upMaxIdle {
		u.close()
		return
	}
	u.since, u.reused = now, true
	ic.conns = append(ic.conns, u)
}

// closeAll closes the idle connections of a backend that left; busy ones
// close when their request ends.
func (ic *idleConns) closeAll() {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	ic.closed = true
	for _, u := range ic.conns {
		u.close()
	}
	ic.conns = nil
}

var upDialer = &net.Dialer{Timeout: upDialTimeout, KeepAlive: 30 * time.Second}

// upstream is a connection to b: an idle one unless fresh, else a new one.
func (s *Server) upstreamConn(b *backend, replayable, fresh bool) (*upConn, error) {
	if !fresh {
		if u := b.idle.get(time.Now(), !replayable); u != nil {
			return u, nil
		}
	}
	c, err := upDialer.DialContext(s.ctx, "tcp", b.addr)
	if err != nil {
		return nil, err
	}
	return &upConn{c: c, br: getReader(c), bw: getWriter(c)}, nil
}

// awaitAnswer lets the other connections' work run before a backend's
// answer is read: the backend needs a moment, and a read that comes too
// early is a syscall for nothing (EAGAIN) before the poller's wait.
// Yielding puts this goroutine behind the ones ready now, so under load
// the answer is there when it reads (the syscalls per request went from
// HAProxy's plus one to HAProxy's); idle, it costs a few hundred ns.
func awaitAnswer() { runtime.Gosched() }

// exchangeErr says how far a request got when it failed.
type exchangeErr struct {
	err      error
	client   bool // reading the request from the client failed
	bodyLeft bool // the client's request body was not all read
	sent     bool // part of the answer went to the client
	empty    bool // the backend answered nothing at all
}

func (e *exchangeErr) Error() string { return e.err.Error() }
func (e *exchangeErr) Unwrap() error { return e.err }

// proxy sends the request to a backend of rt and its answer to the
// client; keep says the client connection can take another request.
func (h *h1conn) proxy(rt *route) (keep bool, err error) {
	r := &h.req
	replayable := r.contentLength == 0 && idempotent(r.method)
	a := attempt{route: rt, client: h.remote}
	b := rt.pool.wait(h.s.ctx, a.client, "")
	if b == nil {
		return h.answer(http.StatusServiceUnavailable, "no instance of "+rt.svc.Name+" can answer", r.contentLength == 0)
	}
	h.buildHead(rt)
	a.last, a.tried = b, []*backend{b}
	keep = false
	_, err = h.s.tryBackends(&a, replayable, func(b *backend, u *upConn) (bool, bool, error) {
		var err error
		keep, err = h.exchange(rt, b, u)
		var xe *exchangeErr
		switch {
		case err == nil:
			return false, false, nil
		case !errors.As(err, &xe):
			return false, false, err
		case xe.sent:
			b.failed.Add(1)
		}
		return xe.empty, xe.client || xe.sent, err
	})
	if err == nil {
		return keep, nil
	}
	var xe *exchangeErr
	if !errors.As(err, &xe) { // no connection to any backend: the body was not read
		return h.answerErr(err, true)
	}
	if xe.client || xe.sent {
		return false, err
	}
	return h.answerErr(err, xe.bodyLeft)
}

func idempotent(method []byte) bool {
	switch string(method) {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	return false
}

// buildHead writes the upstream request head into h.out: the client's
// without hop-by-hop fields, the path stripped of the virtual path, the
// forwarding fields and the service's custom request headers.
func (h *h1conn) buildHead(rt *route) {
	r, svc := &h.req, &rt.svc
	o := append(h.out[:0], r.method...)
	o = append(o, ' ')
	if svc.VirtualPath != "" && !svc.KeepVirtualPath {
		path, query := r.target, []byte(nil)
		if q := bytes.IndexByte(path, '?'); q >= 0 {
			path, query = path[:q], path[q:]
		}
		o = append(o, stripPath(string(path), svc.VirtualPath)...)
		o = append(o, query...)
	} else {
		o = append(o, r.target...)
	}
	o = append(o, " HTTP/1.1\r\n"...)
	for _, f := range r.fields {
		if !replacedBy(svc.Custom.SetRequestHeaders, f.name) {
			o = appendField(o, f.name, f.value)
		}
	}
	if h.remote != "" {
		o = appendField(o, []byte("X-Forwarded-For"), []byte(h.remote))
	}
	o = appendField(o, []byte("X-Forwarded-Host"), r.host)
	proto := "http"
	if h.https {
		proto = "https"
	}
	o = appendField(o, []byte("X-Forwarded-Proto"), []byte(proto))
	if r.teTrailers {
		o = append(o, "Te: trailers\r\n"...)
	}
	o = appendCustom(o, svc.Custom.SetRequestHeaders)
	h.out = append(o, "\r\n"...)
}

func appendField(o, name, value []byte) []byte {
	o = append(o, name...)
	o = append(o, ": "...)
	o = append(o, value...)
	return append(o, "\r\n"...)
}

// replacedBy: a custom "set" header replaces the field name.
func replacedBy(hs []Header, name []byte) bool {
	for _, hd := range hs {
		if !hd.Add && equalFold(name, hd.Name) {
			return true
		}
	}
	return false
}

func appendCustom(o []byte, hs []Header) []byte {
	for _, hd := range hs {
		o = appendField(o, []byte(hd.Name), []byte(hd.Value))
	}
	return o
}

// h1resp is a backend's answer head.
type h1resp struct {
	status        int
	contentLength int64 // -1: not given
	chunked       bool  // Transfer-Encoding ends in chunked
	encoded       bool  // Transfer-Encoding given
	close         bool
	drop          [][]byte // fields the Connection field names
}

// exchange sends the request on u and copies the answer to the client.
// On success u goes back to b's idle connections when it can take
// another request.
func (h *h1conn) exchange(rt *route, b *backend, u *upConn) (bool, error) {
	r := &h.req
	u.setTimeout(rt.svc.Custom.ServerTimeout)
	left := r.contentLength > 0
	if _, err := u.bw.Write(h.out); err != nil {
		return false, &exchangeErr{err: err, empty: true, bodyLeft: left}
	}
	if left {
		if rerr, werr := copyN(u.bw, h.br, r.contentLength); rerr != nil || werr != nil {
			if rerr != nil {
				return false, &exchangeErr{err: rerr, client: true}
			}
			return false, &exchangeErr{err: werr, empty: true, bodyLeft: true}
		}
	}
	if err := u.bw.Flush(); err != nil {
		return false, &exchangeErr{err: err, empty: true}
	}
	awaitAnswer()
	sent := false
	for {
		head, resp, err := readResponseHead(u.br, h.resp[:0])
		h.resp = head
		if err != nil {
			return false, &exchangeErr{err: err, sent: sent, empty: len(head) == 0 && !sent}
		}
		if resp.status >= 100 && resp.status < 200 {
			if resp.status == http.StatusSwitchingProtocols {
				return false, &exchangeErr{err: errors.New("the backend switched protocols unasked"), sent: sent}
			}
			_, _ = h.bw.Write(head) // 103 Early Hints and the like go on
			sent = true
			continue
		}
		if resp.status >= 500 {
			h.s.markDown(b, "answered "+strconv.Itoa(resp.status))
		}
		return h.relay(rt, b, u, head, &resp)
	}
}

// relay writes the answer head and copies its body.
func (h *h1conn) relay(rt *route, b *backend, u *upConn, head []byte, resp *h1resp) (bool, error) {
	noBody := string(h.req.method) == http.MethodHead || resp.status == http.StatusNoContent ||
		resp.status == http.StatusNotModified
	untilClose := !noBody && !resp.chunked && (resp.encoded || resp.contentLength < 0)
	keepClient := !untilClose
	w := h.bw
	_, _ = w.WriteString("HTTP/1.1 ")
	line, rest, _ := cutLine(head)
	_, _ = w.Write(line[min(9, len(line)):])
	_, _ = w.WriteString("\r\n")
	passedFields(rest, resp, rt.svc.Custom.SetResponseHeaders, false, func(f []byte, _ int) {
		_, _ = w.Write(f)
		_, _ = w.WriteString("\r\n")
	})
	for _, hd := range rt.svc.Custom.SetResponseHeaders {
		_, _ = w.Write(appendField(nil, []byte(hd.Name), []byte(hd.Value)))
	}
	if !keepClient || h.req.close {
		_, _ = w.WriteString("Connection: close\r\n")
	}
	_, _ = w.WriteString("\r\n")
	var rerr, werr error
	switch {
	case noBody:
	case resp.chunked:
		rerr, werr = copyChunked(w, u.br)
	case untilClose:
		rerr, werr = copyAll(w, u.br)
	default:
		rerr, werr = copyN(w, u.br, resp.contentLength)
	}
	if rerr != nil && !(untilClose && errors.Is(rerr, io.EOF)) {
		return false, &exchangeErr{err: fmt.Errorf("lb: the answer of %s broke off: %w", b.addr, rerr), sent: true}
	}
	if werr != nil {
		return false, &exchangeErr{err: werr, client: true}
	}
	if untilClose || resp.close {
		u.close()
	} else {
		b.idle.put(u, time.Now())
	}
	return keepClient, nil
}

// passedFields calls fn with each field line of an answer head (after
// its status line) that goes on to the client: not hop-by-hop, not
// replaced by a custom response header, and over HTTP/2 not
// Transfer-Encoding either (DATA frames carry the body unchunked).
func passedFields(fields []byte, resp *h1resp, custom []Header, h2 bool, fn func(line []byte, colon int)) {
	for {
		var f []byte
		f, fields, _ = cutLine(fields)
		if len(f) == 0 {
			return
		}
		colon := bytes.IndexByte(f, ':')
		name := f[:colon]
		if hopByHopResp(name, resp) || (h2 && equalFold(name, "Transfer-Encoding")) || replacedBy(custom, name) {
			continue
		}
		fn(f, colon)
	}
}

// hopByHopResp: an answer field that is not passed on. Transfer-Encoding
// stays: a chunked body goes on as it came.
func hopByHopResp(name []byte, resp *h1resp) bool {
	switch {
	case equalFold(name, "Connection"), equalFold(name, "Keep-Alive"), equalFold(name, "Proxy-Connection"),
		equalFold(name, "Te"), equalFold(name, "Upgrade"), equalFold(name, "Proxy-Authenticate"):
		return true
	case equalFold(name, "Content-Length"):
		return resp.encoded
	}
	for _, d := range resp.drop {
		if bytes.EqualFold(name, d) {
			return true
		}
	}
	return false
}

// readResponseHead reads an answer head into buf and parses it.
func readResponseHead(br *bufio.Reader, buf []byte) ([]byte, h1resp, error) {
	resp := h1resp{contentLength: -1}
	for {
		line, err := br.ReadSlice('\n')
		buf = append(buf, line...)
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				err = errors.New("the backend's answer head has a line longer than 8 KB")
			}
			return buf, resp, err
		}
		if len(buf) > h1MaxHead {
			return buf, resp, errors.New("the backend's answer head is longer than 64 KB")
		}
		if len(line) == 2 && line[0] == '\r' {
			break
		}
	}
	bad := func(what string) ([]byte, h1resp, error) {
		return buf, resp, fmt.Errorf("the backend answered a malformed head (%s)", what)
	}
	line, rest, ok := cutLine(buf)
	if !ok || len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return bad("status line")
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil || status < 100 || (len(line) > 12 && line[12] != ' ') {
		return bad("status code")
	}
	resp.status = status
	http10 := line[7] == '0'
	resp.close = http10
	for {
		line, rest, ok = cutLine(rest)
		if !ok {
			return bad("line ending")
		}
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			return bad("field name")
		}
		name, value := line[:colon], bytes.Trim(line[colon+1:], " \t")
		switch {
		case equalFold(name, "Content-Length"):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || (resp.contentLength >= 0 && n != resp.contentLength) {
				return bad("Content-Length")
			}
			resp.contentLength = n
		case equalFold(name, "Transfer-Encoding"):
			resp.encoded = true
			v := bytes.TrimSpace(value)
			resp.chunked = len(v) >= 7 && bytes.EqualFold(v[len(v)-7:], []byte("chunked"))
		case equalFold(name, "Connection"):
			for _, tok := range bytes.Split(value, []byte(",")) {
				tok = bytes.TrimSpace(tok)
				switch {
				case equalFold(tok, "close"):
					resp.close = true
				case equalFold(tok, "keep-alive"):
					if http10 {
						resp.close = false
					}
				case len(tok) > 0:
					resp.drop = append(resp.drop, tok)
				}
			}
		}
	}
	return buf, resp, nil
}

// The body copies return the read error (from src) and the write error
// (to dst) apart. dst is flushed whenever src has nothing more buffered,
// so a slow stream goes on piece by piece and a fast one in few writes.

func copyN(dst *bufio.Writer, src *bufio.Reader, n int64) (rerr, werr error) {
	for n > 0 {
		if src.Buffered() == 0 && dst.Buffered() > 0 {
			if err := dst.Flush(); err != nil {
				return nil, err
			}
		}
		if _, err := src.Peek(1); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err, nil
		}
		p, _ := src.Peek(int(min(int64(src.Buffered()), n)))
		if _, err := dst.Write(p); err != nil {
			return nil, err
		}
		_, _ = src.Discard(len(p))
		n -= int64(len(p))
	}
	return nil, nil
}

func copyAll(dst *bufio.Writer, src *bufio.Reader) (rerr, werr error) {
	for {
		if src.Buffered() == 0 && dst.Buffered() > 0 {
			if err := dst.Flush(); err != nil {
				return nil, err
			}
		}
		if _, err := src.Peek(1); err != nil {
			return err, nil
		}
		p, _ := src.Peek(src.Buffered())
		if _, err := dst.Write(p); err != nil {
			return nil, err
		}
		_, _ = src.Discard(len(p))
	}
}

// copyChunked copies a chunked body with its trailer as it is, checking
// its framing (the connection is reused after it).
func copyChunked(dst *bufio.Writer, src *bufio.Reader) (rerr, werr error) {
	readLine := func() ([]byte, error, error) {
		if src.Buffered() == 0 && dst.Buffered() > 0 {
			if err := dst.Flush(); err != nil {
				return nil, nil, err
			}
		}
		line, err := src.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err, nil
		}
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return nil, errors.New("a chunk line without CRLF"), nil
		}
		if _, err := dst.Write(line); err != nil {
			return nil, nil, err
		}
		return line[:len(line)-2], nil, nil
	}
	for {
		line, rerr, werr := readLine()
		if rerr != nil || werr != nil {
			return rerr, werr
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		size, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil || size < 0 {
			return fmt.Errorf("a chunk size %q", line), nil
		}
		if size == 0 {
			for { // the trailer, up to its empty line
				line, rerr, werr := readLine()
				if rerr != nil || werr != nil || len(line) == 0 {
					return rerr, werr
				}
			}
		}
		if rerr, werr := copyN(dst, src, size); rerr != nil || werr != nil {
			return rerr, werr
		}
		crlf, rerr, werr := readLine()
		if rerr != nil || werr != nil {
			return rerr, werr
		}
		if len(crlf) != 0 {
			return errors.New("a chunk longer than its size"), nil
		}
	}
}

// answer writes the load balancer's own short answer (as http.Error).
func (h *h1conn) answer(status int, text string, keep bool) (bool, error) {
	w := h.bw
	_, _ = fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: %d\r\n",
		status, http.StatusText(status), len(text)+1)
	if !keep || h.req.close {
		_, _ = w.WriteString("Connection: close\r\n")
	}
	_, _ = w.WriteString("\r\n" + text + "\n")
	return keep, nil
}

// answerErr answers a request whose backend failed: 504 for a timeout,
// else 502. The connection stays when the request body was read.
func (h *h1conn) answerErr(err error, bodyUnread bool) (bool, error) {
	status := http.StatusBadGateway
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		status = http.StatusGatewayTimeout
	}
	return h.answer(status, http.StatusText(status), !bodyUnread || h.req.contentLength == 0)
}

// roundTrip sends a request net/http served on the loop's backend
// connections, with the loop's retries: a request never sent goes to
// another backend; one that can be repeated and got no answer at all is
// sent once more on a new connection when its kept-alive one had been
// closed, else on another backend. The connection comes back with the
// answer, to be put back or closed once its body is read.
func (s *Server) roundTrip(a *attempt, req *http.Request) (*http.Response, *upConn, error) {
	hasBody := req.Body != nil && req.Body != http.NoBody
	replayable := !hasBody && idempotent([]byte(req.Method))
	var resp *http.Response
	u, err := s.tryBackends(a, replayable, func(b *backend, u *upConn) (bool, bool, error) {
		req.URL.Host = b.addr
		u.setTimeout(a.route.svc.Custom.ServerTimeout)
		var empty bool
		var err error
		resp, empty, err = exchangeReq(u, req)
		return empty, false, err
	})
	if err != nil {
		return nil, nil, err
	}
	return resp, u, nil
}

// exchangeReq writes req on u and reads the answer head (1xx answers
// are skipped); empty: the backend answered nothing.
func exchangeReq(u *upConn, req *http.Request) (resp *http.Response, empty bool, err error) {
	if err := req.Write(u.bw); err != nil {
		return nil, true, err
	}
	if err := u.bw.Flush(); err != nil {
		return nil, true, err
	}
	if _, err := u.br.Peek(1); err != nil {
		return nil, true, err
	}
	for {
		resp, err = http.ReadResponse(u.br, req)
		if err != nil || resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, false, err
		}
	}
}
