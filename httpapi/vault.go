package httpapi

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/dispatcher"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/vault"
)

// sealSecret is the associated data secret values are sealed with: a
// value sealed for one name does not open as another.
func sealSecret(name string) string { return "secret:" + name }

func secretInfo(s *fsm.Secret) api.SecretInfo {
	return api.SecretInfo{Name: s.Name, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt}
}

// listSecrets answers names and times, never values.
func (n *Server) listSecrets(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, err := n.store()
	if err != nil {
		return err
	}
	v := store.Snapshot()
	all, err := v.Secrets()
	if err != nil {
		return err
	}
	out := make([]api.SecretInfo, 0, len(all))
	for _, s := range all {
		out = append(out, secretInfo(s))
	}
	return writeJSON(w, v.Index(), out)
}

// readSecret opens a secret's value on the leader; the read is committed
// first, so that it has its audit record on every voter.
func (n *Server) readSecret(w http.ResponseWriter, r *http.Request, p *principal) error {
	name := r.PathValue("name")
	keys, err := n.keys()
	if err != nil {
		return err
	}
	res, idx, err := n.apply(r.Context(), &fsm.SecretRead{Name: name}, auditOf(r, p))
	if err != nil {
		return err
	}
	sec := res.(*fsm.Secret)
	value, err := keys.Seal.Open(sec.Sealed, sealSecret(name))
	if err != nil {
		return api.Errorf(api.CodeInternal, "secret %s does not open with this grid's master key: %v", name, err)
	}
	return writeJSON(w, idx, api.SecretValue{SecretInfo: secretInfo(sec), Value: string(value)})
}

// writeSecret seals the value before the command enters the Raft log.
func (n *Server) writeSecret(w http.ResponseWriter, r *http.Request, p *principal) error {
	var req api.SecretWriteRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	name := r.PathValue("name")
	if err := fsm.CheckSecretName(name); err != nil {
		return err
	}
	if len(req.Value) > 64<<10 {
		return api.Errorf(api.CodeInvalid, "secret %s: a value of %d bytes; at most 64 KiB", name, len(req.Value))
	}
	mode := req.Mode
	if mode == "" {
		mode = fsm.SecretCreate
	}
	keys, err := n.keys()
	if err != nil {
		return err
	}
	sealed, err := keys.Seal.Seal([]byte(req.Value), sealSecret(name))
	if err != nil {
		return err
	}
	cmd := &fsm.SecretWrite{Name: name, Sealed: sealed, Mode: mode, Unchanged: n.sameSecret(name, req.Value, keys)}
	res, idx, err := n.apply(r.Context(), cmd, auditOf(r, p))
	if err != nil {
		return err
	}
	return writeJSON(w, idx, secretChange(res.(*fsm.SecretChange)))
}

// sameSecret tells whether secret name holds value already: writing the
// same value again redeploys nothing.
func (n *Server) sameSecret(name, value string, keys Keys) bool {
	store, err := n.store()
	if err != nil {
		return false
	}
	cur, err := store.Snapshot().Secret(name)
	if err != nil {
		return false
	}
	old, err := keys.Seal.Open(cur.Sealed, sealSecret(name))
	return err == nil && subtle.ConstantTimeCompare(old, []byte(value)) == 1
}

func secretChange(ch *fsm.SecretChange) api.SecretChange {
	return api.SecretChange{SecretInfo: secretInfo(ch.Secret), Rolling: ch.Rolling}
}

func (n *Server) removeSecret(w http.ResponseWriter, r *http.Request, p *principal) error {
	name := r.PathValue("name")
	force, err := boolQuery(r, "force")
	if err != nil {
		return err
	}
	res, idx, err := n.apply(r.Context(), &fsm.SecretRemove{Name: name, Force: force}, auditOf(r, p))
	if err != nil {
		return err
	}
	return writeJSON(w, idx, secretChange(res.(*fsm.SecretChange)))
}

// boolQuery reads a true/false query parameter ("" is false).
func boolQuery(r *http.Request, key string) (bool, error) {
	s := r.URL.Query().Get(key)
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, api.Errorf(api.CodeInvalid, "query parameter %s=%q: expected true or false", key, s)
	}
	return b, nil
}

// rotateMasterKey moves the grid to a new master key: it re-seals every
// secret and the join token under it and puts the new key, sealed with the
// current one, in the chain, all in one Raft entry. Voters take the new key
// from the chain as they apply it.
func (n *Server) rotateMasterKey(w http.ResponseWriter, r *http.Request, p *principal) error {
	keys, err := n.keys()
	if err != nil {
		return err
	}
	store, err := n.store()
	if err != nil {
		return err
	}
	v := store.Snapshot()
	g, err := v.Grid()
	if err != nil {
		return err
	}
	if keys.Voter.Generation != g.KeyGeneration {
		return api.Errorf(api.CodeUnavailable, "this leader holds master key generation %d, the grid is at %d: retry in a moment", keys.Voter.Generation, g.KeyGeneration)
	}
	next, link, err := vault.NextKey(keys.Voter.MasterKey, g.KeyGeneration)
	if err != nil {
		return err
	}
	newSeal, err := vault.NewSealer(next)
	if err != nil {
		return err
	}
	cmd := &fsm.MasterKeyRotate{Generation: g.KeyGeneration + 1, Link: link, Secrets: map[string]fsm.Resealed{}}
	if cmd.JoinTokenSealed, err = reseal(keys.Seal, newSeal, g.JoinTokenSealed, "join-token"); err != nil {
		return fmt.Errorf("join token: %w", err)
	}
	if g.OIDC != nil && len(g.OIDC.ClientSecretSealed) > 0 {
		if cmd.OIDCSecretSealed, err = reseal(keys.Seal, newSeal, g.OIDC.ClientSecretSealed, oidcClientSecretContext); err != nil {
			return fmt.Errorf("single sign-on client secret: %w", err)
		}
	}
	if g.ACME != nil {
		if cmd.ACMEKeySealed, err = reseal(keys.Seal, newSeal, g.ACME.KeySealed, acmeKeyContext); err != nil {
			return fmt.Errorf("ACME account key: %w", err)
		}
	}
	toks, err := v.Tokens("")
	if err != nil {
		return err
	}
	cmd.IdPRefresh = map[string]fsm.ResealedToken{}
	for _, t := range toks {
		if len(t.IdPRefresh) == 0 {
			continue
		}
		sealed, err := reseal(keys.Seal, newSeal, t.IdPRefresh, idpRefreshContext)
		if err != nil {
			continue // already unreadable: that login ends at its next refresh, as it would have
		}
		cmd.IdPRefresh[t.ID] = fsm.ResealedToken{Sealed: sealed, Was: fsm.SealedDigest(t.IdPRefresh)}
	}
	certs, err := v.Certificates()
	if err != nil {
		return err
	}
	cmd.Certificates = map[string]fsm.Resealed{}
	for _, c := range certs {
		name := dispatcher.CertificateKeyName(c.Subject)
		sealed, err := reseal(keys.Seal, newSeal, c.KeySealed, sealSecret(name))
		if err != nil {
			return fmt.Errorf("certificate %s: %w", c.Subject, err)
		}
		cmd.Certificates[c.Subject] = fsm.Resealed{Sealed: sealed, Index: c.ModifyIndex}
	}
	all, err := v.Secrets()
	if err != nil {
		return err
	}
	for _, s := range all {
		sealed, err := reseal(keys.Seal, newSeal, s.Sealed, sealSecret(s.Name))
		if err != nil {
			return fmt.Errorf("secret %s: %w", s.Name, err)
		}
		cmd.Secrets[s.Name] = fsm.Resealed{Sealed: sealed, Index: s.ModifyIndex}
	}
	_, idx, err := n.apply(r.Context(), cmd, auditOf(r, p))
	if err != nil {
		return err
	}
	// This leader answers the next reads: it holds the new key first.
	for deadline := time.Now().Add(10 * time.Second); n.keyGeneration() < cmd.Generation; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return api.Errorf(api.CodeUnavailable, "the master key was rotated to generation %d, but this leader has not taken it up after 10 s (see its log)", cmd.Generation)
		}
	}
	return writeJSON(w, idx, api.KeyRotation{Generation: cmd.Generation, Secrets: len(all)})
}

// reseal opens a value with one key and seals it with another.
func reseal(from, to *vault.Sealer, sealed []byte, context string) ([]byte, error) {
	plain, err := from.Open(sealed, context)
	if err != nil {
		return nil, err
	}
	return to.Seal(plain, context)
}
