package overlay

import (
	"net/netip"
	"strings"
	"testing"
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestAllocateSubnet(t *testing.T) {
	grid := netip.MustParsePrefix(DefaultGridPrefix)
	var all []netip.Prefix
	for i := 1; i <= 254; i++ {
		all = append(all, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 81, byte(i), 0}), 24))
	}
	tests := []struct {
		name    string
		grid    netip.Prefix
		used    []netip.Prefix
		bits    int
		want    string
		wantErr string
	}{
		{name: "first node skips the reserved .0 subnet", grid: grid, bits: 24, want: "10.81.1.0/24"},
		{name: "next free", grid: grid, used: prefixes("10.81.1.0/24", "10.81.2.0/24"), bits: 24, want: "10.81.3.0/24"},
		{name: "fills a hole", grid: grid, used: prefixes("10.81.1.0/24", "10.81.3.0/24"), bits: 24, want: "10.81.2.0/24"},
		{name: "used outside the grid is ignored", grid: grid, used: prefixes("192.168.1.0/24"), bits: 24, want: "10.81.1.0/24"},
		{name: "a larger used prefix blocks all it overlaps", grid: grid, used: prefixes("10.81.0.0/22"), bits: 24, want: "10.81.4.0/24"},
		{name: "unmasked grid", grid: netip.MustParsePrefix("10.81.7.9/16"), bits: 24, want: "10.81.1.0/24"},
		{name: "smaller subnets", grid: grid, used: prefixes("10.81.0.64/26"), bits: 26, want: "10.81.0.128/26"},
		{name: "last usable before the VPN prefix", grid: grid, used: all[:253], bits: 24, want: "10.81.254.0/24"},
		{name: "full: the VPN prefix is never handed out", grid: grid, used: all, bits: 24, wantErr: "is full"},
		{name: "too small to split", grid: netip.MustParsePrefix("10.81.0.0/23"), bits: 24, wantErr: "at least 3"},
		{name: "bits not longer than grid", grid: grid, bits: 16, wantErr: "must be longer"},
		{name: "bits beyond address length", grid: grid, bits: 33, wantErr: "must be longer"},
		{name: "split too large", grid: netip.MustParsePrefix("10.0.0.0/8"), bits: 30, wantErr: "at most 2^16"},
		{name: "invalid grid", bits: 24, wantErr: "invalid grid"},
		{name: "ipv6", grid: netip.MustParsePrefix("fd00:81::/48"), used: prefixes("fd00:81:0:1::/64"), bits: 64, want: "fd00:81:0:2::/64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AllocateSubnet(tt.grid, tt.used, tt.bits)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("AllocateSubnet() = %v, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("AllocateSubnet() = %v, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestAllocateSubnetSequence(t *testing.T) {
	grid := netip.MustParsePrefix("10.81.0.0/16")
	var used []netip.Prefix
	for i := range 254 {
		p, err := AllocateSubnet(grid, used, 24)
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		if p.Overlaps(VPNPrefix(grid, 24)) || p.Addr() == grid.Addr() {
			t.Fatalf("allocation %d returned reserved %s", i, p)
		}
		used = append(used, p)
	}
	if _, err := AllocateSubnet(grid, used, 24); err == nil {
		t.Fatal("255th allocation succeeded; want full")
	}
}

func TestVPNPrefix(t *testing.T) {
	tests := []struct {
		grid string
		bits int
		want string
	}{
		{DefaultGridPrefix, DefaultSubnetBits, "10.81.255.0/24"},
		{"10.81.0.0/16", 20, "10.81.240.0/20"},
		{"10.81.3.4/16", 24, "10.81.255.0/24"},
		{"172.16.0.0/12", 24, "172.31.255.0/24"},
		{"fd00::/48", 64, "fd00:0:0:ffff::/64"},
		{"10.81.0.0/16", 16, "invalid Prefix"},
	}
	for _, tt := range tests {
		if got := VPNPrefix(netip.MustParsePrefix(tt.grid), tt.bits); got.String() != tt.want {
			t.Errorf("VPNPrefix(%s, %d) = %s; want %s", tt.grid, tt.bits, got, tt.want)
		}
	}
}

func TestNodeAddr(t *testing.T) {
	tests := map[string]string{
		"10.81.1.0/24":     "10.81.1.1",
		"10.81.7.9/24":     "10.81.7.1",
		"10.81.0.128/26":   "10.81.0.129",
		"fd00:81:0:2::/64": "fd00:81:0:2::1",
	}
	for in, want := range tests {
		if got := NodeAddr(netip.MustParsePrefix(in)); got.String() != want {
			t.Errorf("NodeAddr(%s) = %s; want %s", in, got, want)
		}
	}
	if got := NodeAddr(netip.Prefix{}); got.IsValid() {
		t.Errorf("NodeAddr(invalid) = %s; want invalid", got)
	}
}

func TestLastAddr(t *testing.T) {
	tests := map[string]string{
		"10.81.0.0/16": "10.81.255.255",
		"10.81.1.0/24": "10.81.1.255",
		"10.81.1.0/27": "10.81.1.31",
		"10.81.1.5/32": "10.81.1.5",
		"0.0.0.0/0":    "255.255.255.255",
		"fd00::/120":   "fd00::ff",
		"fd00::/61":    "fd00::7:ffff:ffff:ffff:ffff",
	}
	for in, want := range tests {
		if got := lastAddr(netip.MustParsePrefix(in)); got.String() != want {
			t.Errorf("lastAddr(%s) = %s; want %s", in, got, want)
		}
	}
}
