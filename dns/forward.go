package dns

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// upstreams are the resolvers queries outside the zone go to: the static
// list from the Config, or the nameservers of a resolv.conf, re-read when
// the file changes (size or modification time), checked at most every recheck.
type upstreams struct {
	path    string
	port    int
	recheck time.Duration
	static  []string

	mu      sync.Mutex
	checked time.Time
	mod     time.Time
	size    int64
	list    []string
}

func (u *upstreams) get(log func(string, ...any)) []string {
	if len(u.static) > 0 {
		return u.static
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	now := time.Now()
	if !u.checked.IsZero() && now.Sub(u.checked) < u.recheck {
		return u.list
	}
	u.checked = now
	fi, err := os.Stat(u.path)
	if err != nil {
		if u.list != nil || u.mod.IsZero() {
			log("cannot read resolv.conf, no upstream resolvers", "path", u.path, "err", err)
		}
		u.list, u.mod, u.size = nil, time.Unix(1, 0), 0
		return nil
	}
	if fi.ModTime().Equal(u.mod) && fi.Size() == u.size {
		return u.list
	}
	cc, err := mdns.ClientConfigFromFile(u.path)
	if err != nil {
		log("cannot parse resolv.conf, no upstream resolvers", "path", u.path, "err", err)
		u.list = nil
	} else {
		u.list = u.list[:0:0]
		for _, s := range cc.Servers {
			u.list = append(u.list, net.JoinHostPort(s, strconv.Itoa(u.port)))
		}
	}
	u.mod, u.size = fi.ModTime(), fi.Size()
	return u.list
}

// isSelf tells whether forwarding to hostport would send the query back to
// this server (resolv.conf pointing at the node resolver itself).
func (s *Server) isSelf(hostport string) bool {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return false
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	for _, l := range *s.self.Load() {
		if l.Port() != ap.Port() {
			continue
		}
		if l.Addr() == ap.Addr() || l.Addr().IsUnspecified() && ap.Addr().IsLoopback() {
			return true
		}
	}
	return false
}

// forward sends req to the upstreams in order until one answers (an answer
// other than SERVFAIL/REFUSED; those move on to the next upstream but are
// returned if nobody does better) and returns the packed response, cut to the
// client's UDP size. No usable answer: SERVFAIL.
func (s *Server) forward(ctx context.Context, req *mdns.Msg, tcp bool) []byte {
	network := "udp"
	if tcp {
		network = "tcp"
	}
	var last *mdns.Msg
	tried := 0
	for _, u := range s.ups.get(s.log.Warn) {
		if s.isSelf(u) {
			continue
		}
		tried++
		c := &mdns.Client{Net: network, Timeout: s.cfg.ForwardTimeout}
		qctx, cancel := context.WithTimeout(ctx, s.cfg.ForwardTimeout)
		resp, _, err := c.ExchangeContext(qctx, req, u)
		cancel()
		if err != nil {
			s.log.Debug("upstream failed", "upstream", u, "net", network, "name", req.Question[0].Name, "err", err)
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		if resp.Rcode == mdns.RcodeServerFailure || resp.Rcode == mdns.RcodeRefused {
			last = resp
			continue
		}
		last = resp
		break
	}
	if last == nil {
		s.warn("no upstream resolver answered", "upstreams_tried", tried, "name", req.Question[0].Name)
		return s.errorReply(req, mdns.RcodeServerFailure)
	}
	last.Id = req.Id
	if !tcp {
		size := mdns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = max(size, min(int(opt.UDPSize()), int(s.cfg.MaxUDPSize)))
		}
		last.Truncate(size)
	}
	b, err := last.Pack()
	if err != nil {
		s.log.Debug("cannot pack upstream answer", "err", err)
		return s.errorReply(req, mdns.RcodeServerFailure)
	}
	return b
}
