package cluster

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

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

// tlsStream is a raft.StreamLayer over mutual TLS: both ends must hold a
// certificate from the grid CA.
type tlsStream struct {
	net.Listener
	advertise net.Addr
	client    *tls.Config
}

func (s *tlsStream) Addr() net.Addr { return s.advertise }

func (s *tlsStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return tls.DialWithDialer(api.Dialer(timeout), "tcp", string(addr), s.client)
}

// raftNode is the Raft half of a voter.
type raftNode struct {
	raft  *raft.Raft
	store *fsm.Store
	trans *raft.NetworkTransport
	bolt  *raftboltdb.BoltStore
	// barrierTerm is the term in which this node, as leader, last applied
	// everything committed before it (a Barrier). A new leader's state may
	// lag its log until then.
	barrierTerm atomic.Uint64
	// caughtUpOnce: since this process started Raft, its state was level
	// with a leader's commit index at least once (see Node.caughtUp).
	caughtUpOnce atomic.Bool
}

func (r *raftNode) shutdown() error {
	err := r.raft.Shutdown().Error()
	_ = r.trans.Close()
	_ = r.bolt.Close()
	return err
}

// startRaft opens (or creates) the Raft state in dataDir. With bootstrap it
// makes this node the single voter of a new cluster.
func startRaft(dataDir, nodeID string, bind, advertise string, serverTLS, clientTLS *tls.Config, bootstrap bool, log *slog.Logger) (*raftNode, error) {
	dir := filepath.Join(dataDir, dirRaft)
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
	stream := &tlsStream{Listener: ln, advertise: advAddr, client: clientTLS}
	hl := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: os.Stderr})
	trans := raft.NewNetworkTransportWithLogger(stream, 3, 10*time.Second, hl)

	bolt, err := raftboltdb.NewBoltStore(filepath.Join(dir, "raft.db"))
	if err != nil {
		trans.Close()
		return nil, fmt.Errorf("open raft log %s: %w", dir, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hl)
	if err != nil {
		trans.Close()
		bolt.Close()
		return nil, fmt.Errorf("open raft snapshots: %w", err)
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
	r, err := raft.NewRaft(cfg, fsm.New(store, log), bolt, bolt, snaps, trans)
	if err != nil {
		trans.Close()
		bolt.Close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	return &raftNode{raft: r, store: store, trans: trans, bolt: bolt}, nil
}
