package raftnode

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/kontena-ng/kontena/fsm"
)

// Dir is the directory of the Raft log and snapshots inside a data dir.
const Dir = "raft"

// Node is the Raft half of a voter: the log, the transport and the state
// machine's store.
type Node struct {
	raft   *raft.Raft
	store  *fsm.Store
	trans  *raft.NetworkTransport
	bolt   *raftboltdb.BoltStore
	stream *tlsStream
	// logs is the log store (bolt on disk, or in memory in tests).
	logs raft.LogStore
	// barrierTerm is the term in which this node, as leader, last applied
	// everything committed before it (a Barrier). A new leader's state may
	// lag its log until then.
	barrierTerm atomic.Uint64
	// caughtUpOnce: since this process started Raft, its state was level
	// with a leader's commit index at least once (see Node.caughtUp).
	caughtUpOnce atomic.Bool
}

// logCacheSize is how many recent log entries raft keeps in memory.
const logCacheSize = 1024

// Shutdown stops Raft and closes the transport and the log.
func (r *Node) Shutdown() error {
	err := r.raft.Shutdown().Error()
	if r.trans != nil {
		_ = r.trans.Close()
	}
	if r.bolt != nil {
		_ = r.bolt.Close()
	}
	return err
}

// Config is what Start needs.
type Config struct {
	DataDir   string // the node's data dir; Raft lives in DataDir/raft
	NodeID    string
	Bind      string // host:port to listen on
	Advertise string // host:port the other voters dial
	// ServerTLS must require and verify client certificates of the grid
	// CA; ClientTLS carries this node's certificate.
	ServerTLS, ClientTLS *tls.Config
	// Bootstrap makes this node the single voter of a new grid when
	// DataDir holds no Raft state yet.
	Bootstrap bool
	// Trust are the voters a node that has no Raft configuration yet
	// accepts connections from (given with its voter keys).
	Trust []string
	Log   *slog.Logger
}

// Start opens (or creates) the Raft state in c.DataDir and starts Raft.
func Start(c Config) (*Node, error) {
	dataDir, nodeID, bind, advertise, serverTLS, clientTLS, bootstrap, log := c.DataDir, c.NodeID, c.Bind, c.Advertise, c.ServerTLS, c.ClientTLS, c.Bootstrap, c.Log
	dir := filepath.Join(dataDir, Dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create raft dir: %w", err)
	}
	advAddr, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		return nil, fmt.Errorf("raft advertise address %q: %w", advertise, err)
	}
	ln, err := tls.Listen("tcp", bind, serverTLS)
	if err != nil {
		return nil, fmt.Errorf("listen for raft on %s: %w (is another node using this port?)", bind, err)
	}
	stream := &tlsStream{Listener: ln, advertise: advAddr, client: clientTLS, log: log}
	hl := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: os.Stderr})
	trans := raft.NewNetworkTransportWithLogger(stream, 3, 10*time.Second, hl)

	// An empty, damaged or locked raft.db is an error naming the file and
	// what to do, never a panic or a fresh log (see openRaftLog).
	bolt, err := openRaftLog(dataDir)
	if err != nil {
		trans.Close()
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hl)
	if err != nil {
		trans.Close()
		bolt.Close()
		return nil, fmt.Errorf("open raft snapshots: %w", err)
	}
	// Snapshots hold the grid's whole state: raft creates them 0755/0644.
	if err := privateTree(dir); err != nil {
		trans.Close()
		bolt.Close()
		return nil, fmt.Errorf("make %s private: %w", dir, err)
	}
	store, err := fsm.NewStore()
	if err != nil {
		return nil, err
	}
	cfg := raft.DefaultConfig()
	cfg.LocalID = raft.ServerID(nodeID)
	cfg.Logger = hl
	// Buffer applies so concurrent writes are group-committed: one fsync
	// and one replication round for many entries.
	cfg.BatchApplyCh = true
	cfg.SnapshotThreshold = 4096
	cfg.TrailingLogs = 4096

	if bootstrap {
		has, err := raft.HasExistingState(bolt, bolt, snaps)
		if err != nil {
			return nil, err
		}
		if !has {
			err := raft.BootstrapCluster(cfg, bolt, bolt, snaps, trans, raft.Configuration{Servers: []raft.Server{
				{ID: cfg.LocalID, Address: trans.LocalAddr(), Suffrage: raft.Voter},
			}})
			if err != nil {
				return nil, fmt.Errorf("bootstrap raft: %w", err)
			}
		}
	}
	// Raft reads back every entry it replicates (leader) or applies
	// (followers); the recent ones come from memory instead of bbolt and
	// a msgpack decode each (7 % of a voter's CPU under writes, profiled).
	// Writes go through to bolt before the cache keeps them.
	logs, err := raft.NewLogCache(logCacheSize, bolt)
	if err != nil {
		trans.Close()
		bolt.Close()
		return nil, fmt.Errorf("raft log cache: %w", err)
	}
	r, err := raft.NewRaft(cfg, fsm.New(store, log), logs, bolt, snaps, trans)
	if err != nil {
		trans.Close()
		bolt.Close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	n := &Node{raft: r, store: store, trans: trans, bolt: bolt, stream: stream, logs: bolt}
	check := n.peerCheck(c.Trust)
	stream.check.Store(&check)
	return n, nil
}
