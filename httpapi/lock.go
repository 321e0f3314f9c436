package httpapi

import (
	"errors"
	"net/http"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/vault"
)

// keys are this voter's keys, or why it has none: a locked voter says how
// to unlock it.
func (n *Server) keys() (Keys, error) {
	if k, ok := n.node.Keys(); ok {
		return k, nil
	}
	if n.node.Locked() {
		return Keys{}, api.Errorf(api.CodeUnavailable, "voter %s is locked: the grid is locked (kontena grid lock) and this voter restarted; it serves no secrets until `kontena grid unlock` (containers keep running)", n.id.Name)
	}
	return Keys{}, api.Errorf(api.CodeUnavailable, "this node holds no grid keys (not a voter)")
}

// lockGrid seals the master key with a new unlock key and shows the key,
// once: voters keep the master key in memory only from now on.
func (n *Server) lockGrid(w http.ResponseWriter, r *http.Request, p *principal) error {
	return n.writeLock(w, r, p, false)
}

// rotateUnlockKey replaces the unlock key of a locked grid.
func (n *Server) rotateUnlockKey(w http.ResponseWriter, r *http.Request, p *principal) error {
	return n.writeLock(w, r, p, true)
}

func (n *Server) writeLock(w http.ResponseWriter, r *http.Request, p *principal, rotate bool) error {
	keys, err := n.keys()
	if err != nil {
		return err
	}
	locked, printed, err := unlockKeys.seal(keys.Voter.MasterKey)
	if err != nil {
		return err
	}
	_, idx, err := n.apply(r.Context(), &fsm.GridLock{MasterKeyLocked: locked, Rotate: rotate, Generation: keys.Voter.Generation}, auditOf(r, p))
	if err != nil {
		return err
	}
	return writeJSON(w, idx, api.UnlockKey{Key: printed})
}

// unlockVoter opens the grid's locked master key with the key given and
// hands it to this voter.
func (n *Server) unlockVoter(w http.ResponseWriter, r *http.Request, p *principal) error {
	var req api.UnlockRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	res := api.UnlockResult{Node: n.id.Name}
	rn := n.voter()
	if rn == nil {
		return api.Errorf(api.CodeUnavailable, "node %s is not a voter: only voters hold the master key", n.id.Name)
	}
	g, err := rn.Store().Grid()
	if err != nil {
		return err
	}
	res.Locked = g.MasterKeyLocked != nil
	if !n.node.Locked() {
		res.Unlocked, res.Already = true, true
		return writeJSON(w, 0, res)
	}
	masterKey, err := openLocked(g.MasterKeyLocked, req.Key)
	if err != nil {
		return err
	}
	// The unlock key sealed the key of its day; rotations since are in
	// the chain.
	if masterKey, err = vault.Derive(masterKey, g.LockedGeneration, g.MasterKeyChain); err != nil {
		return api.Errorf(api.CodeInternal, "unlock: %v", err)
	}
	if err := n.node.Unlock(masterKey, g.KeyGeneration); err != nil {
		return err
	}
	n.log.Info("voter unlocked: it serves secrets again", "by", p.User)
	res.Unlocked = true
	return writeJSON(w, 0, res)
}

// openLocked opens the locked master key with an unlock key.
func openLocked(locked []byte, key string) ([]byte, error) {
	if locked == nil {
		return nil, api.Errorf(api.CodeConflict, "this voter's state says the grid is not locked, yet it holds no master key: it may be behind; retry once `kontena grid health` is ok")
	}
	masterKey, err := unlockKeys.open(key, locked)
	if errors.Is(err, errWrongKey) {
		return nil, api.Errorf(api.CodeForbidden, "the unlock key does not open this grid's master key (a rotated or another grid's key?)")
	}
	if err != nil {
		return nil, err
	}
	return masterKey, nil
}

// keyGeneration is the generation of the master key this voter holds (0
// when it holds none).
func (n *Server) keyGeneration() uint64 {
	if k, ok := n.node.Keys(); ok {
		return k.Voter.Generation
	}
	return 0
}
