package overlay

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func testKey(t *testing.T, b byte) wgtypes.Key {
	t.Helper()
	var k wgtypes.Key
	for i := range k {
		k[i] = b
	}
	return k
}

func udp(s string) *net.UDPAddr {
	return net.UDPAddrFromAddrPort(netip.MustParseAddrPort(s))
}

func ipnets(ss ...string) []net.IPNet {
	return toIPNets(prefixes(ss...))
}

// describe renders changes compactly for comparison.
func describe(changes []wgtypes.PeerConfig) string {
	var parts []string
	for _, c := range changes {
		s := changeKind(c) + " " + c.PublicKey.String()[:4]
		if c.Endpoint != nil {
			s += " ep=" + c.Endpoint.String()
		}
		if c.ReplaceAllowedIPs {
			var ps []string
			for _, p := range fromIPNets(c.AllowedIPs) {
				ps = append(ps, p.String())
			}
			s += " ips=" + strings.Join(ps, ",")
		}
		if c.PersistentKeepaliveInterval != nil {
			s += fmt.Sprintf(" ka=%s", *c.PersistentKeepaliveInterval)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

func TestDiffPeers(t *testing.T) {
	ka, kb, kc := testKey(t, 1), testKey(t, 2), testKey(t, 3)
	a4, b4, c4 := ka.String()[:4], kb.String()[:4], kc.String()[:4]
	curA := wgtypes.Peer{PublicKey: ka, Endpoint: udp("192.168.1.1:9703"), AllowedIPs: ipnets("10.81.1.0/24"), PersistentKeepaliveInterval: 25 * time.Second}
	curB := wgtypes.Peer{PublicKey: kb, Endpoint: udp("192.168.1.2:9703"), AllowedIPs: ipnets("10.81.2.0/24")}
	wantA := Peer{PublicKey: ka, Endpoint: udp("192.168.1.1:9703"), AllowedIPs: prefixes("10.81.1.0/24"), Keepalive: 25 * time.Second, Name: "node-a"}
	wantB := Peer{PublicKey: kb, Endpoint: udp("192.168.1.2:9703"), AllowedIPs: prefixes("10.81.2.0/24"), Name: "node-b"}

	tests := []struct {
		name    string
		current []wgtypes.Peer
		want    []Peer
		expect  string
	}{
		{name: "nothing to nothing"},
		{name: "add to empty", want: []Peer{wantA},
			expect: "added " + a4 + " ep=192.168.1.1:9703 ips=10.81.1.0/24 ka=25s"},
		{name: "add without endpoint or keepalive", want: []Peer{{PublicKey: kc, AllowedIPs: prefixes("10.81.255.2/32")}},
			expect: "added " + c4 + " ips=10.81.255.2/32"},
		{name: "unchanged peers are left alone", current: []wgtypes.Peer{curA, curB}, want: []Peer{wantA, wantB}},
		{name: "unchanged despite another spelling", current: []wgtypes.Peer{curA},
			want: []Peer{{PublicKey: ka, Endpoint: udp("[::ffff:192.168.1.1]:9703"), AllowedIPs: prefixes("10.81.1.7/24", "10.81.1.0/24"), Keepalive: 25*time.Second + 300*time.Millisecond}}},
		{name: "unchanged when no endpoint is wanted (the peer roamed to us)", current: []wgtypes.Peer{curB},
			want: []Peer{{PublicKey: kb, AllowedIPs: prefixes("10.81.2.0/24")}}},
		{name: "remove all", current: []wgtypes.Peer{curB, curA}, want: nil,
			expect: "removed " + a4 + "; removed " + b4},
		{name: "endpoint changed", current: []wgtypes.Peer{curA},
			want:   []Peer{{PublicKey: ka, Endpoint: udp("192.168.1.9:9703"), AllowedIPs: prefixes("10.81.1.0/24"), Keepalive: 25 * time.Second}},
			expect: "updated " + a4 + " ep=192.168.1.9:9703"},
		{name: "port changed", current: []wgtypes.Peer{curA},
			want:   []Peer{{PublicKey: ka, Endpoint: udp("192.168.1.1:9704"), AllowedIPs: prefixes("10.81.1.0/24"), Keepalive: 25 * time.Second}},
			expect: "updated " + a4 + " ep=192.168.1.1:9704"},
		{name: "allowed IPs changed are replaced, not appended", current: []wgtypes.Peer{curA},
			want:   []Peer{{PublicKey: ka, Endpoint: udp("192.168.1.1:9703"), AllowedIPs: prefixes("10.81.1.0/24", "10.81.255.0/24"), Keepalive: 25 * time.Second}},
			expect: "updated " + a4 + " ips=10.81.1.0/24,10.81.255.0/24"},
		{name: "allowed IPs emptied", current: []wgtypes.Peer{curA},
			want:   []Peer{{PublicKey: ka, Endpoint: udp("192.168.1.1:9703"), Keepalive: 25 * time.Second}},
			expect: "updated " + a4 + " ips="},
		{name: "keepalive turned off", current: []wgtypes.Peer{curA},
			want:   []Peer{{PublicKey: ka, Endpoint: udp("192.168.1.1:9703"), AllowedIPs: prefixes("10.81.1.0/24")}},
			expect: "updated " + a4 + " ka=0s"},
		{name: "mixed: remove first, then add and update in wanted order", current: []wgtypes.Peer{curA, curB},
			want: []Peer{
				{PublicKey: kc, Endpoint: udp("192.168.1.3:9703"), AllowedIPs: prefixes("10.81.2.0/24")}, // b re-joined as c
				{PublicKey: ka, Endpoint: udp("192.168.1.1:9703"), AllowedIPs: prefixes("10.81.1.0/24"), Keepalive: 10 * time.Second},
			},
			expect: "removed " + b4 + "; added " + c4 + " ep=192.168.1.3:9703 ips=10.81.2.0/24; updated " + a4 + " ka=10s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			changes, err := diffPeers(tt.current, tt.want)
			if err != nil {
				t.Fatal(err)
			}
			if got := describe(changes); got != tt.expect {
				t.Fatalf("diffPeers:\n got: %s\nwant: %s", got, tt.expect)
			}
			for _, c := range changes {
				if !c.Remove && !c.UpdateOnly && !c.ReplaceAllowedIPs {
					t.Errorf("added peer %s without ReplaceAllowedIPs", c.PublicKey)
				}
				if c.PresharedKey != nil {
					t.Errorf("peer %s: preshared key touched", c.PublicKey)
				}
			}
		})
	}
}

func TestDiffPeersRejectsBadInput(t *testing.T) {
	k := testKey(t, 7)
	tests := []struct {
		name    string
		want    []Peer
		wantErr string
	}{
		{"zero key", []Peer{{Name: "x"}}, "no public key"},
		{"duplicate", []Peer{{PublicKey: k, Name: "x"}, {PublicKey: k, Name: "y"}}, "listed twice"},
		{"invalid prefix", []Peer{{PublicKey: k, AllowedIPs: []netip.Prefix{{}}}}, "invalid allowed IP"},
		{"negative keepalive", []Peer{{PublicKey: k, Keepalive: -time.Second}}, "negative keepalive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := diffPeers(nil, tt.want); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("diffPeers = %v; want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestPeerStatus(t *testing.T) {
	k := testKey(t, 9)
	hs := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	got := peerStatus(wgtypes.Peer{
		PublicKey: k, Endpoint: udp("192.168.1.1:9703"),
		AllowedIPs:        []net.IPNet{{IP: net.ParseIP("10.81.2.0"), Mask: net.CIDRMask(24, 32)}, {IP: net.IPv4(10, 81, 1, 0).To4(), Mask: net.CIDRMask(24, 32)}},
		LastHandshakeTime: hs, ReceiveBytes: 10, TransmitBytes: 20,
	}, "node-2")
	if got.Name != "node-2" || got.PublicKey != k.String() || got.Endpoint != "192.168.1.1:9703" ||
		!got.LastHandshake.Equal(hs) || got.RxBytes != 10 || got.TxBytes != 20 ||
		strings.Join(got.AllowedIPs, ",") != "10.81.1.0/24,10.81.2.0/24" {
		t.Fatalf("peerStatus = %+v", got)
	}
	never := peerStatus(wgtypes.Peer{PublicKey: k, LastHandshakeTime: time.Unix(0, 0)}, "")
	if !never.LastHandshake.IsZero() || never.Endpoint != "" || never.AllowedIPs == nil {
		t.Fatalf("peerStatus(never) = %+v", never)
	}
}
