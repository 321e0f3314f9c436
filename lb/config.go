// Package lb is the grid's load balancer: HTTP(S) and TCP, routing the
// services linked to a load balancer service as kontena/lb did (virtual
// hosts, paths, balance modes, sticky cookies, basic auth, TLS by SNI),
// only to instances that can answer, with routing swapped in place.
//
// The package knows nothing of the grid: it serves a Config, and Update
// replaces it without dropping a request.
package lb

import (
	"fmt"
	"strings"
	"time"
)

// Modes and balance algorithms (KONTENA_LB_MODE, KONTENA_LB_BALANCE).
const (
	ModeHTTP = "http"
	ModeTCP  = "tcp"

	BalanceRoundRobin = "roundrobin"
	BalanceLeastConn  = "leastconn"
	BalanceSource     = "source"
)

// Config is everything one load balancer serves.
type Config struct {
	// Services are the services linked to the load balancer.
	Services []Service `json:"services"`
	// Certs are PEM bundles (certificate, chain, key), chosen by SNI.
	Certs []string `json:"certs,omitempty"`
	// Options come from the load balancer's own environment.
	Options Options `json:"options"`
	// Challenges answer ACME http-01 on /.well-known/acme-challenge/:
	// token -> key authorization.
	Challenges map[string]string `json:"challenges,omitempty"`
}

// Options are the load balancer's settings (its env in kontena/lb).
type Options struct {
	HTTP2         bool     `json:"http2"`                    // KONTENA_LB_HTTP2 (default true)
	Ciphers       []uint16 `json:"ciphers,omitempty"`        // KONTENA_LB_SSL_CIPHERS, as Go suite IDs
	AcceptProxy   bool     `json:"accept_proxy,omitempty"`   // KONTENA_LB_ACCEPT_PROXY
	HealthURI     string   `json:"health_uri,omitempty"`     // KONTENA_LB_HEALTH_URI
	StatsPassword string   `json:"stats_password,omitempty"` // STATS_PASSWORD: the stats page and metrics
}

// Service is one backend service as its env configured it.
type Service struct {
	Name            string   `json:"name"` // stack/service
	Mode            string   `json:"mode"`
	Balance         string   `json:"balance"`
	InternalPort    int      `json:"internal_port"`
	ExternalPort    int      `json:"external_port,omitempty"` // tcp
	VirtualHosts    []string `json:"virtual_hosts,omitempty"`
	VirtualPath     string   `json:"virtual_path,omitempty"`
	KeepVirtualPath bool     `json:"keep_virtual_path,omitempty"`
	Cookie          string   `json:"cookie,omitempty"` // sticky session cookie name
	// BasicAuth are users and their password hashes (bcrypt, or
	// "insecure-password" clear text as HAProxy's userlists allow).
	BasicAuth []BasicUser `json:"basic_auth,omitempty"`
	// Custom are the KONTENA_LB_CUSTOM_SETTINGS understood.
	Custom Custom `json:"custom"`
	// HealthPath, when set, is the service's http health check: a
	// backend is up while it answers 2xx or 3xx there.
	HealthPath string    `json:"health_path,omitempty"`
	Backends   []Backend `json:"backends"`
}

// Backend is one instance of a service.
type Backend struct {
	ID   string `json:"id"`   // the instance's name, stable across updates
	Addr string `json:"addr"` // host:port on the overlay
}

// BasicUser is one user of a service's basic auth.
type BasicUser struct {
	Name string `json:"name"`
	// Hash is a bcrypt hash; Password a clear-text one
	// ("insecure-password" in HAProxy's userlist syntax).
	Hash     string `json:"hash,omitempty"`
	Password string `json:"password,omitempty"`
}

// Custom are the HAProxy lines of KONTENA_LB_CUSTOM_SETTINGS that stacks
// use and this load balancer understands.
type Custom struct {
	// RedirectHTTPS: `redirect scheme https [code N] [if !{ ssl_fc }]`.
	RedirectHTTPS bool `json:"redirect_https,omitempty"`
	RedirectCode  int  `json:"redirect_code,omitempty"`
	// SetRequestHeaders / SetResponseHeaders: `http-request set-header`,
	// `http-response set-header` (add-header adds).
	SetRequestHeaders  []Header `json:"set_request_headers,omitempty"`
	SetResponseHeaders []Header `json:"set_response_headers,omitempty"`
	// ServerTimeout: `timeout server 5m` (and `timeout tunnel`).
	ServerTimeout time.Duration `json:"server_timeout,omitempty"`
	ClientTimeout time.Duration `json:"client_timeout,omitempty"`
}

// Header is one header set or added.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	Add   bool   `json:"add,omitempty"`
}

// Validate checks a configuration before it is served.
func (c *Config) Validate() error {
	tcpPorts := map[int]string{}
	for i := range c.Services {
		s := &c.Services[i]
		switch s.Mode {
		case ModeHTTP:
		case ModeTCP:
			if s.ExternalPort <= 0 || s.ExternalPort > 65535 {
				return fmt.Errorf("service %s: tcp mode needs KONTENA_LB_EXTERNAL_PORT (1-65535), not %d", s.Name, s.ExternalPort)
			}
			if other, ok := tcpPorts[s.ExternalPort]; ok {
				return fmt.Errorf("services %s and %s both want tcp port %d", other, s.Name, s.ExternalPort)
			}
			tcpPorts[s.ExternalPort] = s.Name
		default:
			return fmt.Errorf("service %s: KONTENA_LB_MODE %q: expected http or tcp", s.Name, s.Mode)
		}
		switch s.Balance {
		case BalanceRoundRobin, BalanceLeastConn, BalanceSource:
		default:
			return fmt.Errorf("service %s: KONTENA_LB_BALANCE %q: expected roundrobin, leastconn or source", s.Name, s.Balance)
		}
		if s.VirtualPath != "" && !strings.HasPrefix(s.VirtualPath, "/") {
			return fmt.Errorf("service %s: KONTENA_LB_VIRTUAL_PATH %q must start with /", s.Name, s.VirtualPath)
		}
		for _, h := range s.VirtualHosts {
			if h == "" || strings.ContainsAny(h, " /:") || strings.Count(h, "*") > 1 || (strings.Contains(h, "*") && !strings.HasPrefix(h, "*.")) {
				return fmt.Errorf("service %s: virtual host %q: expected a host name or *.domain", s.Name, h)
			}
		}
	}
	return nil
}
