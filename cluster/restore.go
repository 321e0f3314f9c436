package cluster

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/httpapi"
	"github.com/kontena-ng/kontena/pki"
	"github.com/kontena-ng/kontena/raftnode"
)

// Restore is `kontena up --restore FILE`: a grid started on a fresh machine
// from a backup and its key.
type Restore struct {
	Backup []byte
	Key    string
}

// restoreIdentity makes a fresh data dir the first voter of a grid
// restored from a backup: the identity of the backup's node named
// cfg.Name (its first voter if none is named), new certificates from the
// grid's own CA, the voter keys from the backup, and the backup's state as
// the Raft snapshot the log continues from.
func restoreIdentity(cfg Config) (*identity, error) {
	var b api.Backup
	if err := json.Unmarshal(cfg.Restore.Backup, &b); err != nil {
		return nil, fmt.Errorf("restore: the backup file is not a kontena backup: %w", err)
	}
	if b.Format != api.BackupFormat {
		return nil, fmt.Errorf("restore: backup format %q, this node reads %q", b.Format, api.BackupFormat)
	}
	keys, err := httpapi.OpenBackupKeys(&b, cfg.Restore.Key)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	res, err := fsm.PrepareRestore(b.State, cfg.Name, func(n *fsm.Node) {
		n.Addr, n.PublicAddr, n.Version = cfg.AdvertiseAddr, cfg.PublicAddr, Version
		n.APIPort, n.RaftPort, n.GossipPort = cfg.APIPort, cfg.RaftPort, cfg.GossipPort
		// This machine's overlay key is new: peers learn it when the data
		// plane reports it, not from the old machine.
		n.Overlay.PublicKey, n.Overlay.Port = "", 0
	})
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	ca, err := pki.LoadCA([]byte(res.Grid.CACert), []byte(keys.CAKey))
	if err != nil {
		return nil, fmt.Errorf("restore: the backup's CA: %w", err)
	}
	if pki.Digest(ca.Cert) != b.CADigest || res.Grid.CADigest != b.CADigest {
		return nil, fmt.Errorf("restore: the backup's CA does not match its digest %s", b.CADigest)
	}
	id := &identity{ID: res.Self.ID, Name: res.Self.Name, Grid: res.Grid.Name, Role: fsm.RoleVoter, CADigest: b.CADigest,
		caPEM: ca.CertPEM, caKeyPEM: []byte(keys.CAKey), gossipKey: keys.GossipKey, masterKey: keys.MasterKey,
		KeyGeneration: keys.Generation, Locked: res.Grid.MasterKeyLocked != nil}
	keyPEM, pub, err := pki.NewNodeKey()
	if err != nil {
		return nil, err
	}
	if id.certPEM, err = ca.IssueNode(pub, id.ID, id.Name, []string{cfg.AdvertiseAddr, cfg.PublicAddr, cfg.BindAddr}); err != nil {
		return nil, err
	}
	id.keyPEM = keyPEM
	if err := saveRaftTrust(cfg.DataDir, []string{id.ID}); err != nil {
		return nil, err
	}
	raftAddr := net.JoinHostPort(cfg.AdvertiseAddr, strconv.Itoa(cfg.RaftPort))
	if err := raftnode.Seed(cfg.DataDir, id.ID, raftAddr, res.Index, res.State); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if err := id.save(cfg.DataDir); err != nil {
		return nil, err
	}
	cfg.Log.Info("grid restored from a backup: this node is its only voter; other nodes re-join (workers with their identities)",
		"grid", id.Grid, "node", id.Name, "index", res.Index)
	return id, nil
}
