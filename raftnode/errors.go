package raftnode

import "errors"

// ErrDataDir is wrapped by every refusal to open a Raft log that cannot be
// used (empty, damaged, locked by another process). Nothing on disk is
// changed when it is returned.
var ErrDataDir = errors.New("data dir needs attention")
