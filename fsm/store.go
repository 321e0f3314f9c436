package fsm

import (
	"context"
	"fmt"
	"reflect"
	"sync"

	memdb "github.com/hashicorp/go-memdb"
)

// schema is the memdb schema: the tables of every domain file.
func schema() *memdb.DBSchema {
	tables := map[string]*memdb.TableSchema{}
	for _, set := range [...][]*memdb.TableSchema{gridTables(), nodeTables(), tokenTables(), eventTables(),
		stackTables(), serviceTables(), instanceTables(), secretTables()} {
		for _, t := range set {
			tables[t.Name] = t
		}
	}
	return &memdb.DBSchema{Tables: tables}
}

// idIndex is a table's primary index on a string field.
func idIndex(field string) *memdb.IndexSchema {
	return &memdb.IndexSchema{Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: field}}
}

// numIDIndex is a table's primary index on an unsigned integer field.
func numIDIndex(field string) *memdb.IndexSchema {
	return &memdb.IndexSchema{Name: "id", Unique: true, Indexer: seqIndexer{field: field}}
}

// seqIndexer indexes a uint64 field as its 16 hex digits, one byte each.
// Keys sort as the numbers do (like memdb's big-endian UintFieldIndex),
// but a radix node has at most 16 children where it had up to 256: the
// tables keyed by sequence (events, audit records) take an insert and a
// delete with every write, and each one copies the nodes on its path.
type seqIndexer struct{ field string }

func (x seqIndexer) FromObject(obj any) (bool, []byte, error) {
	v := reflect.Indirect(reflect.ValueOf(obj)).FieldByName(x.field)
	if !v.IsValid() || v.Kind() != reflect.Uint64 {
		return false, nil, fmt.Errorf("field %q of %T: want a uint64", x.field, obj)
	}
	return true, nibbles(v.Uint()), nil
}

func (x seqIndexer) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("index on %s: want one argument, got %d", x.field, len(args))
	}
	n, ok := args[0].(uint64)
	if !ok {
		return nil, fmt.Errorf("index on %s: argument %T, want uint64", x.field, args[0])
	}
	return nibbles(n), nil
}

// nibbles is n as 16 bytes of 4 bits each, most significant first.
func nibbles(n uint64) []byte {
	b := make([]byte, 16)
	for i := 15; i >= 0; i-- {
		b[i] = byte(n & 0xf)
		n >>= 4
	}
	return b
}

// Store is the in-memory grid state. Reads never block writers; Wait lets a
// caller block until the state moves past an index (blocking queries), and
// WaitTables until some tables change past it.
type Store struct {
	mu     sync.RWMutex
	db     *memdb.MemDB
	index  uint64
	change chan struct{} // closed and replaced on every change

	// tables are the index of the last change to each table, with a
	// channel closed and replaced on each one.
	tables map[string]*tableWatch

	// Row counts of the capped tables, so trimming them costs the rows
	// removed, not a scan. Only Apply (one at a time, from Raft) and
	// replace touch them.
	counts map[string]int
}

type tableWatch struct {
	index  uint64
	change chan struct{}
}

// NewStore returns an empty store.
func NewStore() (*Store, error) {
	sch := schema()
	db, err := memdb.NewMemDB(sch)
	if err != nil {
		return nil, fmt.Errorf("create state store: %w", err)
	}
	s := &Store{db: db, change: make(chan struct{}), tables: map[string]*tableWatch{}, counts: map[string]int{}}
	for name := range sch.Tables {
		s.tables[name] = &tableWatch{change: make(chan struct{})}
	}
	return s, nil
}

// Index is the Raft index of the last change applied.
func (s *Store) Index() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.index
}

// Wait blocks until the store's index is greater than minIndex or ctx ends,
// and returns the index it saw.
func (s *Store) Wait(ctx context.Context, minIndex uint64) (uint64, error) {
	for {
		s.mu.RLock()
		idx, ch := s.index, s.change
		s.mu.RUnlock()
		if idx > minIndex {
			return idx, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return idx, ctx.Err()
		}
	}
}

// WaitTables blocks until one of tables (Table* names) changed at an index
// greater than minIndex, or ctx ends, and returns the index of the last
// change to those tables. A change of any other table does not wake it:
// a blocking query watches only what its answer is made of. With no table
// it is Wait.
func (s *Store) WaitTables(ctx context.Context, minIndex uint64, tables ...string) (uint64, error) {
	if len(tables) == 0 {
		return s.Wait(ctx, minIndex)
	}
	for {
		idx, ws, err := s.tablesIndex(tables)
		if err != nil || idx > minIndex {
			return idx, err
		}
		if err := ws.WatchCtx(ctx); err != nil {
			return idx, err
		}
	}
}

// TablesIndex is the index of the last change to any of tables.
func (s *Store) TablesIndex(tables ...string) (uint64, error) {
	idx, _, err := s.tablesIndex(tables)
	return idx, err
}

func (s *Store) tablesIndex(tables []string) (uint64, memdb.WatchSet, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var idx uint64
	ws := memdb.NewWatchSet()
	for _, t := range tables {
		w, ok := s.tables[t]
		if !ok {
			return 0, nil, fmt.Errorf("table %q: no such table: %w", t, ErrInvalid)
		}
		idx = max(idx, w.index)
		ws.Add(w.change)
	}
	return idx, ws, nil
}

func (s *Store) txn(write bool) *memdb.Txn {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.db.Txn(write)
}

// commit commits txn (nil: none) and publishes index with it, so that a
// View sees the state and the index of the same command; tables are the
// tables txn changed.
func (s *Store) commit(txn *memdb.Txn, index uint64, tables ...string) {
	s.mu.Lock()
	if txn != nil {
		txn.Commit()
	}
	if index > s.index {
		s.index = index
	}
	close(s.change)
	s.change = make(chan struct{})
	for _, t := range tables {
		if w := s.tables[t]; w != nil {
			w.index = max(w.index, index)
			close(w.change)
			w.change = make(chan struct{})
		}
	}
	s.mu.Unlock()
}

// replace swaps in a whole new database (snapshot restore): every table
// may have changed.
func (s *Store) replace(db *memdb.MemDB, index uint64, counts map[string]int) {
	s.mu.Lock()
	s.db = db
	s.counts = counts
	s.index = index
	close(s.change)
	s.change = make(chan struct{})
	for _, w := range s.tables {
		w.index = index
		close(w.change)
		w.change = make(chan struct{})
	}
	s.mu.Unlock()
}

// View is one consistent read of the state: every read through it sees the
// state as it was after the same command, whatever is applied meanwhile. A
// leader pass or a network map built from one View reads one state. Views
// are cheap (a memdb read transaction) and need no closing; the rows they
// return are shared with the store and must not be changed.
type View struct {
	txn   *memdb.Txn
	index uint64
}

// Snapshot returns a read view of the state as it is now.
func (s *Store) Snapshot() *View {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &View{txn: s.db.Txn(false), index: s.index}
}

// View runs fn on one read view of the state and returns its error.
func (s *Store) View(fn func(v *View) error) error {
	return fn(s.Snapshot())
}

// Index is the Raft index of the last change the view includes.
func (v *View) Index() uint64 { return v.index }

func listBy[T any](txn *memdb.Txn, table, index, value string) ([]T, error) {
	it, err := txn.Get(table, index, value)
	if err != nil {
		return nil, fmt.Errorf("list %s by %s: %w", table, index, err)
	}
	var out []T
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(T))
	}
	return out, nil
}

func list[T any](txn *memdb.Txn, table string) ([]T, error) {
	it, err := txn.Get(table, "id")
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", table, err)
	}
	var out []T
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(T))
	}
	return out, nil
}
