package lb

import (
	"context"
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// The HTTP side: find the route, answer what the load balancer answers
// itself (ACME challenges, its health URI, redirects, basic auth), pick a
// backend and proxy. A request whose connection to a backend failed was
// never sent: it is retried on another backend, and the failed one is out
// until its health check passes again. A 5xx answer takes the backend out
// too (the answer still goes to the client: it may not be safe to repeat).

const acmePrefix = "/.well-known/acme-challenge/"

type ctxKey int

const (
	keyRoute ctxKey = iota
	keyAttempt
)

// attempt is one request's way through the backends.
type attempt struct {
	route  *route
	client string
	sticky string
	tried  []*backend
	last   *backend
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	t := s.table.Load()
	if tok, ok := strings.CutPrefix(r.URL.Path, acmePrefix); ok {
		if ka, ok := t.cfg.Challenges[tok]; ok {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte(ka))
			return
		}
	}
	if h := t.cfg.Options.HealthURI; h != "" && r.URL.Path == h {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ok\n"))
		return
	}
	rt := t.match(r.Host, r.URL.Path)
	if rt == nil {
		http.Error(w, "no service for "+normalHost(r.Host)+r.URL.Path, http.StatusNotFound)
		return
	}
	c := rt.svc.Custom
	if c.RedirectHTTPS && r.TLS == nil {
		u := url.URL{Scheme: "https", Host: r.Host, Path: r.URL.Path, RawQuery: r.URL.RawQuery}
		http.Redirect(w, r, u.String(), c.RedirectCode)
		return
	}
	if len(rt.svc.BasicAuth) > 0 && !s.authorized(rt, r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="`+rt.svc.Name+`"`)
		http.Error(w, "authentication required", http.StatusUnauthorized)
		return
	}
	a := &attempt{route: rt, client: r.RemoteAddr}
	if rt.svc.Cookie != "" {
		if ck, err := r.Cookie(rt.svc.Cookie); err == nil {
			a.sticky = ck.Value
		}
	}
	b := rt.pool.wait(r.Context(), a.client, a.sticky)
	if b == nil {
		http.Error(w, "no instance of "+rt.svc.Name+" can answer", http.StatusServiceUnavailable)
		return
	}
	a.last, a.tried = b, append(a.tried, b)
	if r.Header.Get("Upgrade") != "" || r.Method == http.MethodConnect {
		// Upgrades (WebSockets) go through ReverseProxy.
		ctx := context.WithValue(r.Context(), keyAttempt, a)
		s.proxy.ServeHTTP(w, r.WithContext(ctx))
		return
	}
	s.forward(w, r, a)
}

// authorized checks basic auth against the service's users; a bcrypt
// comparison is slow by design, so a good answer is remembered.
func (s *Server) authorized(rt *route, r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	for _, u := range rt.svc.BasicAuth {
		if u.Name != user {
			continue
		}
		if u.Hash == "" {
			return subtle.ConstantTimeCompare([]byte(u.Password), []byte(pass)) == 1
		}
		key := u.Hash + "\x00" + pass
		if _, ok := s.authCache.Load(key); ok {
			return true
		}
		if bcrypt.CompareHashAndPassword([]byte(u.Hash), []byte(pass)) == nil {
			s.authCache.Store(key, struct{}{})
			return true
		}
	}
	return false
}

// newProxy is the reverse proxy all routes share; the backend of each
// request travels in its context.
func (s *Server) newProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			a := pr.In.Context().Value(keyAttempt).(*attempt)
			svc := &a.route.svc
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", a.last.addr
			if svc.VirtualPath != "" && !svc.KeepVirtualPath {
				pr.Out.URL.Path = stripPath(pr.In.URL.Path, svc.VirtualPath)
				pr.Out.URL.RawPath = ""
			}
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			setHeaders(pr.Out.Header, svc.Custom.SetRequestHeaders)
		},
		Transport:  &retrier{s: s},
		BufferPool: &bufPool{},
		// Streaming answers (no length, event streams) are flushed at once
		// by ReverseProxy itself; others go out when the handler ends.
		FlushInterval: 0,
		ModifyResponse: func(resp *http.Response) error {
			s.answered(resp.Request.Context().Value(keyAttempt).(*attempt), resp, resp.Header)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) { proxyError(w, err) },
		ErrorLog:     nil,
	}
}

// retrier sends a request to its backend; when the connection fails the
// request was not sent, so it goes to the next healthy backend.
type retrier struct{ s *Server }

func (t *retrier) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.s.send(req.Context().Value(keyAttempt).(*attempt), req)
}

// send sends req to the attempt's backend, and on to the next healthy one
// while the failure allows a retry.
func (s *Server) send(a *attempt, req *http.Request) (*http.Response, error) {
	t := &retrier{s: s}
	for {
		b := a.last
		b.active.Add(1)
		resp, err := t.s.transport(a.route).RoundTrip(req)
		b.active.Add(-1)
		if err == nil {
			b.served.Add(1)
			return resp, nil
		}
		if !retryable(req, err) {
			b.failed.Add(1)
			return nil, err
		}
		t.s.markDown(b, err.Error())
		next := a.route.pool.pick(a.client, "", a.tried)
		if next == nil {
			return nil, err
		}
		a.last, a.tried = next, append(a.tried, next)
		out := req.Clone(req.Context())
		out.URL.Host = next.addr
		if req.GetBody != nil {
			if out.Body, err = req.GetBody(); err != nil {
				return nil, err
			}
		}
		req = out
	}
}

// retryable: the request may go to another backend. One that never
// reached the backend may (its connection failed); an idempotent one
// without a body may too when the backend gave no answer (it died with
// the request in flight, as HAProxy's retry-on empty-response).
func retryable(req *http.Request, err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	hasBody := req.Body != nil && req.Body != http.NoBody
	if notSent(err) {
		return !hasBody || req.GetBody != nil
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return !hasBody
	}
	return false
}

// notSent: the request never reached the backend (the connection failed).
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// transport is the connection pool to backends (one for all routes; a
// route with `timeout server` gets its own).
func (s *Server) transport(rt *route) http.RoundTripper {
	if d := rt.svc.Custom.ServerTimeout; d > 0 {
		return s.timeoutTransport(d)
	}
	return s.upstream
}

func newUpstream(responseTimeout time.Duration) *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       60 * time.Second,
		ResponseHeaderTimeout: responseTimeout,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     false,
	}
}

// bufPool lends the buffers bodies are copied through (ReverseProxy
// would allocate 32 KB per request).
type bufPool struct{ p sync.Pool }

func (b *bufPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufPool) Put(buf []byte) { b.p.Put(&buf) }

// answered is what the load balancer does with a backend's answer before
// it goes on (its headers in h): a 5xx takes the backend out, a sticky
// session gets its cookie, the service's custom response headers are set.
func (s *Server) answered(a *attempt, resp *http.Response, h http.Header) {
	svc := &a.route.svc
	if resp.StatusCode >= 500 {
		s.markDown(a.last, "answered "+resp.Status)
	}
	if svc.Cookie != "" && a.sticky != a.last.id {
		h.Add("Set-Cookie", (&http.Cookie{Name: svc.Cookie, Value: a.last.id, Path: "/", HttpOnly: true}).String())
	}
	setHeaders(h, svc.Custom.SetResponseHeaders)
}

// proxyError answers a request whose backend failed: 504 for a timeout,
// else 502; nothing when the client left.
func proxyError(w http.ResponseWriter, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	status := http.StatusBadGateway
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		status = http.StatusGatewayTimeout
	}
	http.Error(w, http.StatusText(status), status)
}

// setHeaders applies custom header lines (set or add) to h.
func setHeaders(h http.Header, hs []Header) {
	for _, hd := range hs {
		if hd.Add {
			h.Add(hd.Name, hd.Value)
		} else {
			h.Set(hd.Name, hd.Value)
		}
	}
}
