package cmd

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"

	"github.com/kontena-ng/kontena/api"
)

// startOP runs a real OpenID provider (oauth2-proxy/mockoidc) on loopback.
func startOP(t *testing.T) *mockoidc.MockOIDC {
	t.Helper()
	m, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return m
}

// lineWriter hands each line written to it to a channel.
type lineWriter struct{ lines chan string }

func (l lineWriter) Write(p []byte) (int, error) {
	sc := bufio.NewScanner(strings.NewReader(string(p)))
	for sc.Scan() {
		select {
		case l.lines <- sc.Text():
		default:
		}
	}
	return len(p), nil
}

// browser follows a URL as a browser would, redirects included: the
// provider redirects to the CLI's localhost listener with the code.
func browser(t *testing.T, u string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "close this window") {
		t.Fatalf("browser ended at %s: %d %s", resp.Request.URL, resp.StatusCode, body)
	}
}

// oidcLoginCLI runs `kontena login --oidc --no-browser` and plays the
// browser with the URL it prints.
func oidcLoginCLI(t *testing.T, cfg string) {
	t.Helper()
	lines := make(chan string, 64)
	done := make(chan int, 1)
	var out strings.Builder
	go func() {
		done <- Run([]string{"kontena", "--config", cfg, "login", "--oidc", "--no-browser"}, &out, lineWriter{lines})
	}()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case l := <-lines:
			if u := strings.TrimSpace(l); strings.HasPrefix(u, "http://127.0.0.1") {
				browser(t, u)
			}
		case code := <-done:
			if code != 0 {
				t.Fatalf("login --oidc exited %d: %s", code, out.String())
			}
			return
		case <-deadline:
			t.Fatal("login --oidc did not finish")
		}
	}
}

// idToken gets an ID token from m for user by the code flow, as a CI
// system holding its own credential would.
func idToken(t *testing.T, m *mockoidc.MockOIDC, user *mockoidc.MockUser) string {
	t.Helper()
	m.QueueUser(user)
	q := url.Values{"scope": {"openid email groups"}, "state": {"s"}, "client_id": {m.ClientID}, "response_type": {"code"}, "redirect_uri": {"http://127.0.0.1:1/cb"}}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(m.AuthorizationEndpoint() + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	form := url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "client_id": {m.ClientID},
		"client_secret": {m.ClientSecret}, "redirect_uri": {"http://127.0.0.1:1/cb"}}
	resp, err = http.PostForm(m.TokenEndpoint(), form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		IDToken string `json:"id_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	if tok.IDToken == "" {
		t.Fatalf("no ID token from %s", m.Issuer())
	}
	return tok.IDToken
}

// TestSingleSignOn: login through a real OpenID provider, the group claim
// mapped to a role, a group lost at the provider is a role lost at the
// next refresh, and ID tokens of another issuer or with a bad signature
// refused.
func TestSingleSignOn(t *testing.T) {
	admin := startNode(t)
	m := startOP(t)
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte(m.ClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := run(t, nil, "--config", admin, "grid", "update", "--oidc-issuer", m.Issuer(), "--oidc-client-id", m.ClientID,
		"--oidc-client-secret-file", secret, "--oidc-role-claim", "groups", "--oidc-role-map", "ops=grid_admin,dev=developer", "--oidc-scopes", "groups"); code != 0 {
		t.Fatalf("grid update --oidc: %s", errOut)
	}
	// The user's machine knows the grid (its CA and address), not a token.
	cfg, gc := gridOf(t, admin)
	sso := filepath.Join(t.TempDir(), "sso.json")
	cfg.path = sso
	gc.Token, gc.Refresh, gc.TokenExpires = "", "", time.Time{}
	if err := cfg.save(); err != nil {
		t.Fatal(err)
	}

	user := &mockoidc.MockUser{Subject: "u-1", Email: "sso@example.com", EmailVerified: true, Groups: []string{"ops", "other"}}
	m.QueueUser(user)
	oidcLoginCLI(t, sso)
	who := whoami(t, sso)
	if who.User != "sso@example.com" || strings.Join(who.Roles, ",") != "grid_admin" {
		t.Fatalf("after single sign-on: %+v", who)
	}
	if _, errOut, code := run(t, nil, "--config", sso, "grid", "token"); code != 0 {
		t.Fatalf("grid_admin by group: %s", errOut)
	}

	// The provider moves the user from ops to dev: at the next refresh
	// the grid asks it again and the role follows.
	user.Groups = []string{"dev"}
	cfg, gc = gridOf(t, sso)
	gc.TokenExpires = time.Now()
	_ = cfg.save()
	if who := whoami(t, sso); strings.Join(who.Roles, ",") != "developer" {
		t.Fatalf("after losing the ops group: %+v", who)
	}
	if _, errOut, code := run(t, nil, "--config", sso, "grid", "token"); code != ExitAuth || !strings.Contains(errOut, "needs the grid_admin role") {
		t.Fatalf("developer by group asks for the join token: %d %s", code, errOut)
	}

	// ID tokens handed to the grid directly: the provider's is accepted,
	// another issuer's and a forged one are refused.
	_, gc = gridOf(t, admin)
	cl, err := api.NewClient(gc.Addresses, []byte(gc.CACert), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	good := idToken(t, m, &mockoidc.MockUser{Subject: "ci-1", Email: "ci@example.com", Groups: []string{"dev"}})
	if res, err := cl.Login(ctx, api.LoginRequest{IDToken: good}); err != nil || res.User.Name != "ci@example.com" || res.RefreshToken != "" {
		t.Fatalf("ID token of the grid's provider: %+v %v", res, err)
	}
	other := startOP(t)
	foreign := idToken(t, other, &mockoidc.MockUser{Subject: "ci-1", Email: "ci@example.com", Groups: []string{"ops"}})
	if _, err := cl.Login(ctx, api.LoginRequest{IDToken: foreign}); !api.IsCode(err, api.CodeUnauthorized) || !strings.Contains(err.Error(), "issued by a different provider") {
		t.Fatalf("ID token of another issuer: %v", err)
	}
	parts := strings.Split(good, ".")
	forged := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	if _, err := cl.Login(ctx, api.LoginRequest{IDToken: forged}); !api.IsCode(err, api.CodeUnauthorized) || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("ID token with a bad signature: %v", err)
	}
	// Each is on the record.
	out, _, _ := run(t, nil, "--config", admin, "audit-log", "--resource", "user", "-o", "json", "--tail", "0")
	if !strings.Contains(out, `"user.login"`) || !strings.Contains(out, `"login.oidc"`) || !strings.Contains(out, "denied: ID token refused") || !strings.Contains(out, `"user.refresh"`) {
		t.Errorf("audit log lacks single sign-on logins, refusals or refreshes:\n%s", out)
	}
}

func whoami(t *testing.T, cfg string) api.WhoAmI {
	t.Helper()
	out, errOut, code := run(t, nil, "--config", cfg, "whoami", "-o", "json")
	if code != 0 {
		t.Fatalf("whoami: %s", errOut)
	}
	var w api.WhoAmI
	if err := json.Unmarshal([]byte(out), &w); err != nil {
		t.Fatal(err)
	}
	return w
}
