package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"runtime"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/urfave/cli/v2"
	"golang.org/x/oauth2"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/pki"
)

// refreshBefore: the CLI renews a login's access token this long before
// it expires, so a command never starts with a token about to end.
const refreshBefore = 5 * time.Minute

// keepLogin renews the context's access token with its refresh token when
// it expires soon, and saves the new one. A grid that cannot be reached
// leaves the old token to try.
func (s *session) keepLogin(ctx context.Context, now time.Time) error {
	gc := s.ctx
	if gc.Refresh == "" || (!gc.TokenExpires.IsZero() && gc.TokenExpires.Sub(now) > refreshBefore) {
		return nil
	}
	res, err := s.api.WithToken("").Login(ctx, api.LoginRequest{RefreshToken: gc.Refresh})
	if err != nil {
		var ue *api.UnreachableError
		if errors.As(err, &ue) {
			return nil
		}
		return fmt.Errorf("your login to grid %s could not be renewed: %w (log in again: `kontena login`)", gc.Name, err)
	}
	saveLogin(gc, res)
	s.api = s.api.WithToken(gc.Token)
	return s.cfg.save()
}

// saveLogin puts a login's tokens into a grid context.
func saveLogin(gc *gridContext, res *api.LoginResponse) {
	gc.Token, gc.TokenExpires, gc.User = res.AccessToken, res.AccessExpiresAt, res.User.Name
	gc.Refresh = res.RefreshToken
}

func loginCommand() *cli.Command {
	return &cli.Command{
		Name:  "login",
		Usage: "log in to the current grid again: with an invite code or single sign-on",
		Description: `   A login gives a 2-hour access token and a refresh token; the CLI renews the
   access token by itself while the login is used at least once in 30 days.

   kontena login --code kti_...        redeem an invite (kontena user invite)
   kontena login --oidc                single sign-on in the browser (authorization
                                       code with PKCE, through a localhost redirect)
   kontena login --oidc --no-browser   print the URL instead of opening a browser
   kontena login --oidc --device       no browser here: approve on another device
                                       with the code printed (RFC 8628)

   To add a grid that is not in the CLI config yet, use ` + "`kontena grid login URL`" + `.`,
		Flags: append(loginFlags(), outputFlag),
		Action: func(c *cli.Context) error {
			s, err := openSessionNoRefresh(c)
			if err != nil {
				return err
			}
			res, err := login(c, s.api.WithToken(""))
			if err != nil {
				return exitError(err)
			}
			saveLogin(s.ctx, res)
			if err := s.cfg.save(); err != nil {
				return exitError(err)
			}
			return render(c, res.User, func(w io.Writer) {
				fmt.Fprintf(w, "Logged in to grid %s as %s with roles %v.\n", s.ctx.Name, res.User.Name, res.User.Roles)
			})
		},
	}
}

func loginFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "code", Usage: "invite code (kti_...) from `kontena user invite`"},
		&cli.BoolFlag{Name: "oidc", Usage: "log in through the grid's single sign-on provider"},
		&cli.BoolFlag{Name: "no-browser", Usage: "with --oidc: print the URL to open instead of opening a browser"},
		&cli.BoolFlag{Name: "device", Usage: "with --oidc: a machine without a browser: approve the login on another device with a code"},
	}
}

// login runs the login the flags ask for against cl (a client without a
// token); nil, nil when they ask for none.
func login(c *cli.Context, cl *api.Client) (*api.LoginResponse, error) {
	switch {
	case c.String("code") != "" && c.Bool("oidc"):
		return nil, usageError("give --code or --oidc, not both")
	case c.String("code") != "":
		return cl.Login(c.Context, api.LoginRequest{Code: c.String("code")})
	case c.Bool("oidc") && c.Bool("device"):
		return deviceLogin(c.Context, cl, c.App.ErrWriter)
	case c.Bool("oidc"):
		return oidcLogin(c.Context, cl, c.App.ErrWriter, !c.Bool("no-browser"))
	}
	return nil, usageError("give --code CODE or --oidc")
}

// oidcLogin runs the authorization-code flow with PKCE: the user signs in
// at the provider in a browser, which comes back to a listener on
// 127.0.0.1 with the code; the grid exchanges the code (it holds the
// client secret) and verifies the ID token.
func oidcLogin(ctx context.Context, cl *api.Client, out io.Writer, browser bool) (*api.LoginResponse, error) {
	info, err := cl.OIDC(ctx)
	if err != nil {
		return nil, err
	}
	prov, err := oidc.NewProvider(ctx, info.Issuer)
	if err != nil {
		return nil, fmt.Errorf("single sign-on provider %s: %w", info.Issuer, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the provider's redirect: %w", err)
	}
	defer ln.Close()
	redirect := "http://" + ln.Addr().String() + "/callback"
	conf := oauth2.Config{ClientID: info.ClientID, Endpoint: prov.Endpoint(), RedirectURL: redirect, Scopes: info.Scopes}
	verifier, state := oauth2.GenerateVerifier(), pki.RandomHex(16)
	authURL := conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier))

	codes := make(chan string, 1)
	fail := make(chan error, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		switch {
		case r.URL.Path != "/callback":
			http.NotFound(w, r)
			return
		case q.Get("state") != state:
			http.Error(w, "state does not match this login", http.StatusBadRequest)
			return
		case q.Get("error") != "":
			fail <- fmt.Errorf("provider refused the login: %s %s", q.Get("error"), q.Get("error_description"))
		default:
			codes <- q.Get("code")
		}
		fmt.Fprintln(w, "You can close this window and go back to the terminal.")
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	fmt.Fprintf(out, "Sign in at:\n\n  %s\n\nWaiting for the provider (5 minutes)...\n", authURL)
	if browser {
		openBrowser(authURL)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	select {
	case code := <-codes:
		return cl.Login(ctx, api.LoginRequest{OIDCCode: code, CodeVerifier: verifier, RedirectURI: redirect})
	case err := <-fail:
		return nil, err
	case <-ctx.Done():
		return nil, errors.New("no answer from the provider within 5 minutes: try again")
	}
}

// deviceLogin runs a device login: the grid starts it at the provider,
// the user approves it on any device with the code, and the CLI polls the
// grid until then.
func deviceLogin(ctx context.Context, cl *api.Client, out io.Writer) (*api.LoginResponse, error) {
	da, err := cl.StartDeviceLogin(ctx)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "On any device, open:\n\n  %s\n\nand enter the code %s", da.VerificationURI, da.UserCode)
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(out, " (or open %s)", da.VerificationURIComplete)
	}
	fmt.Fprintf(out, ".\nWaiting for the approval (until %s)...\n", da.ExpiresAt.Local().Format(time.Kitchen))
	every := time.Duration(max(da.Interval, 1)) * time.Second
	for {
		res, err := cl.Login(ctx, api.LoginRequest{DeviceCode: da.DeviceCode})
		if !api.IsCode(err, api.CodePending) {
			return res, err
		}
		if !da.ExpiresAt.IsZero() && time.Now().After(da.ExpiresAt) {
			return nil, errors.New("the device login expired before it was approved: try again")
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(every):
		}
	}
}

// openBrowser tries the desktop's URL opener; the URL is printed anyway.
func openBrowser(url string) {
	cmd := "xdg-open"
	if runtime.GOOS == "darwin" {
		cmd = "open"
	}
	if path, err := exec.LookPath(cmd); err == nil {
		_ = exec.Command(path, url).Start()
	}
}
