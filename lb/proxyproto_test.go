package lb

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestProxyProtocol(t *testing.T) {
	web := startBackend(t, "web1")
	s, addr, _ := startLB(t, Config{Services: []Service{httpSvc("s/web", nil, "", web)}, Options: Options{AcceptProxy: true}})
	waitUp(t, s, 1)
	send := func(header []byte) string {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(header)
		fmt.Fprintf(c, "GET /p HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		body, _ := io.ReadAll(c)
		return string(body)
	}
	if got := send([]byte("PROXY TCP4 203.0.113.7 10.0.0.1 51234 80\r\n")); !strings.Contains(got, "xff=203.0.113.7") {
		t.Errorf("PROXY v1: the client is not the header's: %q", got)
	}
	var v2 bytes.Buffer
	v2.Write(proxyV2Sig)
	v2.Write([]byte{0x21, 0x11}) // v2 PROXY, TCP over IPv4
	_ = binary.Write(&v2, binary.BigEndian, uint16(12))
	v2.Write(net.ParseIP("198.51.100.9").To4())
	v2.Write(net.ParseIP("10.0.0.1").To4())
	_ = binary.Write(&v2, binary.BigEndian, uint16(40000))
	_ = binary.Write(&v2, binary.BigEndian, uint16(443))
	if got := send(v2.Bytes()); !strings.Contains(got, "xff=198.51.100.9") {
		t.Errorf("PROXY v2: %q", got)
	}
	// Without a header the connection is refused (the proxy in front must send one).
	if got := send(nil); strings.Contains(got, "200 OK") {
		t.Errorf("a connection without a PROXY header was served: %q", got)
	}
}

func TestStatsAndMetrics(t *testing.T) {
	web := startBackend(t, "web1")
	statsAddr := freeAddr(t)
	s := New(ServerConfig{StatsAddr: statsAddr})
	if err := s.Update(Config{Services: []Service{httpSvc("s/web", nil, "", web)}, Options: Options{StatsPassword: "pw"}}); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Run(t.Context()) }()
	waitPort(t, statsAddr)
	waitUp(t, s, 1)
	get := func(path, pass string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+statsAddr+path, nil)
		if pass != "" {
			req.SetBasicAuth("stats", pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/", "wrong"); code != 401 {
		t.Errorf("stats with a wrong password: %d", code)
	}
	if code, body := get("/", "pw"); code != 200 || !strings.Contains(body, "s/web") || !strings.Contains(body, "web1") {
		t.Errorf("stats page: %d %q", code, body)
	}
	if code, body := get("/metrics", "pw"); code != 200 || !strings.Contains(body, `kontena_lb_backend_up{instance="web1",service="s/web"} 1`) {
		t.Errorf("metrics: %d %q", code, body)
	}
}
