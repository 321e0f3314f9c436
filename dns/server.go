package dns

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Config configures a Server. The zero value is usable: kontena.local,
// upstreams from /etc/resolv.conf, TTL 0.
type Config struct {
	// Domain the server is authoritative for; DefaultDomain if empty.
	Domain string
	// ResolvConf is the resolv.conf whose nameservers receive every query
	// outside Domain ("/etc/resolv.conf" if empty). It is re-read when it
	// changes (checked at most every ResolvConfRecheck, default 2s).
	ResolvConf        string
	ResolvConfRecheck time.Duration
	// UpstreamPort is the port of the resolv.conf nameservers (53 if 0).
	UpstreamPort int
	// Upstreams ("host:port"), if set, replace the resolv.conf nameservers.
	Upstreams []string
	// ForwardTimeout bounds one exchange with one upstream (default 2s);
	// on timeout or error the next upstream is tried, SERVFAIL if all fail.
	ForwardTimeout time.Duration
	// MaxForwards bounds the forwarded queries in flight (default 1024);
	// beyond it queries get SERVFAIL at once.
	MaxForwards int
	// TTL of A/AAAA answers and NegativeTTL of NXDOMAIN/NODATA answers (the
	// SOA's TTL and MINIMUM), in seconds. Both default to 0, so no cache
	// between a client and this server holds an answer after a change.
	TTL         uint32
	NegativeTTL uint32
	// MaxUDPSize is the largest UDP response (EDNS payload size), default 1232.
	MaxUDPSize uint16
	// UDPWorkers is the number of goroutines reading each UDP socket
	// (default 1). A reader takes up to 32 queries per system call and
	// answers the zone's itself (~100-200 ns each), so one reader is bound
	// by system calls, not CPU; on 2 cores a second reader on the same socket
	// measured 5-25% slower (they take turns on the socket). Forwarded
	// queries get a goroutine each.
	UDPWorkers int
	// TCPIdleTimeout closes idle TCP connections (default 8s, RFC 7766).
	TCPIdleTimeout time.Duration
	// Seed seeds the answer shuffling; 0 picks a random seed.
	Seed uint64
	// Logger; slog.Default() if nil.
	Logger *slog.Logger
}

// Server is the node resolver. Create it with New, feed it with Update, serve
// with Start (once per address), stop with Close.
type Server struct {
	cfg    Config
	log    *slog.Logger
	err    error // invalid configuration, returned by Start
	domain string
	dot    string // ".kontena.local." for suffix checks

	zone   atomic.Pointer[Zone]
	upMu   sync.Mutex // serialises Update
	serial uint32

	seed  uint64
	seeds atomic.Uint64

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	mu     sync.Mutex
	closed bool
	lns    []*listener
	self   atomic.Pointer[[]netip.AddrPort] // bound addresses, to skip ourselves as an upstream
	wg     sync.WaitGroup

	sem      chan struct{}
	ups      upstreams
	lastWarn atomic.Int64
}

type listener struct {
	udp      *net.UDPConn
	tcp      *net.TCPListener
	wildcard bool
	addr     netip.AddrPort
	once     sync.Once
	closed   atomic.Bool
	conns    sync.Map // *net.TCPConn -> struct{}
}

func (l *listener) close() {
	l.once.Do(func() {
		l.closed.Store(true)
		l.udp.Close()
		l.tcp.Close()
		l.conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
	})
}

// New returns a server with an empty zone: every name under the domain is
// NXDOMAIN until the first Update.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = "/etc/resolv.conf"
	}
	if cfg.ResolvConfRecheck <= 0 {
		cfg.ResolvConfRecheck = 2 * time.Second
	}
	if cfg.UpstreamPort == 0 {
		cfg.UpstreamPort = 53
	}
	if cfg.ForwardTimeout <= 0 {
		cfg.ForwardTimeout = 2 * time.Second
	}
	if cfg.MaxForwards <= 0 {
		cfg.MaxForwards = 1024
	}
	if cfg.MaxUDPSize == 0 {
		cfg.MaxUDPSize = 1232
	}
	if cfg.UDPWorkers <= 0 {
		cfg.UDPWorkers = 1
	}
	if cfg.TCPIdleTimeout <= 0 {
		cfg.TCPIdleTimeout = 8 * time.Second
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "dns"), sem: make(chan struct{}, cfg.MaxForwards)}
	s.domain = strings.TrimSuffix(strings.ToLower(cfg.Domain), ".")
	if s.domain == "" {
		s.domain = DefaultDomain
	}
	s.dot = "." + s.domain + "."
	s.seed = cfg.Seed
	if s.seed == 0 {
		var b [8]byte
		_, _ = io.ReadFull(rand.Reader, b[:])
		s.seed = binary.LittleEndian.Uint64(b[:]) | 1
	}
	s.serial = uint32(time.Now().Unix())
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.ups = upstreams{path: cfg.ResolvConf, port: cfg.UpstreamPort, recheck: cfg.ResolvConfRecheck, static: cfg.Upstreams}
	z, err := BuildZone(nil, nil, s.zoneOptions())
	if err != nil {
		s.err = err
		z, _ = BuildZone(nil, nil, ZoneOptions{})
	}
	s.zone.Store(z)
	s.self.Store(&[]netip.AddrPort{})
	return s
}

func (s *Server) zoneOptions() ZoneOptions {
	return ZoneOptions{Domain: s.domain, TTL: s.cfg.TTL, NegativeTTL: s.cfg.NegativeTTL, Serial: s.serial, MaxUDPSize: s.cfg.MaxUDPSize}
}

// Update replaces the zone with one built from records (the grid's running
// instances) and exposes (ExposeKey(grid, stack) -> exposed service). The
// next query sees the new snapshot; queries in progress finish with the old
// one. Answering never waits for Update. The caller keeps the last state
// while the masters are unreachable: it must not call Update with an empty
// list because it lost them, since the server answers from the last snapshot.
func (s *Server) Update(records []Record, exposes map[string]string) {
	s.upMu.Lock()
	defer s.upMu.Unlock()
	s.serial++
	z, err := BuildZone(records, exposes, s.zoneOptions())
	if err != nil { // only an invalid domain, which New already reported
		s.log.Error("zone not updated", "err", err)
		return
	}
	s.zone.Store(z)
	if z.skipped > 0 {
		s.log.Warn("records skipped (invalid names or addresses)", "skipped", z.skipped)
	}
	s.log.Debug("zone updated", "serial", z.serial, "records", z.records, "names", len(z.names))
}

// Zone returns the snapshot the server answers from.
func (s *Server) Zone() *Zone { return s.zone.Load() }

// Start listens on addr ("127.0.0.1:53", "10.81.0.3:53", ":53"; port 0
// picks a free port, the same for UDP and TCP) and serves it until ctx is
// canceled or Close is called. Start returns once both sockets are bound.
// It can be called for several addresses.
func (s *Server) Start(ctx context.Context, addr string) error {
	if s.err != nil {
		return s.err
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return fmt.Errorf("dns: listen %s: %w", addr, err)
	}
	var l *listener
	for try := 0; ; try++ {
		l, err = listen(ua)
		if err == nil || ua.Port != 0 || try == 10 {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("dns: listen %s: %w", addr, err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.close()
		return errors.New("dns: server closed")
	}
	s.lns = append(s.lns, l)
	self := append([]netip.AddrPort(nil), *s.self.Load()...)
	self = append(self, l.addr)
	s.self.Store(&self)
	for i := 0; i < s.cfg.UDPWorkers; i++ {
		s.wg.Add(1)
		r := rng(s.seed + s.seeds.Add(1)*0x9e3779b97f4a7c15)
		if l.wildcard {
			go s.serveUDP(l, r)
		} else {
			go s.serveUDPBatch(l, r)
		}
	}
	s.wg.Add(1)
	go s.serveTCP(l)
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, l.close)
	s.wg.Add(1)
	go func() { // drop the AfterFunc when the server closes first
		defer s.wg.Done()
		<-s.ctx.Done()
		stop()
	}()
	s.log.Info("dns resolver listening", "addr", l.addr.String(), "domain", s.domain, "udp_workers", s.cfg.UDPWorkers)
	return nil
}

func listen(ua *net.UDPAddr) (*listener, error) {
	uc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, err
	}
	local := uc.LocalAddr().(*net.UDPAddr).AddrPort()
	tl, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ua.IP, Port: int(local.Port()), Zone: ua.Zone})
	if err != nil {
		uc.Close()
		return nil, err
	}
	_ = uc.SetReadBuffer(4 << 20)
	l := &listener{udp: uc, tcp: tl, addr: netip.AddrPortFrom(local.Addr().Unmap(), local.Port())}
	if ua.IP == nil || ua.IP.IsUnspecified() {
		// Replies must leave from the address the query came to: read the
		// destination from the control messages (miekg/dns sessions).
		l.wildcard = true
		err6 := ipv6.NewPacketConn(uc).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
		err4 := ipv4.NewPacketConn(uc).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
		if err4 != nil && err6 != nil {
			l.close()
			return nil, err4
		}
	}
	return l, nil
}

// Addrs returns the addresses the server listens on (UDP and TCP).
func (s *Server) Addrs() []netip.AddrPort { return append([]netip.AddrPort(nil), *s.self.Load()...) }

// Close stops all listeners, cancels forwarded queries and waits for the
// server's goroutines. It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.cancel()
	for _, l := range s.lns {
		l.close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// peer is where a UDP response goes: an address, or a miekg/dns session
// (wildcard sockets, to answer from the address the query was sent to).
type peer struct {
	addr netip.AddrPort
	sess *mdns.SessionUDP
}

func (l *listener) write(b []byte, p peer) {
	if p.sess != nil {
		_, _ = mdns.WriteToSessionUDP(l.udp, b, p.sess)
		return
	}
	_, _ = l.udp.WriteToUDPAddrPort(b, p.addr)
}

func (s *Server) serveUDP(l *listener, r rng) {
	defer s.wg.Done()
	buf := make([]byte, 65536)
	out := make([]byte, 0, 4096)
	for {
		var (
			n   int
			p   peer
			err error
		)
		if l.wildcard {
			n, p.sess, err = mdns.ReadFromSessionUDP(l.udp, buf)
		} else {
			n, p.addr, err = l.udp.ReadFromUDPAddrPort(buf)
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("udp read", "err", err)
			continue
		}
		if resp, ok := s.zone.Load().answer(buf[:n], out, false, &r); ok {
			l.write(resp, p)
			out = resp[:0]
			continue
		}
		s.slow(append([]byte(nil), buf[:n]...), false, &r, func(b []byte) { l.write(b, p) })
	}
}

func (s *Server) serveTCP(l *listener) {
	defer s.wg.Done()
	for {
		c, err := l.tcp.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("tcp accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.wg.Add(1)
		go s.serveTCPConn(l, c)
	}
}

// serveTCPConn answers length-prefixed queries in order (RFC 7766) until the
// client closes, stays idle for TCPIdleTimeout, or the listener closes.
func (s *Server) serveTCPConn(l *listener, c *net.TCPConn) {
	defer s.wg.Done()
	l.conns.Store(c, struct{}{})
	defer l.conns.Delete(c)
	defer c.Close()
	if l.closed.Load() { // close ran before Store: it did not see this connection
		return
	}
	r := rng(s.seed + s.seeds.Add(1)*0x9e3779b97f4a7c15)
	var lenb [2]byte
	buf := make([]byte, 0, 512)
	out := make([]byte, 2, 4096)
	for {
		_ = c.SetReadDeadline(time.Now().Add(s.cfg.TCPIdleTimeout))
		if _, err := io.ReadFull(c, lenb[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(lenb[:]))
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		var resp []byte
		if b, ok := s.zone.Load().answer(buf, out[2:2], true, &r); ok {
			resp = b
		} else {
			s.slow(buf, true, &r, func(b []byte) { resp = b })
		}
		if resp == nil {
			continue
		}
		frame := append(out[:2], resp...)
		binary.BigEndian.PutUint16(frame, uint16(len(resp)))
		_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write(frame); err != nil {
			return
		}
		out = frame[:2]
	}
}

// slow answers what the zone's fast path did not: it parses the query with
// miekg/dns and answers errors locally, re-asks the zone with a normalised
// query, or forwards. reply is called at most once; for UDP forwards it is
// called from another goroutine, for TCP before slow returns.
func (s *Server) slow(pkt []byte, tcp bool, r *rng, reply func([]byte)) {
	req := new(mdns.Msg)
	if err := req.Unpack(pkt); err != nil {
		if len(pkt) >= 12 && pkt[2]&0x80 == 0 { // a query we cannot parse: FORMERR, header only
			reply([]byte{pkt[0], pkt[1], 0x80 | pkt[2]&0x78, byte(mdns.RcodeFormatError), 0, 0, 0, 0, 0, 0, 0, 0})
		}
		return
	}
	if req.Response {
		return
	}
	if req.Opcode != mdns.OpcodeQuery {
		reply(s.errorReply(req, mdns.RcodeNotImplemented))
		return
	}
	if len(req.Question) != 1 {
		reply(s.errorReply(req, mdns.RcodeFormatError))
		return
	}
	q := req.Question[0]
	if s.inZone(q.Name) {
		reply(s.zoneReply(req, tcp, r))
		return
	}
	if tcp {
		reply(s.forward(s.ctx, req, true))
		return
	}
	select {
	case s.sem <- struct{}{}:
	default:
		s.warn("too many forwarded queries in flight", "max", s.cfg.MaxForwards)
		reply(s.errorReply(req, mdns.RcodeServerFailure))
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.sem }()
		if b := s.forward(s.ctx, req, false); b != nil {
			reply(b)
		}
	}()
}

func (s *Server) inZone(name string) bool {
	return len(name) >= len(s.dot) && strings.EqualFold(name[len(name)-len(s.dot):], s.dot) ||
		strings.EqualFold(name, s.dot[1:])
}

// zoneReply answers an in-zone query the fast path rejected (other classes,
// EDNS versions, extra records, compressed question name).
func (s *Server) zoneReply(req *mdns.Msg, tcp bool, r *rng) []byte {
	q := req.Question[0]
	opt := req.IsEdns0()
	if opt != nil && opt.Version() != 0 {
		return s.errorReply(req, mdns.RcodeBadVers)
	}
	if q.Qclass != mdns.ClassINET {
		return s.errorReply(req, mdns.RcodeRefused)
	}
	m := new(mdns.Msg)
	m.Id, m.RecursionDesired, m.CheckingDisabled = req.Id, req.RecursionDesired, req.CheckingDisabled
	m.Question = []mdns.Question{q}
	if opt != nil {
		m.SetEdns0(opt.UDPSize(), opt.Do())
	}
	wire, err := m.Pack()
	if err == nil {
		if b, ok := s.zone.Load().answer(wire, nil, tcp, r); ok {
			return b
		}
	}
	return s.errorReply(req, mdns.RcodeServerFailure)
}

func (s *Server) errorReply(req *mdns.Msg, rcode int) []byte {
	m := new(mdns.Msg)
	m.SetRcode(req, rcode)
	m.RecursionAvailable = true
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(s.cfg.MaxUDPSize, opt.Do())
	}
	b, err := m.Pack()
	if err != nil {
		return nil
	}
	return b
}

// warn logs at most once every 10 seconds (outages would flood the log).
func (s *Server) warn(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := s.lastWarn.Load()
	if now-last < int64(10*time.Second) || !s.lastWarn.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn(msg, args...)
}
