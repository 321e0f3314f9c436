package overlay

import (
	"fmt"
	"net/netip"
)

const (
	// DefaultGridPrefix is the address space of a grid's overlay unless the
	// grid is created with another one.
	DefaultGridPrefix = "10.81.0.0/16"
	// DefaultSubnetBits is the size of the container subnet every node gets
	// out of the grid prefix: a /24 is 253 containers per node.
	DefaultSubnetBits = 24
	// maxSubnetSplit bounds 2^(bits-grid.Bits()) so that a typo (a /8 cut
	// into /30s) is an error rather than a loop over millions of prefixes.
	maxSubnetSplit = 16
)

// AllocateSubnet returns the lowest sub-prefix of grid with the given number
// of bits that overlaps none of used. The first sub-prefix is reserved (it
// holds the grid prefix's own network address, and keeping it free leaves
// room for grid-wide service addresses later without renumbering nodes) and
// the last one belongs to VPN clients (see VPNPrefix), so neither is ever
// returned.
//
// The leader calls it once per node at join and records the result in the
// replicated state; used is every subnet already recorded there.
func AllocateSubnet(grid netip.Prefix, used []netip.Prefix, bits int) (netip.Prefix, error) {
	n, err := subnetCount(grid, bits)
	if err != nil {
		return netip.Prefix{}, err
	}
	if n < 3 {
		return netip.Prefix{}, fmt.Errorf("overlay: grid prefix %s split into /%d gives %d subnets; need at least 3 (first and last are reserved): use a larger grid prefix or smaller node subnets", grid, bits, n)
	}
	grid = grid.Masked()
	p := netip.PrefixFrom(grid.Addr(), bits)
	for i := 1; i < n-1; i++ {
		p = netip.PrefixFrom(lastAddr(p).Next(), bits)
		if !overlapsAny(p, used) {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("overlay: grid prefix %s is full: all %d node subnets (/%d) are in use; remove nodes that left the grid or recreate the grid with a larger prefix", grid, n-2, bits)
}

// VPNPrefix is the last sub-prefix of grid with the given number of bits,
// the range VPN clients get their addresses from. Keeping it at the end
// means node subnets, allocated from the start, never race with it. It is
// the zero Prefix when grid cannot be split into /bits.
func VPNPrefix(grid netip.Prefix, bits int) netip.Prefix {
	if _, err := subnetCount(grid, bits); err != nil {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(lastAddr(grid.Masked()), bits).Masked()
}

// NodeAddr is the first host address of a node subnet (x.x.N.1). The node
// uses it both on its WireGuard interface and as the gateway of its
// container bridge, so that one address answers for the node from
// everywhere in the grid.
func NodeAddr(subnet netip.Prefix) netip.Addr {
	if !subnet.IsValid() {
		return netip.Addr{}
	}
	return subnet.Masked().Addr().Next()
}

// subnetCount validates the split of grid into /bits and returns how many
// sub-prefixes it yields.
func subnetCount(grid netip.Prefix, bits int) (int, error) {
	if !grid.IsValid() {
		return 0, fmt.Errorf("overlay: invalid grid prefix %v", grid)
	}
	if bits <= grid.Bits() || bits > grid.Addr().BitLen() {
		return 0, fmt.Errorf("overlay: node subnet size /%d must be longer than the grid prefix %s and at most /%d", bits, grid, grid.Addr().BitLen())
	}
	split := bits - grid.Bits()
	if split > maxSubnetSplit {
		return 0, fmt.Errorf("overlay: splitting %s into /%d gives 2^%d subnets; at most 2^%d are supported", grid, bits, split, maxSubnetSplit)
	}
	return 1 << split, nil
}

// lastAddr is the highest address inside p (the broadcast address of an
// IPv4 prefix).
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr()
	b := a.As16()
	host := a.BitLen() - p.Bits()
	for i := 15; i >= 0 && host > 0; i-- {
		if host >= 8 {
			b[i] = 0xff
			host -= 8
			continue
		}
		b[i] |= byte(1<<host) - 1
		host = 0
	}
	last := netip.AddrFrom16(b)
	if a.Is4() {
		return last.Unmap()
	}
	return last
}

func overlapsAny(p netip.Prefix, set []netip.Prefix) bool {
	for _, q := range set {
		if q.IsValid() && p.Overlaps(q) {
			return true
		}
	}
	return false
}
