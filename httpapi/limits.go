package httpapi

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of the API server (issue #10, "bounded servers").
//
// An ordinary request must be read within apiReadTimeout and answered
// within apiWriteTimeout: every API call is a small JSON exchange, and the
// forwarders give one 30 s (requestTimeout). An expired read deadline also
// cancels the request's context (net/http's background read), so a request
// that legitimately runs longer moves both deadlines with extendDeadline:
// blocking queries (blockingWait, up to 5 min), log follows (followLogs and
// every hop that streams one) and the wait for an exec upgrade
// (proxyUpgrade). A hijacked exec connection has no server deadline; its
// idleness is bounded by execIdleTimeout instead.
const (
	apiReadHeaderTimeout = 10 * time.Second
	apiReadTimeout       = 30 * time.Second
	apiWriteTimeout      = 60 * time.Second
	apiIdleTimeout       = 2 * time.Minute // a keep-alive connection between requests

	// Connections: apiMaxConns in all; per source IP, apiMaxPendingPerIP
	// that have not finished their TLS handshake and first request's
	// headers (each closed after apiHandshakeTimeout), and apiMaxAnonPerIP
	// without a verified grid node certificate (the CLI needs a handful;
	// nodes, which share 127.0.0.1 when several run on one host, are not
	// counted once their certificate is seen).
	apiMaxConns         = 4096
	apiMaxPendingPerIP  = 64
	apiMaxAnonPerIP     = 256
	apiHandshakeTimeout = 10 * time.Second

	// A log follow ends after followMaxIdle without a line or after
	// followMaxLife in all. Each follow holds a goroutine and an upstream
	// stream per instance on other nodes and lists the service's instances
	// every second: one forgotten in a terminal must not do so forever.
	// An hour without a line is long for a live service; 24 h is what the
	// CLI and the forwarding hops allow a stream anyway (api.Client.send,
	// requestTimeout). The CLI does not reconnect: the stream ends with a
	// line that says why.
	followMaxIdle = time.Hour
	followMaxLife = 24 * time.Hour

	// blockingMargin is the time a blocking query has to answer after its
	// wait (requestTimeout gives the forwarders the same).
	blockingMargin = 15 * time.Second
)

// execIdleTimeout ends an exec session with no input and no output for
// that long (a var: tests shorten it). The node that runs the process
// tells the client in an error frame; a node that splices the connection
// waits a little longer (spliceIdleTimeout) so the frame gets through,
// and only then closes both sides.
const execIdleTimeout = 15 * time.Minute

// spliceIdle is how long a splicing node waits on an idle session: a
// little longer than the end node, so its error frame gets through first.
func spliceIdle(idle time.Duration) time.Duration { return idle + idle/15 }

type responseKey struct{}

// boundRequests gives the handlers below it the request's ResponseWriter
// (responseOf, for blockingWait) and moves the deadlines of the requests
// known from their URL to outlive the server's timeouts: GET follows and
// blocking queries without a body, to the bound the forwarders use
// (requestTimeout). That covers every hop of them (relays, the voter that
// fans a service's logs out, the node that streams from its engine).
// The deadlines last for this request only: the server sets its idle
// timeout again before the next one on the connection.
func boundRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.Method == http.MethodGet && r.ContentLength == 0 && (q.Get("follow") == "true" || q.Get("index") != "") {
			extendDeadline(w, requestTimeout(r))
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), responseKey{}, w)))
	})
}

// responseOf is the ResponseWriter boundRequests saw for r, or nil.
func responseOf(r *http.Request) http.ResponseWriter {
	w, _ := r.Context().Value(responseKey{}).(http.ResponseWriter)
	return w
}

// extendDeadline lets the request behind w read and write for d from now,
// past the server's ReadTimeout and WriteTimeout. Writers that cannot
// (a test recorder) are left alone.
func extendDeadline(w http.ResponseWriter, d time.Duration) {
	rc := http.NewResponseController(w)
	t := time.Now().Add(d)
	_ = rc.SetReadDeadline(t)
	_ = rc.SetWriteDeadline(t)
}

// limitListener bounds the connections of the API (see the constants):
// a connection over a limit is closed as soon as it is accepted. It wraps
// the TCP listener, under tls.NewListener; the server's ConnState must be
// its connState, which sees a connection's first request.
type limitListener struct {
	net.Listener
	maxConns, maxPending, maxAnon int
	handshake                     time.Duration

	mu      sync.Mutex
	open    int
	pending map[string]int // by source IP: before the first request
	anon    map[string]int // by source IP: no node certificate seen
}

func newLimitListener(ln net.Listener) *limitListener {
	return &limitListener{Listener: ln, maxConns: apiMaxConns, maxPending: apiMaxPendingPerIP,
		maxAnon: apiMaxAnonPerIP, handshake: apiHandshakeTimeout,
		pending: map[string]int{}, anon: map[string]int{}}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if lc := l.admit(c); lc != nil {
			return lc, nil
		}
		_ = c.Close()
	}
}

func (l *limitListener) admit(c net.Conn) *limitedConn {
	ip, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		ip = c.RemoteAddr().String()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open >= l.maxConns || l.pending[ip] >= l.maxPending || l.anon[ip] >= l.maxAnon {
		return nil
	}
	l.open++
	l.pending[ip]++
	l.anon[ip]++
	lc := &limitedConn{Conn: c, l: l, ip: ip, pending: true, anon: true}
	lc.timer = time.AfterFunc(l.handshake, func() {
		l.mu.Lock()
		late := lc.pending
		l.mu.Unlock()
		if late {
			_ = lc.Close() // no TLS handshake and request in time
		}
	})
	return lc
}

// connState is the http.Server's ConnState hook: a connection's first
// request (its TLS handshake is done by then) frees its pending slot, and
// a verified node certificate its anonymous one.
func (l *limitListener) connState(nc net.Conn, st http.ConnState) {
	if st != http.StateActive && st != http.StateHijacked {
		return
	}
	var lc *limitedConn
	node := false
	switch c := nc.(type) {
	case *tls.Conn:
		lc, _ = c.NetConn().(*limitedConn)
		if lc != nil && lc.isPending() {
			node = len(c.ConnectionState().VerifiedChains) > 0
		}
	case *limitedConn:
		lc = c
	}
	if lc == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !lc.pending {
		return
	}
	lc.pending = false
	lc.timer.Stop()
	l.dec(l.pending, lc.ip)
	if node && lc.anon {
		lc.anon = false
		l.dec(l.anon, lc.ip)
	}
}

func (l *limitListener) dec(m map[string]int, ip string) {
	if m[ip]--; m[ip] <= 0 {
		delete(m, ip)
	}
}

// limitedConn is an accepted connection holding its slots until closed.
type limitedConn struct {
	net.Conn
	l     *limitListener
	ip    string
	timer *time.Timer
	// under l.mu
	pending, anon, closed bool
}

func (c *limitedConn) isPending() bool {
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	return c.pending
}

func (c *limitedConn) Close() error {
	l := c.l
	l.mu.Lock()
	if !c.closed {
		c.closed = true
		l.open--
		if c.pending {
			c.pending = false
			c.timer.Stop()
			l.dec(l.pending, c.ip)
		}
		if c.anon {
			c.anon = false
			l.dec(l.anon, c.ip)
		}
	}
	l.mu.Unlock()
	return c.Conn.Close()
}

// idleWatch calls fire once when touch was not called for d (the timer
// re-arms itself for the time left, so touch costs only a clock read).
type idleWatch struct {
	d       time.Duration
	last    atomic.Int64 // UnixNano of the last activity
	fired   atomic.Bool
	stopped atomic.Bool
	t       *time.Timer
}

func newIdleWatch(d time.Duration, fire func()) *idleWatch {
	w := &idleWatch{d: d}
	w.touch()
	w.t = time.AfterFunc(d, func() {
		if w.stopped.Load() {
			return
		}
		if rest := time.Until(time.Unix(0, w.last.Load()).Add(w.d)); rest > 0 {
			w.t.Reset(rest)
			return
		}
		w.fired.Store(true)
		fire()
	})
	return w
}

func (w *idleWatch) touch() { w.last.Store(time.Now().UnixNano()) }

func (w *idleWatch) stop() {
	w.stopped.Store(true)
	w.t.Stop()
}

// writer counts every write to dst as activity.
func (w *idleWatch) writer(dst io.Writer) io.Writer { return touchWriter{dst, w} }

type touchWriter struct {
	w  io.Writer
	iw *idleWatch
}

func (t touchWriter) Write(p []byte) (int, error) {
	k, err := t.w.Write(p)
	if k > 0 {
		t.iw.touch()
	}
	return k, err
}
