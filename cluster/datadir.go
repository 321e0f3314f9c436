package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kontena-ng/kontena/nodeagent"
	"github.com/kontena-ng/kontena/raftnode"
)

// ErrDataDir is wrapped by every refusal to start over a data directory whose
// contents do not add up (a node without its node.json, a damaged Raft log).
// Nothing in the directory is changed when it is returned.
var ErrDataDir = raftnode.ErrDataDir

// fileSetupPending marks a bootstrap or join under way: it is written before
// the first node file and removed once node.json is on disk. Node files
// without node.json but with this marker are a setup that died half-way and
// may be overwritten; without it they are a node that lost its identity.
const fileSetupPending = "setup-incomplete"

// nodeFiles are the files a node keeps in its data directory besides
// node.json. Other files (a log, a pid file) say nothing about a node.
var nodeFiles = []string{
	fileCA, fileCert, fileKey, fileGossipKey, fileCAKey, fileMasterKey, filePeers,
	nodeagent.FileAssignments, nodeagent.FileAssignmentKey, "wireguard.key", "netmap.json", "addresses.json",
}

// ensurePrivateDir creates dir 0700, or narrows an existing one to 0700: it
// holds the node's keys.
func ensurePrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data dir %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data dir %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s is not a directory", ErrDataDir, dir)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("make data dir %s private (0700): %w", dir, err)
		}
	}
	return nil
}

// checkNoLostNode refuses a data directory without node.json that holds what
// a node leaves behind: bootstrapping or joining over it would destroy a
// grid's Raft log or a node's keys. Call it only when node.json is missing.
func checkNoLostNode(dir string) error {
	if exists(filepath.Join(dir, fileSetupPending)) {
		return nil // a bootstrap or join that did not finish: start it over
	}
	var raftData []string
	raftDir := filepath.Join(dir, dirRaft)
	if fi, err := os.Stat(filepath.Join(raftDir, "raft.db")); err == nil && fi.Size() > 0 {
		raftData = append(raftData, filepath.Join(dirRaft, "raft.db"))
	}
	if snaps, _ := os.ReadDir(filepath.Join(raftDir, "snapshots")); len(snaps) > 0 {
		raftData = append(raftData, filepath.Join(dirRaft, "snapshots"))
	}
	if len(raftData) > 0 {
		return fmt.Errorf("%w: %s holds Raft data (%s) but no %s: this is a master whose identity file is lost, "+
			"and starting would create a new grid over its Raft log. Nothing was changed. "+
			"Restore %s from a backup into %s and run again; or, to give up that node's data and start afresh, "+
			"move the directory away (mv %s %s.old) and run again",
			ErrDataDir, dir, strings.Join(raftData, ", "), fileIdentity, fileIdentity, dir, dir, dir)
	}
	var found []string
	for _, name := range nodeFiles {
		if exists(filepath.Join(dir, name)) {
			found = append(found, name)
		}
	}
	if exists(raftDir) {
		found = append(found, dirRaft+"/")
	}
	if tmps, _ := filepath.Glob(filepath.Join(dir, "."+fileIdentity+".tmp*")); len(tmps) > 0 {
		for _, t := range tmps {
			found = append(found, filepath.Base(t))
		}
	}
	if len(found) > 0 {
		sort.Strings(found)
		return fmt.Errorf("%w: %s has no %s but holds files of a node (%s): the node's identity file is lost, "+
			"and starting would make a new node over its keys. Nothing was changed. "+
			"Restore %s from a backup into %s and run again; or move the directory away (mv %s %s.old) and run again",
			ErrDataDir, dir, fileIdentity, strings.Join(found, ", "), fileIdentity, dir, dir, dir)
	}
	return nil
}

// markSetupPending records that a bootstrap or join starts writing node
// files into dir (see fileSetupPending).
func markSetupPending(dir string) error {
	msg := []byte("kontena: a bootstrap or join of this node has not finished; node.json is written last.\n")
	if err := writeFileAtomic(filepath.Join(dir, fileSetupPending), msg, 0o600); err != nil {
		return err
	}
	return nil
}

func clearSetupPending(dir string) error {
	err := os.Remove(filepath.Join(dir, fileSetupPending))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return syncDir(dir)
}

// hasNodeFiles reports whether a failed setup left anything in dir.
func hasNodeFiles(dir string) bool {
	for _, name := range append([]string{dirRaft}, nodeFiles...) {
		if exists(filepath.Join(dir, name)) {
			return true
		}
	}
	return false
}
