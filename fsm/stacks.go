package fsm

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/kontena-ng/kontena/stack"
)

// TableStacks holds the installed stacks.
const TableStacks = "stacks"

func stackTables() []*memdb.TableSchema {
	return []*memdb.TableSchema{
		{Name: TableStacks, Indexes: map[string]*memdb.IndexSchema{"id": idIndex("Name")}},
	}
}

// Stack is an installed stack: the source as the user gave it, the values
// it was rendered with (so `upgrade --reuse-values` can reuse them; never
// vault-backed ones) and the validated definition.
type Stack struct {
	Name        string         `json:"name"`
	FileName    string         `json:"file_name,omitempty"`
	Source      string         `json:"source"`
	Values      map[string]any `json:"values,omitempty"`
	Spec        stack.Stack    `json:"spec"`
	Revision    uint64         `json:"revision"`
	CreatedAt   time.Time      `json:"created_at"`
	UpdatedAt   time.Time      `json:"updated_at"`
	ModifyIndex uint64         `json:"modify_index"`
}

// Stack command numbers (persisted: never renumber).
const (
	MsgStackInstall MsgType = 10
	MsgStackRemove  MsgType = 11
	MsgStackUpgrade MsgType = 16
)

var stackCommands = []Command{(*StackInstall)(nil), (*StackRemove)(nil), (*StackUpgrade)(nil)}

// StackInstall stores a validated stack and creates its services.
type StackInstall struct {
	Stack Stack `json:"stack"`
	// NoDeploy stores the stack without placing anything until a deploy.
	NoDeploy bool `json:"no_deploy,omitempty"`
}

func (*StackInstall) MsgType() MsgType   { return MsgStackInstall }
func (*StackInstall) name() string       { return "stack.install" }
func (c *StackInstall) resource() string { return "stack/" + c.Stack.Name }

func (c *StackInstall) apply(a *applier) (any, error) {
	st := c.Stack
	if raw, _ := a.txn.First(TableStacks, "id", st.Name); raw != nil {
		return nil, fmt.Errorf("stack %q is already installed; install under another name with -n, or remove it first with `kontena stack rm %s`: %w", st.Name, st.Name, ErrConflict)
	}
	if st.Name == "" || len(st.Spec.Services) == 0 {
		return nil, fmt.Errorf("stack %q has no name or no services: %w", st.Name, ErrInvalid)
	}
	if err := checkSpec(&st); err != nil {
		return nil, err
	}
	st.Revision = 1
	st.CreatedAt, st.UpdatedAt, st.ModifyIndex = a.now, a.now, a.index
	if err := a.txn.Insert(TableStacks, &st); err != nil {
		return nil, err
	}
	for _, spec := range st.Spec.Services {
		svc := &Service{ID: ServiceID(st.Name, spec.Name), Stack: st.Name, Name: spec.Name, Revision: 1,
			Instances: spec.Instances, Spec: *spec, ModifyIndex: a.index}
		if err := a.installLifecycle(svc, c.NoDeploy); err != nil {
			return nil, err
		}
		if err := a.txn.Insert(TableServices, svc); err != nil {
			return nil, err
		}
	}
	return &st, a.event("stack.installed", "stack/"+st.Name, fmt.Sprintf("stack %s installed with %d services", st.Name, len(st.Spec.Services)))
}

// checkSpec refuses what the state must never hold because it would panic
// the leader or the scheduler: nil entries and unbounded instance counts.
// It is looser than stack.ValidateSpec, which the API runs before it
// proposes the command, on purpose: this check also runs when the log is
// replayed, and an entry an older version of the grid accepted must not
// be refused then (its stack would vanish from the rebuilt state).
func checkSpec(st *Stack) error {
	if st.Spec.Name != "" && st.Spec.Name != st.Name {
		return fmt.Errorf("stack %q: its spec is named %q: %w", st.Name, st.Spec.Name, ErrInvalid)
	}
	for i, svc := range st.Spec.Services {
		if svc == nil {
			return fmt.Errorf("stack %s: services[%d] is empty: %w", st.Name, i, ErrInvalid)
		}
		if svc.Instances < 0 || svc.Instances > stack.MaxStoredInstances {
			return fmt.Errorf("stack %s: service %s: %d instances: expected 0 to %d: %w", st.Name, svc.Name, svc.Instances, stack.MaxStoredInstances, ErrInvalid)
		}
	}
	for i, v := range st.Spec.Volumes {
		if v == nil {
			return fmt.Errorf("stack %s: volumes[%d] is empty: %w", st.Name, i, ErrInvalid)
		}
	}
	for i, d := range st.Spec.Depends {
		if d == nil {
			return fmt.Errorf("stack %s: depends[%d] is empty: %w", st.Name, i, ErrInvalid)
		}
	}
	return nil
}

// StackRemove deletes a stack with its services and instances.
type StackRemove struct {
	Name string `json:"name"`
}

func (*StackRemove) MsgType() MsgType   { return MsgStackRemove }
func (*StackRemove) name() string       { return "stack.remove" }
func (c *StackRemove) resource() string { return "stack/" + c.Name }

func (c *StackRemove) apply(a *applier) (any, error) {
	raw, err := a.txn.First(TableStacks, "id", c.Name)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("stack %q: %w", c.Name, ErrNotFound)
	}
	svcs, err := listBy[*Service](a.txn, TableServices, "stack", c.Name)
	if err != nil {
		return nil, err
	}
	for _, svc := range svcs {
		if _, err := a.txn.DeleteAll(TableInstances, "service", svc.ID); err != nil {
			return nil, err
		}
		if err := a.txn.Delete(TableServices, svc); err != nil {
			return nil, err
		}
	}
	if err := a.txn.Delete(TableStacks, raw); err != nil {
		return nil, err
	}
	return raw, a.event("stack.removed", "stack/"+c.Name, "stack "+c.Name+" removed")
}

// StackUpgrade replaces an installed stack's definition: changed services
// get a new revision (their instances are then replaced, rolling), new ones
// are created, dropped ones removed with their instances.
type StackUpgrade struct {
	Stack Stack `json:"stack"`
}

func (*StackUpgrade) MsgType() MsgType   { return MsgStackUpgrade }
func (*StackUpgrade) name() string       { return "stack.upgrade" }
func (c *StackUpgrade) resource() string { return "stack/" + c.Stack.Name }

func (c *StackUpgrade) apply(a *applier) (any, error) {
	raw, err := a.txn.First(TableStacks, "id", c.Stack.Name)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("stack %q is not installed; install it with `kontena stack install`: %w", c.Stack.Name, ErrNotFound)
	}
	old := raw.(*Stack)
	if len(c.Stack.Spec.Services) == 0 {
		return nil, fmt.Errorf("stack %q has no services: %w", c.Stack.Name, ErrInvalid)
	}
	st := c.Stack
	if err := checkSpec(&st); err != nil {
		return nil, err
	}
	st.Revision, st.CreatedAt, st.UpdatedAt, st.ModifyIndex = old.Revision+1, old.CreatedAt, a.now, a.index
	if err := a.txn.Insert(TableStacks, &st); err != nil {
		return nil, err
	}
	current, err := listBy[*Service](a.txn, TableServices, "stack", st.Name)
	if err != nil {
		return nil, err
	}
	keep := map[string]bool{}
	var changed []string
	for _, spec := range st.Spec.Services {
		id := ServiceID(st.Name, spec.Name)
		keep[id] = true
		svc := &Service{ID: id, Stack: st.Name, Name: spec.Name, Revision: 1, Instances: spec.Instances, Spec: *spec, ModifyIndex: a.index}
		if prev, err := a.getService(id); err == nil {
			svc.Revision, svc.PlacementError = prev.Revision, prev.PlacementError
			if !SameSpec(prev.Spec, *spec) {
				svc.Revision++
				changed = append(changed, spec.Name)
			}
		} else {
			changed = append(changed, spec.Name+" (new)")
		}
		if err := a.upgradeLifecycle(svc, current); err != nil {
			return nil, err
		}
		if err := a.txn.Insert(TableServices, svc); err != nil {
			return nil, err
		}
	}
	for _, svc := range current {
		if keep[svc.ID] {
			continue
		}
		if _, err := a.txn.DeleteAll(TableInstances, "service", svc.ID); err != nil {
			return nil, err
		}
		if err := a.txn.Delete(TableServices, svc); err != nil {
			return nil, err
		}
		changed = append(changed, svc.Name+" (removed)")
	}
	return &st, a.event("stack.upgraded", "stack/"+st.Name, fmt.Sprintf("stack %s upgraded to revision %d: %s", st.Name, st.Revision, strings.Join(changed, ", ")))
}

// UpgradeChanges lists, for `stack upgrade --dry-run`, what an upgrade to
// spec would change in the services current: new and removed services and,
// for changed ones, which keys change (a scale-only change is not listed).
func UpgradeChanges(current []*Service, spec stack.Stack) []string {
	var out []string
	have := map[string]*Service{}
	for _, svc := range current {
		have[svc.Name] = svc
	}
	for _, ns := range spec.Services {
		old, ok := have[ns.Name]
		delete(have, ns.Name)
		if !ok {
			out = append(out, fmt.Sprintf("service %s: new (%d instances of %s)", ns.Name, ns.Instances, ns.Image))
			continue
		}
		if old.Instances != ns.Instances {
			out = append(out, fmt.Sprintf("service %s: instances %d -> %d", ns.Name, old.Instances, ns.Instances))
		}
		if keys := changedKeys(old.Spec, *ns); len(keys) > 0 {
			out = append(out, fmt.Sprintf("service %s: %s changed; its instances are replaced, rolling", ns.Name, strings.Join(keys, ", ")))
		}
	}
	for name := range have {
		out = append(out, fmt.Sprintf("service %s: removed with its instances", name))
	}
	sort.Strings(out)
	return out
}

func changedKeys(a, b stack.Service) []string {
	a.Instances, b.Instances = 0, 0
	var ma, mb map[string]any
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	_ = json.Unmarshal(ja, &ma)
	_ = json.Unmarshal(jb, &mb)
	var keys []string
	for k := range mergeKeys(ma, mb) {
		x, _ := json.Marshal(ma[k])
		y, _ := json.Marshal(mb[k])
		if string(x) != string(y) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

func mergeKeys(a, b map[string]any) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// SameSpec tells whether two service definitions run the same containers.
// The instance count is left out: scaling is not a redeploy.
func SameSpec(a, b stack.Service) bool {
	a.Instances, b.Instances = 0, 0
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// Stacks lists installed stacks by name.
func (v *View) Stacks() ([]*Stack, error) { return list[*Stack](v.txn, TableStacks) }

// Stack returns an installed stack.
func (v *View) Stack(name string) (*Stack, error) {
	raw, err := v.txn.First(TableStacks, "id", name)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("stack %q: %w", name, ErrNotFound)
	}
	return raw.(*Stack), nil
}

// Stacks lists installed stacks by name.
func (s *Store) Stacks() ([]*Stack, error) { return s.Snapshot().Stacks() }

// Stack returns an installed stack.
func (s *Store) Stack(name string) (*Stack, error) { return s.Snapshot().Stack(name) }
