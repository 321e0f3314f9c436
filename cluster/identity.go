package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/internal/atomicfile"
	"github.com/kontena-ng/kontena/pki"
	"github.com/kontena-ng/kontena/raftnode"
	"github.com/kontena-ng/kontena/vault"
)

// identity is what a node keeps in its data directory so that a restart
// resumes as the same node, without a token.
type identity struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Grid     string `json:"grid"`
	Role     string `json:"role"`
	CADigest string `json:"ca_digest"`
	// RaftLog: this voter has written its Raft log (raft/raft.db). A voter
	// that says so but has none lost it: it must not start with an empty
	// log (it would vote as if it had seen nothing).
	RaftLog bool `json:"raft_log,omitempty"`
	// Locked: the grid is locked (`kontena grid lock`), so the master key
	// is never written here; it lives in memory, and a restarted voter
	// waits for `kontena grid unlock` to have it again.
	Locked bool `json:"locked,omitempty"`
	// KeyGeneration is the generation of the master key held (see
	// `kontena vault rotate-key`).
	KeyGeneration uint64 `json:"key_generation,omitempty"`

	caPEM, certPEM, keyPEM []byte
	gossipKey              []byte
	// Voters only.
	caKeyPEM  []byte
	masterKey []byte
}

// File names inside the data directory.
const (
	fileIdentity  = "node.json"
	fileCA        = "ca.pem"
	fileCert      = "node.pem"
	fileKey       = "node-key.pem"
	fileGossipKey = "gossip.key"
	fileCAKey     = "ca-key.pem"
	fileMasterKey = "master.key"
	filePeers     = "peers.json"
	dirRaft       = raftnode.Dir
)

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// loadIdentity reads the identity, or returns (nil, nil) when the data
// directory holds no node yet.
func loadIdentity(dir string) (*identity, error) {
	data, err := os.ReadFile(filepath.Join(dir, fileIdentity))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read node identity: %w", err)
	}
	var id identity
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: node identity %s is empty: nothing was changed; restore it from a backup",
			ErrDataDir, filepath.Join(dir, fileIdentity))
	}
	if err := json.Unmarshal(data, &id); err != nil {
		return nil, fmt.Errorf("%w: node identity %s is damaged (%v): nothing was changed; restore it from a backup",
			ErrDataDir, filepath.Join(dir, fileIdentity), err)
	}
	read := func(name string, dst *[]byte, required bool) error {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) && !required {
			return nil
		}
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %s holds node %s but not its %s: nothing was changed; restore %s from a backup",
				ErrDataDir, dir, id.Name, name, name)
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		*dst = b
		return nil
	}
	for _, f := range []struct {
		name string
		dst  *[]byte
		req  bool
	}{
		{fileCA, &id.caPEM, true}, {fileCert, &id.certPEM, true}, {fileKey, &id.keyPEM, true},
		{fileGossipKey, &id.gossipKey, true}, {fileCAKey, &id.caKeyPEM, false}, {fileMasterKey, &id.masterKey, false},
	} {
		if err := read(f.name, f.dst, f.req); err != nil {
			return nil, err
		}
	}
	return &id, nil
}

// save writes the identity; secrets are written 0600 and written before
// node.json so a crash never leaves an identity without its keys.
func (id *identity) save(dir string) error { return id.saveWith(dir, atomicfile.Write) }

// writeFunc writes one file atomically (atomicfile.Write; tests pass one
// that fails as a full disk does).
type writeFunc func(path string, data []byte, mode os.FileMode) error

func (id *identity) saveWith(dir string, write writeFunc) error {
	if err := ensurePrivateDir(dir); err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
	}{
		{fileCA, id.caPEM}, {fileCert, id.certPEM}, {fileKey, id.keyPEM}, {fileGossipKey, id.gossipKey},
		{fileCAKey, id.caKeyPEM}, {fileMasterKey, id.masterKey},
	}
	if id.Locked {
		files[len(files)-1].data = nil // removed: never on disk while locked
	}
	removed := false
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		if f.data == nil {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			removed = true
			continue
		}
		if err := write(path, f.data, 0o600); err != nil {
			return err
		}
	}
	if removed {
		if err := syncDir(dir); err != nil {
			return err
		}
	}
	data, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	if err := write(filepath.Join(dir, fileIdentity), data, 0o600); err != nil {
		return err
	}
	// node.json is on disk: the bootstrap or join that was under way is done.
	return clearSetupPending(dir)
}

func (id *identity) ca() (*pki.CA, error) {
	if id.caKeyPEM == nil {
		return nil, errors.New("this node holds no CA key (not a voter)")
	}
	return pki.LoadCA(id.caPEM, id.caKeyPEM)
}

func (id *identity) sealer() (*vault.Sealer, error) {
	if id.masterKey == nil {
		return nil, errors.New("this node holds no master key (not a voter)")
	}
	return vault.NewSealer(id.masterKey)
}

// writeFileAtomic replaces path with data (see atomicfile: on any failure,
// a full disk say, path keeps its old content).
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	return atomicfile.Write(path, data, mode)
}

func syncDir(dir string) error { return atomicfile.SyncDir(dir) }

func newID() string { return pki.RandomHex(16) }

func randomSecret(n int) string { return pki.RandomHex(n) }

// Join tokens look like K1.<grid>.<ca-sha256>.<secret>: the grid name for a
// clear refusal, the CA digest so the joining node can verify the master
// before it sends the secret.
// joinToken is the join token's format (api.JoinToken).
type joinToken = api.JoinToken

func parseJoinToken(s string) (joinToken, error) { return api.ParseJoinToken(s) }

// peersFile remembers gossip addresses of other nodes so that a restarted
// node finds the grid again.
func savePeers(dir string, peers []string) error { return savePeersWith(dir, peers, atomicfile.Write) }

func savePeersWith(dir string, peers []string, write writeFunc) error {
	data, err := json.Marshal(peers)
	if err != nil {
		return err
	}
	return write(filepath.Join(dir, filePeers), data, 0o600)
}

func loadPeers(dir string) []string {
	data, err := os.ReadFile(filepath.Join(dir, filePeers))
	if err != nil {
		return nil
	}
	var peers []string
	_ = json.Unmarshal(data, &peers)
	return peers
}
