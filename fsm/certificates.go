package fsm

import (
	"fmt"
	"slices"
	"time"

	"github.com/kontena-ng/kontena/stack"
)

// Certificates: TLS certificates by subject, their private keys sealed with
// the grid master key (before they enter the Raft log, as vault secrets).
// Services inject them with `certificates: [{subject, name, type: env}]`:
// the chain and key, as one PEM bundle, in the named variable (SSL_CERTS
// for a load balancer). Replacing one redeploys its users, rolling.

// Certificate sources.
const (
	CertImported = "import"
	CertACME     = "acme"
)

// Certificate command numbers (persisted: never renumber).
const (
	MsgCertificateStore  MsgType = 43
	MsgCertificateRemove MsgType = 44
	MsgCertificateRead   MsgType = 45
)

var certificateCommands = []Command{(*CertificateStore)(nil), (*CertificateRemove)(nil), (*CertificateRead)(nil)}

// MaxCertificatePEM bounds a certificate chain (and a sealed key).
const MaxCertificatePEM = 64 << 10

// Validate checks a certificate before it is stored.
func (c *Certificate) Validate() error {
	switch {
	case c.Subject == "" || len(c.Subject) > 253:
		return fmt.Errorf("certificate subject %q: 1 to 253 characters: %w", c.Subject, ErrInvalid)
	case c.CertPEM == "" || len(c.CertPEM) > MaxCertificatePEM:
		return fmt.Errorf("certificate %s: a PEM chain of 1 to %d bytes: %w", c.Subject, MaxCertificatePEM, ErrInvalid)
	case len(c.KeySealed) == 0 || len(c.KeySealed) > MaxCertificatePEM:
		return fmt.Errorf("certificate %s: its private key, sealed: %w", c.Subject, ErrInvalid)
	case c.ExpiresAt.IsZero():
		return fmt.Errorf("certificate %s: no expiry: %w", c.Subject, ErrInvalid)
	}
	return nil
}

// CertificateStore adds or replaces a certificate.
type CertificateStore struct {
	Certificate Certificate `json:"certificate"`
}

func (*CertificateStore) MsgType() MsgType   { return MsgCertificateStore }
func (*CertificateStore) name() string       { return "certificate.store" }
func (c *CertificateStore) resource() string { return "certificate/" + c.Certificate.Subject }

func (c *CertificateStore) apply(a *applier) (any, error) {
	cert := c.Certificate
	if err := cert.Validate(); err != nil {
		return nil, err
	}
	old, _ := a.txn.First(TableCertificates, "id", cert.Subject)
	cert.AltNames = slices.Clone(cert.AltNames)
	cert.UpdatedAt, cert.ModifyIndex = a.now, a.index
	if err := a.txn.Insert(TableCertificates, &cert); err != nil {
		return nil, err
	}
	if old == nil {
		return &cert, a.event("certificate.added", "certificate/"+cert.Subject, fmt.Sprintf("certificate %s added (%s, expires %s)", cert.Subject, cert.Source, cert.ExpiresAt.Format(time.RFC3339)))
	}
	ids, err := a.rollCertificateUsers(cert.Subject, "was replaced")
	if err != nil {
		return nil, err
	}
	return &cert, a.event("certificate.replaced", "certificate/"+cert.Subject, fmt.Sprintf("certificate %s replaced (expires %s)%s", cert.Subject, cert.ExpiresAt.Format(time.RFC3339), rollingNote(ids)))
}

// CertificateRemove deletes a certificate.
type CertificateRemove struct {
	Subject string `json:"subject"`
	// Force removes one that services use; they redeploy without it.
	Force bool `json:"force,omitempty"`
}

func (*CertificateRemove) MsgType() MsgType   { return MsgCertificateRemove }
func (*CertificateRemove) name() string       { return "certificate.remove" }
func (c *CertificateRemove) resource() string { return "certificate/" + c.Subject }

func (c *CertificateRemove) apply(a *applier) (any, error) {
	raw, err := a.txn.First(TableCertificates, "id", c.Subject)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("certificate %s: %w", c.Subject, ErrNotFound)
	}
	users, err := certificateUsers(a, c.Subject)
	if err != nil {
		return nil, err
	}
	if len(users) > 0 && !c.Force {
		var ids []string
		for _, u := range users {
			ids = append(ids, u.ID)
		}
		return nil, fmt.Errorf("certificate %s is used by %v: remove it from their stacks first, or force: %w", c.Subject, ids, ErrConflict)
	}
	if err := a.txn.Delete(TableCertificates, raw); err != nil {
		return nil, err
	}
	ids, err := a.rollCertificateUsers(c.Subject, "was removed")
	if err != nil {
		return nil, err
	}
	return raw, a.event("certificate.removed", "certificate/"+c.Subject, "certificate "+c.Subject+" removed"+rollingNote(ids))
}

// CertificateRead changes nothing: it puts an export (the private key
// leaving the grid) on every voter's audit record.
type CertificateRead struct {
	Subject string `json:"subject"`
}

func (*CertificateRead) MsgType() MsgType   { return MsgCertificateRead }
func (*CertificateRead) name() string       { return "certificate.export" }
func (c *CertificateRead) resource() string { return "certificate/" + c.Subject }

func (c *CertificateRead) apply(a *applier) (any, error) {
	raw, err := a.txn.First(TableCertificates, "id", c.Subject)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("certificate %s: %w", c.Subject, ErrNotFound)
	}
	return raw, nil
}

// certificateUsers are the services that inject subject.
func certificateUsers(a *applier, subject string) ([]*Service, error) {
	all, err := list[*Service](a.txn, TableServices)
	if err != nil {
		return nil, err
	}
	var out []*Service
	for _, svc := range all {
		if slices.ContainsFunc(svc.Spec.Certificates, func(c stack.Certificate) bool { return c.Subject == subject }) {
			out = append(out, svc)
		}
	}
	return out, nil
}

// rollCertificateUsers redeploys, rolling, the services that inject
// subject: their new containers get the certificate as it is now.
func (a *applier) rollCertificateUsers(subject, why string) ([]string, error) {
	users, err := certificateUsers(a, subject)
	if err != nil {
		return nil, err
	}
	return a.rollServices(users, "service.certificate", "certificate "+subject+" "+why)
}

// Certificate finds a certificate by subject.
func (v *View) Certificate(subject string) (*Certificate, error) {
	raw, err := v.txn.First(TableCertificates, "id", subject)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("certificate %s: %w", subject, ErrNotFound)
	}
	return raw.(*Certificate), nil
}

// Certificates lists every certificate.
func (v *View) Certificates() ([]*Certificate, error) {
	return list[*Certificate](v.txn, TableCertificates)
}
