package httpapi

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

// limitedServer is a TLS test server behind a limitListener, wired as
// start() wires the API.
func limitedServer(t *testing.T, maxConns, maxPending, maxAnon int, handshake time.Duration) (string, *limitListener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := newLimitListener(ln)
	lim.maxConns, lim.maxPending, lim.maxAnon, lim.handshake = maxConns, maxPending, maxAnon, handshake
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	srv.Listener.Close()
	srv.Listener = lim
	srv.Config.ConnState = lim.connState
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return ln.Addr().String(), lim
}

func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer tells whether the server closed c within d (a read
// that times out means it is still open).
func closedByServer(t *testing.T, c net.Conn, d time.Duration) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	if err == nil {
		t.Fatal("the server sent bytes before any handshake")
	}
	return true
}

// handshakeAndGet finishes a TLS handshake on a raw connection and makes
// one request on it (keeping the connection).
func handshakeAndGet(t *testing.T, c net.Conn) *tls.Conn {
	t.Helper()
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	getOn(t, tc)
	return tc
}

func getOn(t *testing.T, tc *tls.Conn) {
	t.Helper()
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	defer tc.SetDeadline(time.Time{})
	if _, err := io.WriteString(tc, "GET / HTTP/1.1\r\nHost: kontena\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "ok" {
		t.Fatalf("answer %d %q", resp.StatusCode, b)
	}
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
	}
}

func (l *limitListener) counts(ip string) (open, pending, anon int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open, l.pending[ip], l.anon[ip]
}

func TestBoundedListener(t *testing.T) {
	t.Run("per-IP handshake cap, then the global cap", func(t *testing.T) {
		addr, lim := limitedServer(t, 5, 3, 100, time.Minute)
		var held []net.Conn
		for range 3 {
			held = append(held, dialRaw(t, addr))
		}
		extra := dialRaw(t, addr)
		if !closedByServer(t, extra, 3*time.Second) {
			t.Fatal("a 4th connection from one IP still in its handshake was accepted")
		}
		for _, c := range held {
			if closedByServer(t, c, 50*time.Millisecond) {
				t.Fatal("a connection within the cap was closed")
			}
		}
		// Handshakes and a first request free the pending slots.
		for _, c := range held {
			handshakeAndGet(t, c)
		}
		eventually(t, "pending slots not freed", func() bool { _, p, _ := lim.counts("127.0.0.1"); return p == 0 })
		for range 2 {
			c := dialRaw(t, addr)
			if closedByServer(t, c, 100*time.Millisecond) {
				t.Fatal("a new connection was refused after the others finished their handshakes")
			}
		}
		// 5 open (2 pending, under the per-IP cap): the global cap.
		if !closedByServer(t, dialRaw(t, addr), 3*time.Second) {
			t.Fatal("a connection over the global cap was accepted")
		}
	})
	t.Run("per-IP cap on connections without a node certificate", func(t *testing.T) {
		addr, lim := limitedServer(t, 100, 10, 2, time.Minute)
		c1, c2 := dialRaw(t, addr), dialRaw(t, addr)
		handshakeAndGet(t, c1)
		handshakeAndGet(t, c2)
		if !closedByServer(t, dialRaw(t, addr), 3*time.Second) {
			t.Fatal("a 3rd anonymous connection from one IP was accepted")
		}
		c1.Close() // closing frees the slot
		eventually(t, "the closed connection still counts", func() bool { _, _, a := lim.counts("127.0.0.1"); return a == 1 })
		c3 := dialRaw(t, addr)
		handshakeAndGet(t, c3)
	})
	t.Run("handshake timeout", func(t *testing.T) {
		addr, lim := limitedServer(t, 100, 10, 100, 300*time.Millisecond)
		start := time.Now()
		silent := dialRaw(t, addr)
		if !closedByServer(t, silent, 5*time.Second) {
			t.Fatal("a connection that sends nothing is still open")
		}
		if took := time.Since(start); took < 250*time.Millisecond {
			t.Fatalf("closed after %s, before the handshake timeout", took)
		}
		// One that finished its handshake in time outlives the timeout.
		tc := handshakeAndGet(t, dialRaw(t, addr))
		time.Sleep(500 * time.Millisecond)
		getOn(t, tc)
		eventually(t, "slots of the closed connection not freed", func() bool {
			open, p, a := lim.counts("127.0.0.1")
			return open == 1 && p == 0 && a == 1
		})
	})
}

// idleTest is the exec idle bound of TestBoundedExecIdle.
const idleTest = 400 * time.Millisecond

func TestBoundedExecIdle(t *testing.T) {

	t.Run("session: traffic keeps it, idleness ends it with an error frame", func(t *testing.T) {
		client, server := net.Pipe()
		defer client.Close()
		_, proc := newFakeProcess(false, 0)
		called := make(chan struct{}, 1)
		proc.exitCode = func() (int, error) { called <- struct{}{}; return 0, nil }
		done := make(chan struct{})
		go func() { runExecSession(server, server, proc, idleTest); server.Close(); close(done) }()
		type frame struct {
			typ byte
			p   string
			at  time.Time
		}
		frames := make(chan frame, 64)
		go func() {
			defer close(frames)
			for {
				typ, p, err := api.ReadFrame(client)
				if err != nil {
					return
				}
				frames <- frame{typ, string(p), time.Now()}
			}
		}()
		var last time.Time
		for range 8 { // 800 ms of input, twice the idle timeout
			time.Sleep(100 * time.Millisecond)
			if err := api.WriteFrame(client, api.FrameStdin, []byte("x")); err != nil {
				t.Fatal(err)
			}
			last = time.Now()
		}
		var out strings.Builder
		gotErr := false
	loop:
		for f := range frames {
			switch f.typ {
			case api.FrameStdout, api.FrameStderr:
				out.WriteString(f.p)
				continue
			case api.FrameError:
				if out.String() != "ready\nxxxxxxxx" {
					t.Fatalf("output before the end %q", out.String())
				}
				if !strings.Contains(f.p, "no input or output for 400ms") {
					t.Fatalf("error frame %q", f.p)
				}
				if idle := f.at.Sub(last); idle < 350*time.Millisecond {
					t.Fatalf("ended %s after the last input", idle)
				}
				gotErr = true
				break loop
			default:
				t.Fatalf("frame %d %q", f.typ, f.p)
			}
		}
		if !gotErr {
			t.Fatalf("the session ended without an error frame (output %q)", out.String())
		}
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the idle session still runs")
		}
		select {
		case <-called:
			t.Fatal("exit code read for a session that idled out")
		default:
		}
	})
	t.Run("splice: bytes keep it, idleness closes both sides", func(t *testing.T) {
		cA, a := net.Pipe()
		b, cB := net.Pipe()
		defer cA.Close()
		defer cB.Close()
		done := make(chan struct{})
		go func() { splice(a, a, b, b, idleTest); close(done) }()
		buf := make([]byte, 1)
		for i := range 8 {
			time.Sleep(100 * time.Millisecond)
			src, dst := cA, cB
			if i%2 == 1 {
				src, dst = cB, cA
			}
			go func() { _, _ = src.Write([]byte("p")) }()
			if _, err := io.ReadFull(dst, buf); err != nil {
				t.Fatalf("splice closed while in use: %v", err)
			}
		}
		last := time.Now()
		for _, c := range []net.Conn{cA, cB} {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(buf); !errors.Is(err, io.EOF) {
				t.Fatalf("idle splice: read %v, want EOF", err)
			}
		}
		if idle := time.Since(last); idle < 350*time.Millisecond {
			t.Fatalf("closed %s after the last byte", idle)
		}
		<-done
	})
}

// TestBoundedBlockingQuery: a blocking query and a follow stream outlive
// the server's read and write timeouts; an ordinary slow answer does not.
func TestBoundedBlockingQuery(t *testing.T) {
	store, err := fsm.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(boundRequests(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow":
			time.Sleep(500 * time.Millisecond)
			_, _ = io.WriteString(w, "late")
		case "/follow":
			for i := range 5 {
				time.Sleep(100 * time.Millisecond)
				fmt.Fprintf(w, "line %d\n", i)
				w.(http.Flusher).Flush()
			}
		default:
			if err := blockingWait(r, store); err != nil {
				writeErr(w, err)
				return
			}
			_ = writeJSON(w, store.Index(), map[string]string{"answer": "after the wait"})
		}
	})))
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = 150*time.Millisecond, 150*time.Millisecond
	srv.StartTLS()
	defer srv.Close()
	cl := srv.Client()

	start := time.Now()
	resp, err := cl.Get(srv.URL + "/v1/events?index=1000000&wait=600ms")
	if err != nil {
		t.Fatalf("blocking query longer than WriteTimeout: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "after the wait") || time.Since(start) < 550*time.Millisecond {
		t.Fatalf("after %s: %d %q", time.Since(start), resp.StatusCode, b)
	}

	resp, err = cl.Get(srv.URL + "/follow?follow=true")
	if err != nil {
		t.Fatal(err)
	}
	b, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || strings.Count(string(b), "line ") != 5 {
		t.Fatalf("follow stream: %q %v", b, err)
	}

	// Control: the server's timeouts do cut an ordinary request.
	if resp, err := cl.Get(srv.URL + "/slow"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) == "late" {
			t.Fatal("an ordinary request outlived WriteTimeout: the test proves nothing")
		}
	}
}
