package nodeagent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/internal/atomicfile"
	"github.com/kontena-ng/kontena/vault"
)

// assignmentCache keeps the node's last assignments on disk so that a node
// restarted while no master answers still runs (and restarts) what it ran.
// Assignments carry service environments, which may hold credentials, so
// the file is sealed with a key that never leaves the node.
type assignmentCache struct {
	path, keyPath string
}

const (
	// FileAssignments and FileAssignmentKey are the node's sealed
	// assignment cache and its node-local key, in the data dir.
	FileAssignments   = "assignments.sealed"
	FileAssignmentKey = "assignments.key"
	sealAssignments   = "node-assignments"
)

func newAssignmentCache(dataDir string) *assignmentCache {
	return &assignmentCache{path: filepath.Join(dataDir, FileAssignments), keyPath: filepath.Join(dataDir, FileAssignmentKey)}
}

func (c *assignmentCache) sealer(create bool) (*vault.Sealer, error) {
	key, err := os.ReadFile(c.keyPath)
	if errors.Is(err, fs.ErrNotExist) && create {
		if key, err = vault.NewKey(); err == nil {
			err = atomicfile.Write(c.keyPath, key, 0o600)
		}
	}
	if err != nil {
		return nil, err
	}
	return vault.NewSealer(key)
}

// save replaces the cache with as.
func (c *assignmentCache) save(as *api.Assignments) error {
	s, err := c.sealer(true)
	if err != nil {
		return fmt.Errorf("assignment cache key: %w", err)
	}
	data, err := json.Marshal(as)
	if err != nil {
		return err
	}
	sealed, err := s.Seal(data, sealAssignments)
	if err != nil {
		return err
	}
	return atomicfile.Write(c.path, sealed, 0o600)
}

// load returns the cached assignments; (nil, nil) when there are none.
func (c *assignmentCache) load() (*api.Assignments, error) {
	sealed, err := os.ReadFile(c.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s, err := c.sealer(false)
	if err != nil {
		return nil, fmt.Errorf("assignment cache key: %w", err)
	}
	data, err := s.Open(sealed, sealAssignments)
	if err != nil {
		return nil, fmt.Errorf("assignment cache %s: %w", c.path, err)
	}
	var as api.Assignments
	if err := json.Unmarshal(data, &as); err != nil {
		return nil, fmt.Errorf("assignment cache %s: %w", c.path, err)
	}
	return &as, nil
}
