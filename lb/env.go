package lb

import (
	"crypto/tls"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ServiceFromEnv reads a backend service's KONTENA_LB_* environment as
// kontena/lb did. Warnings name what is ignored (a custom setting this load
// balancer does not know); an error is a value that cannot be served.
func ServiceFromEnv(name string, env map[string]string) (Service, []string, error) {
	s := Service{Name: name, Mode: ModeHTTP, Balance: BalanceRoundRobin, InternalPort: 80}
	var warnings []string
	if v := env["KONTENA_LB_MODE"]; v != "" {
		s.Mode = strings.ToLower(strings.TrimSpace(v))
	}
	if v := env["KONTENA_LB_BALANCE"]; v != "" {
		s.Balance = strings.ToLower(strings.TrimSpace(v))
	}
	for _, p := range []struct {
		key string
		dst *int
	}{{"KONTENA_LB_INTERNAL_PORT", &s.InternalPort}, {"KONTENA_LB_EXTERNAL_PORT", &s.ExternalPort}} {
		if v := env[p.key]; v != "" {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n <= 0 || n > 65535 {
				return s, nil, fmt.Errorf("service %s: %s=%q: expected a port (1-65535)", name, p.key, v)
			}
			*p.dst = n
		}
	}
	for _, h := range strings.Split(env["KONTENA_LB_VIRTUAL_HOSTS"], ",") {
		if h = strings.ToLower(strings.TrimSpace(h)); h != "" {
			s.VirtualHosts = append(s.VirtualHosts, h)
		}
	}
	s.VirtualPath = strings.TrimSpace(env["KONTENA_LB_VIRTUAL_PATH"])
	s.KeepVirtualPath = isTrue(env["KONTENA_LB_KEEP_VIRTUAL_PATH"])
	if v, ok := env["KONTENA_LB_COOKIE"]; ok {
		s.Cookie = strings.TrimSpace(v)
		if s.Cookie == "" {
			s.Cookie = "KONTENA_SERVERID" // kontena/lb's default when the variable is set empty
		}
	}
	if v := env["KONTENA_LB_BASIC_AUTH_SECRETS"]; v != "" {
		users, err := parseUserlist(v)
		if err != nil {
			return s, nil, fmt.Errorf("service %s: KONTENA_LB_BASIC_AUTH_SECRETS: %w", name, err)
		}
		s.BasicAuth = users
	}
	if v := env["KONTENA_LB_CUSTOM_SETTINGS"]; v != "" {
		c, w, err := parseCustom(v)
		if err != nil {
			return s, nil, fmt.Errorf("service %s: KONTENA_LB_CUSTOM_SETTINGS: %w", name, err)
		}
		s.Custom = c
		for _, line := range w {
			warnings = append(warnings, fmt.Sprintf("service %s: KONTENA_LB_CUSTOM_SETTINGS line %q is not understood by this load balancer and is ignored", name, line))
		}
	}
	cfg := Config{Services: []Service{s}}
	return s, warnings, cfg.Validate()
}

func isTrue(v string) bool {
	b, _ := strconv.ParseBool(strings.TrimSpace(v))
	return b
}

// parseUserlist reads HAProxy userlist lines:
// `user NAME password BCRYPT` or `user NAME insecure-password TEXT`.
func parseUserlist(v string) ([]BasicUser, error) {
	var out []BasicUser
	for i, line := range strings.Split(v, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 4 || f[0] != "user" {
			return nil, fmt.Errorf("line %d %q: expected `user NAME password HASH` or `user NAME insecure-password PASSWORD`", i+1, line)
		}
		switch f[2] {
		case "password":
			if !strings.HasPrefix(f[3], "$2") {
				return nil, fmt.Errorf("line %d: user %s: only bcrypt hashes ($2a$, $2b$, $2y$) are supported", i+1, f[1])
			}
			out = append(out, BasicUser{Name: f[1], Hash: f[3]})
		case "insecure-password":
			out = append(out, BasicUser{Name: f[1], Password: f[3]})
		default:
			return nil, fmt.Errorf("line %d: %q: expected password or insecure-password", i+1, f[2])
		}
	}
	return out, nil
}

// parseCustom reads the HAProxy lines of KONTENA_LB_CUSTOM_SETTINGS that
// stacks use; the lines it does not know are returned to warn about.
func parseCustom(v string) (Custom, []string, error) {
	var c Custom
	var unknown []string
	for _, line := range strings.Split(v, "\n") {
		line = strings.TrimSpace(line)
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(line, "#") {
			continue
		}
		switch {
		case f[0] == "redirect" && len(f) >= 3 && f[1] == "scheme" && f[2] == "https":
			cond := strings.Join(f[3:], " ")
			c.RedirectHTTPS, c.RedirectCode = true, 302
			if rest, ok := strings.CutPrefix(cond, "code "); ok {
				code, after, _ := strings.Cut(rest, " ")
				n, err := strconv.Atoi(code)
				if err != nil || n < 301 || n > 308 {
					return c, nil, fmt.Errorf("%q: redirect code %q: expected 301-308", line, code)
				}
				c.RedirectCode, cond = n, strings.TrimSpace(after)
			}
			// Only plain HTTP is redirected, whether the condition says so or not.
			if cond != "" && strings.ReplaceAll(cond, " ", "") != "if!{ssl_fc}" {
				unknown = append(unknown, line)
			}
		case (f[0] == "http-request" || f[0] == "http-response") && len(f) >= 4 && (f[1] == "set-header" || f[1] == "add-header"):
			h := Header{Name: f[2], Value: strings.Join(f[3:], " "), Add: f[1] == "add-header"}
			if f[0] == "http-request" {
				c.SetRequestHeaders = append(c.SetRequestHeaders, h)
			} else {
				c.SetResponseHeaders = append(c.SetResponseHeaders, h)
			}
		case f[0] == "timeout" && len(f) == 3 && (f[1] == "server" || f[1] == "tunnel" || f[1] == "client"):
			d, err := haproxyDuration(f[2])
			if err != nil {
				return c, nil, fmt.Errorf("%q: %w", line, err)
			}
			if f[1] == "client" {
				c.ClientTimeout = d
			} else {
				c.ServerTimeout = max(c.ServerTimeout, d)
			}
		case f[0] == "option" && len(f) == 2 && (f[1] == "forwardfor" || f[1] == "http-server-close" || f[1] == "httpclose" || f[1] == "http-keep-alive"):
			// X-Forwarded-For is always set; connections are kept alive
			// and closed as HTTP says: nothing to do.
		default:
			unknown = append(unknown, line)
		}
	}
	return c, unknown, nil
}

// haproxyDuration reads HAProxy time values: a number with us, ms, s, m,
// h or d (plain numbers are milliseconds).
func haproxyDuration(s string) (time.Duration, error) {
	i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	num, unit := s, "ms"
	if i >= 0 {
		num, unit = s[:i], s[i:]
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q: expected a time such as 30s or 5m", s)
	}
	units := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}
	u, ok := units[unit]
	if !ok {
		return 0, fmt.Errorf("%q: unknown unit %q (us, ms, s, m, h, d)", s, unit)
	}
	return time.Duration(n) * u, nil
}

// OptionsFromEnv reads a load balancer's own environment: its options and
// its certificates (SSL_CERTS and every SSL_CERT_*, each a PEM bundle of
// one or more certificate+chain+key).
func OptionsFromEnv(env map[string]string) (Options, []string, []string, error) {
	o := Options{HTTP2: true}
	var warnings []string
	if v, ok := env["KONTENA_LB_HTTP2"]; ok && v != "" {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return o, nil, nil, fmt.Errorf("KONTENA_LB_HTTP2=%q: expected true or false", v)
		}
		o.HTTP2 = b
	}
	o.AcceptProxy = isTrue(env["KONTENA_LB_ACCEPT_PROXY"])
	o.HealthURI = strings.TrimSpace(env["KONTENA_LB_HEALTH_URI"])
	o.StatsPassword = env["STATS_PASSWORD"]
	if v := env["KONTENA_LB_SSL_CIPHERS"]; v != "" {
		ids, unknown := ciphers(v)
		o.Ciphers = ids
		for _, u := range unknown {
			warnings = append(warnings, fmt.Sprintf("KONTENA_LB_SSL_CIPHERS: cipher %q is not one Go's TLS offers (TLS 1.2 ECDHE suites only; TLS 1.3 suites are always on); ignored", u))
		}
	}
	var keys []string
	for k, v := range env {
		// SSL_CERT_FILE and SSL_CERT_DIR are OpenSSL's own variables
		// (trusted CAs), not certificates to serve.
		if (k == "SSL_CERTS" || strings.HasPrefix(k, "SSL_CERT_")) && k != "SSL_CERT_FILE" && k != "SSL_CERT_DIR" {
			if strings.TrimSpace(v) != "" && !strings.Contains(v, "-----BEGIN") {
				warnings = append(warnings, fmt.Sprintf("%s holds no PEM certificate; ignored", k))
				continue
			}
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var certs []string
	for _, k := range keys {
		if strings.TrimSpace(env[k]) != "" {
			certs = append(certs, env[k])
		}
	}
	return o, certs, warnings, nil
}

// ciphers maps OpenSSL cipher names (colon separated) to Go's suites.
func ciphers(list string) ([]uint16, []string) {
	names := map[string]uint16{}
	for _, cs := range tls.CipherSuites() {
		names[cs.Name] = cs.ID
	}
	openssl := map[string]string{
		"ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
		"ECDHE-RSA-AES128-GCM-SHA256":   "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
		"ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
		"ECDHE-RSA-AES256-GCM-SHA384":   "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
		"ECDHE-ECDSA-CHACHA20-POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
		"ECDHE-RSA-CHACHA20-POLY1305":   "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
		"ECDHE-ECDSA-AES128-SHA":        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
		"ECDHE-RSA-AES128-SHA":          "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
		"ECDHE-ECDSA-AES256-SHA":        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
		"ECDHE-RSA-AES256-SHA":          "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
	}
	var ids []uint16
	var unknown []string
	for _, n := range strings.Split(list, ":") {
		n = strings.TrimSpace(n)
		if n == "" || strings.HasPrefix(n, "!") {
			continue
		}
		if g, ok := openssl[n]; ok {
			n = g
		}
		if id, ok := names[n]; ok {
			ids = append(ids, id)
		} else {
			unknown = append(unknown, n)
		}
	}
	return ids, unknown
}
