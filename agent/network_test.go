package agent

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
)

// allocNet is a Network that hands out 10.81.1.2, .3, ... by instance name
// and records what Sync releases.
type allocNet struct {
	mu       sync.Mutex
	ips      map[string]netip.Addr
	next     netip.Addr
	released []string
}

func newAllocNet() *allocNet {
	return &allocNet{ips: map[string]netip.Addr{}, next: netip.MustParseAddr("10.81.1.2")}
}

func (n *allocNet) Attach(s ContainerSpec) (Attachment, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ip, ok := n.ips[s.Name]
	if !ok {
		ip, n.next = n.next, n.next.Next()
		n.ips[s.Name] = ip
	}
	return Attachment{Network: "kontena", IP: ip, DNS: []string{"10.81.1.1"}, DNSSearch: []string{s.Stack + ".g.kontena.local"}}, nil
}

func (n *allocNet) Hook(s ContainerSpec) Attachment { return Attachment{Network: "kontena"} }

func (n *allocNet) Sync(live []string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for name := range n.ips {
		if !slices.Contains(live, name) {
			delete(n.ips, name)
			n.released = append(n.released, name)
		}
	}
	return nil
}

func (n *allocNet) Lookup(name string) (netip.Addr, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ip, ok := n.ips[name]
	return ip, ok
}

func TestNetworkSeam(t *testing.T) {
	f := newFake()
	a, rec := newTestAgent(t, f, nil)
	nw := newAllocNet()
	a.net = nw
	ctx := context.Background()
	s1, s2 := spec(1, 1), spec(2, 1)
	if err := a.Reconcile(ctx, []ContainerSpec{s1, s2}); err != nil {
		t.Fatal(err)
	}
	r1, r2 := f.reqs[s1.Name], f.reqs[s2.Name]
	if r1.Net == nil || r2.Net == nil || r1.Net.IP == r2.Net.IP || r1.Net.DNS[0] != "10.81.1.1" || r1.Net.DNSSearch[0] != "s.g.kontena.local" {
		t.Fatalf("create requests: %+v %+v", r1.Net, r2.Net)
	}
	for _, s := range []ContainerSpec{s1, s2} {
		if ip := rec.get(s.Name).IP; ip != f.reqs[s.Name].Net.IP.String() {
			t.Fatalf("reported address of %s: %q, want the allocated %v", s.Name, ip, f.reqs[s.Name].Net.IP)
		}
	}
	// A new revision replaces the container: the instance keeps its address.
	was := r1.Net.IP
	s1.Revision = 2
	if err := a.Reconcile(ctx, []ContainerSpec{s1, s2}); err != nil {
		t.Fatal(err)
	}
	if f.reqs[s1.Name].Net.IP != was {
		t.Fatalf("replaced container got %v, want its instance's address %v back", f.reqs[s1.Name].Net.IP, was)
	}
	// web-2 no longer desired: removed in this pass, its address released
	// on the next one (once no container holds it).
	if err := a.Reconcile(ctx, []ContainerSpec{s1}); err != nil {
		t.Fatal(err)
	}
	if err := a.Reconcile(ctx, []ContainerSpec{s1}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(nw.released, []string{s2.Name}) {
		t.Fatalf("released %v, want only %s", nw.released, s2.Name)
	}
	// Host networking never touches the overlay.
	h := spec(3, 1)
	h.NetworkMode = "host"
	if err := a.Reconcile(ctx, []ContainerSpec{s1, h}); err != nil {
		t.Fatal(err)
	}
	if f.reqs[h.Name].Net != nil {
		t.Fatalf("host-network container attached: %+v", f.reqs[h.Name].Net)
	}
}
