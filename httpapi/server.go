// Package httpapi is the node's HTTPS API: one route table (routes.go)
// with a declared policy per route, one admission middleware (admission.go)
// that decides every request, and handlers per resource (nodes, grid,
// tokens, events, stacks, services, containers, logs, exec, vpn, the node
// protocol, node-to-node calls). It is built from a few narrow parts of
// its node (Config) and holds no node of its own: the wiring (cluster)
// passes them in.
package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/kontena-ng/kontena/agent/engine"
	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/membership"
	"github.com/kontena-ng/kontena/pki"
	"github.com/kontena-ng/kontena/raftnode"
	"github.com/kontena-ng/kontena/vault"
)

// Keys are a voter's secrets the API uses: to admit joins (sign the new
// node's certificate, open the join token, hand a new voter its keys) and
// to rotate the join token.
type Keys struct {
	CA        *pki.CA
	Seal      *vault.Sealer
	CAPEM     []byte
	GossipKey []byte
	Voter     api.VoterKeys
}

// Node is what the API asks of the node it serves beyond reads and
// writes of the state: a voter's keys, and the actions the leader's
// node-to-node calls trigger.
type Node interface {
	// Keys are the voter's keys; false on a worker.
	Keys() (Keys, bool)
	// Promote makes this worker a voter with keys (the leader promoted it).
	Promote(keys api.VoterKeys) error
	// Demote makes this voter a worker (the leader took it out of Raft).
	Demote() error
	// Removed stops the node: it was removed from the grid.
	Removed()
	// Locked: this voter restarted while the grid was locked and holds no
	// master key until Unlock gives it one.
	Locked() bool
	// Unlock gives a locked voter the master key (of generation gen) it
	// opened with the unlock key; it keeps it in memory only.
	Unlock(masterKey []byte, gen uint64) error
}

// DataPlane is the node's network as the API reports it.
type DataPlane interface {
	Status() *api.OverlayStatus
	// Voters are the voters by the last network map: a worker accepts
	// node-to-node calls only from them.
	Voters() []api.NetVoter
}

// Members is gossip's view of the live nodes.
type Members interface {
	Members() map[string]membership.Member
}

// Config is the API's narrow view of its node.
type Config struct {
	ID, Name string
	Version  string
	// Voter is this node's Raft half, nil on a worker.
	Voter     func() *raftnode.Node
	Gossip    Members
	DataPlane DataPlane      // nil: none
	Engine    *engine.Engine // nil: no Docker engine on this node
	Node      Node
	// PeerTLS is the client side of node-to-node calls, with this node's
	// certificate.
	PeerTLS *tls.Config
	Log     *slog.Logger
}

// Server serves the API.
type Server struct {
	id        struct{ ID, Name string }
	version   string
	voterOf   func() *raftnode.Node
	gossip    Members
	dp        DataPlane
	eng       *engine.Engine
	node      Node
	clientTLS *tls.Config
	peerHTTP  *http.Client
	log       *slog.Logger
	joins     joinGate
	uses      tokenUses
	oidc      oidcProviders
	logins    loginGate
}

// New builds the API of a node.
func New(cfg Config) *Server {
	s := &Server{version: cfg.Version, voterOf: cfg.Voter, gossip: cfg.Gossip, dp: cfg.DataPlane, eng: cfg.Engine, node: cfg.Node,
		clientTLS: cfg.PeerTLS, log: cfg.Log}
	s.id.ID, s.id.Name = cfg.ID, cfg.Name
	s.peerHTTP = &http.Client{Transport: &http.Transport{
		TLSClientConfig:     cfg.PeerTLS,
		DialContext:         api.Dialer(2 * time.Second).DialContext,
		MaxIdleConnsPerHost: 32,
		// Below the API server's idle timeout, so a pooled connection is
		// not reused just as the other end closes it.
		IdleConnTimeout: 90 * time.Second,
	}}
	return s
}

// Handler is the API with its per-request bounds (see limits.go).
func (n *Server) Handler() http.Handler { return boundRequests(n.handler()) }

// voter is this node's Raft half, nil on a worker.
func (n *Server) voter() *raftnode.Node {
	if n.voterOf == nil {
		return nil
	}
	return n.voterOf()
}

// apply commits a command through Raft. It must run on the leader.
func (n *Server) apply(ctx context.Context, cmd fsm.Command, audit *fsm.AuditInfo) (any, uint64, error) {
	rn := n.voter()
	if rn == nil {
		return nil, 0, api.Errorf(api.CodeUnavailable, "this node is not a voter")
	}
	res, idx, err := rn.Apply(ctx, cmd, audit)
	if errors.Is(err, raftnode.ErrNotLeader) || errors.Is(err, raftnode.ErrNoQuorum) {
		return nil, 0, api.Errorf(api.CodeUnavailable, "%v", err)
	}
	return res, idx, err
}

// Status is what this node says of itself to the other nodes.
func (n *Server) Status() api.NodeStatus { return n.status() }

// HashToken is how API tokens are stored: only their SHA-256.
func HashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// HTTPServer is the API's bounded http.Server (timeouts, connection
// limits: see limits.go) and the TLS listener over ln it serves on.
func (n *Server) HTTPServer(ln net.Listener, tlsCfg *tls.Config) (*http.Server, net.Listener) {
	lim := newLimitListener(ln)
	srv := &http.Server{Handler: n.Handler(), ReadHeaderTimeout: apiReadHeaderTimeout,
		ReadTimeout: apiReadTimeout, WriteTimeout: apiWriteTimeout, IdleTimeout: apiIdleTimeout,
		ConnState: lim.connState}
	return srv, tls.NewListener(lim, tlsCfg)
}
