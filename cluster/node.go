package cluster

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/kontena-ng/kontena/agent"
	"github.com/kontena-ng/kontena/agent/engine"
	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/dataplane"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/httpapi"
	"github.com/kontena-ng/kontena/leader"
	"github.com/kontena-ng/kontena/membership"
	"github.com/kontena-ng/kontena/nodeagent"
	"github.com/kontena-ng/kontena/pki"
	"github.com/kontena-ng/kontena/raftnode"
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

	gossip *membership.Gossip
	http   *http.Server

	api *httpapi.Server // the HTTPS API this node serves

	loops sync.WaitGroup // the node's loops: Run returns once they ended

	rnd *rand.Rand // the leader's scheduler randomness (random strategy)

	// servicePassHook, when set (tests), runs first for every service a
	// leader pass plans or tracks.
	servicePassHook func(pass string, svc *fsm.Service)

	dp *dataplane.DataPlane // overlay, container addresses and DNS of this node

	eng *engine.Engine // this node's Docker engine; nil: none answered at start

	removed     chan struct{} // closed when the leader says this node was removed
	removedOnce sync.Once

	mu   sync.RWMutex
	id   *identity
	rn   *raftnode.Node // nil on workers
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
	if err := ensurePrivateDir(cfg.DataDir); err != nil {
		return err
	}
	id, err := loadIdentity(cfg.DataDir)
	if err != nil {
		return err
	}
	if id == nil {
		// Never bootstrap or join over what a node left behind.
		if err := checkNoLostNode(cfg.DataDir); err != nil {
			return err
		}
	}
	if cfg.Restore != nil {
		if id != nil {
			return fmt.Errorf("%w: %s holds node %s of grid %s already: --restore starts a grid only in a fresh data dir", ErrDataDir, cfg.DataDir, id.Name, id.Grid)
		}
		if id, err = restoreIdentity(cfg); err != nil {
			return err
		}
		cfg.Name = id.Name
	}
	if cfg.Name == "" {
		h, _ := os.Hostname()
		cfg.Name = sanitizeName(h)
	}
	var boot *bootstrapSecrets
	var peers []string
	switch {
	case id != nil:
		_ = clearSetupPending(cfg.DataDir)
		peers = loadPeers(cfg.DataDir)
		if len(cfg.Join) > 0 {
			// The node keeps its identity (no token needed); --join only
			// says where the grid is now, e.g. restored at a new address.
			cfg.Log.Info("data dir already holds a node; resuming it, with --join as gossip peers (the token is not needed)", "node", id.Name, "grid", id.Grid)
			peers = append(joinGossipPeers(cfg), peers...)
		}
	case len(cfg.Join) == 0:
		if err := markSetupPending(cfg.DataDir); err != nil {
			return err
		}
		id, boot, err = bootstrapIdentity(cfg)
		if err != nil {
			return err
		}
	default:
		if err := markSetupPending(cfg.DataDir); err != nil {
			return err
		}
		var resp *api.JoinResponse
		id, resp, err = joinGrid(ctx, cfg)
		if err != nil {
			if !hasNodeFiles(cfg.DataDir) {
				_ = clearSetupPending(cfg.DataDir)
			}
			return err
		}
		peers = resp.Peers
		if err := savePeers(cfg.DataDir, peers); err != nil {
			cfg.Log.Warn("could not save peers.json", "err", err)
		}
	}
	n := &Node{cfg: cfg, log: cfg.Log.With("node", id.Name), id: id, removed: make(chan struct{}),
		rnd: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))}
	if cfg.onNode != nil {
		cfg.onNode(n)
	}
	// The node's loops end with nctx, before a removed node cleans up after
	// itself (its agent must not start what leave removes).
	nctx, stopLoops := context.WithCancel(ctx)
	defer stopLoops()
	if err := n.start(nctx, boot, peers); err != nil {
		stopLoops()
		n.stop()
		n.waitLoops()
		return err
	}
	select {
	case <-ctx.Done():
		n.log.Info("shutting down")
		n.stop()
		n.waitLoops()
		return nil
	case <-n.removed:
		stopLoops()
		n.stop()
		n.waitLoops()
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

	if id.Role == fsm.RoleVoter {
		if err := n.becomeVoter(boot != nil); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(n.cfg.BindAddr, strconv.Itoa(n.cfg.APIPort)))
	if err != nil {
		return fmt.Errorf("listen for the API: %w (is another node using port %d?)", err, n.cfg.APIPort)
	}
	// One engine client for the node's life; without an engine the node
	// runs no containers and its container endpoints answer 503.
	if eng, err := engine.Open(ctx); err == nil {
		n.eng = eng
		context.AfterFunc(ctx, func() {
			select {
			case <-n.removed: // leave still needs it, and closes it
			default:
				eng.Close()
			}
		})
	} else if n.cfg.NoContainers || n.cfg.Runtime != nil {
		n.log.Debug("no Docker engine on this node", "err", err)
	} else {
		n.log.Warn("no Docker engine: this node runs no containers", "err", err)
	}
	// Handlers read the data plane (node show, grid show): make it first.
	dpCfg := dataplane.Config{DataDir: n.cfg.DataDir, NodeName: n.id.Name, Advertise: n.cfg.AdvertiseAddr, Overlay: n.cfg.Overlay,
		WireGuardPort: n.cfg.WireGuardPort, DNSListen: n.cfg.DNSListen, DNSUpstreams: n.cfg.DNSUpstreams, NoContainers: n.cfg.NoContainers,
		Self: n.selfClient(), Log: n.log}
	if n.eng != nil {
		dpCfg.Engine = n.eng
	}
	n.dp = dataplane.New(dpCfg)
	// Bounded: see httpapi/limits.go for the timeouts, the requests that
	// outlive them, and the connection limits.
	n.api = n.newAPI()
	srv, tln := n.api.HTTPServer(ln, n.apiTLS)
	n.http = srv
	go func() {
		if err := n.http.Serve(tln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("API server stopped", "err", err)
		}
	}()

	meta := membership.Meta{Role: id.Role, APIPort: n.cfg.APIPort, RaftPort: n.cfg.RaftPort, Version: Version, Name: id.Name, PublicAddr: n.cfg.PublicAddr}
	timing := membership.Timing{ProbeInterval: n.cfg.Timing.ProbeInterval, ProbeTimeout: n.cfg.Timing.ProbeTimeout, SuspicionMult: n.cfg.Timing.SuspicionMult}
	g, err := membership.Start(id.ID, n.cfg.BindAddr, n.cfg.AdvertiseAddr, n.cfg.GossipPort, id.gossipKey, meta, timing, n.log)
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
			if k, err := g.Join(peers); err == nil {
				n.log.Info("gossip joined", "peers", k)
			}
		}()
		select { // an unreachable peer may hold Join for memberlist's TCP timeout
		case <-joined:
		case <-time.After(3 * time.Second):
		}
	}
	n.goLoop(func() {
		g.Reconnect(ctx, membership.Reconnect{Self: net.JoinHostPort(n.cfg.AdvertiseAddr, strconv.Itoa(n.cfg.GossipPort)),
			Peers: peers, Known: n.knownGossip, Save: func(p []string) error { return savePeers(n.cfg.DataDir, p) }, Log: n.log})
	})
	n.goLoop(func() { n.leader().Run(ctx) })
	n.goLoop(func() { n.api.RunTokenUpkeep(ctx) })
	n.goLoop(func() { n.api.RunCertificateRenewal(ctx) })
	n.goLoop(func() { n.watchKeys(ctx) })
	n.goLoop(func() { n.dp.Run(ctx) })
	if !n.cfg.NoContainers {
		if na, ok := n.nodeAgent(); ok {
			n.goLoop(func() { nodeagent.Run(ctx, na) })
		}
	}

	info := ReadyInfo{Grid: id.Grid, NodeName: id.Name, Role: id.Role, CACert: id.caPEM, CADigest: id.CADigest,
		APIAddr: net.JoinHostPort(n.cfg.AdvertiseAddr, strconv.Itoa(n.cfg.APIPort))}
	if boot != nil {
		if err := n.initGrid(ctx, boot); err != nil {
			return err
		}
		info.Bootstrapped = true
		info.AdminToken, info.AdminRefresh = boot.adminToken, boot.adminRefresh
		info.AdminExpires = time.Now().Add(AdminAccessTTL)
		info.JoinToken = boot.joinToken
	}
	n.log.Info("node ready", "grid", id.Grid, "role", id.Role, "api", info.APIAddr, "id", id.ID)
	if n.cfg.OnReady != nil {
		n.cfg.OnReady(info)
	}
	return nil
}

// goLoop runs one of the node's loops; Run waits for them to end, so
// nothing writes to the data dir after it returned.
func (n *Node) goLoop(f func()) {
	n.loops.Add(1)
	go func() {
		defer n.loops.Done()
		f()
	}()
}

// waitLoops waits (a while) for the loops to see their context end.
func (n *Node) waitLoops() {
	done := make(chan struct{})
	go func() { n.loops.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		n.log.Warn("the node's loops did not stop within 30 s")
	}
}

// leave is what a node removed from the grid does before it exits: the grid
// runs its instances elsewhere now, so its containers go; so do the
// overlay's rules and engine network, and the cached assignments a restart
// would otherwise run again.
func (n *Node) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_ = os.Remove(filepath.Join(n.cfg.DataDir, nodeagent.FileAssignments))
	if n.eng != nil {
		defer n.eng.Close()
	}
	if !n.cfg.NoContainers && n.eng != nil {
		a, err := agent.New(agent.Config{Runtime: agent.NewRuntime(n.eng, n.log), Logger: n.log.With("component", "agent"),
			Node: agent.NodeInfo{NodeID: n.id.ID, NodeName: n.id.Name, GridName: n.id.Grid}})
		if err == nil {
			if err := a.Reconcile(ctx, nil); err != nil {
				n.log.Warn("remove this node's containers", "err", err)
			}
		}
	}
	if n.dp != nil {
		n.dp.Leave(ctx)
	}
}

func (n *Node) stop() {
	if n.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = n.http.Shutdown(ctx)
		cancel()
	}
	if n.gossip != nil {
		n.gossip.Shutdown()
	}
	n.mu.Lock()
	rn := n.rn
	n.rn = nil
	n.mu.Unlock()
	if rn != nil {
		if err := rn.Shutdown(); err != nil {
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
	var seal *vault.Sealer
	if n.id.Locked && n.id.masterKey == nil {
		n.log.Warn("the grid is locked: this voter serves no secrets until `kontena grid unlock` gives it the unlock key (containers keep running)")
	} else if seal, err = n.id.sealer(); err != nil {
		return err
	}
	if log := filepath.Join(n.cfg.DataDir, dirRaft, "raft.db"); n.id.RaftLog && !exists(log) {
		return fmt.Errorf("%w: this voter's raft log %s is missing (node.json says it was written): starting with an empty log "+
			"could let it vote away changes the grid committed. Nothing was changed. If the grid's other masters are up: stop this node, "+
			"run `kontena node rm %s` against them, move %s away and join this machine again with a token from `kontena grid token`; "+
			"if this was the grid's only master, restore %s from a backup",
			ErrDataDir, log, n.id.Name, n.cfg.DataDir, filepath.Join(n.cfg.DataDir, dirRaft))
	}
	bind := net.JoinHostPort(n.cfg.BindAddr, strconv.Itoa(n.cfg.RaftPort))
	adv := net.JoinHostPort(n.cfg.AdvertiseAddr, strconv.Itoa(n.cfg.RaftPort))
	rn, err := raftnode.Start(raftnode.Config{DataDir: n.cfg.DataDir, NodeID: n.id.ID, Bind: bind, Advertise: adv,
		ServerTLS: n.raftTLS, ClientTLS: n.clientTLS, Bootstrap: bootstrap, Trust: loadRaftTrust(n.cfg.DataDir), Log: n.log})
	if err != nil {
		return err
	}
	if !n.id.RaftLog {
		n.id.RaftLog = true
		if err := n.id.save(n.cfg.DataDir); err != nil {
			_ = rn.Shutdown()
			return err
		}
	}
	n.rn, n.ca, n.seal = rn, ca, seal
	return nil
}

// becomeWorker stops Raft and forgets the voter keys and log.
func (n *Node) becomeWorker() error {
	n.mu.Lock()
	rn := n.rn
	n.rn, n.ca, n.seal = nil, nil, nil
	n.id.Role, n.id.RaftLog = fsm.RoleWorker, false
	n.id.caKeyPEM, n.id.masterKey = nil, nil
	err := n.id.save(n.cfg.DataDir)
	n.mu.Unlock()
	if rn != nil {
		if serr := rn.Shutdown(); serr != nil {
			n.log.Warn("raft shutdown", "err", serr)
		}
	}
	_ = os.RemoveAll(filepath.Join(n.cfg.DataDir, dirRaft))
	if n.gossip != nil {
		n.gossip.SetRole(fsm.RoleWorker)
	}
	return err
}

// leader is this node's leader component: it acts while this node leads.
func (n *Node) leader() *leader.Leader {
	cfg := leader.Config{Raft: n.leaderRaft, Calls: n, VoterKeys: n.voterKeys,
		Reconcile: n.cfg.Timing.Reconcile, Rand: n.rnd, Log: n.log, Hook: n.servicePassHook}
	if n.id != nil {
		cfg.Self = n.id.ID
	}
	if n.gossip != nil {
		cfg.Gossip = n.gossip
	}
	return leader.New(cfg)
}

func (n *Node) leaderRaft() (leader.Raft, bool) {
	if rn := n.voter(); rn != nil {
		return rn, true
	}
	return nil, false
}

// voterKeys are what a promoted node receives to act as a voter.
func (n *Node) voterKeys() api.VoterKeys {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return api.VoterKeys{CAKey: string(n.id.caKeyPEM), MasterKey: n.id.masterKey, Locked: n.id.Locked, Generation: n.id.KeyGeneration}
}

// nodeAgent is the node agent's view of this node, or false when there is
// no container engine to drive.
func (n *Node) nodeAgent() (nodeagent.Config, bool) {
	rt := n.cfg.Runtime
	if rt == nil {
		if n.eng == nil {
			return nodeagent.Config{}, false // start said why: no Docker engine answered
		}
		rt = agent.NewRuntime(n.eng, n.log)
	}
	return nodeagent.Config{NodeID: n.id.ID, NodeName: n.id.Name, Grid: n.id.Grid, DataDir: n.cfg.DataDir, Runtime: rt,
		Network: n.dp.Network, Resources: n.engineResources, Self: n.selfClient(), Log: n.log, SecretFiles: n.secretFiles(),
		LB: n.lbRuntime()}, true
}

// lbRuntime is how this node runs load balancers: an image of its own
// executable, tagged by the executable's digest (the agent builds it the
// first time an instance needs it), and its API as containers reach it.
func (n *Node) lbRuntime() nodeagent.LBRuntime {
	api := "https://" + net.JoinHostPort(n.cfg.AdvertiseAddr, strconv.Itoa(n.cfg.APIPort))
	exe, err := os.Executable()
	if err != nil {
		n.log.Warn("no load balancers on this node: cannot find this executable", "err", err)
		return nodeagent.LBRuntime{API: api}
	}
	sum, err := fileDigest(exe)
	if err != nil {
		n.log.Warn("no load balancers on this node: cannot read this executable", "err", err)
		return nodeagent.LBRuntime{API: api}
	}
	// The agent builds the image when an instance first needs it.
	tag := agent.SelfImagePrefix + sum[:12]
	return nodeagent.LBRuntime{Image: tag, API: api}
}

// fileDigest is the hex SHA-256 of a file.
func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// secretFiles is where this node's containers find their secrets of type
// file: a tmpfs (nil, and a warning, when none can be had: instances with
// such secrets then fail saying so). A test runtime has no containers to
// mount them, so a plain directory does.
func (n *Node) secretFiles() agent.SecretFiles {
	dir := n.cfg.SecretsDir
	if dir == "" {
		dir = "/run/kontena/secrets"
	}
	if n.cfg.Runtime != nil {
		return agent.NewDirSecrets(dir)
	}
	s, err := agent.NewTmpfsSecrets(dir)
	if err != nil {
		n.log.Warn("no secret files on this node: services with secrets of type file cannot run here", "err", err)
		return nil
	}
	return s
}

// engineResources asks this node's engine what it offers; a node running
// a test runtime without an engine has nothing to report.
func (n *Node) engineResources(ctx context.Context) (engine.Resources, error) {
	if n.eng == nil {
		return engine.Resources{}, errors.New("no Docker engine on this node")
	}
	return n.eng.Resources(ctx)
}

// selfClient is a client of this node's own API with its certificate: the
// node-side loops speak the node protocol through it (a worker's API
// forwards to a voter).
func (n *Node) selfClient() *api.Client {
	return api.NewClientTLS([]string{net.JoinHostPort(n.cfg.AdvertiseAddr, strconv.Itoa(n.cfg.APIPort))}, n.clientTLS, "")
}

// knownGossip are the gossip addresses of every node in a voter's state
// (none on a worker): the reconnect loop keeps trying them.
func (n *Node) knownGossip() []string {
	rn := n.voter()
	if rn == nil {
		return nil
	}
	nodes, err := rn.Store().Nodes()
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(nodes))
	for _, node := range nodes {
		out = append(out, net.JoinHostPort(node.Addr, strconv.Itoa(node.GossipPort)))
	}
	return out
}

// voter returns the Raft half of this node, or nil on a worker.
func (n *Node) voter() *raftnode.Node {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.rn
}

func (n *Node) isLeader() bool {
	rn := n.voter()
	return rn != nil && rn.IsLeader()
}

func hashToken(tok string) string { return httpapi.HashToken(tok) }

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

// joinGossipPeers are the --join hosts at this node's gossip port: where a
// resumed node looks for the grid besides the peers it saved.
func joinGossipPeers(cfg Config) []string {
	var out []string
	for _, j := range cfg.Join {
		host := j
		if u, err := url.Parse(j); err == nil && u.Host != "" {
			host = u.Host
		}
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		out = append(out, net.JoinHostPort(host, strconv.Itoa(cfg.GossipPort)))
	}
	return out
}
