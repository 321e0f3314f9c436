package dispatcher

import (
	"net"
	"slices"
	"strconv"

	"github.com/kontena-ng/kontena/dns"
	"github.com/kontena-ng/kontena/fsm"
)

// buildNetMap computes node self's view of the data plane. Peers within the
// same region label talk over private addresses, across regions over public
// ones. DNS has the running instances of online nodes only: a client asking
// for a service should not get the address of a machine that is gone.
func buildNetMap(g *fsm.Grid, nodes []*fsm.Node, stacks []*fsm.Stack, svcs []*fsm.Service, insts []*fsm.Instance, self string) *NetMap {
	nm := &NetMap{Grid: g.Name, GridSubnet: g.Subnet, Peers: []NetPeer{}, Records: []DNSRecord{}, Exposes: map[string]string{}}
	var me *fsm.Node
	for _, nd := range nodes {
		if nd.ID == self {
			me = nd
		}
	}
	if me == nil {
		return nm
	}
	nm.Self = NetNode{ID: me.ID, Name: me.Name, Subnet: me.Overlay.Subnet, Address: me.Overlay.Address,
		PublicKey: me.Overlay.PublicKey, Port: me.Overlay.Port}
	myRegion, _ := me.Label("region")
	vpnVia := map[string][]string{} // node ID -> VPN client /32s routed through it
	for _, v := range g.VPNPeers {
		vpnVia[v.NodeID] = append(vpnVia[v.NodeID], v.Address+"/32")
		if v.NodeID == self {
			nm.Peers = append(nm.Peers, NetPeer{Name: "vpn:" + v.Name, PublicKey: v.PublicKey, AllowedIPs: []string{v.Address + "/32"}, VPN: true})
		}
	}
	online := map[string]bool{}
	for _, nd := range nodes {
		if nd.Role == fsm.RoleVoter {
			nm.Voters = append(nm.Voters, NetVoter{ID: nd.ID, Name: nd.Name})
		}
		online[nd.ID] = nd.Status == fsm.StatusOnline
		if nd.ID == self || nd.Overlay.PublicKey == "" || nd.Overlay.Port == 0 || nd.Overlay.Subnet == "" {
			continue
		}
		host := nd.Addr
		if region, _ := nd.Label("region"); region != myRegion && nd.PublicAddr != "" {
			host = nd.PublicAddr
		}
		peer := NetPeer{Name: nd.Name, PublicKey: nd.Overlay.PublicKey,
			Endpoint:   net.JoinHostPort(host, strconv.Itoa(nd.Overlay.Port)),
			AllowedIPs: append([]string{nd.Overlay.Subnet}, vpnVia[nd.ID]...)}
		nm.Peers = append(nm.Peers, peer)
	}
	slices.SortFunc(nm.Peers, func(a, b NetPeer) int { return cmpString(a.Name, b.Name) })
	for _, st := range stacks {
		if st.Spec.Expose != "" {
			nm.Exposes[dns.ExposeKey(g.Name, st.Name)] = st.Spec.Expose
		}
	}
	svcByID := map[string]*fsm.Service{}
	for _, s := range svcs {
		svcByID[s.ID] = s
	}
	for _, in := range insts {
		s := svcByID[in.ServiceID]
		if s == nil || in.Actual.State != fsm.StateRunning || in.Actual.IP == "" || !online[in.NodeID] {
			continue
		}
		nm.Records = append(nm.Records, DNSRecord{Stack: s.Stack, Service: s.Name, Instance: in.Number, IP: in.Actual.IP,
			Healthy: in.Actual.Health == fsm.HealthNone || in.Actual.Health == fsm.HealthHealthy})
	}
	slices.SortFunc(nm.Records, func(a, b DNSRecord) int {
		if c := cmpString(a.Stack+"/"+a.Service, b.Stack+"/"+b.Service); c != 0 {
			return c
		}
		return a.Instance - b.Instance
	})
	return nm
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
