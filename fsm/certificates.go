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

var certificateCommands = []Command{(*CertificateStore)(nil), (*CertificateRemove)(nil), (*CertificateRead)(nil),
	(*ACMERegister)(nil), (*ACMEChallengeSet)(nil)}

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
	// Load balancers swap a certificate in place (it is in their routing).
	users = slices.DeleteFunc(users, func(s *Service) bool { return stack.IsLB(&s.Spec) })
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

// The ACME (RFC 8555) side: the grid's account at a CA, and the http-01
// challenges its load balancers answer while an order is validated.

// TableACMEChallenges holds the pending http-01 challenges.
const TableACMEChallenges = "acme_challenges"

// ACMEAccount is the grid's account at an ACME CA.
type ACMEAccount struct {
	Directory string `json:"directory"`
	// DirectoryCA, when set, is the PEM CA the directory's TLS is
	// checked against (a private CA; a test's).
	DirectoryCA string `json:"directory_ca,omitempty"`
	Email       string `json:"email"`
	URI         string `json:"uri"`
	// KeySealed is the account key (PKCS#8 PEM) sealed with the master key.
	KeySealed []byte    `json:"key_sealed"`
	CreatedAt time.Time `json:"created_at"`
}

// ACMEChallenge is one http-01 answer: GET
// /.well-known/acme-challenge/<Token> on any load balancer gives KeyAuth.
type ACMEChallenge struct {
	Token     string    `json:"token"`
	KeyAuth   string    `json:"key_auth"`
	Domain    string    `json:"domain"`
	ExpiresAt time.Time `json:"expires_at"`
}

// ACME command numbers (persisted: never renumber).
const (
	MsgACMERegister     MsgType = 46
	MsgACMEChallengeSet MsgType = 47
)

// ACMERegister stores the grid's ACME account.
type ACMERegister struct {
	Account ACMEAccount `json:"account"`
}

func (*ACMERegister) MsgType() MsgType   { return MsgACMERegister }
func (*ACMERegister) name() string       { return "certificate.register" }
func (c *ACMERegister) resource() string { return "certificate/acme-account" }

func (c *ACMERegister) apply(a *applier) (any, error) {
	acct := c.Account
	if acct.Directory == "" || acct.URI == "" || len(acct.KeySealed) == 0 {
		return nil, fmt.Errorf("ACME account needs a directory, a URI and a key: %w", ErrInvalid)
	}
	g, err := a.grid()
	if err != nil {
		return nil, err
	}
	g.ACME, g.ModifyIndex = &acct, a.index
	if err := a.txn.Insert(TableGrid, g); err != nil {
		return nil, err
	}
	return &acct, a.event("certificate.register", "grid/"+g.Name, fmt.Sprintf("ACME account %s at %s", acct.Email, acct.Directory))
}

// ACMEChallengeSet adds and removes pending http-01 challenges; expired
// ones go too.
type ACMEChallengeSet struct {
	Add    []ACMEChallenge `json:"add,omitempty"`
	Remove []string        `json:"remove,omitempty"`
}

func (*ACMEChallengeSet) MsgType() MsgType { return MsgACMEChallengeSet }
func (*ACMEChallengeSet) name() string     { return "certificate.challenge" }
func (*ACMEChallengeSet) resource() string { return "certificate/challenges" }

func (c *ACMEChallengeSet) apply(a *applier) (any, error) {
	all, err := list[*ACMEChallenge](a.txn, TableACMEChallenges)
	if err != nil {
		return nil, err
	}
	for _, ch := range all {
		if slices.Contains(c.Remove, ch.Token) || (!ch.ExpiresAt.IsZero() && a.now.After(ch.ExpiresAt)) {
			if err := a.txn.Delete(TableACMEChallenges, ch); err != nil {
				return nil, err
			}
		}
	}
	if len(all)+len(c.Add) > 1000 {
		return nil, fmt.Errorf("more than 1000 pending ACME challenges: %w", ErrInvalid)
	}
	for _, ch := range c.Add {
		if ch.Token == "" || ch.KeyAuth == "" || len(ch.Token) > 256 || len(ch.KeyAuth) > 512 {
			return nil, fmt.Errorf("ACME challenge without a token or a key authorization: %w", ErrInvalid)
		}
		cp := ch
		if err := a.txn.Insert(TableACMEChallenges, &cp); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// ACMEChallenges lists the pending http-01 challenges.
func (v *View) ACMEChallenges() ([]*ACMEChallenge, error) {
	return list[*ACMEChallenge](v.txn, TableACMEChallenges)
}
