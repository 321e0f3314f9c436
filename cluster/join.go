package cluster

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/pki"
	"github.com/kontena-ng/kontena/vault"
)

// Errors of `kontena up` that callers tell apart.
var (
	ErrJoinRefused = errors.New("join refused")
	ErrNoMaster    = errors.New("cannot join: no master accepted the connection")
	ErrConfig      = errors.New("invalid node configuration")
	ErrRemoved     = errors.New("node removed")
)

// bootstrapSecrets exist in clear only in memory during bootstrap: the
// admin token goes to the user once, the join token is stored sealed.
type bootstrapSecrets struct {
	adminToken   string
	adminRefresh string
	joinToken    string
	joinSecret   string
}

// The bootstrap admin's login lasts as any login: the access token 2 h,
// the refresh token 30 days after its last use.
const (
	AdminAccessTTL  = 2 * time.Hour
	AdminRefreshTTL = 30 * 24 * time.Hour
)

// bootstrapIdentity creates a new grid's CA, keys and the first node.
func bootstrapIdentity(cfg Config) (*identity, *bootstrapSecrets, error) {
	// Raft state without a node identity is a bootstrap that died before
	// it finished; it belongs to no grid anyone can reach, so start over.
	if !exists(filepath.Join(cfg.DataDir, fileIdentity)) {
		_ = os.RemoveAll(filepath.Join(cfg.DataDir, dirRaft))
	}
	ca, err := pki.NewCA(cfg.Grid)
	if err != nil {
		return nil, nil, err
	}
	id := &identity{ID: newID(), Name: cfg.Name, Grid: cfg.Grid, Role: fsm.RoleVoter, CADigest: pki.Digest(ca.Cert),
		caPEM: ca.CertPEM, caKeyPEM: ca.KeyPEM}
	keyPEM, pub, err := pki.NewNodeKey()
	if err != nil {
		return nil, nil, err
	}
	if id.certPEM, err = ca.IssueNode(pub, id.ID, id.Name, []string{cfg.AdvertiseAddr, cfg.PublicAddr, cfg.BindAddr}); err != nil {
		return nil, nil, err
	}
	id.keyPEM = keyPEM
	if id.gossipKey, err = vault.NewKey(); err != nil {
		return nil, nil, err
	}
	if id.masterKey, err = vault.NewKey(); err != nil {
		return nil, nil, err
	}
	secret := randomSecret(24)
	boot := &bootstrapSecrets{
		adminToken:   "ktn_" + randomSecret(24),
		adminRefresh: "ktr_" + randomSecret(24),
		joinSecret:   secret,
		joinToken:    joinToken{Grid: cfg.Grid, CADigest: id.CADigest, Secret: secret}.String(),
	}
	return id, boot, nil
}

// initGrid writes the first Raft entry of a new grid, then persists the
// identity: a node.json on disk always means an initialised grid.
func (n *Node) initGrid(ctx context.Context, boot *bootstrapSecrets) error {
	if err := n.waitLeader(ctx, 15*time.Second); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	sealed, err := n.seal.Seal([]byte(boot.joinSecret), "join-token")
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	// The admin's first login: an access token (2 h) made from a refresh
	// token the CLI trades for the next ones, as after any login.
	refresh := fsm.Token{ID: randomSecret(4), Hash: hashToken(boot.adminRefresh), User: "admin", Kind: fsm.TokenKindRefresh,
		Description: "bootstrap login", CreatedAt: now, ExpiresAt: now.Add(AdminRefreshTTL)}
	cmd := &fsm.GridInit{
		Grid: fsm.Grid{Name: n.id.Grid, Subnet: n.cfg.Subnet, Supernet: n.cfg.Supernet, InitialSize: n.cfg.InitialSize,
			CACert: string(n.id.caPEM), CADigest: n.id.CADigest, JoinTokenSealed: sealed, CreatedAt: now,
			OfflineGrace: n.cfg.OfflineGrace, DefaultAffinity: n.cfg.DefaultAffinity},
		Node:  n.selfNode(),
		Admin: fsm.User{Name: "admin", Roles: []string{fsm.RoleMasterAdmin}, CreatedAt: now},
		AdminToken: fsm.Token{ID: randomSecret(4), Hash: hashToken(boot.adminToken), User: "admin", Kind: fsm.TokenKindAccess,
			Description: "bootstrap login", CreatedAt: now, ExpiresAt: now.Add(AdminAccessTTL), Ancestors: []string{refresh.ID}},
		AdminRefresh: &refresh,
	}
	if _, _, err := n.voter().Apply(ctx, cmd, &fsm.AuditInfo{User: "bootstrap", Time: now}); err != nil {
		return fmt.Errorf("bootstrap: write grid settings: %w", err)
	}
	return n.id.save(n.cfg.DataDir)
}

func (n *Node) waitLeader(ctx context.Context, d time.Duration) error {
	deadline := time.Now().Add(d)
	for !n.isLeader() {
		if time.Now().After(deadline) {
			return errors.New("this node did not become Raft leader in time")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

func (n *Node) selfNode() fsm.Node {
	return fsm.Node{ID: n.id.ID, Name: n.id.Name, Role: n.id.Role, Status: fsm.StatusOnline, Labels: n.cfg.Labels,
		Addr: n.cfg.AdvertiseAddr, PublicAddr: n.cfg.PublicAddr, APIPort: n.cfg.APIPort, RaftPort: n.cfg.RaftPort,
		GossipPort: n.cfg.GossipPort, Version: Version}
}

// joinGrid asks a master to admit this node. The master must prove it holds
// the grid CA named in the token before the token's secret is sent.
func joinGrid(ctx context.Context, cfg Config) (*identity, *api.JoinResponse, error) {
	tok, err := parseJoinToken(cfg.Token)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, pub, err := pki.NewNodeKey()
	if err != nil {
		return nil, nil, err
	}
	req := api.JoinRequest{Grid: tok.Grid, Secret: tok.Secret, Protocol: api.ProtocolVersion, Version: Version,
		NodeID: newID(), Name: cfg.Name, PublicKey: string(pub), Addr: cfg.AdvertiseAddr, PublicAddr: cfg.PublicAddr,
		APIPort: cfg.APIPort, RaftPort: cfg.RaftPort, GossipPort: cfg.GossipPort, Labels: cfg.Labels}
	body, _ := json.Marshal(req)

	var (
		caMu    sync.Mutex
		foundCA *x509.Certificate
		failed  []string
	)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: pki.PinnedConfig(tok.CADigest, func(c *x509.Certificate) { caMu.Lock(); foundCA = c; caMu.Unlock() }),
		DialContext:     (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
	}}
	for _, addr := range cfg.Join {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			addr = net.JoinHostPort(addr, strconv.Itoa(cfg.APIPort))
		}
		hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, api.BaseURL(addr)+"/v1/join", bytes.NewReader(body))
		if err != nil {
			return nil, nil, err
		}
		resp, err := hc.Do(hreq)
		if err != nil {
			if errors.Is(err, pki.ErrCAMismatch) {
				failed = append(failed, fmt.Sprintf("%s: %v (is the token for this grid?)", addr, pki.ErrCAMismatch))
			} else {
				failed = append(failed, fmt.Sprintf("%s: unreachable: %v", addr, err))
			}
			continue
		}
		var out api.JoinResponse
		data, _ := readAll(resp)
		if resp.StatusCode != http.StatusOK {
			var eb api.ErrorBody
			if json.Unmarshal(data, &eb) == nil && eb.Error != nil {
				if eb.Error.Code == api.CodeUnavailable {
					failed = append(failed, fmt.Sprintf("%s: %s", addr, eb.Error.Message))
					continue
				}
				return nil, nil, fmt.Errorf("%w by %s: %s", ErrJoinRefused, addr, eb.Error.Message)
			}
			return nil, nil, fmt.Errorf("%w by %s: %s", ErrJoinRefused, addr, resp.Status)
		}
		if err := json.Unmarshal(data, &out); err != nil {
			return nil, nil, fmt.Errorf("join answer from %s: %w", addr, err)
		}
		caMu.Lock()
		ca := foundCA
		caMu.Unlock()
		caCert, err := pki.ParseCert([]byte(out.CACert))
		if err != nil || ca == nil || pki.Digest(caCert) != tok.CADigest {
			return nil, nil, fmt.Errorf("join answer from %s: %w", addr, pki.ErrCAMismatch)
		}
		id := &identity{ID: req.NodeID, Name: cfg.Name, Grid: tok.Grid, Role: out.Node.Role, CADigest: tok.CADigest,
			caPEM: []byte(out.CACert), certPEM: []byte(out.NodeCert), keyPEM: keyPEM, gossipKey: out.GossipKey}
		if out.VoterKeys != nil {
			id.caKeyPEM, id.masterKey, id.Locked = []byte(out.VoterKeys.CAKey), out.VoterKeys.MasterKey, out.VoterKeys.Locked
			id.KeyGeneration = out.VoterKeys.Generation
			if err := saveRaftTrust(cfg.DataDir, out.VoterKeys.Voters); err != nil {
				return nil, nil, err
			}
		}
		if err := id.save(cfg.DataDir); err != nil {
			return nil, nil, err
		}
		return id, &out, nil
	}
	return nil, nil, fmt.Errorf("%w:\n  %s", ErrNoMaster, strings.Join(failed, "\n  "))
}

func readAll(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err := buf.ReadFrom(http.MaxBytesReader(nil, resp.Body, 4<<20))
	return buf.Bytes(), err
}
