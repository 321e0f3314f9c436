package lb

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/kontena-ng/kontena/internal/testport"
)

// echoBackend is an HTTP instance that says who it is and what it got.
type echoBackend struct {
	name string
	ln   net.Listener
	srv  *http.Server
	hits atomic.Int64
	fail atomic.Bool // answer 500
}

func startBackend(t *testing.T, name string) *echoBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &echoBackend{name: name, ln: ln}
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		if r.URL.Path == "/health" {
			if b.fail.Load() {
				w.WriteHeader(500)
			}
			return
		}
		if b.fail.Load() {
			w.WriteHeader(500)
			return
		}
		if r.Header.Get("Upgrade") == "websocket" {
			hj, _ := w.(http.Hijacker)
			c, brw, _ := hj.Hijack()
			defer c.Close()
			fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			_ = brw.Flush()
			line, _ := brw.ReadString('\n')
			fmt.Fprintf(brw, "%s echo %s", b.name, line)
			_ = brw.Flush()
			return
		}
		fmt.Fprintf(w, "%s %s xff=%s proto=%s host=%s", b.name, r.URL.Path, r.Header.Get("X-Forwarded-For"),
			r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"))
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = b.srv.Serve(ln) }()
	t.Cleanup(func() { _ = b.srv.Close() })
	return b
}

func (b *echoBackend) backend() Backend { return Backend{ID: b.name, Addr: b.ln.Addr().String()} }

// startLB runs a load balancer on loopback ports and returns its
// addresses.
func startLB(t *testing.T, cfg Config) (*Server, string, string) {
	t.Helper()
	httpAddr, httpsAddr := freeAddr(t), freeAddr(t)
	s := New(ServerConfig{HTTPAddr: httpAddr, HTTPSAddr: httpsAddr})
	if err := s.Update(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitPort(t, httpAddr)
	return s, httpAddr, httpsAddr
}

// freeAddr is a loopback address for a listener of this test (see testport).
func freeAddr(t *testing.T) string { return fmt.Sprintf("127.0.0.1:%d", testport.Free(t)) }

func waitPort(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("%s does not accept connections", addr)
}

// waitUp waits until every backend of the routing passed its check.
func waitUp(t *testing.T, s *Server, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		up := 0
		for _, st := range s.snapshot() {
			if st.b.up.Load() {
				up++
			}
		}
		if up >= n {
			return
		}
	}
	t.Fatalf("fewer than %d backends up: %+v", n, s.snapshot())
}

func get(t *testing.T, c *http.Client, url, host string, mod ...func(*http.Request)) (int, string, *http.Response) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Host = host
	for _, m := range mod {
		m(req)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s (Host %s): %v", url, host, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(body), resp
}

func httpSvc(name string, hosts []string, path string, bs ...*echoBackend) Service {
	s := Service{Name: name, Mode: ModeHTTP, Balance: BalanceRoundRobin, VirtualHosts: hosts, VirtualPath: path, HealthPath: "/health"}
	for _, b := range bs {
		s.Backends = append(s.Backends, b.backend())
	}
	return s
}

func TestHTTPRouting(t *testing.T) {
	web1, web2, api1 := startBackend(t, "web1"), startBackend(t, "web2"), startBackend(t, "api1")
	admin := startBackend(t, "admin1")
	adminSvc := httpSvc("s/admin", []string{"admin.test"}, "", admin)
	adminSvc.BasicAuth = []BasicUser{{Name: "ann", Password: "s3cret"}}
	adminSvc.Custom.RedirectHTTPS, adminSvc.Custom.RedirectCode = false, 0
	secure := httpSvc("s/secure", []string{"secure.test"}, "", web1)
	secure.Custom.RedirectHTTPS, secure.Custom.RedirectCode = true, 301
	sticky := httpSvc("s/sticky", []string{"sticky.test"}, "", web1, web2)
	sticky.Cookie = "SRV"
	s, addr, _ := startLB(t, Config{Services: []Service{
		httpSvc("s/web", []string{"www.test", "*.web.test"}, "", web1, web2),
		httpSvc("s/api", []string{"www.test"}, "/api", api1),
		adminSvc, secure, sticky,
	}, Options: Options{HealthURI: "/__lb"}})
	waitUp(t, s, 7)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	base := "http://" + addr

	seen := map[string]int{}
	for range 10 {
		_, body, _ := get(t, c, base+"/x", "www.test")
		seen[strings.Fields(body)[0]]++
	}
	if seen["web1"] != 5 || seen["web2"] != 5 {
		t.Errorf("round robin over web1, web2: %v", seen)
	}
	if _, body, _ := get(t, c, base+"/api/users", "www.test"); !strings.HasPrefix(body, "api1 /users xff=127.0.0.1 proto=http host=www.test") {
		t.Errorf("path route (stripped) with X-Forwarded-*: %q", body)
	}
	if _, body, _ := get(t, c, base+"/", "a.web.test"); !strings.HasPrefix(body, "web") {
		t.Errorf("wildcard host: %q", body)
	}
	if code, _, _ := get(t, c, base+"/", "nothing.test"); code != 404 {
		t.Errorf("unknown host: %d", code)
	}
	if code, body, _ := get(t, c, base+"/__lb", "x"); code != 200 || body != "ok\n" {
		t.Errorf("health URI: %d %q", code, body)
	}
	if code, _, _ := get(t, c, base+"/", "admin.test"); code != 401 {
		t.Errorf("basic auth without credentials: %d", code)
	}
	if code, _, _ := get(t, c, base+"/", "admin.test", func(r *http.Request) { r.SetBasicAuth("ann", "wrong") }); code != 401 {
		t.Errorf("basic auth, wrong password: %d", code)
	}
	if code, body, _ := get(t, c, base+"/", "admin.test", func(r *http.Request) { r.SetBasicAuth("ann", "s3cret") }); code != 200 || !strings.HasPrefix(body, "admin1") {
		t.Errorf("basic auth: %d %q", code, body)
	}
	if code, _, resp := get(t, c, base+"/p?q=1", "secure.test"); code != 301 || resp.Header.Get("Location") != "https://secure.test/p?q=1" {
		t.Errorf("redirect scheme https: %d %q", code, resp.Header.Get("Location"))
	}
	// Sticky: the cookie the first answer sets keeps the client on its instance.
	_, first, resp := get(t, c, base+"/", "sticky.test")
	var cookie *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "SRV" {
			cookie = ck
		}
	}
	if cookie == nil {
		t.Fatalf("no sticky cookie set: %v", resp.Header)
	}
	for range 6 {
		if _, body, _ := get(t, c, base+"/", "sticky.test", func(r *http.Request) { r.AddCookie(cookie) }); strings.Fields(body)[0] != strings.Fields(first)[0] {
			t.Fatalf("sticky session moved: %q then %q", first, body)
		}
	}
	// A backend that fails its health check gets no more requests.
	web2.fail.Store(true)
	isUp := func(id string) bool {
		for _, st := range s.snapshot() {
			if st.service == "s/web" && st.b.id == id {
				return st.b.up.Load()
			}
		}
		return false
	}
	deadline := time.Now().Add(5 * time.Second)
	for ; isUp("web2") && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		get(t, c, base+"/", "www.test") // its 500 takes it out at once, else its next check does
	}
	before := web2.hits.Load()
	time.Sleep(200 * time.Millisecond) // let a health check run: it counts as a hit
	for range 20 {
		if code, body, _ := get(t, c, base+"/", "www.test"); code != 200 || !strings.HasPrefix(body, "web1") {
			t.Fatalf("with web2 unhealthy: %d %q", code, body)
		}
	}
	if extra := web2.hits.Load() - before; extra > 2 { // health checks only
		t.Errorf("unhealthy web2 got %d requests", extra)
	}
	web2.fail.Store(false)
	// A backend that went away: its requests go to the other at once.
	_ = web2.srv.Close()
	for range 10 {
		if code, body, _ := get(t, c, base+"/", "www.test"); code != 200 || !strings.HasPrefix(body, "web1") {
			t.Fatalf("with web2 gone: %d %q", code, body)
		}
	}
}

func TestWebSocketPasses(t *testing.T) {
	ws := startBackend(t, "ws1")
	s, addr, _ := startLB(t, Config{Services: []Service{httpSvc("s/ws", nil, "", ws)}})
	waitUp(t, s, 1)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(c)
	status, _ := br.ReadString('\n')
	if !strings.Contains(status, "101") {
		t.Fatalf("upgrade: %q", status)
	}
	for line, _ := br.ReadString('\n'); line != "\r\n"; line, _ = br.ReadString('\n') {
	}
	fmt.Fprintf(c, "hello\n")
	got, _ := br.ReadString('\n')
	if got != "ws1 echo hello\n" {
		t.Fatalf("websocket frame: %q", got)
	}
}

// selfSigned makes a certificate bundle (cert + key PEM) for host.
func selfSigned(t *testing.T, host string) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: host},
		DNSNames: []string{host}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})) + string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
}

func TestTLSBySNIAndHTTP2(t *testing.T) {
	web := startBackend(t, "web1")
	s, _, tlsAddr := startLB(t, Config{Services: []Service{httpSvc("s/web", nil, "", web)},
		Certs: []string{selfSigned(t, "a.test") + selfSigned(t, "b.test")}, Options: Options{HTTP2: true}})
	waitUp(t, s, 1)
	for _, host := range []string{"a.test", "b.test"} {
		conn, err := tls.Dial("tcp", tlsAddr, &tls.Config{ServerName: host, InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		st := conn.ConnectionState()
		if cn := st.PeerCertificates[0].Subject.CommonName; cn != host {
			t.Errorf("SNI %s got the certificate of %s", host, cn)
		}
		if st.NegotiatedProtocol != "h2" {
			t.Errorf("ALPN: %q, want h2", st.NegotiatedProtocol)
		}
		conn.Close()
	}
	tr := &http2.Transport{TLSClientConfig: &tls.Config{ServerName: "a.test", InsecureSkipVerify: true}}
	resp, err := (&http.Client{Transport: tr}).Get("https://" + tlsAddr + "/over-h2")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || !strings.HasPrefix(string(body), "web1 /over-h2") || !strings.Contains(string(body), "proto=https") {
		t.Errorf("over HTTP/2: %s %q", resp.Proto, body)
	}
	// Without HTTP/2 the load balancer offers HTTP/1.1 only.
	cfg := s.table.Load().cfg
	cfg.Options.HTTP2 = false
	if err := s.Update(cfg); err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", tlsAddr, &tls.Config{ServerName: "a.test", InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		t.Errorf("KONTENA_LB_HTTP2=false: ALPN %q", p)
	}
	conn.Close()
}

func TestTCPMode(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	port := freePortNum(t)
	s, _, _ := startLB(t, Config{Services: []Service{{Name: "s/echo", Mode: ModeTCP, Balance: BalanceLeastConn, ExternalPort: port,
		Backends: []Backend{{ID: "echo1", Addr: ln.Addr().String()}, {ID: "dead", Addr: freeAddr(t)}}}}})
	waitUp(t, s, 1)
	for range 5 {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "ping\n")
		got, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if got != "ping\n" {
			t.Fatalf("tcp echo: %q", got)
		}
	}
}

func freePortNum(t *testing.T) int {
	_, p, _ := net.SplitHostPort(freeAddr(t))
	var n int
	fmt.Sscan(p, &n)
	return n
}

// TestNoRequestLostWhileRoutingChanges: a bounded load runs while the
// backends go 2 -> 6 -> 2 and are replaced (a redeploy) and the
// certificate changes: no request fails.
func TestNoRequestLostWhileRoutingChanges(t *testing.T) {
	var bs []*echoBackend
	for i := range 10 {
		bs = append(bs, startBackend(t, fmt.Sprintf("b%d", i)))
	}
	cfgOf := func(cert string, from, to int) Config {
		return Config{Services: []Service{httpSvc("s/web", []string{"www.test"}, "", bs[from:to]...)}, Certs: []string{cert}}
	}
	s, addr, tlsAddr := startLB(t, cfgOf(selfSigned(t, "www.test"), 0, 2))
	waitUp(t, s, 2)
	var failed, done atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := "http://" + addr + "/"
			c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Timeout: 5 * time.Second}
			if i%2 == 1 {
				url = "https://" + tlsAddr + "/"
				c = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{ServerName: "www.test", InsecureSkipVerify: true}, MaxIdleConnsPerHost: 4}, Timeout: 5 * time.Second}
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", url, nil)
				req.Host = "www.test"
				resp, err := c.Do(req)
				if err != nil {
					failed.Add(1)
					t.Logf("request failed: %v", err)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					t.Logf("request answered %d", resp.StatusCode)
				}
				done.Add(1)
			}
		}()
	}
	step := func(cfg Config, up int) {
		if err := s.Update(cfg); err != nil {
			t.Fatal(err)
		}
		waitUp(t, s, up)
		time.Sleep(300 * time.Millisecond)
	}
	step(cfgOf(selfSigned(t, "www.test"), 0, 6), 6) // scale 2 -> 6
	// Scale 6 -> 2: the removed ones drain (they keep running meanwhile).
	step(cfgOf(selfSigned(t, "www.test"), 0, 2), 2)
	// Redeploy: new instances come up first, then the old ones leave.
	step(cfgOf(selfSigned(t, "www.test"), 0, 4), 4)
	step(cfgOf(selfSigned(t, "www.test"), 2, 4), 2)
	// A new certificate.
	step(cfgOf(selfSigned(t, "www.test"), 2, 4), 2)
	close(stop)
	wg.Wait()
	t.Logf("MEASURED %d requests while the routing changed 5 times, %d failed", done.Load(), failed.Load())
	if failed.Load() != 0 || done.Load() == 0 {
		t.Fatalf("%d of %d requests failed", failed.Load(), done.Load())
	}
}
