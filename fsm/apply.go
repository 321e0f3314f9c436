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
