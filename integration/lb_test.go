package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
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
    deploy:
      strategy: daemon
  web-a:
    image: kontena-demo-busybox:latest
    instances: 2
    stop_signal: SIGKILL
    command: sh -c 'mkdir -p /www && echo "site a $$HOSTNAME" > /www/index.html && exec httpd -f -p 8080 -h /www'
    affinity: ["node!=v1"]
    links:
      - lb
    environment:
      KONTENA_LB_VIRTUAL_HOSTS: a.test,*.a.test
      KONTENA_LB_INTERNAL_PORT: "8080"
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
`

// lbGet asks the load balancer on ip for path with a Host header.
func lbGet(ctx context.Context, ip, host, path string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ip+path, nil)
	req.Host = host
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
	file := filepath.Join(t.TempDir(), "kontena.yml")
	must(t, os.WriteFile(file, []byte(lbStack), 0o644))
	if out := tg.mustCLI(ctx, "stack", "install", file, "--timeout", "4m"); !strings.Contains(out, "Deployed.") {
		t.Fatalf("install:\n%s", out)
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

	t.Run("routing changes reach the load balancers and lose no request", func(t *testing.T) {
		var mu sync.Mutex
		var failures []string
		var done atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for i := range 4 {
			ip := tg.nodes[[]string{"w1", "w2"}[i%2]].IP()
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					code, body, err := lbGet(ctx, ip, "a.test", "/")
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
		tg.mustCLI(ctx, "service", "scale", "lbt/web-a", "2")
		tg.mustCLI(ctx, "service", "deploy", "--force", "lbt/web-a")
		distinct(2)
		close(stop)
		wg.Wait()
		t.Logf("MEASURED %d requests while web-a scaled 2 -> 6 -> 2 and was redeployed: %d failed", done.Load(), len(failures))
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
