package httpapi

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

// Logins: POST /v1/login is public, on the leader. What authenticates the
// caller is in the body: an invite code, a refresh token, or a credential
// of the grid's OpenID provider. Every attempt, granted or refused, is an
// audit record.

func (n *Server) serveLogin(w http.ResponseWriter, r *http.Request, _ *principal) error {
	var req api.LoginRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	now := time.Now().UTC()
	src := sourceIP(r)
	if !n.logins.allow(src, now) {
		return api.Errorf(api.CodeUnavailable, "too many failed logins from %s: wait a minute and try again", src)
	}
	var (
		res  *api.LoginResponse
		who  = "anonymous"
		how  string
		err  error
		kind int
	)
	for _, set := range []string{req.Code, req.RefreshToken, req.OIDCCode + req.IDToken + req.DeviceCode} {
		if set != "" {
			kind++
		}
	}
	switch {
	case kind != 1:
		err = api.Errorf(api.CodeInvalid, "log in with one of: an invite code, a refresh token, or a single sign-on code or ID token")
		how = "login"
	case req.Code != "":
		how = "login.invite"
		res, who, err = n.loginInvite(r.Context(), r, req.Code, now)
	case req.RefreshToken != "":
		how = "login.refresh"
		res, who, err = n.loginRefresh(r.Context(), r, req.RefreshToken, now)
	default:
		how = "login.oidc"
		res, who, err = n.loginOIDC(r.Context(), r, req, now)
	}
	if err != nil && !api.IsCode(err, api.CodePending) { // a device login being waited for is no refusal
		if n.logins.failed(src, now) {
			n.auditLogin(r, who, how, err)
		} else {
			n.log.Warn("login refused (not in the audit log: too many refusals this minute)", "user", who, "source", src, "err", err)
		}
	}
	if err != nil {
		return err
	}
	return writeJSON(w, 0, res)
}

// auditLogin puts a refused login on the record.
func (n *Server) auditLogin(r *http.Request, who, how string, refusal error) {
	note := &fsm.AuditNote{Action: how, Resource: "user/" + who, Result: "denied: " + refusal.Error()}
	if _, _, err := n.apply(r.Context(), note, auditOf(r, &principal{User: who})); err != nil {
		n.log.Warn("could not record a refused login in the audit log", "user", who, "err", err)
	}
}

// session makes a refresh token and an access token made from it.
func session(user string, now time.Time) (refresh, access fsm.Token, refreshValue, accessValue string) {
	refresh, refreshValue = newToken(fsm.TokenKindRefresh, user, "ktr_", now, refreshTTL, nil)
	access, accessValue = newToken(fsm.TokenKindAccess, user, "ktn_", now, accessTTL, []string{refresh.ID})
	return
}

func loginResponse(u *fsm.User, access fsm.Token, accessValue string, refresh *fsm.Token, refreshValue string) *api.LoginResponse {
	out := &api.LoginResponse{User: *u, AccessToken: accessValue, AccessExpiresAt: access.ExpiresAt}
	if refresh != nil {
		out.RefreshToken, out.RefreshExpiresAt = refreshValue, refresh.ExpiresAt
	}
	return out
}

func (n *Server) loginInvite(ctx context.Context, r *http.Request, code string, now time.Time) (*api.LoginResponse, string, error) {
	store, err := n.store()
	if err != nil {
		return nil, "anonymous", err
	}
	inv, err := store.Snapshot().InviteByHash(HashToken(code))
	if err != nil {
		return nil, "anonymous", api.Errorf(api.CodeUnauthorized, "invite code is unknown, expired or was used already: ask for a new one (`kontena user invite`)")
	}
	if now.After(inv.ExpiresAt) {
		return nil, inv.Email, api.Errorf(api.CodeUnauthorized, "the invite for %s expired at %s: ask for a new one", inv.Email, inv.ExpiresAt.Format(time.RFC3339))
	}
	refresh, access, rv, av := session(inv.Email, now)
	res, _, err := n.apply(ctx, &fsm.InviteRedeem{Hash: inv.Hash, Refresh: refresh, Access: access},
		auditOf(r, &principal{User: inv.Email, Roles: inv.Roles}))
	if err != nil {
		return nil, inv.Email, err
	}
	return loginResponse(res.(*fsm.User), access, av, &refresh, rv), inv.Email, nil
}

func (n *Server) loginRefresh(ctx context.Context, r *http.Request, value string, now time.Time) (*api.LoginResponse, string, error) {
	store, err := n.store()
	if err != nil {
		return nil, "anonymous", err
	}
	rt, err := store.TokenByHash(HashToken(value))
	if err != nil || rt.Kind != fsm.TokenKindRefresh {
		return nil, "anonymous", api.Errorf(api.CodeUnauthorized, "refresh token is unknown or was revoked: log in again")
	}
	if rt.Expired(now) {
		return nil, rt.User, api.Errorf(api.CodeUnauthorized, "your login ended at %s (unused for %s): log in again", rt.ExpiresAt.Format(time.RFC3339), refreshTTL)
	}
	u, err := store.User(rt.User)
	if err != nil {
		return nil, rt.User, api.Errorf(api.CodeUnauthorized, "user %s no longer exists", rt.User)
	}
	cmd := &fsm.TokenRefresh{RefreshID: rt.ID, ExpiresAt: now.Add(refreshTTL)}
	if rt.IdPRefresh != nil {
		// A single sign-on login asks the provider again who the user is:
		// a user it no longer knows, or who lost a group, loses the role.
		roles, sealed, err := n.oidcRefresh(ctx, rt.IdPRefresh)
		if err != nil {
			if _, _, rerr := n.apply(ctx, &fsm.TokenRemove{ID: rt.ID}, auditOf(r, &principal{User: rt.User})); rerr != nil {
				n.log.Warn("could not end a single sign-on session the provider refused", "user", rt.User, "err", rerr)
			}
			return nil, rt.User, err
		}
		cmd.Roles, cmd.IdPRefresh = &roles, sealed
	}
	access, av := newToken(fsm.TokenKindAccess, rt.User, "ktn_", now, accessTTL, append(slices.Clone(rt.Ancestors), rt.ID))
	cmd.Access = access
	roles := u.Roles
	if cmd.Roles != nil {
		roles = *cmd.Roles
	}
	if _, _, err := n.apply(ctx, cmd, auditOf(r, &principal{User: rt.User, Roles: roles})); err != nil {
		return nil, rt.User, err
	}
	u, _ = store.User(rt.User)
	rt.ExpiresAt = cmd.ExpiresAt
	return loginResponse(u, access, av, rt, value), rt.User, nil
}

// getOIDCInfo tells a CLI where to log in (public: it holds no secret).
func (n *Server) getOIDCInfo(w http.ResponseWriter, r *http.Request, _ *principal) error {
	store, err := n.store()
	if err != nil {
		return err
	}
	g, err := store.Grid()
	if err != nil {
		return err
	}
	if g.OIDC == nil {
		return api.Errorf(api.CodeNotFound, "this grid has no single sign-on provider (grid_admin: `kontena grid update --oidc-issuer URL ...`)")
	}
	return writeJSON(w, store.Index(), api.OIDCInfo{Issuer: g.OIDC.Issuer, ClientID: g.OIDC.ClientID, Scopes: oidcScopes(g.OIDC)})
}

// recoverAdmin gives the user admin the master_admin role and a new login.
// Only a voter's certificate opens it: whoever holds one is root on a
// voter machine, which holds the grid's CA and master keys anyway; this is
// the way back in when the admin's login ended and no one can invite.
func (n *Server) recoverAdmin(w http.ResponseWriter, r *http.Request, p *principal) error {
	now := time.Now().UTC()
	refresh, access, rv, av := session("admin", now)
	refresh.Description, access.Description = "recovered by "+p.NodeName, "recovered by "+p.NodeName
	res, _, err := n.apply(r.Context(), &fsm.AdminRecover{Refresh: refresh, Access: access}, auditOf(r, p))
	if err != nil {
		return err
	}
	return writeJSON(w, 0, loginResponse(res.(*fsm.User), access, av, &refresh, rv))
}
