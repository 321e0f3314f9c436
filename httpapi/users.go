package httpapi

import (
	"net/http"
	"net/mail"
	"slices"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/pki"
)

// Users, invites and their roles: user_admin and master_admin routes.

// mayGrant says whether p may give (or take) roles to user: master_admin
// any role to anyone; user_admin any role but master_admin and
// user_admin, and not to themselves or to a master_admin.
func mayGrant(p *principal, user string, targetRoles, roles []string) error {
	if p.has(fsm.RoleMasterAdmin) {
		return nil
	}
	if user == p.User {
		return api.Errorf(api.CodeForbidden, "%s may not change their own roles: ask a master_admin", p)
	}
	if slices.Contains(targetRoles, fsm.RoleMasterAdmin) {
		return api.Errorf(api.CodeForbidden, "%s is a master_admin: only a master_admin may change them", user)
	}
	for _, r := range roles {
		if r == fsm.RoleMasterAdmin || r == fsm.RoleUserAdmin {
			return api.Errorf(api.CodeForbidden, "only a master_admin may give or take the %s role; %s acts with %v", r, p, p.Roles)
		}
	}
	return nil
}

func (n *Server) listUsers(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, err := n.store()
	if err != nil {
		return err
	}
	users, err := store.Users()
	if err != nil {
		return err
	}
	if users == nil {
		users = []*fsm.User{}
	}
	return writeJSON(w, store.Index(), users)
}

// pathUser is the user a request's path names.
func (n *Server) pathUser(r *http.Request) (*fsm.User, uint64, error) {
	store, err := n.store()
	if err != nil {
		return nil, 0, err
	}
	u, err := store.User(r.PathValue("name"))
	return u, store.Index(), err
}

func (n *Server) getUser(w http.ResponseWriter, r *http.Request, p *principal) error {
	u, idx, err := n.pathUser(r)
	if err != nil {
		return err
	}
	return writeJSON(w, idx, u)
}

func (n *Server) deleteUser(w http.ResponseWriter, r *http.Request, p *principal) error {
	u, _, err := n.pathUser(r)
	if err != nil {
		return err
	}
	if err := mayGrant(p, u.Name, u.Roles, u.Roles); err != nil && u.Name != p.User {
		return err
	}
	_, idx, err := n.apply(r.Context(), &fsm.UserRemove{Name: u.Name}, auditOf(r, p))
	if err != nil {
		return err
	}
	return writeJSON(w, idx, map[string]string{"removed": u.Name})
}

func (n *Server) userRoles(w http.ResponseWriter, r *http.Request, p *principal) error {
	var req api.UserRolesRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if err := fsm.ValidateRoles(append(slices.Clone(req.Add), req.Remove...)); err != nil {
		return err
	}
	if req.Stacks != nil {
		if err := fsm.ValidateStackPatterns(*req.Stacks); err != nil {
			return err
		}
	}
	u, _, err := n.pathUser(r)
	if err != nil {
		return err
	}
	if u.Issuer != "" && (len(req.Add) > 0 || len(req.Remove) > 0) {
		return api.Errorf(api.CodeConflict, "%s logs in through %s: their roles come from its claims (change the grid's --oidc-role-map or their groups there)", u.Name, u.Issuer)
	}
	if err := mayGrant(p, u.Name, u.Roles, append(slices.Clone(req.Add), req.Remove...)); err != nil {
		return err
	}
	res, idx, err := n.apply(r.Context(), &fsm.UserRoles{Name: u.Name, Add: req.Add, Remove: req.Remove, Stacks: req.Stacks}, auditOf(r, p))
	if err != nil {
		return err
	}
	return writeJSON(w, idx, res)
}

func (n *Server) createInvite(w http.ResponseWriter, r *http.Request, p *principal) error {
	var req api.InviteRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if a, err := mail.ParseAddress(req.Email); err != nil || a.Address != req.Email {
		return api.Errorf(api.CodeInvalid, "invite: %q is not an email address", req.Email)
	}
	if len(req.Roles) == 0 {
		return api.Errorf(api.CodeInvalid, "invite %s: give at least one role (%v)", req.Email, fsm.Roles)
	}
	if err := fsm.ValidateRoles(req.Roles); err != nil {
		return err
	}
	ttl, err := tokenTTL(req.ExpiresIn, inviteTTL, 30*24*time.Hour)
	if err != nil {
		return err
	}
	var target []string
	if store, err := n.store(); err == nil {
		if u, err := store.User(req.Email); err == nil {
			target = u.Roles
		}
	}
	if err := mayGrant(p, req.Email, target, req.Roles); err != nil {
		return err
	}
	now := time.Now().UTC()
	code := "kti_" + pki.RandomHex(16)
	inv := fsm.Invite{ID: pki.RandomHex(4), Hash: HashToken(code), Email: req.Email, Roles: req.Roles, Stacks: req.Stacks,
		CreatedBy: p.User, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	res, idx, err := n.apply(r.Context(), &fsm.InviteCreate{Invite: inv}, auditOf(r, p))
	if err != nil {
		return err
	}
	out := *res.(*fsm.Invite)
	out.Hash = ""
	return writeJSON(w, idx, api.InviteResponse{Invite: out, Code: code})
}

func (n *Server) listInvites(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, err := n.store()
	if err != nil {
		return err
	}
	invs, err := store.Snapshot().Invites()
	if err != nil {
		return err
	}
	out := make([]fsm.Invite, 0, len(invs))
	for _, i := range invs {
		cp := *i
		cp.Hash = ""
		out = append(out, cp)
	}
	return writeJSON(w, store.Index(), out)
}
