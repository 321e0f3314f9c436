package lb

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// Health: a backend gets traffic once its check passes — its service's
// http health check answers 2xx or 3xx, or, without one, its port accepts
// a connection — and until a check fails or a request to it does. Each
// backend is checked every checkEvery by a goroutine that lives while the
// backend is in the routing.

const (
	checkEvery = time.Second
	// checkNewEvery: a backend that never passed is checked this often,
	// so a new instance gets traffic as soon as it answers.
	checkNewEvery = 100 * time.Millisecond
	checkTimeout  = time.Second
)

type checker struct {
	mu     sync.Mutex
	cancel map[*backend]context.CancelFunc
	client *http.Client
}

func newChecker() *checker {
	return &checker{cancel: map[*backend]context.CancelFunc{}, client: &http.Client{
		Timeout:   checkTimeout,
		Transport: &http.Transport{DisableKeepAlives: true, DialContext: (&net.Dialer{Timeout: checkTimeout}).DialContext},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a 3xx is an answer
		},
	}}
}

// watch starts checking b (once); path "" checks the port only.
func (c *checker) watch(ctx context.Context, b *backend, path string, onChange func(b *backend, up bool, why string)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.cancel[b]; ok {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	c.cancel[b] = cancel
	go func() {
		passed := false
		for {
			start := time.Now().UnixNano()
			ok, why := c.check(ctx, b, path)
			if ctx.Err() != nil {
				return
			}
			// A request that failed while this check ran knows better.
			if ok && b.downAt.Load() > start {
				ok = false
			}
			if ok != b.up.Load() {
				b.up.Store(ok)
				onChange(b, ok, why)
			}
			passed = passed || ok
			every := checkEvery
			if !passed {
				every = checkNewEvery
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(every):
			}
		}
	}()
}

// forget stops checking backends not in keep.
func (c *checker) forget(keep map[*backend]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for b, cancel := range c.cancel {
		if !keep[b] {
			cancel()
			delete(c.cancel, b)
		}
	}
}

func (c *checker) check(ctx context.Context, b *backend, path string) (bool, string) {
	if path == "" {
		conn, err := (&net.Dialer{Timeout: checkTimeout}).DialContext(ctx, "tcp", b.addr)
		if err != nil {
			return false, err.Error()
		}
		_ = conn.Close()
		return true, "port open"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.addr+path, nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return true, resp.Status
	}
	return false, "health check answered " + resp.Status
}
