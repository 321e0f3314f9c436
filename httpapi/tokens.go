package httpapi

import (
	"net/http"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/pki"
)

func (n *Server) getWhoAmI(w http.ResponseWriter, r *http.Request, p *principal) error {
	return writeJSON(w, 0, api.WhoAmI{User: p.User, Roles: p.Roles, Node: p.Node})
}

// publicToken hides the hash, which is never needed outside the leader.
func publicToken(t *fsm.Token) *fsm.Token {
	cp := *t
	cp.Hash = ""
	return &cp
}

func (n *Server) listTokens(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, err := n.store()
	if err != nil {
		return err
	}
	user := p.User
	if p.admin() {
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

func (n *Server) createToken(w http.ResponseWriter, r *http.Request, p *principal) error {
	if p.Node != "" {
		return api.Errorf(api.CodeForbidden, "nodes cannot create API tokens")
	}
	var req api.TokenCreateRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	now := time.Now().UTC()
	t := fsm.Token{ID: pki.RandomHex(4), User: p.User, Description: req.Description, CreatedAt: now}
	if req.ExpiresIn != "" {
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil || d <= 0 {
			return api.Errorf(api.CodeInvalid, "expires_in %q: expected a positive duration such as 2h or 30m", req.ExpiresIn)
		}
		t.ExpiresAt = now.Add(d)
	}
	value := "ktn_" + pki.RandomHex(24)
	t.Hash = HashToken(value)
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
	toks, err := store.Tokens("")
	if err != nil {
		return err
	}
	for _, t := range toks {
		if t.ID == id && t.User != p.User && !p.admin() {
			return api.Errorf(api.CodeForbidden, "token %s belongs to %s", id, t.User)
		}
	}
	_, idx, err := n.apply(r.Context(), &fsm.TokenRemove{ID: id}, auditOf(r, p))
	if err != nil {
		return err
	}
	return writeJSON(w, idx, map[string]string{"revoked": id})
}
