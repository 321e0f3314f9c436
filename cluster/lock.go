package cluster

import (
	"context"
	"time"

	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/vault"
)

// watchKeys keeps this voter's master key in step with the grid. Once the
// grid is locked (`kontena grid lock`) the key is removed from disk (the
// voter keeps it in memory), so a stolen disk or backup of the data dir
// does not open the vault without the unlock key. After a rotation
// (`kontena vault rotate-key`) it takes the new key from the chain.
func (n *Node) watchKeys(ctx context.Context) {
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
		if g, err := rn.Store().Grid(); err == nil {
			if g.MasterKeyLocked != nil {
				n.lockIdentity()
			}
			n.followRotation(g)
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

// followRotation derives the grid's current master key from the one this
// voter holds, when the grid rotated past it.
func (n *Node) followRotation(g *fsm.Grid) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.id.masterKey == nil || n.id.KeyGeneration >= g.KeyGeneration {
		return
	}
	key, err := vault.Derive(n.id.masterKey, n.id.KeyGeneration, g.MasterKeyChain)
	if err != nil {
		n.log.Error("the master key was rotated and this voter cannot derive the new one", "held", n.id.KeyGeneration, "grid", g.KeyGeneration, "err", err)
		return
	}
	seal, err := vault.NewSealer(key)
	if err != nil {
		n.log.Error("new master key", "err", err)
		return
	}
	oldKey, oldGen := n.id.masterKey, n.id.KeyGeneration
	n.id.masterKey, n.id.KeyGeneration = key, g.KeyGeneration
	// The new key goes to disk (unless locked) before it is used: a crash
	// leaves the old one, which still derives it.
	if err := n.id.save(n.cfg.DataDir); err != nil {
		n.id.masterKey, n.id.KeyGeneration = oldKey, oldGen
		n.log.Error("could not save the rotated master key; retrying", "err", err)
		return
	}
	if n.seal != nil {
		n.seal = seal
	}
	n.log.Info("master key rotated", "generation", g.KeyGeneration)
}
