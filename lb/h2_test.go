package lb

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

func h2Client() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http2.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
}

// TestHTTP2RelaysAnswersOfEveryShape: over the load balancer's own
// HTTP/2 server, answers chunked with a trailer, with a length, without
// one, to HEAD, large and many at once on one connection arrive whole,
// with lower-case field names and the custom response headers.
func TestHTTP2RelaysAnswersOfEveryShape(t *testing.T) {
	big := strings.Repeat("0123456789", 100_000)
	answers := map[string]string{
		"/chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\nX-Mixed-Case: yes\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n",
		"/eof":     "HTTP/1.1 200 OK\r\n\r\nuntil the end",
		"/big":     fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(big), big),
		"/head":    "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
		"/":        okAnswer,
	}
	rb := startRaw(t, func(_ int, uri string) (string, bool) {
		if a, ok := answers[uri]; ok {
			return a, uri == "/eof"
		}
		return okAnswer, false
	})
	_, _, httpsAddr := rawLB(t, func(svc *Service) {
		svc.HealthPath = ""
		svc.Custom.SetResponseHeaders = []Header{{Name: "X-Served-By", Value: "lb"}}
	}, rb)
	c := h2Client()
	do := func(method, path string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "https://"+httpsAddr+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s body: %v", method, path, err)
		}
		if resp.ProtoMajor != 2 {
			t.Fatalf("%s %s over %s", method, path, resp.Proto)
		}
		return resp, string(body)
	}
	resp, body := do("GET", "/chunked")
	if body != "hello world" || resp.Trailer.Get("X-Sum") != "42" || resp.Header.Get("X-Mixed-Case") != "yes" || resp.Header.Get("X-Served-By") != "lb" {
		t.Errorf("chunked over HTTP/2: %q, trailer %v, header %v", body, resp.Trailer, resp.Header)
	}
	if _, body := do("GET", "/eof"); body != "until the end" {
		t.Errorf("an answer without a length: %q", body)
	}
	if _, body := do("GET", "/big"); body != big {
		t.Errorf("a 1 MB answer arrived with %d bytes", len(body))
	}
	if resp, body := do("HEAD", "/head"); body != "" || resp.ContentLength != 1000 {
		t.Errorf("HEAD: %d %q", resp.ContentLength, body)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 200)
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get("https://" + httpsAddr + "/")
			if err != nil {
				errs <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "ok" {
				errs <- string(b)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("one of 200 concurrent streams: %s", e)
	}
}

// TestHTTP2RequestBodiesAndHandlerRoutes: a request with a body larger
// than the stream window reaches the backend whole (the window is given
// back as it is read), and a route with basic auth is served by the
// load balancer's handler over HTTP/2 too.
func TestHTTP2RequestBodiesAndHandlerRoutes(t *testing.T) {
	web := startBackend(t, "web1")
	echo := startRaw(t, func(int, string) (string, bool) { return okAnswer, false })
	svc := httpSvc("s/web", []string{"auth.test"}, "", web)
	svc.BasicAuth = []BasicUser{{Name: "ann", Password: "pw"}}
	up := Service{Name: "s/up", Mode: ModeHTTP, Balance: BalanceRoundRobin, VirtualHosts: []string{"up.test"}, Backends: []Backend{echo.backend("e1")}}
	s, _, httpsAddr := startLB(t, Config{Services: []Service{svc, up}, Certs: []string{selfSigned(t, "a")}, Options: Options{HTTP2: true}})
	waitUp(t, s, 2)
	c := h2Client()
	payload := bytes.Repeat([]byte("x"), 3*h2StreamWindow+17)
	req, _ := http.NewRequest("POST", "https://"+httpsAddr+"/upload", bytes.NewReader(payload))
	req.Host = "up.test"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	got := <-echo.reqs
	if !strings.HasPrefix(got, "POST /upload\n") || !strings.HasSuffix(got, "\n"+string(payload)) {
		t.Errorf("the upload reached the backend with %d bytes", len(got))
	}
	req, _ = http.NewRequest("GET", "https://"+httpsAddr+"/x", nil)
	req.Host = "auth.test"
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without credentials: %d", resp.StatusCode)
	}
	req.SetBasicAuth("ann", "pw")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "web1 /x") || !strings.Contains(string(body), "proto=https") {
		t.Errorf("with credentials: %d %q", resp.StatusCode, body)
	}
}

// TestHTTP2HonoursTheClientsWindow: a client that allows 1,000 bytes per
// stream gets no more DATA than that until it sends WINDOW_UPDATE, then
// the rest.
func TestHTTP2HonoursTheClientsWindow(t *testing.T) {
	body := strings.Repeat("y", 5000)
	rb := startRaw(t, func(int, string) (string, bool) {
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body), false
	})
	_, _, httpsAddr := rawLB(t, func(svc *Service) { svc.HealthPath = "" }, rb)
	c, err := tls.Dial("tcp", httpsAddr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1000}))
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: "a"}, {Name: ":path", Value: "/"}} {
		must(enc.WriteField(f))
	}
	must(fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}))
	got, updated := 0, false
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("after %d bytes: %v", got, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				must(fr.WriteSettingsAck())
			}
		case *http2.MetaHeadersFrame:
			if st := f.PseudoValue("status"); st != "200" {
				t.Fatalf("status %s", st)
			}
		case *http2.DataFrame:
			got += len(f.Data())
			if !updated && got > 1000 {
				t.Fatalf("%d bytes of DATA within a window of 1000", got)
			}
			if f.StreamEnded() {
				if got != len(body) {
					t.Fatalf("%d bytes, want %d", got, len(body))
				}
				return
			}
		}
		if got == 1000 && !updated {
			// The server must be waiting now: nothing more comes until
			// the window opens.
			_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if f, err := fr.ReadFrame(); err == nil {
				if df, ok := f.(*http2.DataFrame); ok && len(df.Data()) > 0 {
					t.Fatalf("DATA beyond the window: %d bytes", len(df.Data()))
				}
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			updated = true
			must(fr.WriteWindowUpdate(1, 10000))
		}
	}
}
