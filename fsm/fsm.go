package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
)

// FSM adapts the Store to raft.FSM.
type FSM struct {
	store *Store
	log   *slog.Logger
}

// New returns an FSM over store.
func New(store *Store, log *slog.Logger) *FSM {
	return &FSM{store: store, log: log}
}

// Store is the state this FSM applies to.
func (f *FSM) Store() *Store { return f.store }

// ApplyBatch implements raft.BatchingFSM: the commands among logs are
// applied together (Store.ApplyBatch), with the same results as one by one.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	entries := make([]Entry, 0, len(logs))
	pos := make([]int, 0, len(logs))
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		cmd, audit, err := Decode(l.Data)
		if err != nil {
			// A log entry this version cannot read must stop the node
			// rather than silently diverge from the other voters.
			f.log.Error("cannot decode raft log entry", "index", l.Index, "err", err)
			panic(fmt.Sprintf("fsm: %v", err))
		}
		entries = append(entries, Entry{Index: l.Index, Cmd: cmd, Audit: audit})
		pos = append(pos, i)
	}
	for k, r := range f.store.ApplyBatch(entries) {
		if r.Err != nil {
			if errors.Is(r.Err, ErrApplyPanic) && f.log != nil {
				f.log.Error("raft log entry refused: applying it panicked (a bug); the state is unchanged",
					"index", entries[k].Index, "type", entries[k].Cmd.MsgType(), "err", r.Err)
			}
			out[pos[k]] = r.Err
			continue
		}
		out[pos[k]] = r.Res
	}
	return out
}

// Apply implements raft.FSM. The returned value is what raft.ApplyFuture's
// Response gives the leader: the command's result, or an error.
func (f *FSM) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// snapshotData is the on-disk snapshot format: every table as a list.
type snapshotData struct {
	Index        uint64           `json:"index"`
	Grid         []*Grid          `json:"grid"`
	Nodes        []*Node          `json:"nodes"`
	Users        []*User          `json:"users"`
	Tokens       []*Token         `json:"tokens"`
	Invites      []*Invite        `json:"invites,omitempty"`
	Events       []*Event         `json:"events"`
	Audit        []*AuditRecord   `json:"audit"`
	Stacks       []*Stack         `json:"stacks"`
	Services     []*Service       `json:"services"`
	Instances    []*Instance      `json:"instances"`
	Secrets      []*Secret        `json:"secrets"`
	Certificates []*Certificate   `json:"certificates"`
	Challenges   []*ACMEChallenge `json:"acme_challenges,omitempty"`
}

// Snapshot implements raft.FSM; it captures a consistent read transaction so
// Persist can run while Apply continues.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return snapshotOf(f.store.Snapshot())
}

// snapshotOf is every table of v, as snapshots and backups keep them.
func snapshotOf(v *View) (*snapshotData, error) {
	txn := v.txn
	d := &snapshotData{Index: v.index}
	var err error
	collect(txn, TableGrid, &d.Grid, &err)
	collect(txn, TableNodes, &d.Nodes, &err)
	collect(txn, TableUsers, &d.Users, &err)
	collect(txn, TableTokens, &d.Tokens, &err)
	collect(txn, TableInvites, &d.Invites, &err)
	collect(txn, TableEvents, &d.Events, &err)
	collect(txn, TableAudit, &d.Audit, &err)
	collect(txn, TableStacks, &d.Stacks, &err)
	collect(txn, TableServices, &d.Services, &err)
	collect(txn, TableInstances, &d.Instances, &err)
	collect(txn, TableSecrets, &d.Secrets, &err)
	collect(txn, TableCertificates, &d.Certificates, &err)
	collect(txn, TableACMEChallenges, &d.Challenges, &err)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return d, nil
}

// collect reads a whole table into dst unless an earlier step failed.
func collect[T any](txn *memdb.Txn, table string, dst *[]T, err *error) {
	if *err != nil {
		return
	}
	*dst, *err = list[T](txn, table)
}

// Persist implements raft.FSMSnapshot.
func (d *snapshotData) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(d); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("write snapshot: %w", err)
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot.
func (d *snapshotData) Release() {}

// Restore implements raft.FSM: it replaces the whole state with a snapshot.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var d snapshotData
	if err := json.NewDecoder(rc).Decode(&d); err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		return err
	}
	txn := db.Txn(true)
	insert := func(table string, n int, get func(int) any) {
		for i := 0; i < n && err == nil; i++ {
			row := get(i)
			if reflect.ValueOf(row).IsNil() {
				// A null row would panic memdb's indexers.
				err = fmt.Errorf("table %s: row %d is null: %w", table, i, ErrInvalid)
				return
			}
			err = txn.Insert(table, row)
		}
	}
	insert(TableGrid, len(d.Grid), func(i int) any { return d.Grid[i] })
	insert(TableNodes, len(d.Nodes), func(i int) any { return d.Nodes[i] })
	insert(TableUsers, len(d.Users), func(i int) any { return d.Users[i] })
	insert(TableTokens, len(d.Tokens), func(i int) any { return d.Tokens[i] })
	insert(TableInvites, len(d.Invites), func(i int) any { return d.Invites[i] })
	insert(TableEvents, len(d.Events), func(i int) any { return d.Events[i] })
	insert(TableAudit, len(d.Audit), func(i int) any { return d.Audit[i] })
	insert(TableStacks, len(d.Stacks), func(i int) any { return d.Stacks[i] })
	insert(TableServices, len(d.Services), func(i int) any { return d.Services[i] })
	insert(TableInstances, len(d.Instances), func(i int) any { return d.Instances[i] })
	insert(TableSecrets, len(d.Secrets), func(i int) any { return d.Secrets[i] })
	insert(TableCertificates, len(d.Certificates), func(i int) any { return d.Certificates[i] })
	insert(TableACMEChallenges, len(d.Challenges), func(i int) any { return d.Challenges[i] })
	if err != nil {
		txn.Abort()
		return fmt.Errorf("restore snapshot: %w", err)
	}
	txn.Commit()
	f.store.replace(db, d.Index, map[string]int{TableEvents: len(d.Events), TableAudit: len(d.Audit)})
	return nil
}
