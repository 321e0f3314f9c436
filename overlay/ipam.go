package overlay

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"slices"
	"sync"
)

// maxAllocatorHostBits bounds the subnet an Allocator scans: allocation
// walks the range, which is cheap for a node's /24 and pointless beyond a
// /16.
const maxAllocatorHostBits = 16

// Allocator hands out the container addresses of one node's subnet. It needs
// no quorum: the subnet belongs to this node alone, so the node is the only
// writer and a local file is the whole truth. Safe for concurrent use.
type Allocator struct {
	path     string
	subnet   netip.Prefix
	first    netip.Addr // lowest assignable address (after the gateway)
	last     netip.Addr // highest assignable address (before broadcast)
	size     int        // addresses from first to last inclusive
	reserved []netip.Prefix

	mu     sync.Mutex
	owners map[string]netip.Addr
	used   map[netip.Addr]string
	// cursor is the address handed out last. Allocation continues after it
	// so that an address released a moment ago is the last to come back:
	// clients and DNS caches that still hold it then reach nothing rather
	// than a different container.
	cursor netip.Addr
}

// AllocatorOption adjusts an Allocator.
type AllocatorOption func(*Allocator)

// WithReserved keeps the addresses of the given prefixes out of allocation,
// e.g. the range the container engine assigns on its own (hook containers):
// an address both hand out would fail the second container to start.
func WithReserved(prefixes ...netip.Prefix) AllocatorOption {
	return func(a *Allocator) { a.reserved = append(a.reserved, prefixes...) }
}

// allocatorState is the file format.
type allocatorState struct {
	Subnet      netip.Prefix          `json:"subnet"`
	Cursor      netip.Addr            `json:"cursor"`
	Allocations map[string]netip.Addr `json:"allocations"`
}

// OpenAllocator opens (or creates) the allocator of subnet whose state is
// kept at path. Reopening restores every allocation, so containers keep
// their addresses across restarts of the node.
func OpenAllocator(path string, subnet netip.Prefix, opts ...AllocatorOption) (*Allocator, error) {
	if !subnet.IsValid() || subnet != subnet.Masked() {
		return nil, fmt.Errorf("overlay: allocator subnet %v is not a valid network prefix", subnet)
	}
	host := subnet.Addr().BitLen() - subnet.Bits()
	if host < 2 || host > maxAllocatorHostBits {
		return nil, fmt.Errorf("overlay: allocator subnet %s must have between 2 and %d host bits", subnet, maxAllocatorHostBits)
	}
	a := &Allocator{
		path:   path,
		subnet: subnet,
		first:  NodeAddr(subnet).Next(),
		last:   lastAddr(subnet).Prev(),
		size:   1<<host - 3, // network, gateway and broadcast are never handed out
		owners: map[string]netip.Addr{},
		used:   map[netip.Addr]string{},
	}
	for _, o := range opts {
		o(a)
	}
	if err := a.load(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Allocator) load() error {
	data, err := os.ReadFile(a.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("overlay: read address allocations: %w", err)
	}
	var st allocatorState
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("overlay: address allocations in %s are corrupt (%w); stop the containers of this node and remove the file to start over", a.path, err)
	}
	if st.Subnet != a.subnet {
		return fmt.Errorf("overlay: address allocations in %s are for subnet %s, but this node's subnet is %s; if the node was given a new subnet, stop its containers and remove the file", a.path, st.Subnet, a.subnet)
	}
	for owner, addr := range st.Allocations {
		if !a.assignable(addr) {
			return fmt.Errorf("overlay: address allocations in %s: %s has %s, not a container address of %s; fix or remove the file", a.path, owner, addr, a.subnet)
		}
		if other, dup := a.used[addr]; dup {
			return fmt.Errorf("overlay: address allocations in %s: %s is allocated to both %s and %s; fix or remove the file", a.path, addr, other, owner)
		}
		a.owners[owner] = addr
		a.used[addr] = owner
	}
	if a.assignable(st.Cursor) {
		a.cursor = st.Cursor
	}
	return nil
}

// assignable reports whether addr is in the allocatable range of the subnet
// (reserved prefixes aside: an address there may still be allocated from
// before the reservation).
func (a *Allocator) assignable(addr netip.Addr) bool {
	return addr.IsValid() && a.subnet.Contains(addr) && addr.Compare(a.first) >= 0 && addr.Compare(a.last) <= 0
}

// Subnet is the prefix addresses are allocated from.
func (a *Allocator) Subnet() netip.Prefix { return a.subnet }

// Allocate returns the address of owner (a container instance name such as
// "shop.web-1"), allocating one if owner has none. The same owner gets the
// same address back for as long as it is allocated, so a replaced container
// keeps the address of the one it replaces.
func (a *Allocator) Allocate(owner string) (netip.Addr, error) {
	if owner == "" {
		return netip.Addr{}, errors.New("overlay: allocate: empty owner name")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if addr, ok := a.owners[owner]; ok {
		return addr, nil
	}
	addr, ok := a.nextFree()
	if !ok {
		return netip.Addr{}, fmt.Errorf("%w: no free address in %s for %s (%d allocated, %d more reserved); remove unused containers or give the node a larger subnet", ErrSubnetFull, a.subnet, owner, len(a.used), a.size-len(a.used))
	}
	prevCursor := a.cursor
	a.owners[owner] = addr
	a.used[addr] = owner
	a.cursor = addr
	if err := a.save(); err != nil {
		delete(a.owners, owner)
		delete(a.used, addr)
		a.cursor = prevCursor
		return netip.Addr{}, err
	}
	return addr, nil
}

// nextFree walks the range once, starting after the cursor.
func (a *Allocator) nextFree() (netip.Addr, bool) {
	addr := a.first
	if a.cursor.IsValid() && a.cursor != a.last {
		addr = a.cursor.Next()
	}
	for range a.size {
		if _, taken := a.used[addr]; !taken && !a.isReserved(addr) {
			return addr, true
		}
		if addr == a.last {
			addr = a.first
		} else {
			addr = addr.Next()
		}
	}
	return netip.Addr{}, false
}

func (a *Allocator) isReserved(addr netip.Addr) bool {
	for _, p := range a.reserved {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Release frees the address of owner. Releasing an owner that has no
// address is not an error: the agent releases whatever it no longer sees.
func (a *Allocator) Release(owner string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	addr, ok := a.owners[owner]
	if !ok {
		return nil
	}
	delete(a.owners, owner)
	delete(a.used, addr)
	if err := a.save(); err != nil {
		a.owners[owner] = addr
		a.used[addr] = owner
		return err
	}
	return nil
}

// Lookup returns the address allocated to owner.
func (a *Allocator) Lookup(owner string) (netip.Addr, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	addr, ok := a.owners[owner]
	return addr, ok
}

// Owners returns a copy of every allocation.
func (a *Allocator) Owners() map[string]netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.owners)
}

// Sync releases every owner not in live (the containers that exist or are
// wanted) and returns them sorted. It is how addresses of containers removed
// while the node was down, or by hand, come back.
func (a *Allocator) Sync(live []string) (released []string, err error) {
	keep := make(map[string]bool, len(live))
	for _, o := range live {
		keep[o] = true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for owner := range a.owners {
		if !keep[owner] {
			released = append(released, owner)
		}
	}
	if len(released) == 0 {
		return nil, nil
	}
	slices.Sort(released)
	gone := make(map[string]netip.Addr, len(released))
	for _, owner := range released {
		gone[owner] = a.owners[owner]
		delete(a.used, a.owners[owner])
		delete(a.owners, owner)
	}
	if err := a.save(); err != nil {
		for owner, addr := range gone {
			a.owners[owner] = addr
			a.used[addr] = owner
		}
		return nil, err
	}
	return released, nil
}

// save writes the state; callers hold mu. On error the caller rolls back
// its change so memory never claims what the disk would forget.
func (a *Allocator) save() error {
	data, err := json.MarshalIndent(allocatorState{Subnet: a.subnet, Cursor: a.cursor, Allocations: a.owners}, "", "  ")
	if err != nil {
		return fmt.Errorf("overlay: encode address allocations: %w", err)
	}
	if err := writeFileAtomic(a.path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("overlay: save address allocations: %w", err)
	}
	return nil
}
