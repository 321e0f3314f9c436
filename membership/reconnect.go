package membership

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxPeers bounds the remembered gossip addresses.
const maxPeers = 64

// reconnectInterval is how often a node retries known nodes that gossip
// does not show as live. memberlist alone gives up on dead nodes after 30 s,
// so without this two halves of a healed partition, or a node restarted
// while it was alone, could stay apart for good.
const reconnectInterval = 3 * time.Second

// Reconnect is what the reconnect loop needs of the node: its own gossip
// address, the peers it remembers, the nodes it knows otherwise (a voter:
// every node of its state) and how to remember the live set.
type Reconnect struct {
	Self  string
	Peers []string
	Known func() []string
	Save  func([]string) error
	Log   *slog.Logger
}

// Reconnect keeps gossip connected to every node this node knows until ctx
// ends: the peers it remembers and those Known names. It saves the live set
// whenever it changes, so a restart finds the grid again whatever order
// nodes come back in.
func (g *Gossip) Reconnect(ctx context.Context, rc Reconnect) {
	self, peers := rc.Self, rc.Peers
	saved := strings.Join(peers, ",")
	inflight := map[string]bool{}
	var mu sync.Mutex
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	lastTry := map[string]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		liveAddrs := map[string]bool{}
		var current []string
		for _, m := range g.Members() {
			a := net.JoinHostPort(m.Addr, strconv.Itoa(m.Port))
			liveAddrs[a] = true
			current = append(current, a)
		}
		known := append([]string{}, peers...)
		if rc.Known != nil {
			known = append(known, rc.Known()...)
		}
		// Remember live members first, then what we knew before.
		slices.Sort(current)
		merged := mergeUnique(current, known)
		if len(merged) > maxPeers {
			merged = merged[:maxPeers]
		}
		if key := strings.Join(merged, ","); key != saved && len(current) > 1 {
			if err := rc.Save(merged); err == nil {
				saved = key
				peers = merged
			}
		}
		now := time.Now()
		for _, a := range mergeUnique(nil, known) {
			if a == self || liveAddrs[a] || now.Sub(lastTry[a]) < reconnectInterval {
				continue
			}
			mu.Lock()
			busy := inflight[a]
			inflight[a] = true
			mu.Unlock()
			if busy {
				continue
			}
			lastTry[a] = now
			go func() {
				// Join blocks up to memberlist's TCP timeout on an
				// unreachable peer; one goroutine per peer keeps the others
				// moving.
				if k, err := g.Join([]string{a}); err == nil && k > 0 {
					rc.Log.Info("gossip reconnected", "peer", a)
				}
				mu.Lock()
				delete(inflight, a)
				mu.Unlock()
			}()
		}
	}
}

// mergeUnique appends the items of b missing from a, keeping order.
func mergeUnique(a, b []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range append(append([]string{}, a...), b...) {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
