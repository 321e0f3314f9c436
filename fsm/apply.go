package fsm

import (
	"errors"
	"fmt"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// ErrApplyPanic marks a command whose apply panicked (a bug: it was
// refused with ErrInvalid, and the state is unchanged).
var ErrApplyPanic = errors.New("internal error")

// Apply runs one command at Raft index, atomically with its audit record and
// events. It is deterministic: every voter reaches the same state.
func (s *Store) Apply(index uint64, cmd Command, audit *AuditInfo) (res any, err error) {
	if cmd == nil {
		return nil, fmt.Errorf("apply: no command: %w", ErrInvalid)
	}
	txn := s.txn(true)
	defer txn.Abort()
	// A command the checks below miss must not panic: raft would stop the
	// node, and every voter replaying the entry after it, for good. The
	// transaction is aborted, so the state is as before the command, on
	// every voter alike.
	defer func() {
		if p := recover(); p != nil {
			res, err = nil, fmt.Errorf("apply %T: %w: %v: %w", cmd, ErrApplyPanic, p, ErrInvalid)
		}
	}()
	// The tables the command changed wake their watchers (WaitTables).
	txn.TrackChanges()
	a := applier{txn: txn, index: index, now: commandTime(audit), counts: s.counts, added: map[string]int{}}
	res, err = cmd.apply(&a)
	if err != nil {
		return nil, err
	}
	if audit != nil && audit.User != "" {
		if err := a.audit(cmd, audit); err != nil {
			return nil, err
		}
	}
	for table, n := range a.added {
		s.counts[table] += n
	}
	s.commit(txn, index, changedTables(txn.Changes())...)
	return res, nil
}

// Entry is one command of a batch, at its Raft index.
type Entry struct {
	Index uint64
	Cmd   Command
	Audit *AuditInfo
}

// Result is one command's result, or why it was refused.
type Result struct {
	Res any
	Err error
}

// ApplyBatch applies consecutive commands in one transaction, one commit
// and one wake-up of the watchers: what Raft commits together (up to 64
// entries under load) costs the memdb nodes, channels and commit once
// instead of once per command. The state and every result are those of
// applying the commands one by one with Apply: a batch in which any
// command is refused or panics is applied again that way, one command
// per transaction, so that a refused command changes nothing.
func (s *Store) ApplyBatch(entries []Entry) []Result {
	out := make([]Result, len(entries))
	if len(entries) == 0 {
		return out
	}
	if len(entries) == 1 || !s.applyTogether(entries, out) {
		for i, e := range entries {
			out[i].Res, out[i].Err = s.Apply(e.Index, e.Cmd, e.Audit)
			if out[i].Err != nil {
				// Refused commands still advance the index, so that
				// blocking queries waiting on this entry wake up.
				s.commit(nil, e.Index)
			}
		}
	}
	return out
}

// applyTogether applies entries in one transaction; false (and nothing
// changed) when one of them is refused or panics.
func (s *Store) applyTogether(entries []Entry, out []Result) (ok bool) {
	txn := s.txn(true)
	defer txn.Abort()
	defer func() {
		if p := recover(); p != nil {
			ok = false
		}
	}()
	txn.TrackChanges()
	counts := make(map[string]int, len(s.counts))
	for t, n := range s.counts {
		counts[t] = n
	}
	for i, e := range entries {
		if e.Cmd == nil {
			return false
		}
		a := applier{txn: txn, index: e.Index, now: commandTime(e.Audit), counts: counts, added: map[string]int{}}
		res, err := e.Cmd.apply(&a)
		if err != nil {
			return false
		}
		if e.Audit != nil && e.Audit.User != "" {
			if err := a.audit(e.Cmd, e.Audit); err != nil {
				return false
			}
		}
		for table, n := range a.added {
			counts[table] += n
		}
		out[i].Res = res
	}
	s.counts = counts
	s.commit(txn, entries[len(entries)-1].Index, changedTables(txn.Changes())...)
	return true
}

// changedTables lists the tables of a transaction's changes, once each.
func changedTables(cs memdb.Changes) []string {
	var out []string
	for _, c := range cs {
		seen := false
		for _, t := range out {
			seen = seen || t == c.Table
		}
		if !seen {
			out = append(out, c.Table)
		}
	}
	return out
}

// commandTime is the time the leader stamped on the command; the FSM never
// reads the clock so that replays give the same state.
func commandTime(audit *AuditInfo) time.Time {
	if audit != nil {
		return audit.Time
	}
	return time.Time{}
}

// applier is one command's write transaction.
type applier struct {
	txn    *memdb.Txn
	index  uint64
	now    time.Time
	counts map[string]int // rows of capped tables before this command
	added  map[string]int // rows this command added (negative: removed)
}
