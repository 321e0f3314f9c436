package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
)

// serve runs a TLS server with cfg on loopback and returns its address.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
				_, _ = c.Write([]byte("x"))
			}()
		}
	}()
	return ln.Addr().String()
}

func nodeKeyPair(t *testing.T, ca *CA, id string) tls.Certificate {
	t.Helper()
	keyPEM, pub, err := NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueNode(pub, id, id, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := KeyPair(cert, keyPEM, ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func dial(addr string, cfg *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Read(make([]byte, 1)) // TLS 1.3: a refused client cert shows here
	return err
}

func TestMutualTLS(t *testing.T) {
	grid, _ := NewCA("grid")
	other, _ := NewCA("other")
	server := nodeKeyPair(t, grid, "server")
	scfg, err := ServerConfig(server, grid.CertPEM, true)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, scfg)
	member := nodeKeyPair(t, grid, "member")
	intruder := nodeKeyPair(t, other, "intruder")

	tests := []struct {
		name   string
		caPEM  []byte
		client *tls.Certificate
		ok     bool
	}{
		{"grid node", grid.CertPEM, &member, true},
		{"no client certificate", grid.CertPEM, nil, false},
		{"certificate of another CA", grid.CertPEM, &intruder, false},
		{"client trusting another CA", other.CertPEM, &member, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ccfg, err := ClientConfig(tc.caPEM, tc.client)
			if err != nil {
				t.Fatal(err)
			}
			err = dial(addr, ccfg)
			if (err == nil) != tc.ok {
				t.Fatalf("dial err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestPinnedConfig(t *testing.T) {
	grid, _ := NewCA("grid")
	other, _ := NewCA("other")
	scfg, _ := ServerConfig(nodeKeyPair(t, grid, "server"), grid.CertPEM, false)
	addr := serve(t, scfg)

	var found *x509.Certificate
	if err := dial(addr, PinnedConfig(Digest(grid.Cert), func(c *x509.Certificate) { found = c })); err != nil {
		t.Fatalf("pinned to the right CA: %v", err)
	}
	if found == nil || Digest(found) != Digest(grid.Cert) {
		t.Fatal("found CA not reported")
	}
	err := dial(addr, PinnedConfig(Digest(other.Cert), nil))
	if !errors.Is(err, ErrCAMismatch) {
		t.Fatalf("pinned to another CA: err = %v, want ErrCAMismatch", err)
	}
	// A server that presents the right CA but a leaf signed by another CA.
	forged := nodeKeyPair(t, other, "forged")
	forged.Certificate = append(forged.Certificate[:1], grid.Cert.Raw)
	fcfg, _ := ServerConfig(forged, grid.CertPEM, false)
	if err := dial(serve(t, fcfg), PinnedConfig(Digest(grid.Cert), nil)); err == nil {
		t.Fatal("accepted a leaf not signed by the pinned CA")
	}
}
