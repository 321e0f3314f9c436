package cluster

import (
	"context"
	"time"

	"github.com/kontena-ng/kontena/fsm"
)

// watchLock keeps this voter's data dir in step with `kontena grid lock`:
// once the grid is locked the master key is removed from disk (the voter
// keeps it in memory), so a stolen disk or backup of the data dir does not
// open the vault without the unlock key.
func (n *Node) watchLock(ctx context.Context) {
	var index uint64
	for ctx.Err() == nil {
		rn := n.voter()
		if rn == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			index = 0
			continue
		}
		if g, err := rn.Store().Grid(); err == nil && g.MasterKeyLocked != nil {
			n.lockIdentity()
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		idx, err := rn.Store().WaitTables(wctx, index, fsm.TableGrid)
		cancel()
		if err == nil {
			index = idx
		}
	}
}

// lockIdentity marks the identity locked and rewrites it without the
// master key.
func (n *Node) lockIdentity() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.id.Locked || n.id.Role != fsm.RoleVoter {
		return
	}
	n.id.Locked = true
	if err := n.id.save(n.cfg.DataDir); err != nil {
		n.id.Locked = false
		n.log.Error("the grid is locked but this voter could not remove its master key from disk; retrying", "err", err)
		return
	}
	n.log.Info("the grid is locked: the master key is no longer on this voter's disk")
}
