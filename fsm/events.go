package fsm

import (
	"fmt"
	"strings"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// The event and audit tables. They have no commands of their own: every
// command writes its audit record, and most write events.
const (
	TableEvents = "events"
	TableAudit  = "audit"
)

// Retention caps: events and audit records are kept in Raft, so they must
// not grow without bound.
const (
	maxEvents = 2000
	maxAudit  = 10000
	// trimSlack: a capped table holds up to max + max/trimSlack rows.
	trimSlack = 16
)

func eventTables() []*memdb.TableSchema {
	return []*memdb.TableSchema{
		{Name: TableEvents, Indexes: map[string]*memdb.IndexSchema{"id": numIDIndex("Index")}},
		{Name: TableAudit, Indexes: map[string]*memdb.IndexSchema{"id": numIDIndex("Index")}},
	}
}

// Event records something that happened to the grid, for operators.
type Event struct {
	Index    uint64    `json:"index"`
	Time     time.Time `json:"time"`
	Type     string    `json:"type"`
	Resource string    `json:"resource"`
	Message  string    `json:"message"`
}

// AuditRecord is written in the same transaction as every mutating command.
type AuditRecord struct {
	Index     uint64    `json:"index"`
	Time      time.Time `json:"time"`
	User      string    `json:"user"`
	SourceIP  string    `json:"source_ip,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
	// Roles are the roles the caller acted with.
	Roles    []string `json:"roles,omitempty"`
	Action   string   `json:"action"`
	Resource string   `json:"resource"`
	// Result is "ok" for a change made, else why it was refused.
	Result string `json:"result"`
}

func (a *applier) event(typ, resource, msg string) error {
	// Several events may come from one command; keep their keys unique and
	// ordered by giving each the next free slot after the log index.
	idx := a.index << 8
	for {
		raw, err := a.txn.First(TableEvents, "id", idx)
		if err != nil {
			return err
		}
		if raw == nil {
			break
		}
		idx++
	}
	if err := a.txn.Insert(TableEvents, &Event{Index: idx, Time: a.now, Type: typ, Resource: resource, Message: msg}); err != nil {
		return err
	}
	return a.trim(TableEvents, maxEvents)
}

func (a *applier) audit(cmd Command, info *AuditInfo) error {
	rec := &AuditRecord{Index: a.index, Time: info.Time, User: info.User, SourceIP: info.SourceIP,
		UserAgent: info.UserAgent, Roles: info.Roles, Action: cmd.name(), Resource: cmd.resource(), Result: "ok"}
	if n, ok := cmd.(*AuditNote); ok && n.Result != "" {
		rec.Result = n.Result
	}
	if err := a.txn.Insert(TableAudit, rec); err != nil {
		return err
	}
	return a.trim(TableAudit, maxAudit)
}

// trim records one row added to a capped table and, once the table holds
// max/trimSlack rows beyond max, deletes the oldest down to max. Cutting
// in one go costs a fraction of one delete per insert: the deleted rows
// are neighbours in the index, so one transaction copies their radix path
// once. Every voter counts alike, so every voter trims at the same index.
// The oldest rows come first in the table's index.
func (a *applier) trim(table string, max int) error {
	a.added[table]++
	over := a.counts[table] + a.added[table] - max
	if over <= max/trimSlack {
		return nil
	}
	it, err := a.txn.Get(table, "id")
	if err != nil {
		return err
	}
	var oldest []any
	for raw := it.Next(); raw != nil && len(oldest) < over; raw = it.Next() {
		oldest = append(oldest, raw)
	}
	for _, raw := range oldest {
		if err := a.txn.Delete(table, raw); err != nil {
			return err
		}
	}
	a.added[table] -= len(oldest)
	return nil
}

func serviceResource(id string) string { return "service/" + id }

func instanceResource(id string) string { return "instance/" + id }

// EventOfService tells whether ev concerns service id: the service itself or
// one of its instances ("instance/<id>-<n>").
func EventOfService(ev *Event, id string) bool {
	if ev.Resource == serviceResource(id) {
		return true
	}
	rest, ok := strings.CutPrefix(ev.Resource, "instance/"+id+"-")
	if !ok || rest == "" {
		return false
	}
	for _, r := range rest {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// Events returns events with an index above since, oldest first.
func (v *View) Events(since uint64) ([]*Event, error) {
	it, err := v.txn.LowerBound(TableEvents, "id", since+1)
	if err != nil {
		return nil, err
	}
	var out []*Event
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Event))
	}
	return out, nil
}

// ServiceEvents lists the events of a service and its instances with an
// index above since, oldest first.
func (v *View) ServiceEvents(id string, since uint64) ([]*Event, error) {
	all, err := v.Events(since)
	if err != nil {
		return nil, err
	}
	out := []*Event{}
	for _, ev := range all {
		if EventOfService(ev, id) {
			out = append(out, ev)
		}
	}
	return out, nil
}

// Audit returns audit records with an index above since, oldest first.
func (v *View) Audit(since uint64) ([]*AuditRecord, error) {
	it, err := v.txn.LowerBound(TableAudit, "id", since+1)
	if err != nil {
		return nil, err
	}
	var out []*AuditRecord
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*AuditRecord))
	}
	return out, nil
}

// Events returns events with an index above since, oldest first.
func (s *Store) Events(since uint64) ([]*Event, error) { return s.Snapshot().Events(since) }

// ServiceEvents lists the events of a service and its instances with an
// index above since, oldest first.
func (s *Store) ServiceEvents(id string, since uint64) ([]*Event, error) {
	return s.Snapshot().ServiceEvents(id, since)
}

// Audit returns audit records with an index above since, oldest first.
func (s *Store) Audit(since uint64) ([]*AuditRecord, error) { return s.Snapshot().Audit(since) }

// MsgAuditNote (persisted: never renumber).
const MsgAuditNote MsgType = 41

var auditCommands = []Command{(*AuditNote)(nil)}

// AuditNote changes nothing: it is an audit record of its own, for what
// must be on record without a change (an exec, a refused login).
type AuditNote struct {
	Action   string `json:"action"`
	Resource string `json:"resource"`
	Result   string `json:"result,omitempty"`
}

func (*AuditNote) MsgType() MsgType { return MsgAuditNote }

func (c *AuditNote) name() string {
	if c == nil || c.Action == "" {
		return "audit.note"
	}
	return c.Action
}

func (c *AuditNote) resource() string { return c.Resource }

func (c *AuditNote) apply(*applier) (any, error) {
	if c.Action == "" {
		return nil, fmt.Errorf("audit note without an action: %w", ErrInvalid)
	}
	return nil, nil
}
