package cluster

import (
	"errors"
	"fmt"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/httpapi"
	"github.com/kontena-ng/kontena/membership"
	"github.com/kontena-ng/kontena/vault"
)

// newAPI builds the node's HTTPS API from the few parts of the node it
// needs; nodeActions gives it the node's keys and lifecycle.
func (n *Node) newAPI() *httpapi.Server {
	cfg := httpapi.Config{ID: n.id.ID, Name: n.id.Name, Version: Version, Voter: n.voter, Gossip: liveMembers{n},
		Engine: n.eng, Node: nodeActions{n}, PeerTLS: n.clientTLS, Log: n.log}
	if n.dp != nil {
		cfg.DataPlane = n.dp
	}
	return httpapi.New(cfg)
}

// liveMembers reads the node's gossip when asked: the API serves before
// gossip has started.
type liveMembers struct{ n *Node }

func (l liveMembers) Members() map[string]membership.Member {
	if l.n.gossip == nil {
		return map[string]membership.Member{}
	}
	return l.n.gossip.Members()
}

// nodeActions is what the API may ask of its node (httpapi.Node).
type nodeActions struct{ n *Node }

func (a nodeActions) Keys() (httpapi.Keys, bool) {
	n := a.n
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.ca == nil || n.seal == nil {
		return httpapi.Keys{}, false
	}
	return httpapi.Keys{CA: n.ca, Seal: n.seal, CAPEM: n.id.caPEM, GossipKey: n.id.gossipKey,
		Voter: api.VoterKeys{CAKey: string(n.id.caKeyPEM), MasterKey: n.id.masterKey, Locked: n.id.Locked, Generation: n.id.KeyGeneration}}, true
}

// Promote stores the voter keys the leader sent and starts Raft.
func (a nodeActions) Promote(keys api.VoterKeys) error {
	n := a.n
	if err := saveRaftTrust(n.cfg.DataDir, keys.Voters); err != nil {
		return err
	}
	n.mu.Lock()
	n.id.Role = fsm.RoleVoter
	n.id.caKeyPEM, n.id.masterKey, n.id.Locked = []byte(keys.CAKey), keys.MasterKey, keys.Locked
	n.id.KeyGeneration = keys.Generation
	err := n.id.save(n.cfg.DataDir)
	n.mu.Unlock()
	if err == nil {
		err = n.becomeVoter(false)
	}
	if err != nil {
		return fmt.Errorf("become a voter: %w", err)
	}
	n.gossip.SetRole(fsm.RoleVoter)
	n.log.Info("promoted to voter")
	return nil
}

// Demote stops Raft and forgets the voter keys.
func (a nodeActions) Demote() error {
	if err := a.n.becomeWorker(); err != nil {
		return err
	}
	a.n.log.Info("demoted to worker")
	return nil
}

// Locked: this voter restarted while the grid was locked and has not been
// given the unlock key yet.
func (a nodeActions) Locked() bool {
	n := a.n
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.rn != nil && n.seal == nil
}

// Unlock keeps the master key an operator's unlock key opened, in memory.
func (a nodeActions) Unlock(masterKey []byte, gen uint64) error {
	seal, err := vault.NewSealer(masterKey)
	if err != nil {
		return fmt.Errorf("unlock: %w", err)
	}
	n := a.n
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.rn == nil {
		return errors.New("unlock: this node is no longer a voter")
	}
	n.id.masterKey, n.id.KeyGeneration, n.seal = masterKey, gen, seal
	return nil
}

// Removed stops the node: the leader says it was removed from the grid.
func (a nodeActions) Removed() {
	a.n.removedOnce.Do(func() { close(a.n.removed) })
}
