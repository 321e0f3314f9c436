// Package pki is the grid's own certificate authority: it signs one
// certificate per node, used for both sides of every node-to-node TLS
// connection and for the API that the CLI talks to.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Validity periods. Node certificates are long-lived because a node that
// was offline must be able to come back without a token.
const (
	caValidity   = 20 * 365 * 24 * time.Hour
	nodeValidity = 10 * 365 * 24 * time.Hour
)

// CA signs node certificates.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     *ecdsa.PrivateKey
	KeyPEM  []byte
}

// NewCA creates the CA of a new grid.
func NewCA(grid string) (*CA, error) {
	key, keyPEM, err := NewKey()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "kontena grid " + grid + " CA", Organization: []string{grid}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	return LoadCA(pemBlock("CERTIFICATE", der), keyPEM)
}

// LoadCA reads a CA from PEM.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	return &CA{Cert: cert, CertPEM: certPEM, key: key, KeyPEM: keyPEM}, nil
}

// IssueNode signs a certificate for a node's public key. The common name is
// the node ID; the node name and addresses go into the SANs so that tools
// which do check host names can.
func (ca *CA) IssueNode(pubPEM []byte, nodeID, nodeName string, ips []string) ([]byte, error) {
	pub, err := ParsePublicKey(pubPEM)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: nodeID, Organization: ca.Cert.Subject.Organization},
		DNSNames:     []string{nodeName, "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(nodeValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	tmpl.IPAddresses = append(tmpl.IPAddresses, net.IPv4(127, 0, 0, 1))
	for _, s := range ips {
		if ip := net.ParseIP(s); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("sign node certificate: %w", err)
	}
	return pemBlock("CERTIFICATE", der), nil
}

// NewKey makes a node or CA private key.
func NewKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pemBlock("EC PRIVATE KEY", der), nil
}

// NewNodeKey makes a node's private key and returns it with its public half,
// both PEM: the private key stays on the node, the public one is signed.
func NewNodeKey() (keyPEM, pubPEM []byte, err error) {
	key, keyPEM, err := NewKey()
	if err != nil {
		return nil, nil, err
	}
	pubPEM, err = PublicKeyPEM(key)
	return keyPEM, pubPEM, err
}

// PublicKeyPEM encodes the public half of key.
func PublicKeyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	return pemBlock("PUBLIC KEY", der), nil
}

// ParsePublicKey decodes a PEM public key.
func ParsePublicKey(p []byte) (any, error) {
	b, _ := pem.Decode(p)
	if b == nil {
		return nil, errors.New("public key: no PEM block")
	}
	pub, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return pub, nil
}

// ParseCert decodes a PEM certificate.
func ParseCert(p []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(p)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}

// ParseKey decodes a PEM EC private key.
func ParseKey(p []byte) (*ecdsa.PrivateKey, error) {
	b, _ := pem.Decode(p)
	if b == nil {
		return nil, errors.New("no PEM key")
	}
	return x509.ParseECPrivateKey(b.Bytes)
}

// Digest is the SHA-256 of a certificate's DER bytes, in hex. Join tokens
// carry the CA's digest so that a joining node can pin the grid's CA.
func Digest(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// Pool returns a cert pool holding only the grid CA.
func Pool(caPEM []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("CA certificate: no PEM certificate")
	}
	return pool, nil
}

// KeyPair builds the TLS certificate of a node, with the CA appended to the
// chain so that peers can see (and pin) the CA during the handshake.
func KeyPair(certPEM, keyPEM, caPEM []byte) (tls.Certificate, error) {
	chain := append(append([]byte{}, certPEM...), caPEM...)
	kp, err := tls.X509KeyPair(chain, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("node certificate: %w", err)
	}
	return kp, nil
}

// ServerConfig is the TLS config of a node's listeners. With requireClient,
// only peers with a grid certificate may connect (Raft); otherwise a client
// certificate is verified when given (the API, where users use tokens).
func ServerConfig(kp tls.Certificate, caPEM []byte, requireClient bool) (*tls.Config, error) {
	pool, err := Pool(caPEM)
	if err != nil {
		return nil, err
	}
	auth := tls.VerifyClientCertIfGiven
	if requireClient {
		auth = tls.RequireAndVerifyClientCert
	}
	return &tls.Config{
		Certificates: []tls.Certificate{kp},
		ClientCAs:    pool,
		ClientAuth:   auth,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

// ClientConfig verifies the server against the grid CA. Host names are not
// checked: nodes are reached by whatever address routes to them (private,
// public, NAT), and only the grid CA can issue a node certificate.
func ClientConfig(caPEM []byte, kp *tls.Certificate) (*tls.Config, error) {
	pool, err := Pool(caPEM)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		InsecureSkipVerify: true, // replaced by VerifyConnection below
		MinVersion:         tls.VersionTLS13,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyChain(cs.PeerCertificates, pool)
		},
	}
	if kp != nil {
		cfg.Certificates = []tls.Certificate{*kp}
	}
	return cfg, nil
}

// PinnedConfig is for a node that joins with a token: it does not know the
// CA yet, only its digest. The server must present a chain whose CA has that
// digest and whose leaf that CA signed. The CA it found is passed to found.
func PinnedConfig(digest string, found func(*x509.Certificate)) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true, // replaced by VerifyConnection below
		MinVersion:         tls.VersionTLS13,
		VerifyConnection: func(cs tls.ConnectionState) error {
			for _, c := range cs.PeerCertificates {
				if c.IsCA && Digest(c) == digest {
					pool := x509.NewCertPool()
					pool.AddCert(c)
					if err := verifyChain(cs.PeerCertificates, pool); err != nil {
						return err
					}
					if found != nil {
						found(c)
					}
					return nil
				}
			}
			return ErrCAMismatch
		},
	}
}

// ErrCAMismatch means the server is not part of the grid the token is for.
var ErrCAMismatch = errors.New("CA mismatch: the server does not present the grid CA this token was made for")

func verifyChain(certs []*x509.Certificate, pool *x509.CertPool) error {
	if len(certs) == 0 {
		return errors.New("peer presented no certificate")
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots:     pool,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return fmt.Errorf("peer certificate is not from this grid's CA: %w", err)
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // the system random source is broken; nothing is safe
	}
	return n
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// ForNode is cfg that also requires the server to present the certificate
// of node id (its common name): a call meant for one node never reaches
// another that answers at the same address.
func ForNode(cfg *tls.Config, id string) *tls.Config {
	c := cfg.Clone()
	prev := c.VerifyConnection
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if prev != nil {
			if err := prev(cs); err != nil {
				return err
			}
		}
		if len(cs.PeerCertificates) == 0 || cs.PeerCertificates[0].Subject.CommonName != id {
			got := ""
			if len(cs.PeerCertificates) > 0 {
				got = cs.PeerCertificates[0].Subject.CommonName
			}
			return fmt.Errorf("expected the certificate of node %s, got node %q", id, got)
		}
		return nil
	}
	return c
}

// RandomHex is n random bytes from the system's CSPRNG, hex-encoded: node
// IDs, token IDs and secrets.
func RandomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // the system's random source failed: nothing is safe to make
	}
	return hex.EncodeToString(b)
}
