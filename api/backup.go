package api

import (
	"encoding/json"
	"time"
)

// BackupFormat names the backup file format.
const BackupFormat = "kontena-backup/1"

// Backup is a grid's whole state at one index, as `kontena grid backup`
// writes it: the state holds only sealed secrets; the voter keys (CA key,
// master key, gossip key) are sealed with a backup key that is not in the
// file.
type Backup struct {
	Format    string          `json:"format"`
	Grid      string          `json:"grid"`
	CADigest  string          `json:"ca_digest"`
	CreatedAt time.Time       `json:"created_at"`
	Index     uint64          `json:"index"`
	State     json.RawMessage `json:"state"`
	Keys      []byte          `json:"keys_sealed"`
}

// BackupKeys are what a restored voter needs besides the state.
type BackupKeys struct {
	CAKey      string `json:"ca_key"`
	MasterKey  []byte `json:"master_key"`
	Generation uint64 `json:"generation"`
	GossipKey  []byte `json:"gossip_key"`
}

// BackupResponse carries the backup and, once, the key its voter keys are
// sealed with.
type BackupResponse struct {
	Backup Backup `json:"backup"`
	Key    string `json:"backup_key"`
}
