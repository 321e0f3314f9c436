package cmd

import (
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/text/language"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
)

// startDeviceOP runs zitadel/oidc's example OpenID provider on loopback:
// a real provider with the device authorization grant (RFC 8628) and a
// login form for it. Its client "device" has the secret "secret".
func startDeviceOP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String()
	storage.RegisterClients(storage.DeviceClient("device", "secret"))
	users := opUsers{"dana@example.com": {ID: "dana@example.com", Username: "dana@example.com", Password: "verysecure",
		FirstName: "Dana", LastName: "Ops", Email: "dana@example.com", EmailVerified: true, PreferredLanguage: language.English}}
	router := exampleop.SetupServer(issuer, storage.NewStorage(users), nil, false)
	srv := &http.Server{Handler: router, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return issuer
}

// opUsers are the provider's users. The example's device page completes
// a login with the user name as the subject, so a user's ID is its name.
type opUsers map[string]*storage.User

func (u opUsers) GetUserByID(id string) *storage.User { return u[id] }
func (u opUsers) GetUserByUsername(name string) *storage.User {
	return u[name]
}
func (opUsers) ExampleClientID() string { return "service" }

// approveDevice is the user on another device: open the provider's device
// page, enter the code, sign in, allow.
func approveDevice(t *testing.T, issuer, userCode string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	user := "dana@example.com"
	for _, step := range []struct {
		path string
		form url.Values
	}{
		{"/device/login", url.Values{"user_code": {userCode}, "username": {user}, "password": {"verysecure"}}},
		{"/device/confirm", url.Values{"action": {"allowed"}}},
	} {
		resp, err := c.PostForm(issuer+step.path, step.form)
		if err != nil {
			t.Fatalf("device page %s: %v", step.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || strings.Contains(string(body), "prompt=") {
			t.Fatalf("device page %s: %d %s", step.path, resp.StatusCode, body)
		}
	}
}

// TestDeviceLogin: `kontena login --oidc --device` on a machine without a
// browser; the user approves on another device; claims the ID token lacks
// come from the provider's userinfo.
func TestDeviceLogin(t *testing.T) {
	admin := startNode(t)
	issuer := startDeviceOP(t)
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := run(t, nil, "--config", admin, "grid", "update", "--oidc-issuer", issuer, "--oidc-client-id", "device",
		"--oidc-client-secret-file", secret, "--oidc-role-claim", "email", "--oidc-role-map", "dana@example.com=developer"); code != 0 {
		t.Fatalf("grid update --oidc: %s", errOut)
	}
	cfg, gc := gridOf(t, admin)
	dev := filepath.Join(t.TempDir(), "device.json")
	cfg.path = dev
	gc.Token, gc.Refresh, gc.TokenExpires = "", "", time.Time{}
	if err := cfg.save(); err != nil {
		t.Fatal(err)
	}

	lines := make(chan string, 64)
	done := make(chan int, 1)
	var out strings.Builder
	go func() {
		done <- Run([]string{"kontena", "--config", dev, "login", "--oidc", "--device"}, &out, lineWriter{lines})
	}()
	codeRE := regexp.MustCompile(`enter the code (\S+)`)
	deadline := time.After(60 * time.Second)
	var stderr []string
	for approved := false; ; {
		select {
		case l := <-lines:
			stderr = append(stderr, l)
			if m := codeRE.FindStringSubmatch(l); m != nil && !approved {
				approveDevice(t, issuer, m[1])
				approved = true
			}
		case code := <-done:
			if code != 0 {
				for len(lines) > 0 {
					stderr = append(stderr, <-lines)
				}
				t.Fatalf("login --oidc --device exited %d: %s%s", code, out.String(), strings.Join(stderr, "\n"))
			}
			who := whoami(t, dev)
			if who.User != "dana@example.com" || strings.Join(who.Roles, ",") != "developer" {
				t.Fatalf("after the device login: %+v", who)
			}
			return
		case <-deadline:
			t.Fatal("device login did not finish")
		}
	}
}
