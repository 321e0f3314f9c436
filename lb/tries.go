package lb

import "time"

// One request's way through the backends, for all three servers (the
// HTTP/1.1 loop, the HTTP/2 fast path, net/http's handler): which
// failures are tried again, where, and on which connection.

// tryFunc sends the request on u to b and relays or returns its answer.
// On failure it says whether the backend answered nothing at all (empty)
// and whether the request must end here (final: the client left, or part
// of the answer went out already; it counted what it needed).
type tryFunc func(b *backend, u *upConn) (empty, final bool, err error)

// tryBackends runs a request from a.last on. A request whose connection
// could not be made was never sent: it goes to the next healthy backend.
// One that can be repeated (idempotent, without a body) and got no
// answer at all goes once more on a new connection when its kept-alive
// one had been closed by the backend, else to the next backend, the one
// that died with it in flight taken out (HAProxy's retry-on
// empty-response). Anything else is the request's answer: nil with the
// connection that answered, or the error.
func (s *Server) tryBackends(a *attempt, replayable bool, try tryFunc) (*upConn, error) {
	fresh := false
	for {
		b := a.last
		u, err := s.upstreamConn(b, replayable, fresh)
		if err != nil {
			s.markDown(b, err.Error())
			if !a.next() {
				return nil, err
			}
			fresh = false
			continue
		}
		b.active.Add(1)
		empty, final, err := try(b, u)
		b.active.Add(-1)
		if err == nil {
			b.served.Add(1)
			return u, nil
		}
		u.close()
		switch {
		case final:
			return nil, err
		case !replayable || !empty:
			b.failed.Add(1)
			return nil, err
		case u.reused && !fresh:
			fresh = true
			continue
		}
		s.markDown(b, err.Error())
		if !a.next() {
			return nil, err
		}
		fresh = false
	}
}

// next moves the attempt to a healthy backend it has not tried.
func (a *attempt) next() bool {
	b := a.route.pool.pick(a.client, "", a.tried)
	if b == nil {
		return false
	}
	a.last, a.tried = b, append(a.tried, b)
	return true
}

// setTimeout bounds the wait for the backend's answer (`timeout server`;
// 0: none), touching the deadline only when it changes.
func (u *upConn) setTimeout(d time.Duration) {
	if d > 0 {
		_ = u.c.SetReadDeadline(time.Now().Add(d))
		u.deadline = true
	} else if u.deadline {
		_ = u.c.SetReadDeadline(time.Time{})
		u.deadline = false
	}
}
