package cluster

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// gossipMeta is what every node tells the others about itself through
// memberlist. It must stay under memberlist's 512-byte meta limit.
type gossipMeta struct {
	Role     string `json:"r"`
	APIPort  int    `json:"a"`
	RaftPort int    `json:"f"`
	Version  string `json:"v"`
	Name     string `json:"n"`
	// PublicAddr is --public-address: peers in other regions reach the
	// node's WireGuard there.
	PublicAddr string `json:"p,omitempty"`
}

// member is a live node as gossip sees it.
type member struct {
	ID   string
	Addr string
	Port int
	Meta gossipMeta
}

func (m member) apiAddr() string { return net.JoinHostPort(m.Addr, strconv.Itoa(m.Meta.APIPort)) }

// gossip wraps memberlist. Every node, voter or worker, runs it; the leader
// reads it to decide which nodes are online.
type gossip struct {
	ml *memberlist.Memberlist

	mu   sync.Mutex
	meta gossipMeta

	changed chan struct{} // signalled (non-blocking) on any membership change
}

type gossipDelegate struct{ g *gossip }

func (d gossipDelegate) NodeMeta(limit int) []byte {
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	b, _ := json.Marshal(d.g.meta)
	if len(b) > limit {
		return nil
	}
	return b
}
func (gossipDelegate) NotifyMsg([]byte)                           {}
func (gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (gossipDelegate) LocalState(join bool) []byte                { return nil }
func (gossipDelegate) MergeRemoteState(buf []byte, join bool)     {}

type gossipEvents struct{ g *gossip }

func (e gossipEvents) NotifyJoin(*memberlist.Node)   { e.g.poke() }
func (e gossipEvents) NotifyLeave(*memberlist.Node)  { e.g.poke() }
func (e gossipEvents) NotifyUpdate(*memberlist.Node) { e.g.poke() }

func (g *gossip) poke() {
	select {
	case g.changed <- struct{}{}:
	default:
	}
}

// startGossip starts memberlist. The shared gossip key encrypts and
// authenticates every gossip packet, so only nodes that joined with a valid
// token take part.
func startGossip(nodeID, bind, advertise string, port int, key []byte, meta gossipMeta, t Timing, logger *slog.Logger) (*gossip, error) {
	g := &gossip{meta: meta, changed: make(chan struct{}, 1)}
	cfg := memberlist.DefaultLANConfig()
	cfg.Name = nodeID
	cfg.BindAddr = bind
	cfg.BindPort = port
	cfg.AdvertiseAddr = advertise
	cfg.AdvertisePort = port
	cfg.SecretKey = key
	cfg.ProbeInterval = t.ProbeInterval
	cfg.ProbeTimeout = t.ProbeTimeout
	cfg.SuspicionMult = t.SuspicionMult
	// memberlist stretches a suspicion up to 6x its minimum until other
	// nodes confirm it; a silently cut-off node would then take ~8 s to be
	// declared dead. 2x keeps that under 5 s.
	cfg.SuspicionMaxTimeoutMult = 2
	cfg.GossipInterval = 100 * time.Millisecond
	// A node restarted with the same name may come back at once.
	cfg.DeadNodeReclaimTime = time.Second
	cfg.Delegate = gossipDelegate{g}
	cfg.Events = gossipEvents{g}
	cfg.Logger = log.New(slogWriter{logger.With("component", "gossip")}, "", 0)
	ml, err := memberlist.Create(cfg)
	if err != nil {
		return nil, fmt.Errorf("start gossip on %s:%d: %w", bind, port, err)
	}
	g.ml = ml
	return g, nil
}

// setRole updates this node's meta and tells the others.
func (g *gossip) setRole(role string) {
	g.mu.Lock()
	g.meta.Role = role
	g.mu.Unlock()
	_ = g.ml.UpdateNode(2 * time.Second)
}

// members returns the live nodes (alive or suspect), self included.
func (g *gossip) members() map[string]member {
	out := map[string]member{}
	for _, n := range g.ml.Members() {
		var meta gossipMeta
		if json.Unmarshal(n.Meta, &meta) != nil {
			continue
		}
		out[n.Name] = member{ID: n.Name, Addr: n.Addr.String(), Port: int(n.Port), Meta: meta}
	}
	return out
}

func (g *gossip) join(peers []string) (int, error) {
	if len(peers) == 0 {
		return 0, nil
	}
	return g.ml.Join(peers)
}

func (g *gossip) shutdown() {
	_ = g.ml.Leave(time.Second)
	_ = g.ml.Shutdown()
}

// slogWriter sends a standard-library logger (memberlist's) to slog at
// debug level: memberlist is chatty about every probe.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Debug(string(trimNL(p)))
	return len(p), nil
}

func trimNL(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}

var _ io.Writer = slogWriter{}
