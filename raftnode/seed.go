package raftnode

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
)

// Seed starts the Raft state of a grid restored from a backup: state is
// written as the Raft snapshot at index, with a configuration of this one
// voter. Raft restores it at start and the log continues after index, so
// the keys of events and audit records (derived from log indexes) stay
// after the backup's. The data dir must hold no Raft state yet.
func Seed(dataDir, nodeID, advertise string, index uint64, state []byte) error {
	dir := filepath.Join(dataDir, Dir)
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("seed raft state: %s is not empty: restore only into a fresh data dir", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create raft dir: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStore(dir, 2, io.Discard)
	if err != nil {
		return fmt.Errorf("open raft snapshots: %w", err)
	}
	// The transport only encodes the (legacy) peer list: an in-memory one
	// does that as the network one would, by address.
	_, trans := raft.NewInmemTransport(raft.ServerAddress(advertise))
	cfg := raft.Configuration{Servers: []raft.Server{{ID: raft.ServerID(nodeID), Address: raft.ServerAddress(advertise), Suffrage: raft.Voter}}}
	sink, err := snaps.Create(1, index, 1, cfg, index, trans)
	if err != nil {
		return fmt.Errorf("create the seed snapshot: %w", err)
	}
	if _, err := sink.Write(state); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("write the seed snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("write the seed snapshot: %w", err)
	}
	return privateTree(dir)
}
