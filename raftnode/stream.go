package raftnode

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/kontena-ng/kontena/api"
)

// tlsStream is a raft.StreamLayer over mutual TLS: both ends must hold a
// certificate from the grid CA, and an accepted connection must come from a
// node that check allows (a voter of the Raft configuration): a worker's or
// a removed node's certificate is valid, but it never speaks Raft.
type tlsStream struct {
	net.Listener
	advertise net.Addr
	client    *tls.Config
	// check decides on the peer's node ID once its handshake is done; nil
	// (Raft not started yet) refuses everyone.
	check atomic.Pointer[func(id string) error]
	log   *slog.Logger
}

func (s *tlsStream) Addr() net.Addr { return s.advertise }

func (s *tlsStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return tls.DialWithDialer(api.Dialer(timeout), "tcp", string(addr), s.client)
}

// Accept hands Raft connections that admit themselves on their first read:
// the handshake and the check run in the transport's per-connection
// goroutine, so a slow or hostile client never blocks the accept loop.
func (s *tlsStream) Accept() (net.Conn, error) {
	c, err := s.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &admittedConn{Conn: c, s: s}, nil
}

// raftHandshakeTimeout bounds a Raft client's TLS handshake.
const raftHandshakeTimeout = 10 * time.Second

// admittedConn is an accepted Raft connection that reads nothing before
// its peer passed the check.
type admittedConn struct {
	net.Conn
	s    *tlsStream
	once sync.Once
	err  error
}

func (c *admittedConn) admit() error {
	c.once.Do(func() {
		tc, ok := c.Conn.(*tls.Conn)
		if !ok {
			c.err = errors.New("raft: not a TLS connection")
			return
		}
		_ = tc.SetDeadline(time.Now().Add(raftHandshakeTimeout))
		if err := tc.Handshake(); err != nil {
			c.err = fmt.Errorf("raft: TLS handshake from %s: %w", c.RemoteAddr(), err)
			return
		}
		_ = tc.SetDeadline(time.Time{})
		certs := tc.ConnectionState().PeerCertificates
		if len(certs) == 0 {
			c.err = fmt.Errorf("raft: %s presented no certificate", c.RemoteAddr())
			return
		}
		id := certs[0].Subject.CommonName
		check := c.s.check.Load()
		switch {
		case check == nil:
			c.err = fmt.Errorf("raft: refused node %s from %s: raft is still starting", id, c.RemoteAddr())
		default:
			if err := (*check)(id); err != nil {
				c.err = fmt.Errorf("raft: refused node %s from %s: %w", id, c.RemoteAddr(), err)
			}
		}
		if c.err != nil && c.s.log != nil {
			c.s.log.Warn("raft connection refused", "err", c.err)
		}
	})
	return c.err
}

func (c *admittedConn) Read(p []byte) (int, error) {
	if err := c.admit(); err != nil {
		c.Conn.Close()
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *admittedConn) Write(p []byte) (int, error) {
	if err := c.admit(); err != nil {
		c.Conn.Close()
		return 0, err
	}
	return c.Conn.Write(p)
}

// raftPeerCheck is the rule for Raft connections: the peer must be a voter
// of this node's latest Raft configuration and not removed in its state. A
// node whose configuration is still empty (a voter that just joined or was
// promoted, before the leader's first entries) accepts the voters the
// leader named when it handed over the voter keys.
func (r *Node) peerCheck(boot []string) func(id string) error {
	return func(id string) error {
		if g, err := r.store.Grid(); err == nil && g.WasRemoved(id) {
			return errors.New("the node was removed from the grid")
		}
		fut := r.raft.GetConfiguration()
		if err := fut.Error(); err != nil {
			return fmt.Errorf("no raft configuration: %w", err)
		}
		servers := fut.Configuration().Servers
		if len(servers) == 0 {
			if slices.Contains(boot, id) {
				return nil
			}
			return errors.New("not one of the voters this node was given, and it has no raft configuration yet")
		}
		for _, s := range servers {
			if string(s.ID) == id && s.Suffrage == raft.Voter {
				return nil
			}
		}
		return errors.New("not a voter in the raft configuration")
	}
}
