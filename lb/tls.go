package lb

import (
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// parseBundles reads PEM bundles (SSL_CERTS, SSL_CERT_*): each holds one or
// more certificates with their chains and keys, in any order a bundle of
// cert+chain+key is written (key first or last).
func parseBundles(bundles []string) ([]tls.Certificate, error) {
	var out []tls.Certificate
	for i, b := range bundles {
		certs, err := parseBundle(b)
		if err != nil {
			return nil, fmt.Errorf("certificate bundle %d: %w", i+1, err)
		}
		out = append(out, certs...)
	}
	return out, nil
}

func parseBundle(b string) ([]tls.Certificate, error) {
	var out []tls.Certificate
	var chain, key []byte
	flush := func() error {
		if len(chain) == 0 || len(key) == 0 {
			return errors.New("a certificate without its private key, or a key without its certificate")
		}
		c, err := tls.X509KeyPair(chain, key)
		if err != nil {
			return err
		}
		out = append(out, c)
		chain, key = nil, nil
		return nil
	}
	// An entry is a key and its certificates, either first: a
	// certificate after a complete entry, or a second key, starts the next.
	for rest := []byte(b); ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		isKey := strings.HasSuffix(blk.Type, "PRIVATE KEY")
		if blk.Type != "CERTIFICATE" && !isKey {
			continue
		}
		if (isKey && len(key) > 0) || (!isKey && len(key) > 0 && len(chain) > 0) {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		if isKey {
			key = pem.EncodeToMemory(blk)
		} else {
			chain = append(chain, pem.EncodeToMemory(blk)...)
		}
	}
	if len(chain) > 0 || len(key) > 0 {
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate and key in it")
	}
	return out, nil
}

// pickCert chooses the certificate for a handshake by SNI: the first that
// supports the client's hello, else the first.
func pickCert(certs []tls.Certificate, hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if len(certs) == 0 {
		return nil, errors.New("this load balancer has no certificate (SSL_CERTS)")
	}
	for i := range certs {
		if hello.SupportsCertificate(&certs[i]) == nil {
			return &certs[i], nil
		}
	}
	return &certs[0], nil
}
