package lb

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawBackend answers each request it reads with what answer returns,
// byte for byte; close after the answer when it says so. It counts the
// connections it accepted.
type rawBackend struct {
	ln      net.Listener
	accepts atomic.Int64
	reqs    chan string // each request head and body, as received
}

func startRaw(t *testing.T, answer func(n int, head string) (resp string, closeAfter bool)) *rawBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rb := &rawBackend{ln: ln, reqs: make(chan string, 100)}
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			rb.accepts.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					body, _ := io.ReadAll(req.Body)
					var head strings.Builder
					_ = req.Header.Write(&head)
					select { // the first 100 are kept
					case rb.reqs <- req.Method + " " + req.RequestURI + "\n" + head.String() + "\n" + string(body):
					default:
					}
					resp, closeAfter := answer(int(n.Add(1)), req.RequestURI)
					if _, err := io.WriteString(c, resp); err != nil || closeAfter {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return rb
}

func (rb *rawBackend) backend(id string) Backend { return Backend{ID: id, Addr: rb.ln.Addr().String()} }

// rawLB routes every host to the raw backends, checked by port.
func rawLB(t *testing.T, mod func(*Service), rbs ...*rawBackend) (*Server, string, string) {
	t.Helper()
	svc := Service{Name: "raw", Mode: ModeHTTP, Balance: BalanceRoundRobin}
	for i, rb := range rbs {
		svc.Backends = append(svc.Backends, rb.backend(fmt.Sprint("r", i+1)))
	}
	if mod != nil {
		mod(&svc)
	}
	s, httpAddr, httpsAddr := startLB(t, Config{Services: []Service{svc}, Certs: []string{selfSigned(t, "a")}, Options: Options{HTTP2: true}})
	waitUp(t, s, len(rbs))
	return s, httpAddr, httpsAddr
}

// exchange writes raw to a new connection and reads n answers.
func exchangeRaw(t *testing.T, addr, raw string, n int) ([]*http.Response, []string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	// The requests, for their methods (a HEAD answer has no body).
	var reqs []*http.Request
	rr := bufio.NewReader(strings.NewReader(raw))
	for {
		req, err := http.ReadRequest(rr)
		if err != nil {
			break
		}
		_, _ = io.Copy(io.Discard, req.Body)
		reqs = append(reqs, req)
	}
	br := bufio.NewReader(c)
	var resps []*http.Response
	var bodies []string
	for i := 0; i < n; i++ {
		var req *http.Request
		if i < len(reqs) {
			req = reqs[i]
		}
		resp, err := http.ReadResponse(br, req)
		for err == nil && resp.StatusCode < 200 {
			resp, err = http.ReadResponse(br, req)
		}
		if err != nil {
			t.Fatalf("answer %d of %d: %.200v", i+1, n, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("body of answer %d: %v", i+1, err)
		}
		resps, bodies = append(resps, resp), append(bodies, string(body))
	}
	return resps, bodies
}

const okAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// TestLoopKeepsConnectionsAndForwards: plain requests are served by the
// loop itself (no handoff), pipelined ones in order, on one kept-alive
// backend connection, with the forwarding fields, hop-by-hop fields
// dropped and the custom headers set.
func TestLoopKeepsConnectionsAndForwards(t *testing.T) {
	rb := startRaw(t, func(n int, uri string) (string, bool) {
		body := fmt.Sprintf("answer %d %s", n, uri)
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nKeep-Alive: timeout=5\r\nX-Backend: raw\r\n\r\n%s", len(body), body), false
	})
	s, addr, _ := rawLB(t, func(svc *Service) {
		svc.VirtualPath, svc.HealthPath = "/api", ""
		svc.Custom.SetRequestHeaders = []Header{{Name: "X-Env", Value: "prod"}}
		svc.Custom.SetResponseHeaders = []Header{{Name: "X-Backend", Value: "lb"}, {Name: "X-Extra", Value: "1", Add: true}}
	}, rb)
	before := rb.accepts.Load()
	raw := "GET /api/a?q=1 HTTP/1.1\r\nHost: web.test\r\nX-Forwarded-For: 6.6.6.6\r\nX-Env: dev\r\nProxy-Connection: keep-alive\r\n\r\n" +
		"POST /api/b HTTP/1.1\r\nHost: web.test\r\nContent-Length: 5\r\n\r\nhello" +
		"GET /api/c HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n"
	resps, bodies := exchangeRaw(t, addr, raw, 3)
	for i, want := range []string{" /a?q=1", " /b", " /c"} {
		if resps[i].StatusCode != 200 || !strings.HasSuffix(bodies[i], want) {
			t.Errorf("answer %d: %d %.200q, want the backend's answer for %s", i+1, resps[i].StatusCode, bodies[i], want)
		}
		if got := resps[i].Header.Values("X-Backend"); len(got) != 1 || got[0] != "lb" || resps[i].Header.Get("X-Extra") != "1" {
			t.Errorf("answer %d headers: %v", i+1, resps[i].Header)
		}
		if resps[i].Header.Get("Keep-Alive") != "" {
			t.Errorf("answer %d passed on the backend's Keep-Alive field", i+1)
		}
	}
	if !resps[2].Close {
		t.Errorf("the answer to a request with Connection: close does not say close")
	}
	if got := rb.accepts.Load() - before; got != 1 {
		t.Errorf("the backend got %d connections for 3 requests, want 1 kept alive", got)
	}
	if h := s.handoffs.Load(); h != 0 {
		t.Errorf("%d connections went to net/http, want the loop to serve them all", h)
	}
	first := <-rb.reqs
	for _, want := range []string{"GET /a?q=1\n", "X-Forwarded-For: 127.0.0.1", "X-Forwarded-Host: web.test", "X-Forwarded-Proto: http", "X-Env: prod"} {
		if !strings.Contains(first, want) {
			t.Errorf("the backend got\n%s\nwithout %q", first, want)
		}
	}
	for _, bad := range []string{"6.6.6.6", "X-Env: dev", "Proxy-Connection"} {
		if strings.Contains(first, bad) {
			t.Errorf("the backend got\n%s\nwith %q", first, bad)
		}
	}
	if second := <-rb.reqs; !strings.HasPrefix(second, "POST /b\n") || !strings.HasSuffix(second, "\nhello") {
		t.Errorf("the POST reached the backend as\n%s", second)
	}
}

// TestLoopRelaysEveryFraming: chunked answers with a trailer, answers
// without a length (read to the close), HEAD and 204 without a body, and
// a 103 before the answer all reach the client as the backend sent them.
func TestLoopRelaysEveryFraming(t *testing.T) {
	answers := map[string]string{
		"/chunked":  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n",
		"/eof":      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
		"/head":     "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
		"/none":     "HTTP/1.1 204 No Content\r\n\r\n",
		"/early":    "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + okAnswer,
		"/http10":   "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"/bodylong": "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + strings.Repeat("x", 100000),
	}
	rb := startRaw(t, func(_ int, uri string) (string, bool) {
		return answers[uri], uri == "/eof" || uri == "/http10"
	})
	s, addr, _ := rawLB(t, func(svc *Service) { svc.HealthPath = "" }, rb)
	resps, bodies := exchangeRaw(t, addr, "GET /chunked HTTP/1.1\r\nHost: a\r\nTe: trailers\r\n\r\nHEAD /head HTTP/1.1\r\nHost: a\r\n\r\n"+
		"GET /none HTTP/1.1\r\nHost: a\r\n\r\nGET /early HTTP/1.1\r\nHost: a\r\n\r\nGET /http10 HTTP/1.1\r\nHost: a\r\n\r\n"+
		"GET /bodylong HTTP/1.1\r\nHost: a\r\n\r\nGET /eof HTTP/1.1\r\nHost: a\r\n\r\n", 7)
	if bodies[0] != "hello world" || resps[0].Trailer.Get("X-Sum") != "42" {
		t.Errorf("chunked: %q, trailer %v", bodies[0], resps[0].Trailer)
	}
	if resps[1].ContentLength != 1000 || bodies[1] != "" {
		t.Errorf("HEAD: length %d, body %q", resps[1].ContentLength, bodies[1])
	}
	if resps[2].StatusCode != 204 || resps[3].StatusCode != 200 || bodies[3] != "ok" || bodies[4] != "ok" {
		t.Errorf("204 / after a 103 / HTTP/1.0: %d, %d %q, %q", resps[2].StatusCode, resps[3].StatusCode, bodies[3], bodies[4])
	}
	if len(bodies[5]) != 100000 {
		t.Errorf("a 100 KB answer arrived with %d bytes", len(bodies[5]))
	}
	if bodies[6] != "until the end" || !resps[6].Close {
		t.Errorf("an answer without a length: %.100q, close %v", bodies[6], resps[6].Close)
	}
	if h := s.handoffs.Load(); h != 0 {
		t.Errorf("%d connections went to net/http", h)
	}
}

// TestLoopRetriesWhatWasNotAnswered: a kept-alive backend connection the
// backend closed is retried on a new one; a backend that takes a GET and
// closes without answering is taken out and the GET goes to the other;
// a POST that got no answer is not repeated (502).
func TestLoopRetriesWhatWasNotAnswered(t *testing.T) {
	t.Run("stale kept-alive connection", func(t *testing.T) {
		rb := startRaw(t, func(int, string) (string, bool) { return okAnswer, false })
		s, addr, _ := rawLB(t, func(svc *Service) { svc.HealthPath = "" }, rb)
		_, bodies := exchangeRaw(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1)
		// The backend restarts: its kept-alive connections are gone, it
		// listens again on the same port.
		port := rb.ln.Addr().String()
		rb.ln.Close()
		for _, st := range s.snapshot() {
			st.b.idle.mu.Lock()
			for _, u := range st.b.idle.conns {
				_ = u.c.(*net.TCPConn).CloseRead() // as if the peer's close had arrived
			}
			st.b.idle.mu.Unlock()
		}
		ln, err := net.Listen("tcp", port)
		if err != nil {
			t.Fatalf("could not listen on %s again: %v", port, err)
		}
		rb.ln = ln
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					_, _ = http.ReadRequest(bufio.NewReader(c))
					_, _ = io.WriteString(c, okAnswer)
				}()
			}
		}()
		_, bodies2 := exchangeRaw(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1)
		if bodies[0] != "ok" || bodies2[0] != "ok" {
			t.Errorf("answers %q %q", bodies[0], bodies2[0])
		}
	})
	t.Run("empty answer", func(t *testing.T) {
		dead := startRaw(t, func(int, string) (string, bool) { return "", true })
		good := startRaw(t, func(int, string) (string, bool) { return okAnswer, false })
		s, addr, _ := rawLB(t, func(svc *Service) { svc.HealthPath = "" }, dead, good)
		for i := 0; i < 4; i++ {
			resps, bodies := exchangeRaw(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1)
			if resps[0].StatusCode != 200 || bodies[0] != "ok" {
				t.Fatalf("GET %d: %d %q", i, resps[0].StatusCode, bodies[0])
			}
		}
		for _, st := range s.snapshot() {
			if st.b.id == "r1" && st.b.up.Load() {
				t.Errorf("the backend that answered nothing is still in")
			}
		}
		// Only the dead one left, back in (its port accepts): a POST is
		// not repeated.
		s2, addr2, _ := rawLB(t, func(svc *Service) { svc.HealthPath = "" }, dead)
		resps, _ := exchangeRaw(t, addr2, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi", 1)
		if resps[0].StatusCode != http.StatusBadGateway {
			t.Errorf("a POST without an answer: %d, want 502", resps[0].StatusCode)
		}
		_ = s2
	})
}

// TestLoopHandsOffWhatItDoesNotServe: requests the loop leaves to
// net/http — mid-connection too, after requests it served — are answered
// there with what the loop had read; TLS keeps its state across.
func TestLoopHandsOffWhatItDoesNotServe(t *testing.T) {
	rb := startRaw(t, func(int, string) (string, bool) { return okAnswer, false })
	s, addr, httpsAddr := rawLB(t, func(svc *Service) { svc.HealthPath = "" }, rb)
	cases := []struct{ name, req string }{
		{"chunked request body", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"},
		{"Expect", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"},
		{"HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\n\r\n"},
		{"escaped path", "GET /%61 HTTP/1.1\r\nHost: a\r\n\r\n"},
	}
	for _, tc := range cases {
		before := s.handoffs.Load()
		// One request the loop serves, then the one it hands off.
		resps, bodies := exchangeRaw(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"+tc.req, 2)
		if resps[1].StatusCode != 200 || bodies[0] != "ok" || bodies[1] != "ok" {
			t.Errorf("%s: %d %q %q", tc.name, resps[1].StatusCode, bodies[0], bodies[1])
		}
		if s.handoffs.Load() != before+1 {
			t.Errorf("%s: not handed off", tc.name)
		}
	}
	// Smuggling attempts are net/http's to refuse.
	resps, _ := exchangeRaw(t, addr, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 1)
	if resps[0].StatusCode != 400 {
		t.Errorf("two Content-Lengths: %d, want 400", resps[0].StatusCode)
	}
	// TLS: HTTP/1.1 through the loop, then a handed-off request, both
	// forwarded as https.
	for len(rb.reqs) > 0 {
		<-rb.reqs
	}
	c, err := tls.Dial("tcp", httpsAddr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.0\r\nHost: a\r\n\r\n")
	br := bufio.NewReader(c)
	for i := 0; i < 2; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.ReadAll(resp.Body)
		select {
		case r := <-rb.reqs:
			if !strings.Contains(r, "X-Forwarded-Proto: https") {
				t.Errorf("TLS request %d reached the backend as\n%s", i+1, r)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("TLS request %d did not reach the backend", i+1)
		}
	}
}

// TestLoopTimesOutATricklingHead: a client that starts a request head and
// stops sending is cut off after the head timeout, not the idle timeout;
// one that sends whole requests keeps its connection.
func TestLoopTimesOutATricklingHead(t *testing.T) {
	rb := startRaw(t, func(int, string) (string, bool) { return okAnswer, false })
	httpAddr := freeAddr(t)
	s := New(ServerConfig{HTTPAddr: httpAddr, HeadTimeout: 300 * time.Millisecond})
	if err := s.Update(Config{Services: []Service{{Name: "raw", Mode: ModeHTTP, Balance: BalanceRoundRobin,
		Backends: []Backend{rb.backend("r1")}}}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitPort(t, httpAddr)
	waitUp(t, s, 1)
	c, err := net.Dial("tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n") // and nothing more
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(c)
	if took := time.Since(start); err != nil || took > 4*time.Second {
		t.Fatalf("a trickling head held its connection %s (%v), want it closed after the 300 ms head timeout", took, err)
	}
	// A whole request in two writes, the second well within the timeout,
	// is answered.
	c2, err := net.Dial("tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_, _ = io.WriteString(c2, "GET / HTTP/1.1\r\n")
	time.Sleep(50 * time.Millisecond)
	_, _ = io.WriteString(c2, "Host: a\r\n\r\n")
	_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c2), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("a head in two pieces: %v %v", resp, err)
	}
}
