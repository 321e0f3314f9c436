package lb

import (
	"io"
	"net/http"
	"net/textproto"
	"strings"
	"time"
)

// forward proxies a request net/http served (HTTP/2, and HTTP/1.x the
// loop handed off): what ReverseProxy does for it, without what it costs
// per request here (a deep clone of the request and its headers, a client
// trace, a context per request, http.Transport's goroutine pair per
// backend connection): the outgoing request is a shallow copy with its own
// header map, written on the loop's backend connections; the answer is
// copied through a pooled buffer. Upgrades take ReverseProxy.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, a *attempt) {
	svc := &a.route.svc
	out := new(http.Request)
	*out = *r
	out.RequestURI, out.Close = "", false
	u := *r.URL
	u.Scheme, u.Host = "http", a.last.addr
	if svc.VirtualPath != "" && !svc.KeepVirtualPath {
		u.Path, u.RawPath = stripPath(r.URL.Path, svc.VirtualPath), ""
	}
	out.URL = &u
	out.Header = forwardHeader(r, svc)
	if r.ContentLength == 0 {
		out.Body = nil
	}
	resp, uc, err := s.roundTrip(a, out)
	if err != nil {
		proxyError(w, err)
		return
	}
	reusable := false
	defer func() {
		if reusable {
			_ = resp.Body.Close()
			a.last.idle.put(uc, time.Now())
			return
		}
		uc.close() // first: a body read to its end on Close must not wait
		_ = resp.Body.Close()
	}()
	h := w.Header()
	for k, vv := range resp.Header {
		if !hopByHop(k, resp.Header) {
			h[k] = vv
		}
	}
	s.answered(a, resp, h)
	if len(resp.Trailer) > 0 {
		for k := range resp.Trailer {
			h.Add("Trailer", k)
		}
	}
	w.WriteHeader(resp.StatusCode)
	buf := s.bufs.Get()
	defer s.bufs.Put(buf)
	var dst io.Writer = w
	if resp.ContentLength < 0 || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		dst = flushWriter{w: w, rc: http.NewResponseController(w)} // streamed: each piece at once
	}
	_, err = io.CopyBuffer(dst, resp.Body, buf)
	reusable = err == nil && !resp.Close
	for k, vv := range resp.Trailer {
		h[k] = vv
	}
}

// forwardHeader is the outgoing request's header: the client's without
// hop-by-hop fields, with X-Forwarded-For/-Host/-Proto and the service's
// custom request headers.
func forwardHeader(r *http.Request, svc *Service) http.Header {
	h := make(http.Header, len(r.Header)+3)
	for k, vv := range r.Header {
		if !hopByHop(k, r.Header) && k != "X-Forwarded-For" && k != "X-Forwarded-Host" && k != "X-Forwarded-Proto" && k != "Forwarded" {
			h[k] = vv
		}
	}
	if ip := clientHost(r.RemoteAddr); ip != "" {
		h["X-Forwarded-For"] = []string{ip}
	}
	h["X-Forwarded-Host"] = []string{r.Host}
	if r.TLS != nil {
		h["X-Forwarded-Proto"] = []string{"https"}
	} else {
		h["X-Forwarded-Proto"] = []string{"http"}
	}
	if te := r.Header.Get("Te"); strings.Contains(te, "trailers") {
		h["Te"] = []string{"trailers"}
	}
	setHeaders(h, svc.Custom.SetRequestHeaders)
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // none, rather than Go's
	}
	return h
}

// hopByHop: a header of one connection, not to be passed on (RFC 9110
// 7.6.1), including those the Connection header names.
func hopByHop(k string, h http.Header) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	for _, v := range h["Connection"] {
		for _, f := range strings.Split(v, ",") {
			if textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(f)) == k {
				return true
			}
		}
	}
	return false
}

// flushWriter sends each write on at once (streamed answers).
type flushWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.rc.Flush()
	}
	return n, err
}
