package lb

import (
	"context"
	"hash/fnv"
	"net"
	"sync/atomic"
	"time"
)

// backend is one instance as the load balancer sees it. The same backend
// (service, instance, address) keeps its state across routing updates.
type backend struct {
	key    string // service|id|addr
	id     string
	addr   string
	up     atomic.Bool
	downAt atomic.Int64 // when a request last took it out (unix ns)
	active atomic.Int64 // requests or connections in flight
	served atomic.Int64
	failed atomic.Int64
	idle   idleConns // the HTTP/1.1 loop's kept-alive connections
}

// pool is a service's backends with its balance algorithm.
type pool struct {
	balance  string
	backends []*backend
	next     atomic.Uint64
}

// pick chooses a healthy backend other than those in skip: the sticky
// one if it is healthy, else by the balance algorithm; nil when none is
// healthy.
func (p *pool) pick(client string, sticky string, skip []*backend) *backend {
	if sticky != "" {
		for _, b := range p.backends {
			if b.id == sticky && b.up.Load() && !contains(skip, b) {
				return b
			}
		}
	}
	var healthy [16]*backend
	up := healthy[:0]
	for _, b := range p.backends {
		if b.up.Load() && !contains(skip, b) {
			up = append(up, b)
		}
	}
	if len(up) == 0 {
		return nil
	}
	switch p.balance {
	case BalanceLeastConn:
		best := up[0]
		for _, b := range up[1:] {
			if b.active.Load() < best.active.Load() {
				best = b
			}
		}
		return best
	case BalanceSource:
		h := fnv.New32a()
		_, _ = h.Write([]byte(clientHost(client)))
		return up[int(h.Sum32()%uint32(len(up)))]
	}
	return up[int(p.next.Add(1)%uint64(len(up)))]
}

// queueFor is how long a request waits for a backend when none is
// healthy (an instance being replaced, a new one not checked yet), as
// HAProxy queues, before it is answered 503.
const queueFor = 3 * time.Second

// wait picks a backend, waiting up to queueFor for one to be healthy.
func (p *pool) wait(ctx context.Context, client, sticky string) *backend {
	if b := p.pick(client, sticky, nil); b != nil || len(p.backends) == 0 {
		return b
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	deadline := time.After(queueFor)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-deadline:
			return nil
		case <-t.C:
			if b := p.pick(client, sticky, nil); b != nil {
				return b
			}
		}
	}
}

func contains(bs []*backend, b *backend) bool {
	for _, x := range bs {
		if x == b {
			return true
		}
	}
	return false
}

// clientHost is the IP of a RemoteAddr.
func clientHost(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
