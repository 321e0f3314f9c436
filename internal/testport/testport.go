// Package testport hands tests TCP ports to bind nodes to.
package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
)

// The ports are below Linux's ephemeral range (32768-60999 by default): a
// port from that range, found free and closed again, can be taken by any
// outgoing connection (another test's, another package's) before the node
// binds it. Ports handed out once are not handed out again in this process.
const lo, hi = 20000, 32000

var handed = struct {
	mu   sync.Mutex
	used map[int]bool
}{used: map[int]bool{}}

// Free returns a port free on 127.0.0.1 now and not handed out before.
func Free(t testing.TB) int {
	t.Helper()
	handed.mu.Lock()
	defer handed.mu.Unlock()
	for range 1000 {
		p := lo + rand.IntN(hi-lo)
		if handed.used[p] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		_ = l.Close()
		handed.used[p] = true
		return p
	}
	t.Fatal("testport: no free port below the ephemeral range")
	return 0
}
