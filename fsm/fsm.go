package fsm

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"

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

// Apply implements raft.FSM. The returned value is what raft.ApplyFuture's
// Response gives the leader: the command's result, or an error.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	cmd, audit, err := Decode(l.Data)
	if err != nil {
		// A log entry this version cannot read must stop the node rather
		// than silently diverge from the other voters.
		f.log.Error("cannot decode raft log entry", "index", l.Index, "err", err)
		panic(fmt.Sprintf("fsm: %v", err))
	}
	res, err := f.store.Apply(l.Index, cmd, audit)
	if err != nil {
		// Rejected commands still advance the index so blocking queries
		// waiting on this entry wake up.
		f.store.commit(l.Index)
		return err
	}
	return res
}

// snapshotData is the on-disk snapshot format: every table as a list.
type snapshotData struct {
	Index        uint64         `json:"index"`
	Grid         []*Grid        `json:"grid"`
	Nodes        []*Node        `json:"nodes"`
	Users        []*User        `json:"users"`
	Tokens       []*Token       `json:"tokens"`
	Events       []*Event       `json:"events"`
	Audit        []*AuditRecord `json:"audit"`
	Stacks       []*Stack       `json:"stacks"`
	Services     []*Service     `json:"services"`
	Instances    []*Instance    `json:"instances"`
	Secrets      []*Secret      `json:"secrets"`
	Certificates []*Certificate `json:"certificates"`
}

// Snapshot implements raft.FSM; it captures a consistent read transaction so
// Persist can run while Apply continues.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	s := f.store
	s.mu.RLock()
	txn := s.db.Txn(false)
	index := s.index
	s.mu.RUnlock()
	d := &snapshotData{Index: index}
	var err error
	collect(txn, tableGrid, &d.Grid, &err)
	collect(txn, tableNodes, &d.Nodes, &err)
	collect(txn, tableUsers, &d.Users, &err)
	collect(txn, tableTokens, &d.Tokens, &err)
	collect(txn, tableEvents, &d.Events, &err)
	collect(txn, tableAudit, &d.Audit, &err)
	collect(txn, tableStacks, &d.Stacks, &err)
	collect(txn, tableServices, &d.Services, &err)
	collect(txn, tableInstances, &d.Instances, &err)
	collect(txn, tableSecrets, &d.Secrets, &err)
	collect(txn, tableCertificates, &d.Certificates, &err)
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
			err = txn.Insert(table, get(i))
		}
	}
	insert(tableGrid, len(d.Grid), func(i int) any { return d.Grid[i] })
	insert(tableNodes, len(d.Nodes), func(i int) any { return d.Nodes[i] })
	insert(tableUsers, len(d.Users), func(i int) any { return d.Users[i] })
	insert(tableTokens, len(d.Tokens), func(i int) any { return d.Tokens[i] })
	insert(tableEvents, len(d.Events), func(i int) any { return d.Events[i] })
	insert(tableAudit, len(d.Audit), func(i int) any { return d.Audit[i] })
	insert(tableStacks, len(d.Stacks), func(i int) any { return d.Stacks[i] })
	insert(tableServices, len(d.Services), func(i int) any { return d.Services[i] })
	insert(tableInstances, len(d.Instances), func(i int) any { return d.Instances[i] })
	insert(tableSecrets, len(d.Secrets), func(i int) any { return d.Secrets[i] })
	insert(tableCertificates, len(d.Certificates), func(i int) any { return d.Certificates[i] })
	if err != nil {
		txn.Abort()
		return fmt.Errorf("restore snapshot: %w", err)
	}
	txn.Commit()
	f.store.replace(db, d.Index, map[string]int{tableEvents: len(d.Events), tableAudit: len(d.Audit)})
	return nil
}
