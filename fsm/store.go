package fsm

import (
	"context"
	"fmt"
	"sync"

	memdb "github.com/hashicorp/go-memdb"
)

// Retention caps: events and audit records are kept in Raft, so they must
// not grow without bound.
const (
	maxEvents = 2000
	maxAudit  = 10000
)

const (
	tableGrid         = "grid"
	tableNodes        = "nodes"
	tableUsers        = "users"
	tableTokens       = "tokens"
	tableEvents       = "events"
	tableAudit        = "audit"
	tableStacks       = "stacks"
	tableServices     = "services"
	tableInstances    = "instances"
	tableSecrets      = "secrets"
	tableCertificates = "certificates"
)

func schema() *memdb.DBSchema {
	str := func(field string) *memdb.IndexSchema {
		return &memdb.IndexSchema{Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: field}}
	}
	num := func(field string) *memdb.IndexSchema {
		return &memdb.IndexSchema{Name: "id", Unique: true, Indexer: &memdb.UintFieldIndex{Field: field}}
	}
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		tableGrid: {Name: tableGrid, Indexes: map[string]*memdb.IndexSchema{"id": str("Name")}},
		tableNodes: {Name: tableNodes, Indexes: map[string]*memdb.IndexSchema{
			"id":   str("ID"),
			"name": {Name: "name", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Name"}},
		}},
		tableUsers: {Name: tableUsers, Indexes: map[string]*memdb.IndexSchema{"id": str("Name")}},
		tableTokens: {Name: tableTokens, Indexes: map[string]*memdb.IndexSchema{
			"id":   str("ID"),
			"hash": {Name: "hash", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Hash"}},
			"user": {Name: "user", Indexer: &memdb.StringFieldIndex{Field: "User"}},
		}},
		tableEvents: {Name: tableEvents, Indexes: map[string]*memdb.IndexSchema{"id": num("Index")}},
		tableAudit:  {Name: tableAudit, Indexes: map[string]*memdb.IndexSchema{"id": num("Index")}},
		tableStacks: {Name: tableStacks, Indexes: map[string]*memdb.IndexSchema{"id": str("Name")}},
		tableServices: {Name: tableServices, Indexes: map[string]*memdb.IndexSchema{
			"id":    str("ID"),
			"stack": {Name: "stack", Indexer: &memdb.StringFieldIndex{Field: "Stack"}},
		}},
		tableInstances: {Name: tableInstances, Indexes: map[string]*memdb.IndexSchema{
			"id":      str("ID"),
			"service": {Name: "service", Indexer: &memdb.StringFieldIndex{Field: "ServiceID"}},
			"node":    {Name: "node", AllowMissing: true, Indexer: &memdb.StringFieldIndex{Field: "NodeID"}},
		}},
		tableSecrets:      {Name: tableSecrets, Indexes: map[string]*memdb.IndexSchema{"id": str("Name")}},
		tableCertificates: {Name: tableCertificates, Indexes: map[string]*memdb.IndexSchema{"id": str("Subject")}},
	}}
}

// Store is the in-memory grid state. Reads never block writers; Wait lets a
// caller block until the state moves past an index (blocking queries).
type Store struct {
	mu     sync.RWMutex
	db     *memdb.MemDB
	index  uint64
	change chan struct{} // closed and replaced on every change

	// Row counts of the capped tables, so trimming them costs the rows
	// removed, not a scan. Only Apply (one at a time, from Raft) and
	// replace touch them.
	counts map[string]int
}

// NewStore returns an empty store.
func NewStore() (*Store, error) {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		return nil, fmt.Errorf("create state store: %w", err)
	}
	return &Store{db: db, change: make(chan struct{}), counts: map[string]int{}}, nil
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

func (s *Store) txn(write bool) *memdb.Txn {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.db.Txn(write)
}

// commit publishes index after a write transaction committed.
func (s *Store) commit(index uint64) {
	s.mu.Lock()
	if index > s.index {
		s.index = index
	}
	close(s.change)
	s.change = make(chan struct{})
	s.mu.Unlock()
}

// replace swaps in a whole new database (snapshot restore).
func (s *Store) replace(db *memdb.MemDB, index uint64, counts map[string]int) {
	s.mu.Lock()
	s.db = db
	s.counts = counts
	s.index = index
	close(s.change)
	s.change = make(chan struct{})
	s.mu.Unlock()
}

// Grid returns the grid settings, or ErrNotFound before bootstrap.
func (s *Store) Grid() (*Grid, error) {
	txn := s.txn(false)
	it, err := txn.Get(tableGrid, "id")
	if err != nil {
		return nil, err
	}
	if raw := it.Next(); raw != nil {
		return raw.(*Grid), nil
	}
	return nil, fmt.Errorf("grid settings: %w (grid not bootstrapped yet)", ErrNotFound)
}

// Nodes lists all nodes ordered by number.
func (s *Store) Nodes() ([]*Node, error) {
	out, err := list[*Node](s.txn(false), tableNodes)
	if err != nil {
		return nil, err
	}
	sortNodes(out)
	return out, nil
}

// Node finds a node by ID or by name.
func (s *Store) Node(idOrName string) (*Node, error) {
	txn := s.txn(false)
	for _, idx := range []string{"id", "name"} {
		raw, err := txn.First(tableNodes, idx, idOrName)
		if err != nil {
			return nil, err
		}
		if raw != nil {
			return raw.(*Node), nil
		}
	}
	return nil, fmt.Errorf("node %q: %w", idOrName, ErrNotFound)
}

// User finds a user by name.
func (s *Store) User(name string) (*User, error) {
	raw, err := s.txn(false).First(tableUsers, "id", name)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	return raw.(*User), nil
}

// TokenByHash finds the token whose SHA-256 hash is hash.
func (s *Store) TokenByHash(hash string) (*Token, error) {
	raw, err := s.txn(false).First(tableTokens, "hash", hash)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("token: %w", ErrNotFound)
	}
	return raw.(*Token), nil
}

// Tokens lists tokens; with user set, only that user's.
func (s *Store) Tokens(user string) ([]*Token, error) {
	all, err := list[*Token](s.txn(false), tableTokens)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, t := range all {
		if user == "" || t.User == user {
			out = append(out, t)
		}
	}
	return out, nil
}

// Stacks lists installed stacks by name.
func (s *Store) Stacks() ([]*Stack, error) { return list[*Stack](s.txn(false), tableStacks) }

// Stack returns an installed stack.
func (s *Store) Stack(name string) (*Stack, error) {
	raw, err := s.txn(false).First(tableStacks, "id", name)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("stack %q: %w", name, ErrNotFound)
	}
	return raw.(*Stack), nil
}

// Services lists services; with stackName set, only that stack's.
func (s *Store) Services(stackName string) ([]*Service, error) {
	txn := s.txn(false)
	if stackName == "" {
		return list[*Service](txn, tableServices)
	}
	return listBy[*Service](txn, tableServices, "stack", stackName)
}

// Service returns a service by ID ("<stack>/<service>").
func (s *Store) Service(id string) (*Service, error) {
	raw, err := s.txn(false).First(tableServices, "id", id)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("service %q: %w", id, ErrNotFound)
	}
	return raw.(*Service), nil
}

// Instances lists a service's instances, or all with serviceID "".
func (s *Store) Instances(serviceID string) ([]*Instance, error) {
	txn := s.txn(false)
	if serviceID == "" {
		return list[*Instance](txn, tableInstances)
	}
	return listBy[*Instance](txn, tableInstances, "service", serviceID)
}

// InstancesOnNode lists the instances placed on a node: its assignments.
func (s *Store) InstancesOnNode(nodeID string) ([]*Instance, error) {
	return listBy[*Instance](s.txn(false), tableInstances, "node", nodeID)
}

// Events returns events with an index above since, oldest first.
func (s *Store) Events(since uint64) ([]*Event, error) {
	it, err := s.txn(false).LowerBound(tableEvents, "id", since+1)
	if err != nil {
		return nil, err
	}
	var out []*Event
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Event))
	}
	return out, nil
}

// Audit returns audit records with an index above since, oldest first.
func (s *Store) Audit(since uint64) ([]*AuditRecord, error) {
	it, err := s.txn(false).LowerBound(tableAudit, "id", since+1)
	if err != nil {
		return nil, err
	}
	var out []*AuditRecord
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*AuditRecord))
	}
	return out, nil
}

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
