package cluster

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kontena-ng/kontena/agent"
	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/cluster/pki"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/vault"
)

// Node is one running grid node.
type Node struct {
	cfg Config
	log *slog.Logger

	kp        tls.Certificate
	apiTLS    *tls.Config // server side of the API: client certs optional
	raftTLS   *tls.Config // server side of Raft: client certs required
	clientTLS *tls.Config // outgoing node-to-node calls, with our certificate
	peerHTTP  *http.Client

	gossip *gossip
	http   *http.Server

	joins joinGate

	rnd *rand.Rand // the leader's scheduler randomness (random strategy)

	dp *dataPlane // overlay, container addresses and DNS of this node

	removed     chan struct{} // closed when the leader says this node was removed
	removedOnce sync.Once

	mu   sync.RWMutex
	id   *identity
	rn   *raftNode // nil on workers
	ca   *pki.CA
	seal *vault.Sealer
}

// Run starts a node and blocks until ctx ends. A data directory without a
// node bootstraps a new grid, or joins one when cfg.Join is set; one with a
// node resumes it.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	cfg.Timing = cfg.Timing.withDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	if cfg.AdvertiseAddr == "" {
		cfg.AdvertiseAddr = defaultAdvertise(cfg.BindAddr)
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = "0.0.0.0"
	}
	if cfg.Name == "" {
		h, _ := os.Hostname()
		cfg.Name = sanitizeName(h)
	}
	id, err := loadIdentity(cfg.DataDir)
	if err != nil {
		return err
	}
	var boot *bootstrapSecrets
	var peers []string
	switch {
	case id != nil:
		if len(cfg.Join) > 0 {
			cfg.Log.Info("data dir already holds a node; resuming it and ignoring --join/--token", "node", id.Name, "grid", id.Grid)
		}
		peers = loadPeers(cfg.DataDir)
	case len(cfg.Join) == 0:
		id, boot, err = bootstrapIdentity(cfg)
		if err != nil {
			return err
		}
	default:
		var resp *api.JoinResponse
		id, resp, err = joinGrid(ctx, cfg)
		if err != nil {
			return err
		}
		peers = resp.Peers
		_ = savePeers(cfg.DataDir, peers)
	}
	n := &Node{cfg: cfg, log: cfg.Log.With("node", id.Name), id: id, removed: make(chan struct{}),
		rnd: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))}
	// The node's loops end with nctx, before a removed node cleans up after
	// itself (its agent must not start what leave removes).
	nctx, stopLoops := context.WithCancel(ctx)
	defer stopLoops()
	if err := n.start(nctx, boot, peers); err != nil {
		n.stop()
		return err
	}
	select {
	case <-ctx.Done():
		n.log.Info("shutting down")
		n.stop()
		return nil
	case <-n.removed:
		stopLoops()
		n.stop()
		n.leave()
		return fmt.Errorf("%w: node %s was removed from grid %s; to bring this machine back, delete %s and join again with a token",
			ErrRemoved, id.Name, id.Grid, cfg.DataDir)
	}
}

func (n *Node) start(ctx context.Context, boot *bootstrapSecrets, peers []string) error {
	id := n.id
	kp, err := pki.KeyPair(id.certPEM, id.keyPEM, id.caPEM)
	if err != nil {
		return err
	}
	n.kp = kp
	if n.apiTLS, err = pki.ServerConfig(kp, id.caPEM, false); err != nil {
		return err
	}
	if n.raftTLS, err = pki.ServerConfig(kp, id.caPEM, true); err != nil {
		return err
	}
	if n.clientTLS, err = pki.ClientConfig(id.caPEM, &kp); err != nil {
		return err
	}
	n.peerHTTP = &http.Client{Transport: &http.Transport{
		TLSClientConfig:     n.clientTLS,
		DialContext:         api.Dialer(2 * time.Second).DialContext,
		MaxIdleConnsPerHost: 32,
	}}

	if id.Role == fsm.RoleVoter {
		if err := n.becomeVoter(boot != nil); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(n.cfg.BindAddr, strconv.Itoa(n.cfg.APIPort)))
	if err != nil {
		return fmt.Errorf("listen for the API: %w (is another node using port %d?)", err, n.cfg.APIPort)
	}
	// Handlers read the data plane (node show, grid show): make it first.
	n.dp = newDataPlane(n)
	n.http = &http.Server{Handler: n.handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil}
	go func() {
		if err := n.http.Serve(tls.NewListener(ln, n.apiTLS)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("API server stopped", "err", err)
		}
	}()

	meta := gossipMeta{Role: id.Role, APIPort: n.cfg.APIPort, RaftPort: n.cfg.RaftPort, Version: Version, Name: id.Name, PublicAddr: n.cfg.PublicAddr}
	g, err := startGossip(id.ID, n.cfg.BindAddr, n.cfg.AdvertiseAddr, n.cfg.GossipPort, id.gossipKey, meta, n.cfg.Timing, n.log)
	if err != nil {
		return err
	}
	n.gossip = g
	// Join the known peers before saying ready: a worker forwards every
	// request to a voter it sees through gossip. If none answers (the grid is
	// restarting) the reconnect loop keeps trying.
	if len(peers) > 0 {
		joined := make(chan struct{})
		go func() {
			defer close(joined)
			if k, err := g.join(peers); err == nil {
				n.log.Info("gossip joined", "peers", k)
			}
		}()
		select { // an unreachable peer may hold Join for memberlist's TCP timeout
		case <-joined:
		case <-time.After(3 * time.Second):
		}
	}
	go n.reconnectLoop(ctx, peers)
	go n.leaderLoop(ctx)
	go n.dp.run(ctx)
	if !n.cfg.NoContainers {
		go n.agentLoop(ctx)
	}

	info := ReadyInfo{Grid: id.Grid, NodeName: id.Name, Role: id.Role, CACert: id.caPEM, CADigest: id.CADigest,
		APIAddr: net.JoinHostPort(n.cfg.AdvertiseAddr, strconv.Itoa(n.cfg.APIPort))}
	if boot != nil {
		if err := n.initGrid(ctx, boot); err != nil {
			return err
		}
		info.Bootstrapped = true
		info.AdminToken = boot.adminToken
		info.JoinToken = boot.joinToken
	}
	n.log.Info("node ready", "grid", id.Grid, "role", id.Role, "api", info.APIAddr, "id", id.ID)
	if n.cfg.OnReady != nil {
		n.cfg.OnReady(info)
	}
	return nil
}

// leave is what a node removed from the grid does before it exits: the grid
// runs its instances elsewhere now, so its containers go; so do the
// overlay's rules and engine network, and the cached assignments a restart
// would otherwise run again.
func (n *Node) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_ = os.Remove(filepath.Join(n.cfg.DataDir, fileAssignments))
	if !n.cfg.NoContainers {
		if rt, closeRT, err := agent.NewDockerRuntime(ctx, n.log); err == nil {
			a, err := agent.New(agent.Config{Runtime: rt, Logger: n.log.With("component", "agent"),
				Node: agent.NodeInfo{NodeID: n.id.ID, NodeName: n.id.Name, GridName: n.id.Grid}})
			if err == nil {
				if err := a.Reconcile(ctx, nil); err != nil {
					n.log.Warn("remove this node's containers", "err", err)
				}
			}
			closeRT()
		}
	}
	if n.dp != nil {
		n.dp.leave(ctx)
	}
}

func (n *Node) stop() {
	if n.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = n.http.Shutdown(ctx)
		cancel()
	}
	if n.gossip != nil {
		n.gossip.shutdown()
	}
	n.mu.Lock()
	rn := n.rn
	n.rn = nil
	n.mu.Unlock()
	if rn != nil {
		if err := rn.shutdown(); err != nil {
			n.log.Warn("raft shutdown", "err", err)
		}
	}
}

// becomeVoter starts Raft on this node with the keys in its identity.
func (n *Node) becomeVoter(bootstrap bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.rn != nil {
		return nil
	}
	ca, err := n.id.ca()
	if err != nil {
		return err
	}
	seal, err := n.id.sealer()
	if err != nil {
		return err
	}
	bind := net.JoinHostPort(n.cfg.BindAddr, strconv.Itoa(n.cfg.RaftPort))
	adv := net.JoinHostPort(n.cfg.AdvertiseAddr, strconv.Itoa(n.cfg.RaftPort))
	rn, err := startRaft(n.cfg.DataDir, n.id.ID, bind, adv, n.raftTLS, n.clientTLS, bootstrap, n.log)
	if err != nil {
		return err
	}
	n.rn, n.ca, n.seal = rn, ca, seal
	return nil
}

// becomeWorker stops Raft and forgets the voter keys and log.
func (n *Node) becomeWorker() error {
	n.mu.Lock()
	rn := n.rn
	n.rn, n.ca, n.seal = nil, nil, nil
	n.id.Role = fsm.RoleWorker
	n.id.caKeyPEM, n.id.masterKey = nil, nil
	err := n.id.save(n.cfg.DataDir)
	n.mu.Unlock()
	if rn != nil {
		if serr := rn.shutdown(); serr != nil {
			n.log.Warn("raft shutdown", "err", serr)
		}
	}
	_ = os.RemoveAll(filepath.Join(n.cfg.DataDir, dirRaft))
	if n.gossip != nil {
		n.gossip.setRole(fsm.RoleWorker)
	}
	return err
}

// voter returns the Raft half of this node, or nil on a worker.
func (n *Node) voter() *raftNode {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.rn
}

func (n *Node) isLeader() bool {
	rn := n.voter()
	return rn != nil && rn.raft.State() == raft.Leader
}

// apply commits a command through Raft. It must run on the leader.
func (n *Node) apply(ctx context.Context, cmd fsm.Command, audit *fsm.AuditInfo) (any, uint64, error) {
	rn := n.voter()
	if rn == nil {
		return nil, 0, api.Errorf(api.CodeUnavailable, "this node is not a voter")
	}
	if audit == nil {
		audit = &fsm.AuditInfo{}
	}
	if audit.Time.IsZero() {
		audit.Time = time.Now().UTC()
	}
	data, err := fsm.Encode(cmd, audit)
	if err != nil {
		return nil, 0, err
	}
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	f := rn.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return nil, 0, api.Errorf(api.CodeUnavailable, "leadership changed while writing; retry: %v", err)
		}
		return nil, 0, api.Errorf(api.CodeUnavailable, "could not commit the change (is a majority of voters reachable?): %v", err)
	}
	if err, ok := f.Response().(error); ok {
		return nil, f.Index(), err
	}
	return f.Response(), f.Index(), nil
}

func hashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// defaultAdvertise picks the address other nodes should use: the bind
// address when it is specific, else the first non-loopback IPv4 address.
func defaultAdvertise(bind string) string {
	if ip := net.ParseIP(bind); ip != nil && !ip.IsUnspecified() {
		return bind
	}
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
				return ipn.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

func sanitizeName(h string) string {
	out := make([]byte, 0, len(h))
	for _, c := range []byte(h) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-':
			out = append(out, c)
		case c >= 'A' && c <= 'Z':
			out = append(out, c+'a'-'A')
		case c == '.' || c == '_':
			out = append(out, '-')
		}
	}
	if len(out) == 0 {
		return "node"
	}
	return string(out)
}
