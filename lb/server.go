package lb

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ServerConfig says where a load balancer listens.
type ServerConfig struct {
	HTTPAddr  string // ":80"; "" for none
	HTTPSAddr string // ":443"; "" for none
	StatsAddr string // ":1000": stats page and Prometheus metrics, with STATS_PASSWORD
	Log       *slog.Logger
	// HeadTimeout bounds a request head that has begun to arrive (a client
	// trickling one holds a connection no longer); 0 is 10 s.
	HeadTimeout time.Duration
}

// Server is one load balancer. Update swaps its routing in place.
type Server struct {
	cfg       ServerConfig
	log       *slog.Logger
	table     atomic.Pointer[table]
	certs     atomic.Pointer[[]tls.Certificate]
	proxy     *httputil.ReverseProxy
	upstream  *http.Transport
	timeouts  sync.Map // time.Duration -> *http.Transport
	authCache sync.Map // bcrypt hash + password -> struct{}
	bufs      *bufPool
	conns     h1conns      // the HTTP/1.1 loop's client connections
	handoffs  atomic.Int64 // connections the loop gave to net/http
	check     *checker
	ctx       context.Context
	stop      context.CancelFunc

	mu       sync.Mutex // backends and tcp listeners
	backends map[string]*backend
	tcp      map[int]*tcpListener
}

// New makes a load balancer with no routing yet (every request is a 404).
func New(cfg ServerConfig) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.HeadTimeout <= 0 {
		cfg.HeadTimeout = 10 * time.Second
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, log: cfg.Log, upstream: newUpstream(0), check: newChecker(), ctx: ctx, stop: stop,
		backends: map[string]*backend{}, tcp: map[int]*tcpListener{}, bufs: &bufPool{}}
	s.proxy = s.newProxy()
	s.proxy.ErrorLog = log.New(io.Discard, "", 0)
	s.table.Store(compile(Config{Options: Options{HTTP2: true}}, func(Service) *pool { return &pool{} }))
	empty := []tls.Certificate{}
	s.certs.Store(&empty)
	return s
}

// Update serves cfg from now on: requests in flight and kept-alive client
// connections carry on; new requests take the new routes. Backends that
// stay keep their health; new ones get traffic once their check passes;
// removed ones finish what they are doing.
func (s *Server) Update(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	certs, err := parseBundles(cfg.Certs)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.openTCP(cfg); err != nil {
		return err
	}
	keep := map[*backend]bool{}
	next := compile(cfg, func(svc Service) *pool {
		p := &pool{balance: svc.Balance}
		for _, be := range svc.Backends {
			key := svc.Name + "|" + be.ID + "|" + be.Addr
			b, ok := s.backends[key]
			if !ok {
				b = &backend{key: key, id: be.ID, addr: be.Addr}
				s.backends[key] = b
			}
			keep[b] = true
			p.backends = append(p.backends, b)
			s.check.watch(s.ctx, b, svc.HealthPath, s.healthChanged(svc.Name))
		}
		return p
	})
	s.certs.Store(&certs)
	s.table.Store(next)
	removed := false
	for key, b := range s.backends {
		if !keep[b] {
			delete(s.backends, key)
			b.idle.closeAll()
			removed = true
		}
	}
	s.check.forget(keep)
	s.closeTCP(cfg)
	if removed {
		// Idle connections to backends that left; busy ones finish.
		s.upstream.CloseIdleConnections()
	}
	return nil
}

func (s *Server) healthChanged(svc string) func(b *backend, up bool, why string) {
	return func(b *backend, up bool, why string) {
		s.log.Info("backend health", "service", svc, "instance", b.id, "addr", b.addr, "up", up, "why", why)
	}
}

// markDown takes a backend out until its health check passes again.
func (s *Server) markDown(b *backend, why string) {
	b.downAt.Store(time.Now().UnixNano())
	if b.up.Swap(false) {
		s.log.Warn("backend taken out", "instance", b.id, "addr", b.addr, "why", why)
	}
}

func (s *Server) timeoutTransport(d time.Duration) http.RoundTripper {
	if t, ok := s.timeouts.Load(d); ok {
		return t.(*http.Transport)
	}
	t, _ := s.timeouts.LoadOrStore(d, newUpstream(d))
	return t.(*http.Transport)
}

// openTCP binds the tcp-mode ports cfg adds (before the routing swaps, so
// a port that cannot be bound fails the update and changes nothing).
func (s *Server) openTCP(cfg Config) error {
	var opened []*tcpListener
	for _, svc := range cfg.Services {
		if svc.Mode != ModeTCP || s.tcp[svc.ExternalPort] != nil {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(svc.ExternalPort)))
		if err != nil {
			for _, tl := range opened {
				_ = tl.ln.Close()
				delete(s.tcp, tl.port)
			}
			return fmt.Errorf("service %s: listen on tcp port %d: %w", svc.Name, svc.ExternalPort, err)
		}
		tl := &tcpListener{port: svc.ExternalPort, ln: s.acceptProxy(ln), done: make(chan struct{})}
		s.tcp[tl.port] = tl
		opened = append(opened, tl)
		go s.serveTCP(s.ctx, tl)
	}
	return nil
}

// closeTCP closes the ports cfg no longer has; their connections go on.
func (s *Server) closeTCP(cfg Config) {
	want := map[int]bool{}
	for _, svc := range cfg.Services {
		if svc.Mode == ModeTCP {
			want[svc.ExternalPort] = true
		}
	}
	for port, tl := range s.tcp {
		if !want[port] {
			_ = tl.ln.Close()
			delete(s.tcp, port)
		}
	}
}

// ServeHTTP serves a request from the current routing.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	withTLS(r)
	s.serveHTTP(w, r)
}

// TLSConfig is the HTTPS side: certificates by SNI and the options of the
// routing current at each handshake.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			o := s.table.Load().cfg.Options
			protos := []string{"http/1.1"}
			if o.HTTP2 {
				protos = []string{"h2", "http/1.1"}
			}
			return &tls.Config{
				MinVersion:   tls.VersionTLS12,
				NextProtos:   protos,
				CipherSuites: o.Ciphers,
				GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
					return pickCert(*s.certs.Load(), hello)
				},
			}, nil
		},
	}
}

// Run listens until ctx ends, then stops accepting and lets requests in
// flight finish (up to 10 s).
func (s *Server) Run(ctx context.Context) error {
	defer s.stop()
	var servers []*http.Server
	var listeners []net.Listener
	errc := make(chan error, 3)
	// loop: connections go to the HTTP/1.1 loop first, which hands what
	// it does not serve itself to srv.
	serve := func(addr string, tlsCfg *tls.Config, h http.Handler, loop bool) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("load balancer: listen on %s: %w", addr, err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: s.cfg.HeadTimeout, IdleTimeout: h1IdleTimeout,
			ErrorLog: log.New(io.Discard, "", 0), ConnContext: connContext}
		servers = append(servers, srv)
		var srvLn net.Listener = ln
		if loop {
			pl := s.acceptProxy(ln)
			listeners = append(listeners, pl)
			ho := newHandoff(ln.Addr())
			srvLn = ho
			go func() { _ = s.acceptLoop(pl, tlsCfg, ho) }()
		}
		go func() {
			if err := srv.Serve(srvLn); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
		return nil
	}
	if a := s.cfg.HTTPAddr; a != "" {
		if err := serve(a, nil, s, true); err != nil {
			return err
		}
	}
	if a := s.cfg.HTTPSAddr; a != "" {
		if err := serve(a, s.TLSConfig(), s, true); err != nil {
			return err
		}
	}
	if a := s.cfg.StatsAddr; a != "" {
		if err := serve(a, nil, s.statsHandler(), false); err != nil {
			return err
		}
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, ln := range listeners {
		_ = ln.Close()
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.conns.shutdown(shut.Done()) }()
	for _, srv := range servers {
		_ = srv.Shutdown(shut)
	}
	wg.Wait()
	s.mu.Lock()
	for port, tl := range s.tcp {
		_ = tl.ln.Close()
		delete(s.tcp, port)
	}
	s.mu.Unlock()
	return err
}
