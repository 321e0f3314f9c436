package fsm

import (
	"errors"
	"strings"
	"testing"
)

func TestOverlaySubnetsAndVPN(t *testing.T) {
	s := newStore(t)
	idx := uint64(10)
	apply := func(cmd Command) (any, error) {
		idx++
		return s.Apply(idx, cmd, audit("admin"))
	}
	n1, _ := s.Node("n1")
	if n1.Overlay.Subnet != "10.81.1.0/24" || n1.Overlay.Address != "10.81.1.1" {
		t.Fatalf("bootstrap node overlay = %+v, want the first free /24 (x.x.0.0/24 is reserved)", n1.Overlay)
	}
	for i, name := range []string{"n2", "n3"} {
		if _, err := apply(&NodeRegister{Node: Node{ID: "id-" + name, Name: name, Role: RoleWorker}}); err != nil {
			t.Fatal(err)
		}
		n, _ := s.Node(name)
		if want := []string{"10.81.2.0/24", "10.81.3.0/24"}[i]; n.Overlay.Subnet != want {
			t.Fatalf("%s subnet %s, want %s", name, n.Overlay.Subnet, want)
		}
	}
	// A removed node's subnet is free again and the lowest free one is taken.
	if _, err := apply(&NodeStatus{Updates: []NodeStatusUpdate{{ID: "id-n2", Status: StatusOffline, At: t0}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := apply(&NodeRemove{ID: "id-n2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := apply(&NodeRegister{Node: Node{ID: "id-n4", Name: "n4", Role: RoleWorker}}); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Node("n4"); n.Overlay.Subnet != "10.81.2.0/24" {
		t.Fatalf("n4 subnet %s, want the freed 10.81.2.0/24", n.Overlay.Subnet)
	}

	// The node sets its key; the subnet stays.
	if _, err := apply(&NodeOverlaySet{ID: "id-1", PublicKey: "pub1", Port: 9703, Interface: "userspace"}); err != nil {
		t.Fatal(err)
	}
	n1, _ = s.Node("n1")
	if n1.Overlay.PublicKey != "pub1" || n1.Overlay.Port != 9703 || n1.Overlay.Subnet != "10.81.1.0/24" {
		t.Fatalf("after overlay set: %+v", n1.Overlay)
	}

	tests := []struct {
		name    string
		cmd     Command
		wantErr error
		wantIP  string
	}{
		{"first client", &VPNCreate{Name: "laptop", PublicKey: "vk1", NodeID: "id-1"}, nil, "10.81.255.1"},
		{"second client", &VPNCreate{Name: "desk", PublicKey: "vk2", NodeID: "id-1"}, nil, "10.81.255.2"},
		{"same name", &VPNCreate{Name: "laptop", PublicKey: "vk3", NodeID: "id-1"}, ErrConflict, ""},
		{"same key", &VPNCreate{Name: "other", PublicKey: "vk1", NodeID: "id-1"}, ErrConflict, ""},
		{"bad name", &VPNCreate{Name: "Bad Name", PublicKey: "vk4", NodeID: "id-1"}, ErrInvalid, ""},
		{"no key", &VPNCreate{Name: "nokey", NodeID: "id-1"}, ErrInvalid, ""},
		{"node with the overlay off", &VPNCreate{Name: "x", PublicKey: "vk5", NodeID: "id-n3"}, ErrInvalid, ""},
		{"unknown node", &VPNCreate{Name: "y", PublicKey: "vk6", NodeID: "nope"}, ErrNotFound, ""},
		{"remove unknown", &VPNRemove{Name: "nope"}, ErrNotFound, ""},
		{"remove laptop", &VPNRemove{Name: "laptop"}, nil, ""},
		{"freed address is reused", &VPNCreate{Name: "phone", PublicKey: "vk7", NodeID: "id-1"}, nil, "10.81.255.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := apply(tc.cmd)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantIP != "" {
				if p := res.(*VPNPeer); p.Address != tc.wantIP {
					t.Fatalf("address %s, want %s", p.Address, tc.wantIP)
				}
			}
		})
	}
	g, _ := s.Grid()
	if len(g.VPNPeers) != 2 {
		t.Fatalf("vpn peers %+v, want desk and phone", g.VPNPeers)
	}

	// A client through n4; removing n4 revokes it, not those through n1.
	if _, err := apply(&NodeOverlaySet{ID: "id-n4", PublicKey: "pub4", Port: 9703}); err != nil {
		t.Fatal(err)
	}
	if _, err := apply(&VPNCreate{Name: "via4", PublicKey: "vk8", NodeID: "id-n4"}); err != nil {
		t.Fatal(err)
	}
	if _, err := apply(&NodeStatus{Updates: []NodeStatusUpdate{{ID: "id-n4", Status: StatusOffline}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := apply(&NodeRemove{ID: "id-n4"}); err != nil {
		t.Fatal(err)
	}
	g, _ = s.Grid()
	var names []string
	for _, p := range g.VPNPeers {
		names = append(names, p.Name)
	}
	if strings.Join(names, ",") != "desk,phone" {
		t.Fatalf("vpn peers after removing n4: %v, want desk,phone", names)
	}
	evs, _ := s.Events(0)
	if last := evs[len(evs)-1]; !strings.Contains(last.Message, "VPN clients via4 revoked") {
		t.Fatalf("removal event %q does not name the revoked client", last.Message)
	}
}
