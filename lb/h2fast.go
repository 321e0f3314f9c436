package lb

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The HTTP/2 fast path: a request without a body to a route without
// sessions, authentication or redirects (most of them) goes to the
// backend as an HTTP/1.1 head built straight from its header fields, and
// the answer comes back as header fields, without an http.Request, an
// http.Header or net/http's parsing in between. Every other request takes
// the load balancer's handler (h2conn.run).

// fastRoute is the route of a request the fast path serves, or nil.
func (h *h2conn) fastRoute(f *http2.MetaHeadersFrame) *route {
	if !f.StreamEnded() || f.Truncated {
		return nil
	}
	method, path := f.PseudoValue("method"), f.PseudoValue("path")
	if method == "" || method == http.MethodConnect || f.PseudoValue("scheme") == "" || !isToken([]byte(method)) ||
		len(path) == 0 || path[0] != '/' || strings.ContainsAny(path, "% \r\n") {
		return nil
	}
	host := f.PseudoValue("authority")
	for _, hf := range f.RegularFields() {
		switch hf.Name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te":
			return nil // the handler's path refuses them, or keeps te: trailers
		case "host":
			if host == "" {
				host = hf.Value
			}
		}
	}
	if host == "" {
		return nil
	}
	p, _, _ := strings.Cut(path, "?")
	return h.s.table.Load().plainRoute(host, p, h.tls != nil)
}

// runFast serves one fast-path stream.
func (h *h2conn) runFast(st *h2stream, rt *route, f *http2.MetaHeadersFrame) {
	w := &h2writer{st: st}
	defer h.streamDone(st, w)
	method := f.PseudoValue("method")
	head := h.h1Head(rt, f)
	replayable := idempotent([]byte(method))
	a := attempt{route: rt, client: h.remote}
	b := rt.pool.wait(h.s.ctx, a.client, "")
	if b == nil {
		w.plain(http.StatusServiceUnavailable, "no instance of "+rt.svc.Name+" can answer")
		return
	}
	a.last, a.tried = b, []*backend{b}
	_, err := h.s.tryBackends(&a, replayable, func(b *backend, u *upConn) (bool, bool, error) {
		empty, err := h.fastExchange(rt, b, u, head, method == http.MethodHead, w)
		if err != nil && w.sent {
			b.failed.Add(1)
			return false, true, err
		}
		return empty, false, err
	})
	switch {
	case err == nil:
	case w.sent: // part of the answer went out: the stream ends broken
		h.resetStream(st.id, http2.ErrCodeInternal)
		w.ended = true
	default:
		w.plainErr(err)
	}
}

// h1Head is the backend request of a fast-path stream: as buildHead
// makes it for the HTTP/1.1 loop, from the HEADERS frame's fields.
func (h *h2conn) h1Head(rt *route, f *http2.MetaHeadersFrame) []byte {
	svc := &rt.svc
	path := f.PseudoValue("path")
	if svc.VirtualPath != "" && !svc.KeepVirtualPath {
		p, q, hasQ := strings.Cut(path, "?")
		path = stripPath(p, svc.VirtualPath)
		if hasQ {
			path += "?" + q
		}
	}
	host := f.PseudoValue("authority")
	o := make([]byte, 0, 512)
	o = append(o, f.PseudoValue("method")...)
	o = append(o, ' ')
	o = append(o, path...)
	o = append(o, " HTTP/1.1\r\n"...)
	var cookies []string
	for _, hf := range f.RegularFields() {
		switch hf.Name {
		case "cookie":
			cookies = append(cookies, hf.Value)
			continue
		case "host":
			if host == "" {
				host = hf.Value
			}
			continue
		case "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "forwarded", "proxy-authorization", "trailer":
			continue
		}
		if replacedBy(svc.Custom.SetRequestHeaders, []byte(hf.Name)) {
			continue
		}
		o = append(o, hf.Name...)
		o = append(o, ": "...)
		o = append(o, hf.Value...)
		o = append(o, "\r\n"...)
	}
	o = append(o, "Host: "...)
	o = append(o, host...)
	o = append(o, "\r\n"...)
	if len(cookies) > 0 {
		o = append(o, "Cookie: "...)
		o = append(o, strings.Join(cookies, "; ")...)
		o = append(o, "\r\n"...)
	}
	if h.remote != "" {
		o = append(o, "X-Forwarded-For: "...)
		o = append(o, h.remote...)
		o = append(o, "\r\n"...)
	}
	o = append(o, "X-Forwarded-Host: "...)
	o = append(o, host...)
	o = append(o, "\r\nX-Forwarded-Proto: https\r\n"...)
	o = appendCustom(o, svc.Custom.SetRequestHeaders)
	return append(o, "\r\n"...)
}

// fastExchange sends head on u and relays the answer to w; empty: the
// backend answered nothing at all.
func (h *h2conn) fastExchange(rt *route, b *backend, u *upConn, head []byte, isHead bool, w *h2writer) (bool, error) {
	u.setTimeout(rt.svc.Custom.ServerTimeout)
	if _, err := u.bw.Write(head); err != nil {
		return true, err
	}
	if err := u.bw.Flush(); err != nil {
		return true, err
	}
	awaitAnswer()
	var buf []byte
	var resp h1resp
	for {
		var err error
		buf, resp, err = readResponseHead(u.br, buf[:0])
		if err != nil {
			return len(buf) == 0, err
		}
		if resp.status == http.StatusSwitchingProtocols {
			return false, errors.New("the backend switched protocols unasked")
		}
		if resp.status >= 200 {
			break
		}
	}
	if resp.status >= 500 {
		h.s.markDown(b, "answered "+strconv.Itoa(resp.status))
	}
	w.status = resp.status
	w.fields = h2Fields(buf, &resp, rt.svc.Custom.SetResponseHeaders)
	noBody := isHead || resp.status == http.StatusNoContent || resp.status == http.StatusNotModified
	untilClose := !noBody && !resp.chunked && (resp.encoded || resp.contentLength < 0)
	var err error
	switch {
	case noBody:
	case resp.chunked:
		w.rawTrailers, err = dechunk(w, u.br)
	case untilClose:
		err = copyBody(w, u.br, -1)
		if errors.Is(err, errEOF) {
			err = nil
		}
	default:
		err = copyBody(w, u.br, resp.contentLength)
	}
	if err != nil {
		if !w.sent {
			w.buf, w.fields, w.rawTrailers = w.buf[:0], nil, nil
		}
		return false, err
	}
	if untilClose || resp.close {
		u.close()
	} else {
		b.idle.put(u, time.Now())
	}
	return false, nil
}

var errEOF = errors.New("the answer ended with its connection")

// h2Fields are the answer head's :status and fields for HTTP/2: names in
// lower case, without the connection-specific ones, with the service's
// custom response headers.
func h2Fields(head []byte, resp *h1resp, custom []Header) []hpack.HeaderField {
	fields := make([]hpack.HeaderField, 0, 12)
	fields = append(fields, hpack.HeaderField{Name: ":status", Value: strconv.Itoa(resp.status)})
	_, rest, _ := cutLine(head)
	passedFields(rest, resp, custom, true, func(f []byte, colon int) {
		fields = append(fields, hpack.HeaderField{Name: lowerASCII(f[:colon]), Value: string(bytes.Trim(f[colon+1:], " \t"))})
	})
	for _, hd := range custom {
		fields = append(fields, hpack.HeaderField{Name: strings.ToLower(hd.Name), Value: hd.Value})
	}
	return fields
}

func lowerASCII(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return string(out)
}

// copyBody copies n bytes (n < 0: to the end of the connection, then
// errEOF) from src to w, flushing w whenever src has nothing buffered.
func copyBody(w *h2writer, src *bufio.Reader, n int64) error {
	for n != 0 {
		if src.Buffered() == 0 && len(w.buf) > 0 {
			if err := w.FlushError(); err != nil {
				return err
			}
		}
		if _, err := src.Peek(1); err != nil {
			if n < 0 && isEOF(err) {
				return errEOF
			}
			return err
		}
		k := src.Buffered()
		if n > 0 {
			k = int(min(int64(k), n))
		}
		p, _ := src.Peek(k)
		if _, err := w.Write(p); err != nil {
			return err
		}
		_, _ = src.Discard(k)
		if n > 0 {
			n -= int64(k)
		}
	}
	return nil
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) }

// dechunk copies a chunked body's data to w and returns its trailer.
func dechunk(w *h2writer, src *bufio.Reader) ([]hpack.HeaderField, error) {
	line := func() ([]byte, error) {
		if src.Buffered() == 0 && len(w.buf) > 0 {
			if err := w.FlushError(); err != nil {
				return nil, err
			}
		}
		l, err := src.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		if len(l) < 2 || l[len(l)-2] != '\r' {
			return nil, errors.New("a chunk line without CRLF")
		}
		return l[:len(l)-2], nil
	}
	for {
		l, err := line()
		if err != nil {
			return nil, err
		}
		if i := bytes.IndexByte(l, ';'); i >= 0 {
			l = l[:i]
		}
		size, err := strconv.ParseInt(string(bytes.TrimSpace(l)), 16, 64)
		if err != nil || size < 0 {
			return nil, errors.New("a bad chunk size")
		}
		if size == 0 {
			var trailer []hpack.HeaderField
			for {
				l, err := line()
				if err != nil {
					return nil, err
				}
				if len(l) == 0 {
					return trailer, nil
				}
				if colon := bytes.IndexByte(l, ':'); colon > 0 {
					trailer = append(trailer, hpack.HeaderField{Name: lowerASCII(l[:colon]), Value: string(bytes.Trim(l[colon+1:], " \t"))})
				}
			}
		}
		if err := copyBody(w, src, size); err != nil {
			return nil, err
		}
		if l, err := line(); err != nil || len(l) != 0 {
			return nil, errors.New("a chunk longer than its size")
		}
	}
}

// plain answers with the load balancer's own short text (as http.Error).
func (w *h2writer) plain(status int, text string) {
	body := text + "\n"
	w.status = status
	w.fields = []hpack.HeaderField{{Name: ":status", Value: strconv.Itoa(status)},
		{Name: "content-type", Value: "text/plain; charset=utf-8"}, {Name: "x-content-type-options", Value: "nosniff"},
		{Name: "content-length", Value: strconv.Itoa(len(body))}}
	w.buf = append(w.buf[:0], body...)
}

// plainErr answers a request whose backend failed: 504 for a timeout,
// else 502.
func (w *h2writer) plainErr(err error) {
	status := http.StatusBadGateway
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		status = http.StatusGatewayTimeout
	}
	w.plain(status, http.StatusText(status))
}
