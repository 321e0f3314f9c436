package httpapi

import (
	"net/http"
	"slices"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/pki"
)

// Token lifetimes.
const (
	// accessTTL: a login's access token, as Kontena's.
	accessTTL = 2 * time.Hour
	// refreshTTL: a login lasts while it is used at least this often.
	refreshTTL = 30 * 24 * time.Hour
	// apiTokenTTL and apiTokenMaxTTL: tokens for automation.
	apiTokenTTL    = 30 * 24 * time.Hour
	apiTokenMaxTTL = 366 * 24 * time.Hour
	// inviteTTL: how long an invite code may be redeemed.
	inviteTTL = 24 * time.Hour
)

func (n *Server) getWhoAmI(w http.ResponseWriter, r *http.Request, p *principal) error {
	who := api.WhoAmI{User: p.User, Roles: p.Roles, Stacks: p.Stacks, Token: p.Token, Node: p.Node}
	if store, err := n.store(); err == nil {
		if g, err := store.Grid(); err == nil {
			who.Grid = g.Name
		}
	}
	return writeJSON(w, 0, who)
}

// publicToken hides the hash and the provider's refresh token, which are
// never needed outside the leader.
func publicToken(t *fsm.Token) *fsm.Token {
	cp := *t
	cp.Hash, cp.IdPRefresh = "", nil
	return &cp
}

// seesAllTokens: who may list and revoke other users' tokens.
func (p *principal) seesAllTokens() bool { return p.has(fsm.RoleUserAdmin) }

func (n *Server) listTokens(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, err := n.store()
	if err != nil {
		return err
	}
	user := p.User
	if p.seesAllTokens() {
		user = ""
	}
	toks, err := store.Tokens(user)
	if err != nil {
		return err
	}
	out := make([]*fsm.Token, 0, len(toks))
	for _, t := range toks {
		out = append(out, publicToken(t))
	}
	return writeJSON(w, store.Index(), out)
}

// newToken is a token value with what the state keeps of it.
func newToken(kind, user, prefix string, now time.Time, ttl time.Duration, ancestors []string) (fsm.Token, string) {
	value := prefix + pki.RandomHex(24)
	return fsm.Token{ID: pki.RandomHex(4), Hash: HashToken(value), User: user, Kind: kind, CreatedAt: now,
		ExpiresAt: now.Add(ttl), Ancestors: slices.Clone(ancestors)}, value
}

// tokenTTL reads a requested lifetime: the default when empty, refused
// when not positive or above max.
func tokenTTL(s string, def, max time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, api.Errorf(api.CodeInvalid, "expires_in %q: expected a positive duration such as 2h or 720h", s)
	}
	if d > max {
		return 0, api.Errorf(api.CodeInvalid, "expires_in %s is longer than the most a token may live, %s", d, max)
	}
	return d, nil
}

// createToken makes an API token for the caller, made from the token the
// caller used (revoking that one revokes it), with a role no higher than
// the caller's.
func (n *Server) createToken(w http.ResponseWriter, r *http.Request, p *principal) error {
	var req api.TokenCreateRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	ttl, err := tokenTTL(req.ExpiresIn, apiTokenTTL, apiTokenMaxTTL)
	if err != nil {
		return err
	}
	if req.Role != "" {
		if !fsm.ValidRole(req.Role) {
			return api.Errorf(api.CodeInvalid, "role %q: expected one of %v", req.Role, fsm.Roles)
		}
		if !fsm.AnyRoleImplies(p.Roles, req.Role) {
			return api.Errorf(api.CodeForbidden, "a token may not have a role above its creator's: %s acts with %v, not %s", p, p.Roles, req.Role)
		}
	} else if len(p.Roles) == 1 {
		req.Role = p.Roles[0] // a token limited to one role makes tokens of that role
	}
	store, err := n.store()
	if err != nil {
		return err
	}
	parent, err := store.Token(p.Token)
	if err != nil {
		return api.Errorf(api.CodeUnauthorized, "the token you called with was revoked meanwhile")
	}
	if !parent.ExpiresAt.IsZero() && parent.KindOrAPI() == fsm.TokenKindAPI && time.Now().Add(ttl).After(parent.ExpiresAt) {
		return api.Errorf(api.CodeInvalid, "a token made from API token %s may not outlive it: it expires at %s", parent.ID, parent.ExpiresAt.Format(time.RFC3339))
	}
	now := time.Now().UTC()
	t, value := newToken(fsm.TokenKindAPI, p.User, "ktn_", now, ttl, append(slices.Clone(parent.Ancestors), parent.ID))
	t.Description, t.Role = req.Description, req.Role
	res, idx, err := n.apply(r.Context(), &fsm.TokenCreate{Token: t}, auditOf(r, p))
	if err != nil {
		return err
	}
	return writeJSON(w, idx, api.TokenCreateResponse{Token: *publicToken(res.(*fsm.Token)), Value: value})
}

func (n *Server) deleteToken(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, err := n.store()
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	if t, err := store.Token(id); err == nil && t.User != p.User && !p.seesAllTokens() {
		return api.Errorf(api.CodeForbidden, "token %s belongs to %s: only they or a user_admin may revoke it", id, t.User)
	}
	_, idx, err := n.apply(r.Context(), &fsm.TokenRemove{ID: id}, auditOf(r, p))
	if err != nil {
		return err
	}
	return writeJSON(w, idx, map[string]string{"revoked": id})
}
