package lb

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The load balancer's own HTTP/2 server. net/http's (x/net/http2) runs a
// serving goroutine per connection that every frame of every stream
// crosses by channel, a handler goroutine per stream, and a write
// scheduler; at a load balancer's rates that machinery cost more than the
// proxying. Here the connection's reader goroutine parses frames, each
// stream's handler runs the load balancer's ordinary http.Handler in its
// own goroutine, and handlers write their frames themselves under one
// mutex; the last writer out flushes, so answers finishing together leave
// in one write. Flow control both ways, SETTINGS, PING, RST_STREAM and
// GOAWAY are honoured; the rest of the protocol (priorities, push) is not
// needed by a server that proxies.

const (
	h2MaxStreams    = 250
	h2StreamWindow  = 256 << 10 // what a client may send a stream before its body is read
	h2ConnWindow    = 1 << 20   // ... and the whole connection
	h2MaxHeaderList = 1 << 20
	h2WriteBuffer   = 32 << 10
)

// h2conn is one HTTP/2 client connection.
type h2conn struct {
	s      *Server
	c      net.Conn
	tls    *tls.ConnectionState
	remote string
	fr     *http2.Framer

	wmu      sync.Mutex // the write side: framer writes, encoder, windows, bw
	wcond    *sync.Cond // a writer waits here for window
	bw       *bufio.Writer
	enc      *hpack.Encoder
	encBuf   bytes.Buffer
	dirty    bool          // bw holds frames not flushed
	flushReq chan struct{} // wakes the flusher
	sendConn int64         // what the client lets us send on the connection
	initSend int64         // its SETTINGS_INITIAL_WINDOW_SIZE
	maxFrame int           // its SETTINGS_MAX_FRAME_SIZE
	broken   bool          // the connection failed or closed

	mu       sync.Mutex // the streams
	streams  map[uint32]*h2stream
	lastID   uint32
	recvConn int64 // what the client may still send on the connection
}

// h2stream is one request and its answer.
type h2stream struct {
	h        *h2conn
	id       uint32
	sendWin  int64 // guarded by h.wmu
	reset    bool  // guarded by h.wmu: RST_STREAM either way
	recvWin  int64 // guarded by h.mu
	body     *h2body
	finished bool // the handler returned (guarded by h.mu)
}

func (s *Server) serveH2(c net.Conn, state *tls.ConnectionState) {
	h := &h2conn{s: s, c: c, tls: state, remote: clientHost(c.RemoteAddr().String()),
		streams: map[uint32]*h2stream{}, sendConn: 65535, initSend: 65535, maxFrame: 16384, recvConn: h2ConnWindow}
	h.wcond = sync.NewCond(&h.wmu)
	h.bw = bufio.NewWriterSize(c, h2WriteBuffer)
	br := bufio.NewReaderSize(c, 16<<10)
	h.fr = http2.NewFramer(h.bw, br)
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.fr.MaxHeaderListSize = h2MaxHeaderList
	h.fr.SetReuseFrames()
	h.enc = hpack.NewEncoder(&h.encBuf)
	if !s.conns.add(h) {
		_ = c.Close()
		return
	}
	h.flushReq = make(chan struct{}, 1)
	done := make(chan struct{})
	go h.flusher(done)
	defer s.conns.remove(h)
	defer close(done)
	defer h.close()
	_ = c.SetReadDeadline(time.Now().Add(tlsHandshakeTimeout))
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(br, preface); err != nil || string(preface) != http2.ClientPreface {
		return
	}
	h.wmu.Lock()
	_ = h.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: h2MaxStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2StreamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: h2MaxHeaderList})
	_ = h.fr.WriteWindowUpdate(0, h2ConnWindow-65535)
	err := h.bw.Flush()
	h.wmu.Unlock()
	if err != nil {
		return
	}
	h.idle(true)
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				h.resetStream(se.StreamID, se.Code)
				continue
			}
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				h.goAway(http2.ErrCode(ce))
			}
			return
		}
		if err := h.handle(f); err != nil {
			h.goAway(errCode(err))
			return
		}
	}
}

// h2Error is a connection error with its code.
type h2Error struct {
	code http2.ErrCode
	why  string
}

func (e h2Error) Error() string { return "http2: " + e.code.String() + ": " + e.why }

func errCode(err error) http2.ErrCode {
	var he h2Error
	if errors.As(err, &he) {
		return he.code
	}
	return http2.ErrCodeProtocol
}

func (h *h2conn) handle(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return h.onHeaders(f)
	case *http2.DataFrame:
		return h.onData(f)
	case *http2.SettingsFrame:
		return h.onSettings(f)
	case *http2.WindowUpdateFrame:
		return h.onWindowUpdate(f)
	case *http2.PingFrame:
		if !f.IsAck() {
			h.write(func() error { return h.fr.WritePing(true, f.Data) })
		}
	case *http2.RSTStreamFrame:
		h.onReset(f.StreamID)
	case *http2.GoAwayFrame:
		// The client opens no more streams; those open finish.
	case *http2.PushPromiseFrame:
		return h2Error{http2.ErrCodeProtocol, "a client sent PUSH_PROMISE"}
	}
	return nil // PRIORITY and unknown frames are ignored
}

// write runs fn on the write side and wakes the flusher.
func (h *h2conn) write(fn func() error) {
	h.wmu.Lock()
	if !h.broken {
		if err := fn(); err != nil {
			h.breakLocked()
		}
		h.dirty = true
	}
	h.wmu.Unlock()
	select {
	case h.flushReq <- struct{}{}:
	default:
	}
}

// flusher writes out what the streams wrote. It yields first, so the
// streams whose answers are ready by then add theirs: answers finishing
// together leave in one write (one TLS record, one syscall).
func (h *h2conn) flusher(done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-h.flushReq:
		}
		runtime.Gosched()
		h.wmu.Lock()
		if h.dirty && !h.broken {
			if err := h.bw.Flush(); err != nil {
				h.breakLocked()
			}
			h.dirty = false
		}
		h.wmu.Unlock()
	}
}

// breakLocked marks the connection failed: writers stop waiting.
func (h *h2conn) breakLocked() {
	h.broken = true
	h.wcond.Broadcast()
	_ = h.c.Close()
}

func (h *h2conn) goAway(code http2.ErrCode) {
	h.mu.Lock()
	last := h.lastID
	h.mu.Unlock()
	h.write(func() error { return h.fr.WriteGoAway(last, code, nil) })
}

func (h *h2conn) close() {
	h.wmu.Lock()
	h.breakLocked()
	h.wmu.Unlock()
	h.mu.Lock()
	for _, st := range h.streams {
		if st.body != nil {
			st.body.fail(io.ErrUnexpectedEOF)
		}
	}
	h.mu.Unlock()
}

// idle sets the idle deadline while no stream is open.
func (h *h2conn) idle(on bool) {
	if on {
		_ = h.c.SetReadDeadline(time.Now().Add(h1IdleTimeout))
	} else {
		_ = h.c.SetReadDeadline(time.Time{})
	}
}

func (h *h2conn) shutdownIdle() {
	h.mu.Lock()
	open := len(h.streams)
	h.mu.Unlock()
	h.goAway(http2.ErrCodeNo)
	if open == 0 {
		_ = h.c.SetReadDeadline(time.Now())
	}
}

func (h *h2conn) resetStream(id uint32, code http2.ErrCode) {
	h.write(func() error { return h.fr.WriteRSTStream(id, code) })
	h.onReset(id)
}

func (h *h2conn) onReset(id uint32) {
	h.mu.Lock()
	st := h.streams[id]
	h.mu.Unlock()
	if st == nil {
		return
	}
	h.wmu.Lock()
	st.reset = true
	h.wcond.Broadcast()
	h.wmu.Unlock()
	if st.body != nil {
		st.body.fail(errors.New("http2: the client reset the stream"))
	}
}

func (h *h2conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	var err error
	h.mu.Lock()
	streams := make([]*h2stream, 0, len(h.streams))
	for _, st := range h.streams {
		streams = append(streams, st)
	}
	h.mu.Unlock()
	h.wmu.Lock()
	_ = f.ForeachSetting(func(s http2.Setting) error {
		switch s.ID {
		case http2.SettingInitialWindowSize:
			if s.Val > 1<<31-1 {
				err = h2Error{http2.ErrCodeFlowControl, "initial window size too large"}
				return err
			}
			delta := int64(s.Val) - h.initSend
			h.initSend = int64(s.Val)
			for _, st := range streams {
				st.sendWin += delta
			}
			h.wcond.Broadcast()
		case http2.SettingMaxFrameSize:
			h.maxFrame = int(s.Val)
		case http2.SettingHeaderTableSize:
			h.enc.SetMaxDynamicTableSizeLimit(s.Val)
		}
		return nil
	})
	h.wmu.Unlock()
	if err != nil {
		return err
	}
	h.write(h.fr.WriteSettingsAck)
	return nil
}

func (h *h2conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	var st *h2stream
	if f.StreamID != 0 {
		h.mu.Lock()
		st = h.streams[f.StreamID]
		h.mu.Unlock()
	}
	h.wmu.Lock()
	defer h.wmu.Unlock()
	if f.StreamID == 0 {
		h.sendConn += int64(f.Increment)
		if h.sendConn > 1<<31-1 {
			return h2Error{http2.ErrCodeFlowControl, "connection window overflow"}
		}
	} else if st != nil {
		st.sendWin += int64(f.Increment)
	}
	h.wcond.Broadcast()
	return nil
}

func (h *h2conn) onData(f *http2.DataFrame) error {
	n := int64(f.Length)
	h.mu.Lock()
	h.recvConn -= n
	if h.recvConn < 0 {
		h.mu.Unlock()
		return h2Error{http2.ErrCodeFlowControl, "the client overran the connection window"}
	}
	st := h.streams[f.StreamID]
	if st == nil || st.body == nil || st.finished {
		// A stream that ended or never was: its data only counts against
		// the connection's window, given back at once.
		h.recvConn += n
		h.mu.Unlock()
		if n > 0 {
			h.write(func() error { return h.fr.WriteWindowUpdate(0, uint32(n)) })
		}
		if st == nil && f.StreamID > h.lastStream() {
			return h2Error{http2.ErrCodeProtocol, "DATA on an idle stream"}
		}
		return nil
	}
	st.recvWin -= n
	if st.recvWin < 0 {
		h.mu.Unlock()
		h.resetStream(f.StreamID, http2.ErrCodeFlowControl)
		return nil
	}
	h.mu.Unlock()
	// Padding is given back now; the data when the handler reads it.
	if pad := n - int64(len(f.Data())); pad > 0 {
		h.giveBack(st, pad)
	}
	st.body.push(f.Data(), f.StreamEnded())
	return nil
}

func (h *h2conn) lastStream() uint32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastID
}

// giveBack returns n bytes of window to the client for st and the
// connection.
func (h *h2conn) giveBack(st *h2stream, n int64) {
	h.mu.Lock()
	h.recvConn += n
	open := !st.finished && !st.body.ended()
	if open {
		st.recvWin += n
	}
	h.mu.Unlock()
	h.write(func() error {
		if err := h.fr.WriteWindowUpdate(0, uint32(n)); err != nil {
			return err
		}
		if open {
			return h.fr.WriteWindowUpdate(st.id, uint32(n))
		}
		return nil
	})
}

func (h *h2conn) onHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	h.mu.Lock()
	if st := h.streams[id]; st != nil {
		h.mu.Unlock()
		// Trailers of a request body: the body ends here.
		if st.body != nil && f.StreamEnded() {
			st.body.push(nil, true)
		}
		return nil
	}
	if id%2 == 0 || id <= h.lastID {
		h.mu.Unlock()
		return h2Error{http2.ErrCodeProtocol, "a new stream with an ID not above the last"}
	}
	h.lastID = id
	if len(h.streams) >= h2MaxStreams {
		h.mu.Unlock()
		h.resetStream(id, http2.ErrCodeRefusedStream)
		return nil
	}
	// initSend changes only on this goroutine (onSettings).
	st := &h2stream{h: h, id: id, sendWin: h.initSend, recvWin: h2StreamWindow}
	if rt := h.fastRoute(f); rt != nil {
		if len(h.streams) == 0 {
			h.idle(false)
		}
		h.streams[id] = st
		h.mu.Unlock()
		go h.runFast(st, rt, f)
		return nil
	}
	req, err := h.request(f)
	if err != nil {
		h.mu.Unlock()
		h.resetStream(id, http2.ErrCodeProtocol)
		return nil
	}
	if !f.StreamEnded() {
		st.body = &h2body{st: st}
		st.body.cond = sync.NewCond(&st.body.mu)
		req.Body = st.body
	}
	if len(h.streams) == 0 {
		h.idle(false)
	}
	h.streams[id] = st
	h.mu.Unlock()
	go h.run(st, req)
	return nil
}

// request builds the http.Request of a HEADERS frame.
func (h *h2conn) request(f *http2.MetaHeadersFrame) (*http.Request, error) {
	if f.Truncated {
		return nil, errors.New("header list too long")
	}
	method, path, authority := f.PseudoValue("method"), f.PseudoValue("path"), f.PseudoValue("authority")
	if method == "" || path == "" || f.PseudoValue("scheme") == "" || method == http.MethodConnect {
		return nil, errors.New("missing pseudo-header fields, or CONNECT")
	}
	u, err := url.ParseRequestURI(path)
	if err != nil {
		return nil, err
	}
	regular := f.RegularFields()
	hdr := make(http.Header, len(regular))
	var cookies []string
	for _, hf := range regular {
		switch hf.Name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			return nil, errors.New("a connection-specific header field")
		case "te":
			if hf.Value != "trailers" {
				return nil, errors.New("te other than trailers")
			}
		case "cookie":
			cookies = append(cookies, hf.Value)
			continue
		case "host":
			if authority == "" {
				authority = hf.Value
			}
			continue
		}
		k := http.CanonicalHeaderKey(hf.Name)
		hdr[k] = append(hdr[k], hf.Value)
	}
	if len(cookies) > 0 {
		hdr["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	cl := int64(-1)
	if f.StreamEnded() {
		cl = 0
	} else if v := hdr.Get("Content-Length"); v != "" {
		if cl, err = strconv.ParseInt(v, 10, 64); err != nil || cl < 0 {
			return nil, errors.New("a bad content-length")
		}
	}
	r := &http.Request{Method: method, URL: u, Proto: "HTTP/2.0", ProtoMajor: 2, Header: hdr,
		Body: http.NoBody, ContentLength: cl, Host: authority, RemoteAddr: h.c.RemoteAddr().String(),
		RequestURI: path, TLS: h.tls}
	return r, nil
}

// run serves one stream with the load balancer's handler.
func (h *h2conn) run(st *h2stream, req *http.Request) {
	w := &h2writer{st: st, header: make(http.Header, 8)}
	defer h.streamDone(st, w)
	h.s.ServeHTTP(w, req)
}

// streamDone ends a stream whose handler returned (or panicked).
func (h *h2conn) streamDone(st *h2stream, w *h2writer) {
	if p := recover(); p != nil {
		h.s.log.Error("handler panicked", "panic", fmt.Sprint(p))
		h.resetStream(st.id, http2.ErrCodeInternal)
	} else if !w.ended {
		w.finish()
	}
	h.mu.Lock()
	st.finished = true
	delete(h.streams, st.id)
	idle := len(h.streams) == 0
	h.mu.Unlock()
	if st.body != nil {
		st.body.discard()
	}
	if idle {
		h.idle(true)
		if h.s.conns.closing() {
			_ = h.c.SetReadDeadline(time.Now())
		}
	}
}

// h2body is a request body fed by DATA frames.
type h2body struct {
	st   *h2stream
	mu   sync.Mutex
	cond *sync.Cond
	buf  bytes.Buffer
	eof  bool
	err  error
	gone bool // the handler is done with it
}

func (b *h2body) push(p []byte, end bool) {
	b.mu.Lock()
	if !b.gone {
		b.buf.Write(p)
	}
	b.eof = b.eof || end
	b.cond.Broadcast()
	b.mu.Unlock()
}

func (b *h2body) fail(err error) {
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.cond.Broadcast()
	b.mu.Unlock()
}

func (b *h2body) ended() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.eof
}

func (b *h2body) Read(p []byte) (int, error) {
	b.mu.Lock()
	for b.buf.Len() == 0 && !b.eof && b.err == nil {
		b.cond.Wait()
	}
	if b.buf.Len() == 0 {
		defer b.mu.Unlock()
		if b.err != nil {
			return 0, b.err
		}
		return 0, io.EOF
	}
	n, _ := b.buf.Read(p)
	b.mu.Unlock()
	b.st.h.giveBack(b.st, int64(n))
	return n, nil
}

func (b *h2body) Close() error { b.discard(); return nil }

// discard drops what the handler did not read and gives its window back.
func (b *h2body) discard() {
	b.mu.Lock()
	n := b.buf.Len()
	b.buf.Reset()
	b.gone = true
	b.mu.Unlock()
	if n > 0 {
		b.st.h.giveBack(b.st, int64(n))
	}
}

// h2writer is a stream's http.ResponseWriter. Writes are held until the
// handler flushes, returns or has written h2WriteBuffer bytes, so a
// small answer leaves as HEADERS and one DATA frame with END_STREAM.
type h2writer struct {
	st       *h2stream
	header   http.Header
	status   int
	sent     bool // HEADERS went out
	buf      []byte
	trailers []string
	ended    bool
	// The fast path's answer, as fields: used instead of header.
	fields      []hpack.HeaderField
	rawTrailers []hpack.HeaderField
}

func (w *h2writer) Header() http.Header { return w.header }

func (w *h2writer) WriteHeader(code int) {
	if w.status != 0 || code < 200 {
		return // 1xx answers are not relayed over HTTP/2
	}
	w.status = code
}

func (w *h2writer) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	w.buf = append(w.buf, p...)
	if len(w.buf) >= h2WriteBuffer {
		if err := w.emit(false); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (w *h2writer) Flush() { _ = w.FlushError() }

func (w *h2writer) FlushError() error {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.emit(false)
}

func (w *h2writer) finish() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	_ = w.emit(true)
}

// emit sends the headers if not yet sent and the buffered data; with end,
// the stream's end (with the trailers, if any).
func (w *h2writer) emit(end bool) error {
	if w.ended {
		return errors.New("http2: the stream has ended")
	}
	h, st := w.st.h, w.st
	var trailer []hpack.HeaderField
	if end {
		trailer = w.trailerFields()
	}
	var err error
	h.write(func() error {
		if st.reset {
			err = errors.New("http2: the stream was reset")
			return nil
		}
		if !w.sent {
			w.sent = true
			endHere := end && len(w.buf) == 0 && trailer == nil
			if e := h.writeHeaders(st.id, w.responseFields(), endHere); e != nil {
				return e
			}
			if endHere {
				return nil
			}
		}
		if e := h.writeData(st, w.buf, end && trailer == nil); e != nil {
			if errors.Is(e, errStreamReset) {
				err = e
				return nil
			}
			return e
		}
		if trailer != nil {
			return h.writeHeaders(st.id, trailer, true)
		}
		return nil
	})
	w.buf = w.buf[:0]
	if end {
		w.ended = true
	}
	if err == nil && h.isBroken() {
		err = net.ErrClosed
	}
	return err
}

func (h *h2conn) isBroken() bool {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	return h.broken
}

// responseFields are the answer's :status and header fields, without the
// connection-specific ones; the trailers it announced are kept for the end.
func (w *h2writer) responseFields() []hpack.HeaderField {
	if w.fields != nil {
		return w.fields
	}
	fields := make([]hpack.HeaderField, 0, len(w.header)+1)
	fields = append(fields, hpack.HeaderField{Name: ":status", Value: strconv.Itoa(w.status)})
	for k, vv := range w.header {
		switch k {
		case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade":
			continue
		case "Trailer":
			for _, v := range vv {
				for _, t := range strings.Split(v, ",") {
					if t = strings.TrimSpace(t); t != "" {
						w.trailers = append(w.trailers, http.CanonicalHeaderKey(t))
					}
				}
			}
			continue
		}
		if strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		name := strings.ToLower(k)
		for _, v := range vv {
			fields = append(fields, hpack.HeaderField{Name: name, Value: v})
		}
	}
	return fields
}

// trailerFields are the announced trailers set by the end, and those set
// with http.TrailerPrefix; nil when none.
func (w *h2writer) trailerFields() []hpack.HeaderField {
	if w.fields != nil {
		return w.rawTrailers
	}
	var fields []hpack.HeaderField
	for _, k := range w.trailers {
		for _, v := range w.header[k] {
			fields = append(fields, hpack.HeaderField{Name: strings.ToLower(k), Value: v})
		}
	}
	for k, vv := range w.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			for _, v := range vv {
				fields = append(fields, hpack.HeaderField{Name: strings.ToLower(name), Value: v})
			}
		}
	}
	return fields
}

// writeHeaders encodes and writes a header block, split into HEADERS and
// CONTINUATION frames by the client's frame size (under wmu).
func (h *h2conn) writeHeaders(id uint32, fields []hpack.HeaderField, end bool) error {
	h.encBuf.Reset()
	for _, f := range fields {
		if err := h.enc.WriteField(f); err != nil {
			return err
		}
	}
	block := h.encBuf.Bytes()
	first := true
	for first || len(block) > 0 {
		n := min(len(block), h.maxFrame)
		frag := block[:n]
		block = block[n:]
		var err error
		if first {
			err = h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndStream: end, EndHeaders: len(block) == 0})
			first = false
		} else {
			err = h.fr.WriteContinuation(id, len(block) == 0, frag)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

var errStreamReset = errors.New("http2: the stream was reset")

// writeData writes p as DATA frames within the client's windows, waiting
// for WINDOW_UPDATE when they are spent (under wmu; the wait releases it).
func (h *h2conn) writeData(st *h2stream, p []byte, end bool) error {
	for len(p) > 0 || end {
		if len(p) == 0 {
			return h.fr.WriteData(st.id, true, nil)
		}
		for !h.broken && !st.reset && (h.sendConn <= 0 || st.sendWin <= 0) {
			if err := h.bw.Flush(); err != nil {
				return err
			}
			h.wcond.Wait()
		}
		if h.broken {
			return net.ErrClosed
		}
		if st.reset {
			return errStreamReset
		}
		n := min(int64(len(p)), int64(h.maxFrame), h.sendConn, st.sendWin)
		last := end && int(n) == len(p)
		if err := h.fr.WriteData(st.id, last, p[:n]); err != nil {
			return err
		}
		h.sendConn -= n
		st.sendWin -= n
		p = p[n:]
		if last {
			return nil
		}
	}
	return nil
}
