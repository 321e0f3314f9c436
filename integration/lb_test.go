package integration

import (
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
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const lbStack = `stack: lbt
version: 1.0.0
services:
  lb:
    image: kontena/lb:latest
    ports:
      - 80:80
      - 443:443
      - 7000:7000
    deploy:
      strategy: daemon
    secrets:
      - secret: lbt-cert-a
        name: SSL_CERTS
        type: env
      - secret: lbt-cert-b
        name: SSL_CERTS
        type: env
    certificates:
      - subject: c.test
        name: SSL_CERTS
        type: env
  web-a:
    image: kontena-demo-busybox:latest
    instances: 2
    stop_signal: SIGKILL
    command: sh -c 'mkdir -p /www && echo "site a $$HOSTNAME" > /www/index.html && echo ok > /www/health.html && exec httpd -f -p 8080 -h /www'
    affinity: ["node!=v1"]
    health_check:
      protocol: http
      port: 8080
      uri: /health.html
    links:
      - lb
    environment:
      KONTENA_LB_VIRTUAL_HOSTS: a.test,*.a.test
      KONTENA_LB_INTERNAL_PORT: "8080"
      KONTENA_LB_COOKIE: ""
  web-b:
    image: kontena-demo-busybox:latest
    instances: 1
    stop_signal: SIGKILL
    command: sh -c 'mkdir -p /www && echo "site b" > /www/index.html && exec httpd -f -p 8080 -h /www'
    affinity: ["node!=v1"]
    links:
      - lb
    environment:
      KONTENA_LB_VIRTUAL_HOSTS: b.test
      KONTENA_LB_INTERNAL_PORT: "8080"
      KONTENA_LB_CUSTOM_SETTINGS: |
        http-response set-header X-Site b
        acl is_old path_beg /old
    secrets:
      - secret: lbt-auth
        name: KONTENA_LB_BASIC_AUTH_SECRETS
        type: env
  api:
    image: kontena-demo-busybox:latest
    instances: 1
    stop_signal: SIGKILL
    command: sh -c 'mkdir -p /www/v1 && echo "api root" > /www/index.html && echo "api v1" > /www/v1/index.html && exec httpd -f -p 8080 -h /www'
    affinity: ["node!=v1"]
    links:
      - lb
    environment:
      KONTENA_LB_VIRTUAL_HOSTS: a.test
      KONTENA_LB_VIRTUAL_PATH: /api
      KONTENA_LB_INTERNAL_PORT: "8080"
  raw:
    image: kontena-demo-busybox:latest
    instances: 1
    stop_signal: SIGKILL
    command: sh -c 'mkdir -p /www && echo "raw tcp" > /www/index.html && exec httpd -f -p 9000 -h /www'
    affinity: ["node!=v1"]
    links:
      - lb
    environment:
      KONTENA_LB_MODE: tcp
      KONTENA_LB_EXTERNAL_PORT: "7000"
      KONTENA_LB_INTERNAL_PORT: "9000"
`

// lbGet asks the load balancer on ip for path with a Host header.
func lbGet(ctx context.Context, ip, host, path string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ip+path, nil)
	req.Host = host
	if host == "b.test" {
		req.SetBasicAuth("ann", "s3cret")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body)), nil
}

// TestLoadBalancer runs a kontena/lb stack on Docker-in-Docker nodes: no
// image is pulled for the load balancer (each node runs it from its own
// executable), requests from outside the nodes with each Host header and
// path reach the right service through the load balancer of any node, and
// with the master stopped the load balancers keep routing.
func TestLoadBalancer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tg := newDockerGrid(ctx, t, "lbg", "v1", "w1", "w2")
	tg.start(ctx, nil, nil)
	dir := t.TempDir()
	file := filepath.Join(dir, "kontena.yml")
	must(t, os.WriteFile(file, []byte(lbStack), 0o644))
	for _, h := range []string{"a", "b"} {
		p := filepath.Join(dir, h+".pem")
		must(t, os.WriteFile(p, []byte(selfSignedPEM(t, h+".test")), 0o600))
		tg.mustCLI(ctx, "vault", "write", "lbt-cert-"+h, "--file", p)
	}
	tg.mustCLI(ctx, "vault", "write", "lbt-auth", "user ann insecure-password s3cret")
	importCert := func(host string) time.Time {
		certPEM := selfSignedPEM(t, host)
		blk, rest := pem.Decode([]byte(certPEM))
		cf, kf := filepath.Join(t.TempDir(), "c.pem"), filepath.Join(t.TempDir(), "k.pem")
		must(t, os.WriteFile(cf, pem.EncodeToMemory(blk), 0o600))
		must(t, os.WriteFile(kf, rest, 0o600))
		tg.mustCLI(ctx, "certificate", "import", "--cert", cf, "--key", kf)
		leaf, err := x509.ParseCertificate(blk.Bytes)
		must(t, err)
		return leaf.NotAfter
	}
	importCert("c.test")
	out, errOut, code := tg.cli(ctx, "stack", "install", file, "--timeout", "4m")
	if code != 0 || !strings.Contains(out, "Deployed.") {
		t.Fatalf("install: %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, `"acl is_old path_beg /old" is not understood`) {
		t.Errorf("install does not warn about the custom setting it ignores:\n%s", errOut)
	}
	cases := []struct{ host, path, want string }{
		{"a.test", "/", "site a"},
		{"www.a.test", "/", "site a"},
		{"b.test", "/", "site b"},
		{"a.test", "/api/", "api root"},
		{"a.test", "/api/v1/", "api v1"},
	}
	for _, name := range tg.order {
		ip := tg.nodes[name].IP()
		for _, tc := range cases {
			eventually(t, 60*time.Second, fmt.Sprintf("%s%s through the load balancer on %s", tc.host, tc.path, name), func() error {
				code, body, err := lbGet(ctx, ip, tc.host, tc.path)
				if err != nil {
					return err
				}
				if code != 200 || !strings.HasPrefix(body, tc.want) {
					return fmt.Errorf("%d %q, want %q", code, body, tc.want)
				}
				return nil
			})
		}
		if code, _, err := lbGet(ctx, ip, "nobody.test", "/"); err != nil || code != 404 {
			t.Errorf("an unknown host on %s: %d %v", name, code, err)
		}
	}
	// Both instances of web-a answer.
	seen := map[string]bool{}
	for i := 0; i < 20 && len(seen) < 2; i++ {
		if _, body, err := lbGet(ctx, tg.nodes["w1"].IP(), "a.test", "/"); err == nil {
			seen[body] = true
		}
	}
	if len(seen) != 2 {
		t.Errorf("web-a's two instances through the load balancer: %v", seen)
	}
	w1 := tg.nodes["w1"].IP()

	t.Run("TLS picks the certificate by SNI and negotiates HTTP/2", func(t *testing.T) {
		for _, host := range []string{"a.test", "b.test"} {
			tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: host, InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+w1+"/", nil)
			req.Host = host
			req.SetBasicAuth("ann", "s3cret")
			var resp *http.Response
			eventually(t, 30*time.Second, "https "+host, func() (err error) {
				resp, err = (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
				return err
			})
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if cn := resp.TLS.PeerCertificates[0].Subject.CommonName; cn != host || resp.ProtoMajor != 2 || !strings.Contains(string(body), "site") {
				t.Errorf("https %s: certificate of %s, %s, %q", host, cn, resp.Proto, body)
			}
		}
		// As users check it: curl --http2 from outside the nodes.
		if _, err := exec.LookPath("curl"); err != nil {
			t.Fatalf("curl is needed here (.ci/run installs it): %v", err)
		}
		out, err := exec.CommandContext(ctx, "curl", "-sk", "--http2", "--max-time", "10", "--resolve", "a.test:443:"+w1,
			"-w", "\n%{http_version} %{http_code}", "https://a.test/").CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || !strings.HasPrefix(got, "site a") || !strings.HasSuffix(got, "\n2 200") {
			t.Errorf("curl --http2 https://a.test/ on %s: %q %v", w1, got, err)
		}
	})
	t.Run("basic auth, a custom header, sticky sessions, TCP mode", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+w1+"/", nil)
		req.Host = "b.test"
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("b.test without credentials: %d", resp.StatusCode)
		}
		req.SetBasicAuth("ann", "s3cret")
		resp, err = http.DefaultClient.Do(req)
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Site") != "b" {
			t.Errorf("b.test with credentials: %d, X-Site %q", resp.StatusCode, resp.Header.Get("X-Site"))
		}
		jar, _ := cookiejar.New(nil)
		sticky := &http.Client{Jar: jar, Timeout: 5 * time.Second}
		first := ""
		for i := range 8 {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+w1+"/", nil)
			req.Host = "a.test"
			resp, err := sticky.Do(req)
			must(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if i == 0 {
				first = string(body)
			} else if string(body) != first {
				t.Fatalf("the sticky cookie did not keep the session: %q then %q", first, body)
			}
		}
		resp, err = http.Get("http://" + w1 + ":7000/")
		must(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "raw tcp") {
			t.Errorf("TCP mode on port 7000: %q", body)
		}
	})
	t.Run("a backend made unhealthy gets no more requests", func(t *testing.T) {
		victim := ""
		for _, n := range []string{"w1", "w2"} {
			if _, _, code, err := tg.nodes[n].Exec(ctx, "docker", "exec", "lbt.web-a-1", "busybox", "rm", "/www/health.html"); err == nil && code == 0 {
				victim = n
			}
		}
		if victim == "" {
			t.Fatal("lbt.web-a-1 is on no worker")
		}
		hostOf := strings.TrimSpace(execIn(ctx, t, tg.nodes[victim], "lbt.web-a-1", "sh", "-c", "echo $HOSTNAME"))
		time.Sleep(2 * time.Second) // its next checks fail
		for range 20 {
			_, body, err := lbGet(ctx, w1, "a.test", "/")
			if err != nil || strings.Contains(body, hostOf) {
				t.Fatalf("the unhealthy instance %s still answers: %q %v", hostOf, body, err)
			}
		}
		execIn(ctx, t, tg.nodes[victim], "lbt.web-a-1", "sh", "-c", "echo ok > /www/health.html")
	})

	t.Run("routing changes reach the load balancers and lose no request", func(t *testing.T) {
		var mu sync.Mutex
		var failures []string
		var done atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		httpsGet := func(ip string) (int, string, error) {
			tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: "c.test", InsecureSkipVerify: true}}
			defer tr.CloseIdleConnections()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+ip+"/", nil)
			req.Host = "a.test"
			resp, err := (&http.Client{Transport: tr, Timeout: 3 * time.Second}).Do(req)
			if err != nil {
				return 0, "", err
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, strings.TrimSpace(string(body)), nil
		}
		for i := range 6 {
			ip := tg.nodes[[]string{"w1", "w2"}[i%2]].IP()
			get := func() (int, string, error) { return lbGet(ctx, ip, "a.test", "/") }
			if i >= 4 {
				get = func() (int, string, error) { return httpsGet(ip) }
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					code, body, err := get()
					if err != nil || code != 200 || !strings.HasPrefix(body, "site a") {
						mu.Lock()
						failures = append(failures, fmt.Sprintf("%s: %d %q %v", ip, code, body, err))
						mu.Unlock()
					}
					done.Add(1)
					time.Sleep(5 * time.Millisecond)
				}
			}()
		}
		distinct := func(n int) time.Duration {
			start := time.Now()
			seen := map[string]bool{}
			for time.Since(start) < 30*time.Second && len(seen) < n {
				if _, body, err := lbGet(ctx, tg.nodes["w1"].IP(), "a.test", "/"); err == nil {
					seen[body] = true
				}
			}
			if len(seen) < n {
				t.Errorf("the load balancer reached %d instances of web-a, want %d", len(seen), n)
			}
			return time.Since(start)
		}
		tg.mustCLI(ctx, "service", "scale", "lbt/web-a", "6")
		t.Logf("MEASURED scale 2 -> 6: the load balancer reached all 6 instances %s after the deploy returned", distinct(6).Round(time.Millisecond))
		// A new certificate for c.test: the load balancers swap it in.
		expires := importCert("c.test")
		eventually(t, 10*time.Second, "the new certificate served", func() error {
			conn, err := tls.Dial("tcp", w1+":443", &tls.Config{ServerName: "c.test", InsecureSkipVerify: true})
			if err != nil {
				return err
			}
			defer conn.Close()
			if got := conn.ConnectionState().PeerCertificates[0].NotAfter; !got.Equal(expires) {
				return fmt.Errorf("serves a certificate expiring %s, the new one %s", got, expires)
			}
			return nil
		})
		tg.mustCLI(ctx, "service", "scale", "lbt/web-a", "2")
		tg.mustCLI(ctx, "service", "deploy", "--force", "lbt/web-a")
		distinct(2)
		close(stop)
		wg.Wait()
		t.Logf("MEASURED %d requests (a third over TLS) while web-a scaled 2 -> 6 -> 2 and was redeployed and the certificate was replaced: %d failed", done.Load(), len(failures))
		if len(failures) > 0 {
			t.Errorf("%d requests failed, first: %v", len(failures), failures[:min(5, len(failures))])
		}
	})

	// The backends run on the workers (the master's own containers would
	// lose the overlay with its process: WireGuard runs in it here).
	t.Run("with the master stopped the load balancers keep routing", func(t *testing.T) {
		must(t, tg.nodes["v1"].KillDaemon(ctx))
		time.Sleep(3 * time.Second)
		for _, name := range []string{"w1", "w2"} {
			for _, tc := range cases {
				code, body, err := lbGet(ctx, tg.nodes[name].IP(), tc.host, tc.path)
				if err != nil || code != 200 || !strings.HasPrefix(body, tc.want) {
					t.Errorf("%s%s on %s without masters: %d %q %v", tc.host, tc.path, name, code, body, err)
				}
			}
		}
	})
}

// selfSignedPEM is a certificate and key bundle for host, as SSL_CERTS
// holds them.
func selfSignedPEM(t *testing.T, host string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: host},
		DNSNames: []string{host}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	kd, err := x509.MarshalECPrivateKey(key)
	must(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})) + string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
}
