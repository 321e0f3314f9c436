package cmd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/api"
)

// certFiles writes a self-signed certificate for host and its key.
func certFiles(t *testing.T, host string) (certPath, keyPath, keyPEM string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: host},
		DNSNames: []string{host, "www." + host}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	keyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
	_ = os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyPath, []byte(keyPEM), 0o600)
	return certPath, keyPath, keyPEM
}

const certStack = `stack: tls
version: 1.0.0
services:
  lb:
    image: kontena/lb:latest
    instances: 1
    certificates:
      - subject: shop.test
        name: SSL_CERTS
        type: env
`

// TestCertificates: import, list, show, export (audited), a stack naming a
// missing one refused, one in use removed only by force.
func TestCertificates(t *testing.T) {
	cfg := startNode(t)
	stackFile := filepath.Join(t.TempDir(), "tls.yml")
	_ = os.WriteFile(stackFile, []byte(certStack), 0o644)
	if _, errOut, code := run(t, nil, "--config", cfg, "stack", "install", "--no-deploy", stackFile); code != ExitUsage || !strings.Contains(errOut, "certificate shop.test") {
		t.Fatalf("a stack naming a missing certificate: %d %s", code, errOut)
	}
	certPath, keyPath, keyPEM := certFiles(t, "shop.test")
	if out, errOut, code := run(t, nil, "--config", cfg, "certificate", "import", "--cert", certPath, "--key", keyPath); code != 0 || !strings.Contains(out, "shop.test imported") {
		t.Fatalf("import: %d %s%s", code, out, errOut)
	}
	out, _, _ := run(t, nil, "--config", cfg, "certificate", "ls", "-o", "json")
	var certs []api.CertificateInfo
	_ = json.Unmarshal([]byte(out), &certs)
	if len(certs) != 1 || certs[0].Subject != "shop.test" || strings.Join(certs[0].AltNames, ",") != "www.shop.test" || certs[0].KeyPEM != "" {
		t.Fatalf("certificate ls: %+v", certs)
	}
	out, _, _ = run(t, nil, "--config", cfg, "certificate", "export", "shop.test")
	if !strings.Contains(out, "BEGIN CERTIFICATE") || !strings.Contains(out, keyPEM) {
		t.Fatalf("export lacks the chain or the key:\n%s", out)
	}
	if out, _, _ := run(t, nil, "--config", cfg, "audit-log", "--resource", "certificate", "-o", "json"); !strings.Contains(out, "certificate.export") {
		t.Errorf("the export is not on the audit record:\n%s", out)
	}
	// The key is not in the clear under the data dir.
	data := filepath.Join(filepath.Dir(cfg), "data")
	_ = filepath.Walk(data, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), strings.Split(keyPEM, "\n")[1]) {
				t.Errorf("%s holds the private key in the clear", p)
			}
		}
		return nil
	})

	// (In this in-process node nothing is deployed: httpapi's tests check
	// the injection and the redeploy of a replaced certificate.)
	if _, errOut, code := run(t, nil, "--config", cfg, "stack", "install", "--no-deploy", stackFile); code != 0 {
		t.Fatalf("install: %s", errOut)
	}
	certPath2, keyPath2, _ := certFiles(t, "shop.test")
	if _, errOut, code := run(t, nil, "--config", cfg, "certificate", "import", "--cert", certPath2, "--key", keyPath2); code != 0 {
		t.Fatal(errOut)
	}
	if _, errOut, code := run(t, nil, "--config", cfg, "certificate", "rm", "shop.test"); code != ExitConflict || !strings.Contains(errOut, "is used by [tls/lb]") {
		t.Errorf("rm of a certificate in use: %d %s", code, errOut)
	}
	if _, errOut, code := run(t, nil, "--config", cfg, "certificate", "rm", "--force", "shop.test"); code != 0 {
		t.Errorf("rm --force: %s", errOut)
	}
}
