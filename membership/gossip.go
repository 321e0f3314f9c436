// Package membership is gossip among all the nodes of a grid
// (hashicorp/memberlist): who is alive, with the few facts each node tells
// about itself, and a loop that keeps reconnecting to known nodes so that
// the halves of a healed partition find each other again. It decides
// nothing: the leader turns liveness into node status in the state, and
// what a node may do is read from the state, never from gossip.
package membership

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

// Meta is what every node tells the others about itself through
// memberlist. It must stay under memberlist's 512-byte meta limit.
type Meta struct {
	Role     string `json:"r"`
	APIPort  int    `json:"a"`
	RaftPort int    `json:"f"`
	Version  string `json:"v"`
	Name     string `json:"n"`
	// PublicAddr is --public-address: peers in other regions reach the
	// node's WireGuard there.
	PublicAddr string `json:"p,omitempty"`
}

// Member is a live node as gossip sees it.
type Member struct {
	ID   string
	Addr string
	Port int
	Meta Meta
}

// APIAddr is the member's API address.
func (m Member) APIAddr() string { return net.JoinHostPort(m.Addr, strconv.Itoa(m.Meta.APIPort)) }

// Gossip wraps memberlist. Every node, voter or worker, runs it; the leader
// reads it to decide which nodes are online.
type Gossip struct {
	ml *memberlist.Memberlist

	mu   sync.Mutex
	meta Meta

	changed chan struct{} // signalled (non-blocking) on any membership change
}

// Changed is signalled (never blocking) on any membership change.
func (g *Gossip) Changed() <-chan struct{} { return g.changed }

type delegate struct{ g *Gossip }

func (d delegate) NodeMeta(limit int) []byte {
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	b, _ := json.Marshal(d.g.meta)
	if len(b) > limit {
		return nil
	}
	return b
}
func (delegate) NotifyMsg([]byte)                           {}
func (delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (delegate) LocalState(join bool) []byte                { return nil }
func (delegate) MergeRemoteState(buf []byte, join bool)     {}

type events struct{ g *Gossip }

func (e events) NotifyJoin(*memberlist.Node)   { e.g.poke() }
func (e events) NotifyLeave(*memberlist.Node)  { e.g.poke() }
func (e events) NotifyUpdate(*memberlist.Node) { e.g.poke() }

func (g *Gossip) poke() {
	select {
	case g.changed <- struct{}{}:
	default:
	}
}

// Start starts memberlist. The shared gossip key encrypts and
// authenticates every gossip packet, so only nodes that joined with a valid
// token take part.
// Timing is the failure detector's timers.
type Timing struct {
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	SuspicionMult int
}

func Start(nodeID, bind, advertise string, port int, key []byte, meta Meta, t Timing, logger *slog.Logger) (*Gossip, error) {
	g := &Gossip{meta: meta, changed: make(chan struct{}, 1)}
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
	cfg.Delegate = delegate{g}
	cfg.Events = events{g}
	cfg.Logger = log.New(slogWriter{logger.With("component", "gossip")}, "", 0)
	ml, err := memberlist.Create(cfg)
	if err != nil {
		return nil, fmt.Errorf("start gossip on %s:%d: %w", bind, port, err)
	}
	g.ml = ml
	return g, nil
}

// SetRole updates this node's meta and tells the others.
func (g *Gossip) SetRole(role string) {
	g.mu.Lock()
	g.meta.Role = role
	g.mu.Unlock()
	_ = g.ml.UpdateNode(2 * time.Second)
}

// Members returns the live nodes (alive or suspect), self included.
func (g *Gossip) Members() map[string]Member {
	out := map[string]Member{}
	for _, n := range g.ml.Members() {
		var meta Meta
		if json.Unmarshal(n.Meta, &meta) != nil {
			continue
		}
		out[n.Name] = Member{ID: n.Name, Addr: n.Addr.String(), Port: int(n.Port), Meta: meta}
	}
	return out
}

// Join contacts peers (gossip addresses) and returns how many answered.
func (g *Gossip) Join(peers []string) (int, error) {
	if len(peers) == 0 {
		return 0, nil
	}
	return g.ml.Join(peers)
}

// Shutdown leaves the cluster (briefly telling the others) and stops.
func (g *Gossip) Shutdown() {
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
