package raftnode

import (
	"errors"
	"log/slog"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/kontena-ng/kontena/fsm"
)

// StartInmem starts a single voter with an in-memory log and transport
// (raft.InmemTransport), bootstrapped and leading within moments: the fast
// test double of a voter, with the real state machine behind it.
func StartInmem(id string, log *slog.Logger) (*Node, error) {
	store, err := fsm.NewStore()
	if err != nil {
		return nil, err
	}
	cfg := raft.DefaultConfig()
	cfg.LocalID = raft.ServerID(id)
	cfg.Logger = hclog.NewNullLogger()
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	cfg.CommitTimeout = 5 * time.Millisecond
	logs, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
	addr, trans := raft.NewInmemTransport(raft.ServerAddress(id))
	if err := raft.BootstrapCluster(cfg, logs, logs, snaps, trans, raft.Configuration{Servers: []raft.Server{{ID: cfg.LocalID, Address: addr}}}); err != nil {
		return nil, err
	}
	r, err := raft.NewRaft(cfg, fsm.New(store, log), logs, logs, snaps, trans)
	if err != nil {
		return nil, err
	}
	n := &Node{raft: r, store: store, logs: logs}
	for deadline := time.Now().Add(5 * time.Second); r.State() != raft.Leader; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			_ = r.Shutdown().Error()
			return nil, errors.New("in-memory raft: no leader after 5 s")
		}
	}
	if err := n.Barrier(5 * time.Second); err != nil {
		return nil, err
	}
	return n, nil
}
