package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

// Single sign-on with OpenID Connect. The CLI runs the browser part of
// the authorization-code flow (with PKCE, through a localhost redirect)
// and hands the grid the code; the leader exchanges it with the client
// secret, verifies the ID token (issuer, audience, signature, expiry) and
// maps its role claim to roles. The provider's refresh token is kept
// sealed on the grid's refresh token: each refresh asks the provider
// again, so a user who lost a group loses the role then.

// oidcScopes are asked of the provider: the standard ones and those the
// grid's settings add (groups, offline_access...).
func oidcScopes(o *fsm.OIDCConfig) []string {
	out := []string{oidc.ScopeOpenID, "email", "profile"}
	for _, s := range o.Scopes {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// idpRefreshContext is the sealing context of providers' refresh tokens.
const idpRefreshContext = "idp-refresh"

// oidcClientSecretContext is the sealing context of the client secret.
const oidcClientSecretContext = "oidc-client-secret"

// oidcProviders caches providers' discovery documents and keys by issuer.
type oidcProviders struct {
	mu sync.Mutex
	by map[string]*oidc.Provider
}

func (o *oidcProviders) get(ctx context.Context, issuer string) (*oidc.Provider, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if p, ok := o.by[issuer]; ok {
		return p, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, &http.Client{Timeout: 10 * time.Second}), issuer)
	if err != nil {
		return nil, api.Errorf(api.CodeUnavailable, "single sign-on provider %s: %v", issuer, err)
	}
	if o.by == nil {
		o.by = map[string]*oidc.Provider{}
	}
	o.by[issuer] = p
	return p, nil
}

// oidcClient is the grid's client of its provider.
type oidcClient struct {
	cfg      *fsm.OIDCConfig
	provider *oidc.Provider
	oauth    oauth2.Config
}

func (n *Server) oidcClient(ctx context.Context) (*oidcClient, error) {
	g, err := n.gridSettings()
	if err != nil {
		return nil, err
	}
	if g.OIDC == nil {
		return nil, api.Errorf(api.CodeNotFound, "this grid has no single sign-on provider")
	}
	prov, err := n.oidc.get(ctx, g.OIDC.Issuer)
	if err != nil {
		return nil, err
	}
	c := &oidcClient{cfg: g.OIDC, provider: prov,
		oauth: oauth2.Config{ClientID: g.OIDC.ClientID, Endpoint: prov.Endpoint(), Scopes: oidcScopes(g.OIDC)}}
	if len(g.OIDC.ClientSecretSealed) > 0 {
		keys, err := n.keys()
		if err != nil {
			return nil, err
		}
		secret, err := keys.Seal.Open(g.OIDC.ClientSecretSealed, oidcClientSecretContext)
		if err != nil {
			return nil, fmt.Errorf("open the OIDC client secret: %w", err)
		}
		c.oauth.ClientSecret = string(secret)
	}
	return c, nil
}

// verify checks an ID token and returns who it names with their roles.
// Claims the ID token lacks (many providers keep the email or groups to
// the userinfo endpoint) are asked of the provider with the access token.
func (c *oidcClient) verify(ctx context.Context, raw, accessToken string) (fsm.User, error) {
	idt, err := c.provider.Verifier(&oidc.Config{ClientID: c.cfg.ClientID}).Verify(ctx, raw)
	if err != nil {
		return fsm.User{}, api.Errorf(api.CodeUnauthorized, "ID token refused: %v", err)
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return fsm.User{}, api.Errorf(api.CodeUnauthorized, "ID token claims: %v", err)
	}
	if (claims[c.cfg.RoleClaim] == nil || claims["email"] == nil) && accessToken != "" {
		if ui, err := c.provider.UserInfo(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: accessToken})); err == nil && ui.Subject == idt.Subject {
			var more map[string]any
			if ui.Claims(&more) == nil {
				for k, v := range more {
					if _, ok := claims[k]; !ok {
						claims[k] = v
					}
				}
			}
		}
	}
	name, _ := claims["email"].(string)
	if name == "" || len(name) > 254 || badNameChars.MatchString(name) {
		name = "oidc-" + badNameChars.ReplaceAllString(idt.Subject, "_")
	}
	return fsm.User{Name: name, Email: stringClaim(claims, "email"), Roles: mapRoles(claims[c.cfg.RoleClaim], c.cfg.RoleMap),
		Issuer: idt.Issuer, Subject: idt.Subject}, nil
}

// badNameChars may not be in a user name.
var badNameChars = regexp.MustCompile(`[\s/]`)

func stringClaim(claims map[string]any, k string) string {
	s, _ := claims[k].(string)
	return s
}

// mapRoles turns a role claim (a string or a list of strings) into roles
// by the grid's role map, strongest first, each once.
func mapRoles(claim any, roleMap map[string]string) []string {
	var vals []string
	switch v := claim.(type) {
	case string:
		vals = []string{v}
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok {
				vals = append(vals, s)
			}
		}
	}
	roles := []string{}
	for _, r := range fsm.Roles {
		for _, v := range vals {
			if roleMap[v] == r && !slices.Contains(roles, r) {
				roles = append(roles, r)
			}
		}
	}
	return roles
}

// loginOIDC is a single sign-on login: with an authorization code the
// leader exchanges, or with an ID token the caller got itself.
func (n *Server) loginOIDC(ctx context.Context, r *http.Request, req api.LoginRequest, now time.Time) (*api.LoginResponse, string, error) {
	c, err := n.oidcClient(ctx)
	if err != nil {
		return nil, "anonymous", err
	}
	ctx = oidc.ClientContext(ctx, &http.Client{Timeout: 10 * time.Second})
	raw, idpRefresh, idpAccess := req.IDToken, req.IdPRefresh, ""
	if req.DeviceCode != "" {
		tok, err := c.deviceToken(ctx, req.DeviceCode)
		if err != nil {
			return nil, "anonymous", err
		}
		raw, idpRefresh, idpAccess = tok.IDToken, tok.RefreshToken, tok.AccessToken
	}
	if req.OIDCCode != "" {
		if req.CodeVerifier == "" || req.RedirectURI == "" {
			return nil, "anonymous", api.Errorf(api.CodeInvalid, "a single sign-on code needs its PKCE code_verifier and redirect_uri")
		}
		oc := c.oauth
		oc.RedirectURL = req.RedirectURI
		tok, err := oc.Exchange(ctx, req.OIDCCode, oauth2.VerifierOption(req.CodeVerifier))
		if err != nil {
			return nil, "anonymous", api.Errorf(api.CodeUnauthorized, "single sign-on provider refused the code: %v", err)
		}
		raw, _ = tok.Extra("id_token").(string)
		idpRefresh, idpAccess = tok.RefreshToken, tok.AccessToken
		if raw == "" {
			return nil, "anonymous", api.Errorf(api.CodeUnauthorized, "single sign-on provider gave no ID token")
		}
	}
	u, err := c.verify(ctx, raw, idpAccess)
	if err != nil {
		return nil, "anonymous", err
	}
	u.CreatedAt = now
	refresh, access, rv, av := session(u.Name, now)
	var refreshOut *fsm.Token
	if idpRefresh != "" {
		keys, err := n.keys()
		if err != nil {
			return nil, u.Name, err
		}
		if refresh.IdPRefresh, err = keys.Seal.Seal([]byte(idpRefresh), idpRefreshContext); err != nil {
			return nil, u.Name, err
		}
		refreshOut = &refresh
	} else {
		// Without the provider's refresh token the grid could not ask
		// it again: the login is its access token only.
		refresh.ExpiresAt = access.ExpiresAt
	}
	res, _, err := n.apply(ctx, &fsm.UserLogin{User: u, Refresh: refresh, Access: access}, auditOf(r, &principal{User: u.Name, Roles: u.Roles}))
	if err != nil {
		return nil, u.Name, err
	}
	return loginResponse(res.(*fsm.User), access, av, refreshOut, rv), u.Name, nil
}

// oidcRefresh asks the provider again who the user of a single sign-on
// login is: their roles now, and the provider's refresh token re-sealed.
func (n *Server) oidcRefresh(ctx context.Context, sealed []byte) ([]string, []byte, error) {
	c, err := n.oidcClient(ctx)
	if err != nil {
		return nil, nil, err
	}
	keys, err := n.keys()
	if err != nil {
		return nil, nil, err
	}
	plain, err := keys.Seal.Open(sealed, idpRefreshContext)
	if err != nil {
		return nil, nil, api.Errorf(api.CodeUnauthorized, "your single sign-on session cannot be renewed (its provider token cannot be opened): log in again with `kontena login --oidc`")
	}
	ctx = oidc.ClientContext(ctx, &http.Client{Timeout: 10 * time.Second})
	tok, err := c.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: string(plain), Expiry: time.Unix(1, 0)}).Token()
	if err != nil {
		return nil, nil, api.Errorf(api.CodeUnauthorized, "single sign-on provider refused to renew your session: %v: log in again", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, nil, api.Errorf(api.CodeUnauthorized, "single sign-on provider renewed your session without an ID token: log in again")
	}
	u, err := c.verify(ctx, raw, tok.AccessToken)
	if err != nil {
		return nil, nil, err
	}
	next := string(plain)
	if tok.RefreshToken != "" {
		next = tok.RefreshToken
	}
	resealed, err := keys.Seal.Seal([]byte(next), idpRefreshContext)
	return u.Roles, resealed, err
}

// startDeviceLogin starts a device authorization (RFC 8628) at the
// provider with the grid's client, for a CLI on a machine without a
// browser: the user approves it on any device, the CLI polls POST
// /v1/login with the device code, and the leader asks the provider.
func (n *Server) startDeviceLogin(w http.ResponseWriter, r *http.Request, _ *principal) error {
	c, err := n.oidcClient(r.Context())
	if err != nil {
		return err
	}
	if c.oauth.Endpoint.DeviceAuthURL == "" {
		return api.Errorf(api.CodeInvalid, "single sign-on provider %s has no device authorization endpoint: log in with `kontena login --oidc` in a browser", c.cfg.Issuer)
	}
	ctx := oidc.ClientContext(r.Context(), &http.Client{Timeout: 10 * time.Second})
	da, err := c.oauth.DeviceAuth(ctx)
	if err != nil {
		return api.Errorf(api.CodeUnavailable, "single sign-on provider refused a device login: %v", err)
	}
	return writeJSON(w, 0, api.DeviceLogin{DeviceCode: da.DeviceCode, UserCode: da.UserCode, VerificationURI: da.VerificationURI,
		VerificationURIComplete: da.VerificationURIComplete, ExpiresAt: da.Expiry, Interval: int(da.Interval)})
}

// deviceTokens is the provider's answer to a device code.
type deviceTokens struct {
	IDToken      string `json:"id_token"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	Error        string `json:"error"`
	Description  string `json:"error_description"`
}

// deviceToken asks the provider once whether the user approved a device
// login: CodePending while they have not.
func (c *oidcClient) deviceToken(ctx context.Context, deviceCode string) (*deviceTokens, error) {
	form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {deviceCode}, "client_id": {c.oauth.ClientID}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.oauth.Endpoint.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c.oauth.ClientSecret != "" {
		req.SetBasicAuth(url.QueryEscape(c.oauth.ClientID), url.QueryEscape(c.oauth.ClientSecret))
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return nil, api.Errorf(api.CodeUnavailable, "single sign-on provider: %v", err)
	}
	defer resp.Body.Close()
	var tok deviceTokens
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tok); err != nil {
		return nil, api.Errorf(api.CodeUnavailable, "single sign-on provider answered %s: %v", resp.Status, err)
	}
	switch tok.Error {
	case "":
		if tok.IDToken == "" {
			return nil, api.Errorf(api.CodeUnauthorized, "single sign-on provider gave no ID token")
		}
		return &tok, nil
	case "authorization_pending", "slow_down":
		return nil, api.Errorf(api.CodePending, "waiting for the user to approve the login at the provider (%s)", tok.Error)
	}
	return nil, api.Errorf(api.CodeUnauthorized, "single sign-on provider refused the device login: %s %s", tok.Error, tok.Description)
}

// gridSettings are the grid's settings as this voter's state has them.
func (n *Server) gridSettings() (*fsm.Grid, error) {
	store, err := n.store()
	if err != nil {
		return nil, err
	}
	return store.Grid()
}
