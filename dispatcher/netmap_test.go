package dispatcher

import (
	"testing"

	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/stack"
)

func TestBuildNetMap(t *testing.T) {
	g := &fsm.Grid{Name: "g", Subnet: "10.81.0.0/16", VPNPeers: []fsm.VPNPeer{
		{Name: "laptop", PublicKey: "vpnkey", Address: "10.81.255.1", NodeID: "n2"},
	}}
	nodes := []*fsm.Node{
		{ID: "n1", Name: "a", Addr: "192.168.1.1", PublicAddr: "1.1.1.1", Status: fsm.StatusOnline, Labels: []string{"region=eu"},
			Overlay: fsm.NodeOverlay{PublicKey: "k1", Port: 9703, Subnet: "10.81.1.0/24", Address: "10.81.1.1"}},
		{ID: "n2", Name: "b", Addr: "192.168.1.2", PublicAddr: "2.2.2.2", Status: fsm.StatusOnline, Labels: []string{"region=eu"},
			Overlay: fsm.NodeOverlay{PublicKey: "k2", Port: 9703, Subnet: "10.81.2.0/24", Address: "10.81.2.1"}},
		{ID: "n3", Name: "c", Addr: "10.0.0.3", PublicAddr: "3.3.3.3", Status: fsm.StatusOffline, Labels: []string{"region=us"},
			Overlay: fsm.NodeOverlay{PublicKey: "k3", Port: 9703, Subnet: "10.81.3.0/24", Address: "10.81.3.1"}},
		// overlay off: no peer entry
		{ID: "n4", Name: "d", Addr: "10.0.0.4", Status: fsm.StatusOnline, Overlay: fsm.NodeOverlay{Subnet: "10.81.4.0/24"}},
	}
	stacks := []*fsm.Stack{{Name: "shop", Spec: stack.Stack{Expose: "web"}}}
	svcs := []*fsm.Service{{ID: "shop/web", Stack: "shop", Name: "web"}, {ID: "shop/db", Stack: "shop", Name: "db"}}
	insts := []*fsm.Instance{
		{ID: "shop/web-1", ServiceID: "shop/web", Number: 1, NodeID: "n1", Actual: fsm.InstanceActual{State: "running", IP: "10.81.1.2"}},
		{ID: "shop/web-2", ServiceID: "shop/web", Number: 2, NodeID: "n2", Actual: fsm.InstanceActual{State: "running", IP: "10.81.2.2", Health: "unhealthy"}},
		{ID: "shop/web-3", ServiceID: "shop/web", Number: 3, NodeID: "n3", Actual: fsm.InstanceActual{State: "running", IP: "10.81.3.2"}}, // offline node
		{ID: "shop/db-1", ServiceID: "shop/db", Number: 1, NodeID: "n2", Actual: fsm.InstanceActual{State: "exited", IP: "10.81.2.3"}},
		{ID: "shop/db-2", ServiceID: "shop/db", Number: 2, NodeID: "n2", Actual: fsm.InstanceActual{State: "running"}}, // no IP yet
	}

	t.Run("node a", func(t *testing.T) {
		nm := buildNetMap(g, nodes, stacks, svcs, insts, "n1")
		if nm.Self.Subnet != "10.81.1.0/24" || nm.Self.Address != "10.81.1.1" || nm.Self.PublicKey != "k1" {
			t.Fatalf("self = %+v", nm.Self)
		}
		if len(nm.Peers) != 2 {
			t.Fatalf("peers = %+v, want b and c", nm.Peers)
		}
		b, c := nm.Peers[0], nm.Peers[1]
		if b.Name != "b" || b.Endpoint != "192.168.1.2:9703" {
			t.Errorf("same region peer: %+v (want the private address)", b)
		}
		if got := b.AllowedIPs; len(got) != 2 || got[0] != "10.81.2.0/24" || got[1] != "10.81.255.1/32" {
			t.Errorf("b allowed IPs %v: its subnet plus the VPN client routed through it", got)
		}
		if c.Name != "c" || c.Endpoint != "3.3.3.3:9703" {
			t.Errorf("other region peer: %+v (want the public address)", c)
		}
		if len(nm.Records) != 2 {
			t.Fatalf("records = %+v, want web-1 and web-2 (running, with an IP, on online nodes)", nm.Records)
		}
		if r := nm.Records[1]; r.Instance != 2 || r.Healthy {
			t.Errorf("unhealthy instance recorded as %+v", r)
		}
		if nm.Exposes["g/shop"] != "web" {
			t.Errorf("exposes = %v", nm.Exposes)
		}
	})
	t.Run("node b ends the VPN tunnel", func(t *testing.T) {
		nm := buildNetMap(g, nodes, stacks, svcs, insts, "n2")
		var vpn int
		for _, p := range nm.Peers {
			if p.VPN {
				vpn++
				if p.PublicKey != "vpnkey" || p.Endpoint != "" || p.AllowedIPs[0] != "10.81.255.1/32" {
					t.Errorf("vpn peer %+v", p)
				}
			}
			if p.Name == "a" && len(p.AllowedIPs) != 1 {
				t.Errorf("a routes %v; the VPN client is not behind a", p.AllowedIPs)
			}
		}
		if vpn != 1 {
			t.Fatalf("peers %+v: want exactly one VPN peer", nm.Peers)
		}
	})
	t.Run("unknown node", func(t *testing.T) {
		nm := buildNetMap(g, nodes, stacks, svcs, insts, "nope")
		if len(nm.Peers) != 0 || nm.Self.Subnet != "" {
			t.Fatalf("%+v", nm)
		}
	})
}
