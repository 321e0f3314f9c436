package lb

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// The PROXY protocol (KONTENA_LB_ACCEPT_PROXY): a load balancer in front
// of this one (a cloud's) sends the client's address first, in version 1
// (text) or 2 (binary); the connection then carries on as usual.

var proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// proxyListener reads PROXY headers off accepted connections, each in its
// own goroutine (a slow client holds up no one), when the routing asks
// for it.
type proxyListener struct {
	net.Listener
	enabled func() bool
	conns   chan net.Conn
	errs    chan error
	closed  chan struct{}
}

func (s *Server) acceptProxy(ln net.Listener) net.Listener {
	pl := &proxyListener{Listener: ln, enabled: func() bool { return s.table.Load().cfg.Options.AcceptProxy },
		conns: make(chan net.Conn), errs: make(chan error), closed: make(chan struct{})}
	go pl.loop()
	return pl
}

func (l *proxyListener) loop() {
	for {
		c, err := l.Listener.Accept()
		if errors.Is(err, net.ErrClosed) {
			close(l.closed)
			return
		}
		if err != nil {
			select {
			case l.errs <- err:
			case <-l.closed:
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if !l.enabled() {
			l.conns <- c
			continue
		}
		go func() {
			pc, err := readProxyHeader(c)
			if err != nil {
				_ = c.Close()
				return
			}
			l.conns <- pc
		}()
	}
}

func (l *proxyListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errs:
		return nil, err
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// proxiedConn is a connection whose client is the one its header named.
type proxiedConn struct {
	net.Conn
	r      *bufio.Reader
	remote net.Addr
}

func (c *proxiedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *proxiedConn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}

// CloseWrite passes half closes on (tcp mode).
func (c *proxiedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

func readProxyHeader(c net.Conn) (net.Conn, error) {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	r := bufio.NewReader(c)
	head, err := r.Peek(12)
	if err != nil {
		return nil, err
	}
	pc := &proxiedConn{Conn: c, r: r}
	switch {
	case bytes.HasPrefix(head, []byte("PROXY ")):
		line, err := r.ReadString('\n')
		if err != nil || len(line) > 107 {
			return nil, fmt.Errorf("PROXY v1 header: %q", line)
		}
		pc.remote, err = parseProxyV1(strings.TrimRight(line, "\r\n"))
		return pc, err
	case bytes.Equal(head, proxyV2Sig):
		pc.remote, err = parseProxyV2(r)
		return pc, err
	}
	return nil, errors.New("no PROXY protocol header")
}

func parseProxyV1(line string) (net.Addr, error) {
	f := strings.Fields(line)
	if len(f) >= 2 && f[1] == "UNKNOWN" {
		return nil, nil
	}
	if len(f) != 6 || (f[1] != "TCP4" && f[1] != "TCP6") {
		return nil, fmt.Errorf("PROXY v1 header %q", line)
	}
	ip := net.ParseIP(f[2])
	port, err := strconv.Atoi(f[4])
	if ip == nil || err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("PROXY v1 header %q", line)
	}
	return &net.TCPAddr{IP: ip, Port: port}, nil
}

func parseProxyV2(r *bufio.Reader) (net.Addr, error) {
	hdr := make([]byte, 16)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, err
	}
	if hdr[12]>>4 != 2 {
		return nil, errors.New("PROXY v2: bad version")
	}
	n := int(binary.BigEndian.Uint16(hdr[14:16]))
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	if hdr[12]&0x0f == 0 { // LOCAL: the proxy's own connection
		return nil, nil
	}
	switch hdr[13] >> 4 {
	case 1: // IPv4
		if n < 12 {
			return nil, errors.New("PROXY v2: short IPv4 address")
		}
		return &net.TCPAddr{IP: net.IP(body[0:4]), Port: int(binary.BigEndian.Uint16(body[8:10]))}, nil
	case 2: // IPv6
		if n < 36 {
			return nil, errors.New("PROXY v2: short IPv6 address")
		}
		return &net.TCPAddr{IP: net.IP(body[0:16]), Port: int(binary.BigEndian.Uint16(body[32:34]))}, nil
	}
	return nil, nil
}
