package cmd

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/letsencrypt/challtestsrv"
	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/lb"
)

// startChallSrv runs pebble's test DNS server (letsencrypt/challtestsrv):
// every A question is answered 127.0.0.1, TXT records as the test adds them.
func startChallSrv(t *testing.T) (*challtestsrv.ChallSrv, string) {
	t.Helper()
	addr := freeAddrCmd(t)
	srv, err := challtestsrv.New(challtestsrv.Config{DNSAddrs: []string{addr}, Log: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetDefaultDNSIPv4("127.0.0.1")
	srv.SetDefaultDNSIPv6("")
	go srv.Run()
	t.Cleanup(srv.Shutdown)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
	}
	return srv, addr
}

// startPebble runs Let's Encrypt's test CA (pebble) in this process: its
// validation authority resolves with dnsAddr and fetches http-01 answers
// from port httpPort; certificates live validity seconds.
func startPebble(t *testing.T, dnsAddr string, httpPort int, validity uint64) (directory, caFile string) {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	logger := log.New(io.Discard, "", 0)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "test", ValidityPeriod: validity}})
	vaImpl := va.New(logger, httpPort, 5001, false, dnsAddr, store)
	fe := wfe.New(logger, store, vaImpl, authority, []string{"pebble.letsencrypt.org"}, false, false, 1, 1)
	srv := httptest.NewTLSServer(fe.Handler())
	t.Cleanup(srv.Close)
	caFile = filepath.Join(t.TempDir(), "pebble-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv.URL + wfe.DirectoryPath, caFile
}

const edgeStack = `stack: edge
version: 1.0.0
services:
  lb:
    image: kontena/lb:latest
    instances: 1
`

// TestACME: the grid's ACME account at a real ACME server (pebble, in
// process, on loopback), an http-01 certificate validated through a load
// balancer serving the grid's routing, its automatic renewal when a third
// of its (30 s) life is left, and a dns-01 certificate in two steps.
func TestACME(t *testing.T) {
	cfg := startNode(t)
	stackFile := filepath.Join(t.TempDir(), "edge.yml")
	_ = os.WriteFile(stackFile, []byte(edgeStack), 0o644)
	if _, errOut, code := run(t, nil, "--config", cfg, "stack", "install", "--no-deploy", stackFile); code != 0 {
		t.Fatal(errOut)
	}
	// A load balancer serving the grid's routing for edge/lb (read here
	// as a grid admin may; on a grid it is its own token's).
	lbAddr, lbTLS := freeAddrCmd(t), freeAddrCmd(t)
	s := lb.New(lb.ServerConfig{HTTPAddr: lbAddr, HTTPSAddr: lbTLS})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = s.Run(ctx) }()
	_, gc := gridOf(t, cfg)
	cl, err := api.NewClient(gc.Addresses, []byte(gc.CACert), gc.Token, nil)
	if err != nil {
		t.Fatal(err)
	}
	go api.Watch(ctx, cl, "/v1/lb/edge/lb/routing", nil, func(r *lb.Routing) {
		c, _ := lb.ConfigOf(*r)
		_ = s.Update(c)
	})
	_, portStr, _ := net.SplitHostPort(lbAddr)
	var lbPort int
	_, _ = fmt.Sscan(portStr, &lbPort)

	dnsSrv, dnsAddr := startChallSrv(t)
	dir, caFile := startPebble(t, dnsAddr, lbPort, 30)
	if out, errOut, code := run(t, nil, "--config", cfg, "certificate", "register", "ops@example.com", "--directory", dir, "--directory-ca", caFile); code != 0 || !strings.Contains(out, "Registered ops@example.com") {
		t.Fatalf("register: %d %s%s", code, out, errOut)
	}
	out, errOut, code := run(t, nil, "--config", cfg, "certificate", "request", "shop.test", "www.shop.test", "-o", "json")
	if code != 0 {
		t.Fatalf("request http-01: %d %s%s", code, out, errOut)
	}
	var issued api.CertificateInfo
	_ = json.Unmarshal([]byte(out), &issued)
	if issued.Subject != "shop.test" || issued.Source != "acme" || strings.Join(issued.AltNames, ",") != "www.shop.test" {
		t.Fatalf("issued: %+v", issued)
	}
	first := issued.ExpiresAt
	t.Logf("MEASURED http-01 certificate for shop.test issued through the load balancer, expires %s", first.Format(time.RFC3339))
	// The load balancer serves it once its service names it.
	_ = os.WriteFile(stackFile, []byte(edgeStack+"    certificates:\n      - subject: shop.test\n        name: SSL_CERTS\n        type: env\n"), 0o644)
	if _, errOut, code := run(t, nil, "--config", cfg, "stack", "upgrade", "edge", stackFile); code != 0 {
		t.Fatalf("upgrade: %s", errOut)
	}
	served := func() time.Time {
		var notAfter time.Time
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			conn, err := tls.Dial("tcp", lbTLS, &tls.Config{ServerName: "shop.test", InsecureSkipVerify: true})
			if err == nil {
				notAfter = conn.ConnectionState().PeerCertificates[0].NotAfter
				conn.Close()
				if !notAfter.IsZero() {
					return notAfter
				}
			}
		}
		t.Fatal("the load balancer serves no certificate for shop.test")
		return notAfter
	}
	if got := served(); !got.Equal(first.Truncate(time.Second)) && !got.Equal(first) {
		t.Errorf("the load balancer serves a certificate expiring %s, the issued one expires %s", got, first)
	}

	// Renewal: 30 s certificates renew after 20 s.
	deadline := time.Now().Add(45 * time.Second)
	for {
		out, _, _ := run(t, nil, "--config", cfg, "certificate", "show", "shop.test", "-o", "json")
		var now api.CertificateInfo
		_ = json.Unmarshal([]byte(out), &now)
		if now.ExpiresAt.After(first) {
			t.Logf("MEASURED renewed by itself: expires %s (was %s)", now.ExpiresAt.Format(time.RFC3339), first.Format(time.RFC3339))
			// Swapped into the running load balancer, without a redeploy.
			for deadline := time.Now().Add(5 * time.Second); !served().After(first); time.Sleep(100 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the load balancer still serves the old certificate")
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the certificate was not renewed: still expires %s", now.ExpiresAt)
		}
		time.Sleep(time.Second)
	}
	if out, _, _ := run(t, nil, "--config", cfg, "grid", "events"); !strings.Contains(out, "certificate shop.test replaced") {
		t.Errorf("no event of the renewal:\n%s", out)
	}

	// dns-01: the records first, then the order completed.
	out, errOut, code = run(t, nil, "--config", cfg, "certificate", "request", "--type", "dns-01", "dns.test", "-o", "json")
	if code != 0 {
		t.Fatalf("request dns-01: %d %s%s", code, out, errOut)
	}
	var pending api.CertificateResponse
	_ = json.Unmarshal([]byte(out), &pending)
	if pending.Order == "" || len(pending.Records) != 1 || pending.Records[0].Name != "_acme-challenge.dns.test." {
		t.Fatalf("dns-01 records: %+v", pending)
	}
	dnsSrv.AddDNSTXTRecord(pending.Records[0].Name, pending.Records[0].Value)
	out, errOut, code = run(t, nil, "--config", cfg, "certificate", "request", "--type", "dns-01", "--order", pending.Order, "dns.test", "-o", "json")
	if code != 0 || !strings.Contains(out, `"subject": "dns.test"`) {
		t.Fatalf("complete dns-01: %d %s%s", code, out, errOut)
	}
}

// freeAddrCmd is a loopback address for a server of this test.
func freeAddrCmd(t *testing.T) string { return fmt.Sprintf("127.0.0.1:%d", freePort(t)) }
