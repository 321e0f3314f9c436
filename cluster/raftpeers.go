package cluster

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// fileRaftTrust holds the voter IDs a new voter was given with its keys
// (see raftnode.Config.Trust).
const fileRaftTrust = "raft-voters.json"

func saveRaftTrust(dir string, voters []string) error {
	data, err := json.Marshal(voters)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, fileRaftTrust), data, 0o600); err != nil {
		return fmt.Errorf("save the voters this node trusts for raft: %w", err)
	}
	return nil
}

func loadRaftTrust(dir string) []string {
	data, err := os.ReadFile(filepath.Join(dir, fileRaftTrust))
	if err != nil {
		return nil
	}
	var voters []string
	_ = json.Unmarshal(data, &voters)
	return voters
}
