package httpapi

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/dispatcher"
	"github.com/kontena-ng/kontena/fsm"
)

// ACME v2 (RFC 8555) on the leader, with golang.org/x/crypto/acme: the
// grid's account key is sealed in the state; http-01 challenges are
// answered by every load balancer (they are in their routing), dns-01 ones
// by records the operator creates. Certificates validated with http-01
// renew by themselves once a third of their life is left.

const (
	acmeKeyContext = "acme-account"
	letsEncrypt    = "https://acme-v02.api.letsencrypt.org/directory"
	// renewCheckEvery: how often the leader looks for certificates to renew.
	renewCheckEvery = 5 * time.Second
)

// acmeClient is the grid's client of its ACME CA.
func (n *Server) acmeClient(acct *fsm.ACMEAccount) (*acme.Client, error) {
	keys, err := n.keys()
	if err != nil {
		return nil, err
	}
	keyPEM, err := keys.Seal.Open(acct.KeySealed, acmeKeyContext)
	if err != nil {
		return nil, fmt.Errorf("open the ACME account key: %w", err)
	}
	blk, _ := pem.Decode(keyPEM)
	if blk == nil {
		return nil, fmt.Errorf("the ACME account key is damaged")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	hc, err := acmeHTTP(acct.DirectoryCA)
	if err != nil {
		return nil, err
	}
	return &acme.Client{Key: k.(crypto.Signer), DirectoryURL: acct.Directory, HTTPClient: hc, KID: acme.KeyID(acct.URI), UserAgent: "kontena"}, nil
}

// acmeHTTP talks to the CA: the system's roots, or the CA given.
func acmeHTTP(caPEM string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caPEM != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(caPEM)) {
			return nil, api.Errorf(api.CodeInvalid, "the directory CA is not a PEM certificate")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

func (n *Server) registerACME(w http.ResponseWriter, r *http.Request, p *principal) error {
	var req api.ACMERegisterRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.Email == "" || !strings.Contains(req.Email, "@") {
		return api.Errorf(api.CodeInvalid, "register needs an email address for the CA's notices")
	}
	if req.Directory == "" {
		req.Directory = letsEncrypt
	}
	keys, err := n.keys()
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	hc, err := acmeHTTP(req.DirectoryCA)
	if err != nil {
		return err
	}
	c := &acme.Client{Key: key, DirectoryURL: req.Directory, HTTPClient: hc, UserAgent: "kontena"}
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	acct, err := c.Register(ctx, &acme.Account{Contact: []string{"mailto:" + req.Email}}, acme.AcceptTOS)
	if err != nil {
		return api.Errorf(api.CodeConflict, "ACME CA %s refused the account: %v", req.Directory, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	sealed, err := keys.Seal.Seal(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), acmeKeyContext)
	if err != nil {
		return err
	}
	a := fsm.ACMEAccount{Directory: req.Directory, DirectoryCA: req.DirectoryCA, Email: req.Email, URI: acct.URI, KeySealed: sealed, CreatedAt: time.Now().UTC()}
	_, idx, err := n.apply(r.Context(), &fsm.ACMERegister{Account: a}, auditOf(r, p))
	if err != nil {
		return err
	}
	return writeJSON(w, idx, api.ACMEAccountInfo{Directory: a.Directory, Email: a.Email, URI: a.URI})
}

// requestCertificate orders a certificate: http-01 all at once; dns-01 in
// two calls (the records to create, then, with the order URL, the rest).
func (n *Server) requestCertificate(w http.ResponseWriter, r *http.Request, p *principal) error {
	var req api.CertificateRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.Type == "" {
		req.Type = "http-01"
	}
	if req.Type != "http-01" && req.Type != "dns-01" {
		return api.Errorf(api.CodeInvalid, "challenge type %q: expected http-01 or dns-01", req.Type)
	}
	if len(req.Domains) == 0 || len(req.Domains) > 100 {
		return api.Errorf(api.CodeInvalid, "request 1 to 100 domains (the first is the subject)")
	}
	for _, d := range req.Domains {
		if !isDomain(strings.TrimPrefix(d, "*.")) {
			return api.Errorf(api.CodeInvalid, "%q is not a domain name", d)
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Minute)
	defer cancel()
	res, err := n.issue(ctx, req, auditOf(r, p))
	if err != nil {
		return err
	}
	return writeJSON(w, 0, res)
}

// issue runs an order (see requestCertificate).
func (n *Server) issue(ctx context.Context, req api.CertificateRequest, audit *fsm.AuditInfo) (*api.CertificateResponse, error) {
	g, err := n.gridSettings()
	if err != nil {
		return nil, err
	}
	if g.ACME == nil {
		return nil, api.Errorf(api.CodeInvalid, "the grid has no ACME account: `kontena certificate register EMAIL` first")
	}
	c, err := n.acmeClient(g.ACME)
	if err != nil {
		return nil, err
	}
	var order *acme.Order
	if req.Order != "" {
		if order, err = c.GetOrder(ctx, req.Order); err == nil {
			order.URI = req.Order // a GET has no Location to say it
		}
	} else {
		order, err = c.AuthorizeOrder(ctx, acme.DomainIDs(req.Domains...))
	}
	if err != nil {
		return nil, api.Errorf(api.CodeConflict, "ACME order: %v", err)
	}
	type pending struct {
		authz string
		chal  *acme.Challenge
	}
	var todo []pending
	var records []api.ACMEDNSRecord
	var tokens []string
	defer func() {
		if len(tokens) > 0 {
			_, _, _ = n.apply(context.Background(), &fsm.ACMEChallengeSet{Remove: tokens}, nil)
		}
	}()
	for _, zurl := range order.AuthzURLs {
		z, err := c.GetAuthorization(ctx, zurl)
		if err != nil {
			return nil, api.Errorf(api.CodeConflict, "ACME authorization: %v", err)
		}
		if z.Status == acme.StatusValid {
			continue
		}
		i := slices.IndexFunc(z.Challenges, func(ch *acme.Challenge) bool { return ch.Type == req.Type })
		if i < 0 {
			return nil, api.Errorf(api.CodeInvalid, "the CA offers no %s challenge for %s", req.Type, z.Identifier.Value)
		}
		chal := z.Challenges[i]
		switch req.Type {
		case "http-01":
			ka, err := c.HTTP01ChallengeResponse(chal.Token)
			if err != nil {
				return nil, err
			}
			add := fsm.ACMEChallenge{Token: chal.Token, KeyAuth: ka, Domain: z.Identifier.Value, ExpiresAt: time.Now().UTC().Add(10 * time.Minute)}
			if _, _, err := n.apply(ctx, &fsm.ACMEChallengeSet{Add: []fsm.ACMEChallenge{add}}, audit); err != nil {
				return nil, err
			}
			tokens = append(tokens, chal.Token)
		case "dns-01":
			v, err := c.DNS01ChallengeRecord(chal.Token)
			if err != nil {
				return nil, err
			}
			records = append(records, api.ACMEDNSRecord{Name: "_acme-challenge." + strings.TrimPrefix(z.Identifier.Value, "*.") + ".", Type: "TXT", Value: v})
		}
		todo = append(todo, pending{authz: z.URI, chal: chal})
	}
	if req.Type == "dns-01" && req.Order == "" && len(records) > 0 {
		return &api.CertificateResponse{Order: order.URI, Records: records}, nil
	}
	if len(tokens) > 0 {
		// The load balancers' blocking queries take the challenges in
		// milliseconds (measured 20-47 ms for a routing change).
		time.Sleep(time.Second)
	}
	for _, t := range todo {
		if _, err := c.Accept(ctx, t.chal); err != nil {
			return nil, api.Errorf(api.CodeConflict, "ACME accept %s: %v", t.chal.Type, err)
		}
		if _, err := c.WaitAuthorization(ctx, t.authz); err != nil {
			return nil, api.Errorf(api.CodeConflict, "the CA did not validate the %s challenge: %v", t.chal.Type, err)
		}
	}
	info, err := n.finalize(ctx, c, order, req, audit)
	if err != nil {
		return nil, err
	}
	return &api.CertificateResponse{Certificate: info}, nil
}

// finalize sends the CSR, fetches the chain and stores the certificate.
func (n *Server) finalize(ctx context.Context, c *acme.Client, order *acme.Order, req api.CertificateRequest, audit *fsm.AuditInfo) (*api.CertificateInfo, error) {
	uri := order.URI
	order, err := c.WaitOrder(ctx, uri)
	if err != nil {
		return nil, api.Errorf(api.CodeConflict, "ACME order not ready: %v", err)
	}
	order.URI = uri
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: req.Domains[0]}, DNSNames: req.Domains}, key)
	if err != nil {
		return nil, err
	}
	orderURI := order.URI
	ders, _, err := c.CreateOrderCert(ctx, order.FinalizeURL, csr, true)
	if err != nil {
		// A CA that finalizes asynchronously without a Location on its
		// answer (pebble) leaves the client without the order to wait on:
		// wait on the order we know, then fetch its certificate.
		o, werr := c.WaitOrder(ctx, orderURI)
		if werr != nil || o.CertURL == "" {
			return nil, api.Errorf(api.CodeConflict, "ACME finalize: %v", err)
		}
		if ders, err = c.FetchCert(ctx, o.CertURL, true); err != nil {
			return nil, api.Errorf(api.CodeConflict, "ACME certificate: %v", err)
		}
	}
	var chain strings.Builder
	for _, d := range ders {
		chain.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d}))
	}
	leaf, err := x509.ParseCertificate(ders[0])
	if err != nil {
		return nil, err
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	keys, err := n.keys()
	if err != nil {
		return nil, err
	}
	subject := req.Domains[0]
	sealed, err := keys.Seal.Seal(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), sealSecret(dispatcher.CertificateKeyName(subject)))
	if err != nil {
		return nil, err
	}
	cert := fsm.Certificate{Subject: subject, AltNames: req.Domains[1:], CertPEM: chain.String(), KeySealed: sealed, ExpiresAt: leaf.NotAfter.UTC(),
		IssuedAt: leaf.NotBefore.UTC(), Source: fsm.CertACME, ChallengeType: req.Type}
	res, _, err := n.apply(ctx, &fsm.CertificateStore{Certificate: cert}, audit)
	if err != nil {
		return nil, err
	}
	info := certInfo(res.(*fsm.Certificate))
	return &info, nil
}

// renewDue: an ACME certificate validated by http-01 renews once a third
// of its life is left.
func renewDue(c *fsm.Certificate, now time.Time) bool {
	if c.Source != fsm.CertACME || c.ChallengeType != "http-01" || c.IssuedAt.IsZero() {
		return false
	}
	life := c.ExpiresAt.Sub(c.IssuedAt)
	return now.After(c.ExpiresAt.Add(-life / 3))
}

// RunCertificateRenewal renews, on the leader, what renewDue says, until
// ctx ends; a renewal that fails is tried again a minute later.
func (n *Server) RunCertificateRenewal(ctx context.Context) {
	var mu sync.Mutex
	failed := map[string]time.Time{}
	t := time.NewTicker(renewCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rn := n.voter()
		if rn == nil || !rn.IsLeader() {
			continue
		}
		certs, err := rn.Store().Snapshot().Certificates()
		if err != nil {
			continue
		}
		now := time.Now().UTC()
		for _, c := range certs {
			mu.Lock()
			last := failed[c.Subject]
			mu.Unlock()
			if !renewDue(c, now) || now.Sub(last) < time.Minute {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
			_, err := n.issue(rctx, api.CertificateRequest{Domains: append([]string{c.Subject}, c.AltNames...), Type: "http-01"},
				&fsm.AuditInfo{User: "renewal", Time: now})
			cancel()
			if err != nil {
				n.log.Warn("certificate renewal failed; retrying in a minute", "subject", c.Subject, "expires", c.ExpiresAt, "err", err)
				mu.Lock()
				failed[c.Subject] = now
				mu.Unlock()
				continue
			}
			n.log.Info("certificate renewed", "subject", c.Subject)
		}
	}
}

// isDomain: dot-separated DNS labels, at least two.
func isDomain(d string) bool {
	labels := strings.Split(strings.ToLower(strings.TrimSuffix(d, ".")), ".")
	if len(labels) < 2 || len(d) > 253 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || strings.Trim(l, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
	}
	return true
}
