package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

// backupGrid answers the whole state at one index (on the leader, after
// a majority confirmed it leads) with the voter keys sealed under a new
// backup key, returned beside it once.
func (n *Server) backupGrid(w http.ResponseWriter, r *http.Request, p *principal) error {
	keys, err := n.keys()
	if err != nil {
		return err
	}
	rn := n.voter()
	if err := rn.VerifyLeader(5 * time.Second); err != nil {
		return api.Errorf(api.CodeUnavailable, "a backup needs the leader to reach a majority of the voters: %v", err)
	}
	v := rn.Store().Snapshot()
	g, err := v.Grid()
	if err != nil {
		return err
	}
	state, err := fsm.ExportState(v)
	if err != nil {
		return err
	}
	plain, err := json.Marshal(api.BackupKeys{CAKey: keys.Voter.CAKey, MasterKey: keys.Voter.MasterKey, Generation: keys.Voter.Generation, GossipKey: keys.GossipKey})
	if err != nil {
		return err
	}
	sealed, printed, err := backupKeys.seal(plain)
	if err != nil {
		return err
	}
	b := api.Backup{Format: api.BackupFormat, Grid: g.Name, CADigest: g.CADigest, CreatedAt: time.Now().UTC(), Index: v.Index(), State: state, Keys: sealed}
	n.log.Info("grid backup taken", "index", b.Index, "by", p.User)
	return writeJSON(w, v.Index(), api.BackupResponse{Backup: b, Key: printed})
}

// OpenBackupKeys opens a backup's voter keys with its backup key.
func OpenBackupKeys(b *api.Backup, key string) (*api.BackupKeys, error) {
	plain, err := backupKeys.open(key, b.Keys)
	if errors.Is(err, errWrongKey) {
		return nil, api.Errorf(api.CodeForbidden, "the backup key does not open this backup (the key of another backup?)")
	}
	if err != nil {
		return nil, err
	}
	var k api.BackupKeys
	if err := json.Unmarshal(plain, &k); err != nil {
		return nil, err
	}
	return &k, nil
}
