package httpapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strings"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/dispatcher"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/stack"
)

// A load balancer is a principal of its own. Each instance of a service
// that is a load balancer gets a token for that service in its assignment
// (so only the node that runs it sees it): an HMAC of the service ID under
// a key derived from the grid master key, "ktl_" + base64(ID) + "." + hex.
// Nothing is stored: a voter checks the HMAC and that the service still is
// a load balancer; the token reads that service's routing and nothing else.

const lbTokenPrefix = "ktl_"

// lbKey derives the key of load balancer tokens from the master key.
func lbKey(masterKey []byte) []byte {
	m := hmac.New(sha256.New, masterKey)
	m.Write([]byte("kontena load balancer tokens v1"))
	return m.Sum(nil)
}

func lbToken(masterKey []byte, serviceID string) string {
	m := hmac.New(sha256.New, lbKey(masterKey))
	m.Write([]byte(serviceID))
	return lbTokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(serviceID)) + "." + hex.EncodeToString(m.Sum(nil))
}

// lbPrincipal checks a load balancer token: the service it names, if the
// HMAC is right and the service is a load balancer.
func (n *Server) lbPrincipal(store *fsm.Store, tok string) (*principal, error) {
	rest := strings.TrimPrefix(tok, lbTokenPrefix)
	enc, _, ok := strings.Cut(rest, ".")
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if !ok || err != nil {
		return nil, api.Errorf(api.CodeUnauthorized, "malformed load balancer token")
	}
	keys, err := n.keys()
	if err != nil {
		return nil, err
	}
	id := string(raw)
	if !hmac.Equal([]byte(lbToken(keys.Voter.MasterKey, id)), []byte(tok)) {
		return nil, api.Errorf(api.CodeUnauthorized, "invalid load balancer token (the grid's master key may have been rotated: the instance gets a new one with its next assignment)")
	}
	svc, err := store.Service(id)
	if err != nil || !stack.IsLB(&svc.Spec) {
		return nil, api.Errorf(api.CodeUnauthorized, "load balancer token of %s: no such load balancer service any more", id)
	}
	return &principal{Kind: kindLB, User: "lb:" + id, LB: id}, nil
}

// getLBRouting answers a load balancer's routing (a blocking query).
func (n *Server) getLBRouting(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, err := n.store()
	if err != nil {
		return err
	}
	id := r.PathValue("stack") + "/" + r.PathValue("service")
	return blockingAnswer(w, r, store, dispatcher.LBTables(), func(v *fsm.View) (any, error) {
		return n.lbRouting(v, id)
	})
}

// lbRouting is a load balancer's routing with its services' secrets.
func (n *Server) lbRouting(v *fsm.View, id string) (*dispatcher.LBRouting, error) {
	rt, err := dispatcher.LBRoutingOf(v, id)
	if err != nil {
		return nil, err
	}
	keys, err := n.keys()
	if err != nil {
		return nil, err
	}
	open := func(name string, sealed []byte) ([]byte, error) { return keys.Seal.Open(sealed, sealSecret(name)) }
	if err := dispatcher.WithLBSecrets(v, &rt, open); err != nil {
		return nil, err
	}
	return &rt, nil
}

// lbEnv is what an instance of a load balancer needs to read its routing:
// its token, the grid CA to trust and its service. It goes in the
// instance's assignment, to its node only.
func (n *Server) lbEnv(serviceID string, keys Keys) map[string]string {
	return map[string]string{
		"KONTENA_LB_TOKEN":   lbToken(keys.Voter.MasterKey, serviceID),
		"KONTENA_LB_CA":      string(keys.CAPEM),
		"KONTENA_LB_SERVICE": serviceID,
	}
}
