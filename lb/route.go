package lb

import (
	"sort"
	"strings"
)

// table is one Config compiled for serving: HTTP routes by host and path,
// TCP services by port. It is immutable; Update swaps in a new one.
type table struct {
	exact    map[string][]*route // host -> routes, longest path first
	wildcard []wildcard          // longest suffix first
	anyHost  []*route            // services without virtual hosts
	tcp      map[int]*route
	cfg      Config
}

type wildcard struct {
	suffix string // ".example.com"
	routes []*route
}

// route is one service with its pool of backends.
type route struct {
	svc  Service
	pool *pool
}

// compile builds a table; pools come from poolFor, which keeps a
// backend's health and connection counts across updates.
func compile(cfg Config, poolFor func(Service) *pool) *table {
	t := &table{exact: map[string][]*route{}, tcp: map[int]*route{}, cfg: cfg}
	wild := map[string][]*route{}
	for _, s := range cfg.Services {
		r := &route{svc: s, pool: poolFor(s)}
		if s.Mode == ModeTCP {
			t.tcp[s.ExternalPort] = r
			continue
		}
		if len(s.VirtualHosts) == 0 {
			t.anyHost = append(t.anyHost, r)
		}
		for _, h := range s.VirtualHosts {
			if suffix, ok := strings.CutPrefix(h, "*"); ok {
				wild[suffix] = append(wild[suffix], r)
			} else {
				t.exact[h] = append(t.exact[h], r)
			}
		}
	}
	for suffix, rs := range wild {
		t.wildcard = append(t.wildcard, wildcard{suffix: suffix, routes: byPath(rs)})
	}
	sort.Slice(t.wildcard, func(i, j int) bool {
		if a, b := len(t.wildcard[i].suffix), len(t.wildcard[j].suffix); a != b {
			return a > b
		}
		return t.wildcard[i].suffix < t.wildcard[j].suffix
	})
	for h, rs := range t.exact {
		t.exact[h] = byPath(rs)
	}
	t.anyHost = byPath(t.anyHost)
	return t
}

// byPath orders routes longest virtual path first (then by name, so the
// order does not depend on the map a Config was built from).
func byPath(rs []*route) []*route {
	sort.SliceStable(rs, func(i, j int) bool {
		if a, b := len(rs[i].svc.VirtualPath), len(rs[j].svc.VirtualPath); a != b {
			return a > b
		}
		return rs[i].svc.Name < rs[j].svc.Name
	})
	return rs
}

// match finds the route of a request: the virtual host exactly, then the
// longest wildcard, then the services without virtual hosts; within them
// the longest virtual path that is a prefix of the path at a / boundary.
func (t *table) match(host, path string) *route {
	host = normalHost(host)
	if r := matchPath(t.exact[host], path); r != nil {
		return r
	}
	for _, w := range t.wildcard {
		if strings.HasSuffix(host, w.suffix) && len(host) > len(w.suffix) {
			if r := matchPath(w.routes, path); r != nil {
				return r
			}
		}
	}
	return matchPath(t.anyHost, path)
}

// plainRoute is the route of a request the load balancer's own servers
// proxy themselves (the HTTP/1.1 loop, the HTTP/2 fast path): nil for its
// own answers (ACME challenges, the health URI, no route) and for routes
// with basic auth, sticky sessions or an HTTPS redirect still to make,
// which the handler (serveHTTP) serves.
func (t *table) plainRoute(host, path string, https bool) *route {
	if strings.HasPrefix(path, acmePrefix) || (t.cfg.Options.HealthURI != "" && path == t.cfg.Options.HealthURI) {
		return nil
	}
	rt := t.match(host, path)
	if rt == nil || len(rt.svc.BasicAuth) > 0 || rt.svc.Cookie != "" || (rt.svc.Custom.RedirectHTTPS && !https) {
		return nil
	}
	return rt
}

func matchPath(rs []*route, path string) *route {
	for _, r := range rs {
		if pathHasPrefix(path, r.svc.VirtualPath) {
			return r
		}
	}
	return nil
}

// pathHasPrefix: /api matches /api, /api/ and /api/x, not /apix.
func pathHasPrefix(path, prefix string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix == "" {
		return true
	}
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// stripPath removes a virtual path from a request path ("/api/x" with
// "/api" is "/x"; "/api" is "/").
func stripPath(path, prefix string) string {
	prefix = strings.TrimSuffix(prefix, "/")
	rest := strings.TrimPrefix(path, prefix)
	if rest == "" || rest[0] != '/' {
		rest = "/" + rest
	}
	return rest
}

// normalHost is a Host header without its port, lower case, without a
// trailing dot.
func normalHost(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}
