package overlay

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

func openTestAllocator(t *testing.T, subnet string, opts ...AllocatorOption) (*Allocator, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ipam", "allocations.json")
	a, err := OpenAllocator(path, netip.MustParsePrefix(subnet), opts...)
	if err != nil {
		t.Fatalf("OpenAllocator: %v", err)
	}
	return a, path
}

func mustAllocate(t *testing.T, a *Allocator, owner string) netip.Addr {
	t.Helper()
	addr, err := a.Allocate(owner)
	if err != nil {
		t.Fatalf("Allocate(%q): %v", owner, err)
	}
	return addr
}

func TestAllocatorAllocate(t *testing.T) {
	a, _ := openTestAllocator(t, "10.81.1.0/24")
	steps := []struct {
		op, owner string
		want      string
	}{
		{"alloc", "shop.web-1", "10.81.1.2"}, // .0 network, .1 gateway
		{"alloc", "shop.web-2", "10.81.1.3"},
		{"alloc", "shop.web-1", "10.81.1.2"}, // idempotent
		{"release", "shop.web-1", ""},
		{"alloc", "shop.db-1", "10.81.1.4"},  // .2 was just released: not reused at once
		{"alloc", "shop.web-1", "10.81.1.5"}, // a released owner gets a new address
		{"release", "nobody", ""},            // releasing the unknown is a no-op
	}
	for i, s := range steps {
		switch s.op {
		case "alloc":
			if got := mustAllocate(t, a, s.owner); got.String() != s.want {
				t.Fatalf("step %d: Allocate(%q) = %s; want %s", i, s.owner, got, s.want)
			}
		case "release":
			if err := a.Release(s.owner); err != nil {
				t.Fatalf("step %d: Release(%q): %v", i, s.owner, err)
			}
		}
	}
	if _, ok := a.Lookup("shop.web-2"); !ok {
		t.Error("Lookup(shop.web-2) not found")
	}
	if _, ok := a.Lookup("nobody"); ok {
		t.Error("Lookup(nobody) found")
	}
	want := map[string]string{"shop.web-2": "10.81.1.3", "shop.db-1": "10.81.1.4", "shop.web-1": "10.81.1.5"}
	got := map[string]string{}
	for o, addr := range a.Owners() {
		got[o] = addr.String()
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Owners() = %v; want %v", got, want)
	}
	if _, err := a.Allocate(""); err == nil {
		t.Error("Allocate(\"\") succeeded")
	}
}

func TestAllocatorNeverHandsOutReservedAddresses(t *testing.T) {
	for _, subnet := range []string{"10.81.1.0/24", "10.81.1.0/29", "10.81.1.0/30", "fd00:81:0:1::/120"} {
		t.Run(subnet, func(t *testing.T) {
			a, _ := openTestAllocator(t, subnet)
			p := a.Subnet()
			bad := map[netip.Addr]bool{p.Addr(): true, NodeAddr(p): true, lastAddr(p): true}
			seen := map[netip.Addr]bool{}
			for i := 0; ; i++ {
				addr, err := a.Allocate(fmt.Sprintf("c-%d", i))
				if errors.Is(err, ErrSubnetFull) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if bad[addr] || !p.Contains(addr) || seen[addr] {
					t.Fatalf("allocated %s (reserved, outside or duplicate)", addr)
				}
				seen[addr] = true
			}
			if want := 1<<(p.Addr().BitLen()-p.Bits()) - 3; len(seen) != want {
				t.Fatalf("allocated %d addresses; want %d", len(seen), want)
			}
		})
	}
}

func TestAllocatorFull(t *testing.T) {
	a, _ := openTestAllocator(t, "10.81.1.0/29") // .2-.6: 5 addresses
	for i := range 5 {
		mustAllocate(t, a, fmt.Sprintf("c-%d", i))
	}
	_, err := a.Allocate("one-too-many")
	if !errors.Is(err, ErrSubnetFull) || !strings.Contains(err.Error(), "10.81.1.0/29") {
		t.Fatalf("Allocate on full subnet = %v; want ErrSubnetFull naming the subnet", err)
	}
	// An owner that already has an address still gets it.
	if _, err := a.Allocate("c-3"); err != nil {
		t.Fatalf("Allocate(existing) on full subnet: %v", err)
	}
	// Freeing one makes room again, and the freed address is the only one.
	addr, _ := a.Lookup("c-1")
	if err := a.Release("c-1"); err != nil {
		t.Fatal(err)
	}
	if got := mustAllocate(t, a, "newcomer"); got != addr {
		t.Fatalf("Allocate after release = %s; want %s", got, addr)
	}
}

func TestAllocatorCursorWraps(t *testing.T) {
	a, _ := openTestAllocator(t, "10.81.1.0/29") // .2-.6
	for i := range 5 {
		mustAllocate(t, a, fmt.Sprintf("c-%d", i)) // cursor at .6
	}
	for _, o := range []string{"c-3", "c-1"} { // frees .5 and .3
		if err := a.Release(o); err != nil {
			t.Fatal(err)
		}
	}
	if got := mustAllocate(t, a, "x"); got.String() != "10.81.1.3" {
		t.Fatalf("after wrap got %s; want 10.81.1.3", got)
	}
	if got := mustAllocate(t, a, "y"); got.String() != "10.81.1.5" {
		t.Fatalf("next got %s; want 10.81.1.5", got)
	}
}

func TestAllocatorReserved(t *testing.T) {
	a, _ := openTestAllocator(t, "10.81.1.0/28", WithReserved(netip.MustParsePrefix("10.81.1.8/29"))) // .2-.7 remain
	var got []string
	for i := 0; ; i++ {
		addr, err := a.Allocate(fmt.Sprintf("c-%d", i))
		if errors.Is(err, ErrSubnetFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, addr.String())
	}
	want := []string{"10.81.1.2", "10.81.1.3", "10.81.1.4", "10.81.1.5", "10.81.1.6", "10.81.1.7"}
	if !slices.Equal(got, want) {
		t.Fatalf("allocated %v; want %v", got, want)
	}
}

func TestAllocatorRestart(t *testing.T) {
	a, path := openTestAllocator(t, "10.81.1.0/24")
	web := mustAllocate(t, a, "shop.web-1")
	db := mustAllocate(t, a, "shop.db-1")
	gone := mustAllocate(t, a, "shop.tmp-1")
	if err := a.Release("shop.tmp-1"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v; want 0600", fi.Mode().Perm())
	}
	if tmp, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*")); len(tmp) > 0 {
		t.Errorf("temporary files left behind: %v", tmp)
	}

	b, err := OpenAllocator(path, netip.MustParsePrefix("10.81.1.0/24"))
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if got, ok := b.Lookup("shop.web-1"); !ok || got != web {
		t.Errorf("after reopen web = %v, %v; want %s", got, ok, web)
	}
	if got := mustAllocate(t, b, "shop.db-1"); got != db {
		t.Errorf("after reopen db = %s; want %s", got, db)
	}
	if _, ok := b.Lookup("shop.tmp-1"); ok {
		t.Error("released owner came back after reopen")
	}
	// The cursor survives too: the address released before the restart is
	// not the next one handed out.
	if got := mustAllocate(t, b, "shop.new-1"); got == gone || got == web || got == db {
		t.Errorf("after reopen new owner got %s (web %s, db %s, released %s)", got, web, db, gone)
	}
}

func TestAllocatorOpenErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	subnet := netip.MustParsePrefix("10.81.1.0/24")
	tests := []struct {
		name, path string
		subnet     netip.Prefix
		wantErr    string
	}{
		{"corrupt", write("corrupt.json", "{not json"), subnet, "corrupt"},
		{"other subnet", write("other.json", `{"subnet":"10.81.2.0/24","allocations":{}}`), subnet, "for subnet 10.81.2.0/24"},
		{"address outside", write("outside.json", `{"subnet":"10.81.1.0/24","allocations":{"a":"10.81.2.5"}}`), subnet, "not a container address"},
		{"gateway allocated", write("gw.json", `{"subnet":"10.81.1.0/24","allocations":{"a":"10.81.1.1"}}`), subnet, "not a container address"},
		{"duplicate", write("dup.json", `{"subnet":"10.81.1.0/24","allocations":{"a":"10.81.1.5","b":"10.81.1.5"}}`), subnet, "allocated to both"},
		{"unmasked subnet", filepath.Join(dir, "x.json"), netip.MustParsePrefix("10.81.1.7/24"), "not a valid network prefix"},
		{"subnet too small", filepath.Join(dir, "x.json"), netip.MustParsePrefix("10.81.1.0/31"), "host bits"},
		{"subnet too large", filepath.Join(dir, "x.json"), netip.MustParsePrefix("10.0.0.0/8"), "host bits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := OpenAllocator(tt.path, tt.subnet)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("OpenAllocator = %v; want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestAllocatorSync(t *testing.T) {
	a, path := openTestAllocator(t, "10.81.1.0/24")
	for _, o := range []string{"shop.web-1", "shop.web-2", "shop.db-1", "old.x-1"} {
		mustAllocate(t, a, o)
	}
	released, err := a.Sync([]string{"shop.web-1", "shop.db-1", "not-allocated"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"old.x-1", "shop.web-2"}; !slices.Equal(released, want) {
		t.Fatalf("Sync released %v; want %v", released, want)
	}
	if got := len(a.Owners()); got != 2 {
		t.Fatalf("%d owners after Sync; want 2", got)
	}
	if released, err := a.Sync([]string{"shop.web-1", "shop.db-1"}); err != nil || len(released) != 0 {
		t.Fatalf("second Sync = %v, %v; want nothing", released, err)
	}
	b, err := OpenAllocator(path, a.Subnet())
	if err != nil {
		t.Fatal(err)
	}
	if got := len(b.Owners()); got != 2 {
		t.Fatalf("%d owners after reopen; want 2", got)
	}
	if released, err := b.Sync(nil); err != nil || len(released) != 2 {
		t.Fatalf("Sync(nil) = %v, %v; want both released", released, err)
	}
}

// A failed write must not leave memory ahead of the disk.
func TestAllocatorSaveFailureRollsBack(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	a, err := OpenAllocator(filepath.Join(dir, "state.json"), netip.MustParsePrefix("10.81.1.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	// A regular file where the directory should be fails even for root,
	// who writes into read-only directories.
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Allocate("x"); err == nil {
		t.Fatal("Allocate succeeded with an unwritable state path")
	}
	if _, ok := a.Lookup("x"); ok {
		t.Fatal("failed allocation is visible")
	}
}

func TestAllocatorConcurrent(t *testing.T) {
	a, path := openTestAllocator(t, "10.81.1.0/24")
	const workers, each = 10, 20 // 200 of 253 addresses
	var wg sync.WaitGroup
	results := make([][]netip.Addr, workers)
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				owner := fmt.Sprintf("svc-%d.c-%d", w, i)
				addr, err := a.Allocate(owner)
				if err != nil {
					errs <- err
					return
				}
				// Idempotency under contention.
				if again, err := a.Allocate(owner); err != nil || again != addr {
					errs <- fmt.Errorf("re-Allocate(%s) = %v, %v; want %s", owner, again, err, addr)
					return
				}
				results[w] = append(results[w], addr)
				if i%5 == 0 {
					a.Lookup(owner)
					a.Owners()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[netip.Addr]bool{}
	for _, rs := range results {
		for _, addr := range rs {
			if seen[addr] {
				t.Fatalf("address %s handed out twice", addr)
			}
			seen[addr] = true
		}
	}
	if len(seen) != workers*each {
		t.Fatalf("%d distinct addresses; want %d", len(seen), workers*each)
	}
	b, err := OpenAllocator(path, a.Subnet())
	if err != nil {
		t.Fatal(err)
	}
	if got := len(b.Owners()); got != workers*each {
		t.Fatalf("reopened allocator has %d owners; want %d", got, workers*each)
	}
}
