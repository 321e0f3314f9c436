package httpapi

import (
	"sync"
	"time"
)

// loginGate throttles failed logins. Each source may fail loginFailures
// times in a loginWindow; after that its logins are refused unexamined
// until the window ends (guessing is slowed, though codes and tokens are
// too long to guess). All sources together may put at most
// loginAuditMax refused logins on the audit record per window: the audit
// log keeps its newest records, so a flood of failures must not push the
// older ones out; beyond the cap, the node's log has them.
type loginGate struct {
	mu      sync.Mutex
	window  time.Time // start of the current window
	audited int       // refused logins recorded in this window
	by      map[string]int
}

const (
	loginWindow    = time.Minute
	loginFailures  = 20
	loginAuditMax  = 300
	loginSourceMax = 4096 // sources tracked per window; more start a new window
)

// roll starts a new window when the current one ended (or holds too many
// sources).
func (g *loginGate) roll(now time.Time) {
	if now.Sub(g.window) >= loginWindow || len(g.by) >= loginSourceMax {
		g.window, g.audited, g.by = now, 0, map[string]int{}
	}
}

// allow tells whether a login from src may be examined.
func (g *loginGate) allow(src string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.roll(now)
	return g.by[src] < loginFailures
}

// failed counts a refused login from src; it tells whether the refusal
// goes on the audit record.
func (g *loginGate) failed(src string, now time.Time) (audit bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.roll(now)
	g.by[src]++
	if g.audited >= loginAuditMax {
		return false
	}
	g.audited++
	return true
}
