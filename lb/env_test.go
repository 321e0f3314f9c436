package lb

import (
	"strings"
	"testing"
	"time"
)

func TestServiceFromEnv(t *testing.T) {
	s, warn, err := ServiceFromEnv("shop/web", map[string]string{
		"KONTENA_LB_INTERNAL_PORT":      "8080",
		"KONTENA_LB_BALANCE":            "leastconn",
		"KONTENA_LB_VIRTUAL_HOSTS":      "shop.example.com, *.shop.example.com",
		"KONTENA_LB_VIRTUAL_PATH":       "/api",
		"KONTENA_LB_KEEP_VIRTUAL_PATH":  "true",
		"KONTENA_LB_COOKIE":             "",
		"KONTENA_LB_BASIC_AUTH_SECRETS": "user ann insecure-password s3cret\nuser bob password $2y$05$abcdefghijklmnopqrstuv",
		"KONTENA_LB_CUSTOM_SETTINGS":    "redirect scheme https code 301 if !{ ssl_fc }\nhttp-response set-header X-Frame-Options DENY\ntimeout server 5m\noption forwardfor\nacl is_foo path_beg /foo",
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.InternalPort != 8080 || s.Balance != BalanceLeastConn || strings.Join(s.VirtualHosts, ",") != "shop.example.com,*.shop.example.com" ||
		s.VirtualPath != "/api" || !s.KeepVirtualPath || s.Cookie != "KONTENA_SERVERID" || len(s.BasicAuth) != 2 {
		t.Fatalf("service: %+v", s)
	}
	c := s.Custom
	if !c.RedirectHTTPS || c.RedirectCode != 301 || len(c.SetResponseHeaders) != 1 || c.ServerTimeout != 5*time.Minute {
		t.Fatalf("custom: %+v", c)
	}
	if len(warn) != 1 || !strings.Contains(warn[0], `"acl is_foo path_beg /foo"`) {
		t.Fatalf("warnings: %v", warn)
	}
}

func TestServiceFromEnvRefuses(t *testing.T) {
	for env, want := range map[string]string{
		"KONTENA_LB_MODE=udp":                                       "expected http or tcp",
		"KONTENA_LB_MODE=tcp":                                       "tcp mode needs KONTENA_LB_EXTERNAL_PORT",
		"KONTENA_LB_BALANCE=random":                                 "expected roundrobin, leastconn or source",
		"KONTENA_LB_INTERNAL_PORT=http":                             "expected a port",
		"KONTENA_LB_VIRTUAL_PATH=api":                               "must start with /",
		"KONTENA_LB_VIRTUAL_HOSTS=a.*.com":                          "expected a host name or *.domain",
		"KONTENA_LB_BASIC_AUTH_SECRETS=ann s3cret":                  "expected `user NAME password HASH`",
		"KONTENA_LB_CUSTOM_SETTINGS=timeout server 5y":              "unknown unit",
		"KONTENA_LB_CUSTOM_SETTINGS=redirect scheme https code 200": "expected 301-308",
	} {
		k, v, _ := strings.Cut(env, "=")
		if _, _, err := ServiceFromEnv("s/x", map[string]string{k: v}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", env, err, want)
		}
	}
}

func TestOptionsFromEnv(t *testing.T) {
	o, certs, warn, err := OptionsFromEnv(map[string]string{
		"KONTENA_LB_HTTP2": "false", "KONTENA_LB_ACCEPT_PROXY": "true", "KONTENA_LB_HEALTH_URI": "/__health",
		"STATS_PASSWORD": "pw", "SSL_CERT_b": "-----BEGIN B", "SSL_CERTS": "-----BEGIN A", "SSL_CERT_a": "",
		"SSL_CERT_DIR": "/etc/ssl/certs", "SSL_CERT_FILE": "/etc/ssl/cert.pem",
		"KONTENA_LB_SSL_CIPHERS": "ECDHE-RSA-AES128-GCM-SHA256:RC4-MD5:!aNULL",
	})
	if err != nil {
		t.Fatal(err)
	}
	if o.HTTP2 || !o.AcceptProxy || o.HealthURI != "/__health" || o.StatsPassword != "pw" || len(o.Ciphers) != 1 {
		t.Fatalf("options: %+v", o)
	}
	if strings.Join(certs, ",") != "-----BEGIN A,-----BEGIN B" {
		t.Fatalf("certs: %v", certs)
	}
	if len(warn) != 1 || !strings.Contains(warn[0], "RC4-MD5") {
		t.Fatalf("warnings: %v", warn)
	}
}

func TestRouteMatch(t *testing.T) {
	svc := func(name string, hosts []string, path string) Service {
		return Service{Name: name, Mode: ModeHTTP, Balance: BalanceRoundRobin, VirtualHosts: hosts, VirtualPath: path}
	}
	tb := compile(Config{Services: []Service{
		svc("www", []string{"example.com"}, ""),
		svc("api", []string{"example.com"}, "/api"),
		svc("apiv2", []string{"example.com"}, "/api/v2"),
		svc("wild", []string{"*.example.com"}, ""),
		svc("deep", []string{"*.eu.example.com"}, ""),
		svc("default", nil, ""),
		svc("docs", nil, "/docs"),
	}}, func(Service) *pool { return &pool{} })
	for _, tc := range []struct{ host, path, want string }{
		{"example.com", "/", "www"},
		{"EXAMPLE.com:8443", "/api", "api"},
		{"example.com", "/api/users", "api"},
		{"example.com", "/apix", "www"},
		{"example.com", "/api/v2/x", "apiv2"},
		{"a.example.com", "/", "wild"},
		{"a.eu.example.com", "/", "deep"},
		{"example.com.", "/", "www"},
		{"other.org", "/docs/x", "docs"},
		{"other.org", "/", "default"},
		{"[::1]:80", "/", "default"},
	} {
		r := tb.match(tc.host, tc.path)
		if r == nil || r.svc.Name != tc.want {
			t.Errorf("%s%s: %v, want %s", tc.host, tc.path, r, tc.want)
		}
	}
	if got := stripPath("/api/x", "/api"); got != "/x" {
		t.Errorf("strip: %q", got)
	}
	if got := stripPath("/api", "/api/"); got != "/" {
		t.Errorf("strip: %q", got)
	}
}
