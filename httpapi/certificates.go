package httpapi

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"strings"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/dispatcher"
	"github.com/kontena-ng/kontena/fsm"
)

// Certificates: imported (bring your own) and, with ACME, issued; the
// private key is sealed by the leader before it enters the Raft log.

func certInfo(c *fsm.Certificate) api.CertificateInfo {
	return api.CertificateInfo{Subject: c.Subject, AltNames: c.AltNames, ExpiresAt: c.ExpiresAt, Source: c.Source, UpdatedAt: c.UpdatedAt}
}

// parseImport checks a certificate bundle: the chain's first certificate
// matches the key, and it is for a DNS name; its subject is that name.
func parseImport(req api.CertificateImportRequest) (fsm.Certificate, []byte, error) {
	chain := strings.TrimSpace(req.CertPEM) + "\n"
	if req.ChainPEM != "" {
		chain += strings.TrimSpace(req.ChainPEM) + "\n"
	}
	pair, err := tls.X509KeyPair([]byte(chain), []byte(req.KeyPEM))
	if err != nil {
		return fsm.Certificate{}, nil, api.Errorf(api.CodeInvalid, "certificate and key: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return fsm.Certificate{}, nil, api.Errorf(api.CodeInvalid, "certificate: %v", err)
	}
	names := leaf.DNSNames
	subject := leaf.Subject.CommonName
	if subject == "" && len(names) > 0 {
		subject = names[0]
	}
	if subject == "" {
		return fsm.Certificate{}, nil, api.Errorf(api.CodeInvalid, "the certificate names no host (no common name, no DNS names)")
	}
	var alt []string
	for _, n := range names {
		if n != subject {
			alt = append(alt, n)
		}
	}
	var keyPEM []byte
	for rest := []byte(req.KeyPEM); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if strings.HasSuffix(b.Type, "PRIVATE KEY") {
			keyPEM = pem.EncodeToMemory(b)
			break
		}
	}
	return fsm.Certificate{Subject: subject, AltNames: alt, CertPEM: chain, ExpiresAt: leaf.NotAfter.UTC(), Source: fsm.CertImported}, keyPEM, nil
}

func (n *Server) importCertificate(w http.ResponseWriter, r *http.Request, p *principal) error {
	var req api.CertificateImportRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	cert, keyPEM, err := parseImport(req)
	if err != nil {
		return err
	}
	if time.Now().After(cert.ExpiresAt) {
		return api.Errorf(api.CodeInvalid, "certificate %s expired at %s", cert.Subject, cert.ExpiresAt.Format(time.RFC3339))
	}
	keys, err := n.keys()
	if err != nil {
		return err
	}
	if cert.KeySealed, err = keys.Seal.Seal(keyPEM, sealSecret(dispatcher.CertificateKeyName(cert.Subject))); err != nil {
		return err
	}
	res, idx, err := n.apply(r.Context(), &fsm.CertificateStore{Certificate: cert}, auditOf(r, p))
	if err != nil {
		return err
	}
	return writeJSON(w, idx, certInfo(res.(*fsm.Certificate)))
}

func (n *Server) listCertificates(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, err := n.store()
	if err != nil {
		return err
	}
	v := store.Snapshot() // the list and its index from one read
	certs, err := v.Certificates()
	if err != nil {
		return err
	}
	out := make([]api.CertificateInfo, 0, len(certs))
	for _, c := range certs {
		out = append(out, certInfo(c))
	}
	return writeJSON(w, v.Index(), out)
}

func (n *Server) getCertificate(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, err := n.store()
	if err != nil {
		return err
	}
	c, err := store.Snapshot().Certificate(r.PathValue("subject"))
	if err != nil {
		return err
	}
	info := certInfo(c)
	info.CertPEM = c.CertPEM // public
	return writeJSON(w, store.Index(), info)
}

// exportCertificate hands out the chain and the key; the export is on the
// audit record of every voter before the key is opened.
func (n *Server) exportCertificate(w http.ResponseWriter, r *http.Request, p *principal) error {
	res, idx, err := n.apply(r.Context(), &fsm.CertificateRead{Subject: r.PathValue("subject")}, auditOf(r, p))
	if err != nil {
		return err
	}
	c := res.(*fsm.Certificate)
	keys, err := n.keys()
	if err != nil {
		return err
	}
	key, err := keys.Seal.Open(c.KeySealed, sealSecret(dispatcher.CertificateKeyName(c.Subject)))
	if err != nil {
		return err
	}
	info := certInfo(c)
	info.CertPEM, info.KeyPEM = c.CertPEM, string(key)
	return writeJSON(w, idx, info)
}

func (n *Server) removeCertificate(w http.ResponseWriter, r *http.Request, p *principal) error {
	force, err := boolQuery(r, "force")
	if err != nil {
		return err
	}
	_, idx, err := n.apply(r.Context(), &fsm.CertificateRemove{Subject: r.PathValue("subject"), Force: force}, auditOf(r, p))
	if err != nil {
		return err
	}
	return writeJSON(w, idx, map[string]string{"removed": r.PathValue("subject")})
}
