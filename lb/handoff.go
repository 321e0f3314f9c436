package lb

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Connections reach the HTTP/1.1 loop first; what it hands off goes to
// an http.Server through a handoff listener, with the bytes it read.

// handoff is a listener fed by the loop.
type handoff struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	addr  net.Addr
}

func newHandoff(addr net.Addr) *handoff {
	return &handoff{conns: make(chan net.Conn), done: make(chan struct{}), addr: addr}
}

func (l *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoff) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoff) Addr() net.Addr { return l.addr }

// give passes c to the http.Server, or closes it when that has stopped.
func (l *handoff) give(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		_ = c.Close()
	}
}

// handedConn is a connection handed off mid-stream: what the loop had
// read comes first. A TLS connection's state travels beside it (net/http
// sets Request.TLS only for a *tls.Conn).
type handedConn struct {
	net.Conn
	r   io.Reader
	tls *tls.ConnectionState
}

func (c *handedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *handedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

const keyTLS ctxKey = 100

// connContext carries a handed-off connection's TLS state to its requests.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if hc, ok := c.(*handedConn); ok && hc.tls != nil {
		return context.WithValue(ctx, keyTLS, hc.tls)
	}
	return ctx
}

// withTLS restores Request.TLS of a request on a handed-off TLS connection.
func withTLS(r *http.Request) {
	if r.TLS == nil {
		if st, ok := r.Context().Value(keyTLS).(*tls.ConnectionState); ok {
			r.TLS = st
		}
	}
}

// acceptLoop accepts connections for the loop until ln closes.
func (s *Server) acceptLoop(ln net.Listener, tlsCfg *tls.Config, ho *handoff) error {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			// Out of file descriptors and the like: wait, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		go s.serveConn(c, tlsCfg, ho)
	}
}

// tlsHandshakeTimeout bounds a client's TLS handshake.
const tlsHandshakeTimeout = 10 * time.Second

// serveConn runs the HTTP/1.1 loop or, when the client chose it by ALPN,
// the HTTP/2 server on one connection.
func (s *Server) serveConn(c net.Conn, tlsCfg *tls.Config, ho *handoff) {
	var state *tls.ConnectionState
	if tlsCfg != nil {
		tc := tls.Server(c, tlsCfg)
		_ = tc.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
		if err := tc.HandshakeContext(s.ctx); err != nil {
			_ = tc.Close()
			return
		}
		_ = tc.SetDeadline(time.Time{})
		st := tc.ConnectionState()
		if st.NegotiatedProtocol == "h2" {
			s.serveH2(tc, &st)
			return
		}
		c, state = tc, &st
	}
	s.serveH1(c, state != nil, func(c net.Conn, head []byte, br *bufio.Reader) {
		s.handoffs.Add(1)
		ho.give(&handedConn{Conn: c, r: io.MultiReader(bytes.NewReader(head), br), tls: state})
	})
}
