package raftnode

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kontena-ng/kontena/fsm"
)

// ErrNotLeader and ErrNoQuorum are what Apply returns when the change
// could not be committed; the API turns both into "retry" answers.
var (
	ErrNotLeader = errors.New("leadership changed while writing; retry")
	ErrNoQuorum  = errors.New("could not commit the change (is a majority of voters reachable?)")
)

// Store is the state machine's store: read it, never write it.
func (r *Node) Store() *fsm.Store { return r.store }

// IsLeader tells whether this voter leads the grid.
func (r *Node) IsLeader() bool { return r.raft.State() == raft.Leader }

// State is this voter's Raft state (Leader, Follower, Candidate...).
func (r *Node) State() raft.RaftState { return r.raft.State() }

// Leader is the ID of the leader this voter knows, "" for none.
func (r *Node) Leader() string {
	_, id := r.raft.LeaderWithID()
	return string(id)
}

// LastContact is when this follower last heard from a leader (zero on the
// leader itself, which is its own).
func (r *Node) LastContact() time.Time {
	if r.raft.State() == raft.Leader {
		return time.Time{}
	}
	return r.raft.LastContact()
}

// Term, CommitIndex and AppliedIndex report the log's progress.
func (r *Node) Term() uint64         { return r.raft.CurrentTerm() }
func (r *Node) CommitIndex() uint64  { return r.raft.CommitIndex() }
func (r *Node) AppliedIndex() uint64 { return r.raft.AppliedIndex() }

// Apply commits one command through Raft (on the leader) and returns what
// the state machine answered, and the index it was committed at.
func (r *Node) Apply(ctx context.Context, cmd fsm.Command, audit *fsm.AuditInfo) (any, uint64, error) {
	if audit == nil {
		audit = &fsm.AuditInfo{}
	}
	if audit.Time.IsZero() {
		audit.Time = time.Now().UTC()
	}
	data, err := fsm.Encode(cmd, audit)
	if err != nil {
		return nil, 0, err
	}
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	f := r.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return nil, 0, fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		return nil, 0, fmt.Errorf("%w: %v", ErrNoQuorum, err)
	}
	if err, ok := f.Response().(error); ok {
		return nil, f.Index(), err
	}
	return f.Response(), f.Index(), nil
}

// Barrier waits until this leader has applied everything committed before
// its term, and records that term: until then its state may lag its log
// (CaughtUp says no).
func (r *Node) Barrier(timeout time.Duration) error {
	term := r.raft.CurrentTerm()
	if err := r.raft.Barrier(timeout).Error(); err != nil {
		return err
	}
	r.barrierTerm.Store(term)
	return nil
}

// BarrierTerm is the term of this leader's last Barrier.
func (r *Node) BarrierTerm() uint64 { return r.barrierTerm.Load() }

// CaughtUp tells whether this voter's state may answer requests. A
// restarted follower replays its log only once a leader tells it the commit
// index; until then its state is the last snapshot (a token may look
// revoked, a label removed long ago back). Without any leader, a voter that
// was caught up since it started answers from its last state (a voter cut
// off from the others keeps serving reads); one that restarted and never
// heard from a leader does not: it cannot know how far behind it is.
func (r *Node) CaughtUp() bool {
	if r.raft.State() == raft.Leader {
		ok := r.leaderReady()
		if ok {
			r.caughtUpOnce.Store(true)
		}
		return ok
	}
	if _, err := r.store.Grid(); err != nil {
		return false
	}
	if addr, _ := r.raft.LeaderWithID(); addr == "" {
		return r.caughtUpOnce.Load()
	}
	commit := r.raft.CommitIndex()
	if commit == 0 || r.raft.AppliedIndex() < commit {
		return false
	}
	// raft's AppliedIndex counts entries handed to the FSM goroutine, not
	// entries it has applied: a restarted follower with hundreds of entries
	// to replay reports them applied while its state is still the
	// snapshot's. The store's own index says what it has applied.
	// In steady state the store is at the commit index already; only a
	// non-command entry at it (a no-op, a configuration) needs the log.
	if idx := r.store.Index(); idx < commit {
		if cmd, err := lastCommand(r.logs, commit); err != nil || idx < cmd {
			return false
		}
	}
	if !r.caughtUpOnce.Load() {
		// A leader that restarted too tells its old commit index until the
		// no-op entry of its own term commits: only an entry of the current
		// term at the commit index proves everything before it is applied.
		var l raft.Log
		if err := r.logs.GetLog(commit, &l); err != nil || l.Term != r.raft.CurrentTerm() {
			return false
		}
		r.caughtUpOnce.Store(true)
	}
	return true
}

// lastCommand is the index of the last command entry at or below index
// (0: none is left in the log, everything up to index is in the snapshot
// the state was restored from). Entries of other types (a leader's no-op,
// a configuration, a barrier) never reach the state machine, so the
// store's index stops at the command before them.
func lastCommand(logs raft.LogStore, index uint64) (uint64, error) {
	first, err := logs.FirstIndex()
	if err != nil {
		return 0, fmt.Errorf("read the log's first index: %w", err)
	}
	for i := index; i >= first && i > 0; i-- {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			return 0, fmt.Errorf("read log entry %d: %w", i, err)
		}
		if l.Type == raft.LogCommand {
			return i, nil
		}
	}
	return 0, nil
}

// leaderReady waits (briefly) until a new leader has applied everything
// committed before its term: after a restart of every voter the new
// leader's state is only partly replayed until its first Barrier, and an
// answer from it would lose acknowledged writes for the reader.
func (r *Node) leaderReady() bool {
	deadline := time.Now().Add(5 * time.Second)
	for r.barrierTerm.Load() != r.raft.CurrentTerm() {
		if time.Now().After(deadline) || r.raft.State() != raft.Leader {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// Servers is the latest Raft configuration.
func (r *Node) Servers() ([]raft.Server, error) {
	fut := r.raft.GetConfiguration()
	if err := fut.Error(); err != nil {
		return nil, err
	}
	return fut.Configuration().Servers, nil
}

// Voters are the voter IDs of the latest Raft configuration, sorted.
func (r *Node) Voters() []string {
	servers, err := r.Servers()
	if err != nil {
		return nil
	}
	var ids []string
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			ids = append(ids, string(s.ID))
		}
	}
	slices.Sort(ids)
	return ids
}

// AddVoter adds node id at its Raft address to the configuration.
func (r *Node) AddVoter(id, addr string) error {
	return r.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 10*time.Second).Error()
}

// RemoveServer takes node id out of the configuration.
func (r *Node) RemoveServer(id string) error {
	return r.raft.RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error()
}

// TransferLeadership hands leadership to another voter.
func (r *Node) TransferLeadership() error { return r.raft.LeadershipTransfer().Error() }

// VerifyLeader confirms with a majority of the voters that this node is
// still the leader (raft.VerifyLeader), within timeout.
func (r *Node) VerifyLeader(timeout time.Duration) error {
	f := r.raft.VerifyLeader()
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("no answer from a majority of the voters within %s", timeout)
	}
}
