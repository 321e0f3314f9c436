package integration

import (
	"crypto/tls"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/cluster/pki"
)

type cliConfigFile struct {
	Current string `json:"current"`
	Grids   map[string]struct {
		Addresses []string `json:"addresses"`
		Token     string   `json:"token"`
		CACert    string   `json:"ca_cert"`
	} `json:"grids"`
}

func (tg *testGrid) config(t *testing.T) cliConfigFile {
	t.Helper()
	raw, err := os.ReadFile(tg.cfg)
	must(t, err)
	var c cliConfigFile
	must(t, json.Unmarshal(raw, &c))
	return c
}

func (tg *testGrid) caPEM(t *testing.T) []byte {
	return []byte(tg.config(t).Grids[tg.name].CACert)
}

func (tg *testGrid) adminToken(t *testing.T) string {
	return tg.config(t).Grids[tg.name].Token
}

// adminClient talks to every master, like the CLI.
func (tg *testGrid) adminClient(t *testing.T) *api.Client {
	c := tg.config(t).Grids[tg.name]
	cl, err := api.NewClient(c.Addresses, []byte(c.CACert), c.Token, nil)
	must(t, err)
	return cl
}

// clientFor talks to one node only.
func (tg *testGrid) clientFor(t *testing.T, ip string) *api.Client {
	cl, err := api.NewClient([]string{ip + ":9700"}, tg.caPEM(t), tg.adminToken(t), nil)
	must(t, err)
	return cl
}

// insideConfig writes an admin CLI config that knows only addr.
func (tg *testGrid) insideConfig(t *testing.T, addr string) string {
	c := tg.config(t)
	g := c.Grids[tg.name]
	g.Addresses = []string{addr}
	c.Grids = map[string]struct {
		Addresses []string `json:"addresses"`
		Token     string   `json:"token"`
		CACert    string   `json:"ca_cert"`
	}{tg.name: g}
	c.Current = tg.name
	raw, _ := json.Marshal(c)
	p := filepath.Join(t.TempDir(), "inside.json")
	must(t, os.WriteFile(p, raw, 0o600))
	return p
}

// foreignCert is a certificate from a CA that is not the grid's.
func foreignCert(t *testing.T) *tls.Certificate {
	ca, err := pki.NewCA("intruder")
	must(t, err)
	keyPEM, pub, err := pki.NewNodeKey()
	must(t, err)
	certPEM, err := ca.IssueNode(pub, "intruder", "intruder", nil)
	must(t, err)
	kp, err := pki.KeyPair(certPEM, keyPEM, ca.CertPEM)
	must(t, err)
	return &kp
}

// clientTLS trusts any server (these tests probe the server's refusals).
func clientTLS(cert *tls.Certificate) *tls.Config {
	cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

func regexpLine(text, re string) bool {
	return regexp.MustCompile(`(?m)^` + re).MatchString(text)
}
