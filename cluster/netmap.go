package cluster

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/dns"
	"github.com/kontena-ng/kontena/fsm"
)

// getNetMap is what a node's network loop watches (a blocking query): its
// WireGuard peers and the DNS records of the grid.
func (n *Node) getNetMap(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, node, err := n.pathNode(r)
	if err != nil {
		return err
	}
	if p.Node != node.ID && !p.admin() {
		return api.Errorf(api.CodeForbidden, "only node %s itself may read its network map", node.Name)
	}
	if err := blockingWaitTables(r, store, fsm.TableNodes, fsm.TableGrid, fsm.TableStacks, fsm.TableServices, fsm.TableInstances); err != nil {
		return err
	}
	// One read of the state: peers and records as they were after the same
	// command.
	v := store.Snapshot()
	idx := v.Index()
	g, err := v.Grid()
	if err != nil {
		return err
	}
	nodes, err := v.Nodes()
	if err != nil {
		return err
	}
	stacks, err := v.Stacks()
	if err != nil {
		return err
	}
	svcs, err := v.Services("")
	if err != nil {
		return err
	}
	insts, err := v.Instances("")
	if err != nil {
		return err
	}
	return writeJSON(w, idx, buildNetMap(g, nodes, stacks, svcs, insts, node.ID))
}

// buildNetMap computes node self's view of the data plane. Peers within the
// same region label talk over private addresses, across regions over public
// ones. DNS has the running instances of online nodes only: a client asking
// for a service should not get the address of a machine that is gone.
func buildNetMap(g *fsm.Grid, nodes []*fsm.Node, stacks []*fsm.Stack, svcs []*fsm.Service, insts []*fsm.Instance, self string) *api.NetMap {
	nm := &api.NetMap{Grid: g.Name, GridSubnet: g.Subnet, Peers: []api.NetPeer{}, Records: []api.DNSRecord{}, Exposes: map[string]string{}}
	var me *fsm.Node
	for _, nd := range nodes {
		if nd.ID == self {
			me = nd
		}
	}
	if me == nil {
		return nm
	}
	nm.Self = api.NetNode{ID: me.ID, Name: me.Name, Subnet: me.Overlay.Subnet, Address: me.Overlay.Address,
		PublicKey: me.Overlay.PublicKey, Port: me.Overlay.Port}
	myRegion, _ := me.Label("region")
	vpnVia := map[string][]string{} // node ID -> VPN client /32s routed through it
	for _, v := range g.VPNPeers {
		vpnVia[v.NodeID] = append(vpnVia[v.NodeID], v.Address+"/32")
		if v.NodeID == self {
			nm.Peers = append(nm.Peers, api.NetPeer{Name: "vpn:" + v.Name, PublicKey: v.PublicKey, AllowedIPs: []string{v.Address + "/32"}, VPN: true})
		}
	}
	online := map[string]bool{}
	for _, nd := range nodes {
		if nd.Role == fsm.RoleVoter {
			nm.Voters = append(nm.Voters, api.NetVoter{ID: nd.ID, Name: nd.Name})
		}
		online[nd.ID] = nd.Status == fsm.StatusOnline
		if nd.ID == self || nd.Overlay.PublicKey == "" || nd.Overlay.Port == 0 || nd.Overlay.Subnet == "" {
			continue
		}
		host := nd.Addr
		if region, _ := nd.Label("region"); region != myRegion && nd.PublicAddr != "" {
			host = nd.PublicAddr
		}
		peer := api.NetPeer{Name: nd.Name, PublicKey: nd.Overlay.PublicKey,
			Endpoint:   net.JoinHostPort(host, strconv.Itoa(nd.Overlay.Port)),
			AllowedIPs: append([]string{nd.Overlay.Subnet}, vpnVia[nd.ID]...)}
		nm.Peers = append(nm.Peers, peer)
	}
	slices.SortFunc(nm.Peers, func(a, b api.NetPeer) int { return cmpString(a.Name, b.Name) })
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
		nm.Records = append(nm.Records, api.DNSRecord{Stack: s.Stack, Service: s.Name, Instance: in.Number, IP: in.Actual.IP,
			Healthy: in.Actual.Health == fsm.HealthNone || in.Actual.Health == fsm.HealthHealthy})
	}
	slices.SortFunc(nm.Records, func(a, b api.DNSRecord) int {
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

// setOverlay records a node's WireGuard key and port; only the node itself
// may set them.
func (n *Node) setOverlay(w http.ResponseWriter, r *http.Request, p *principal) error {
	var req api.OverlaySetRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	_, node, err := n.pathNode(r)
	if err != nil {
		return err
	}
	if p.Node != node.ID {
		return api.Errorf(api.CodeForbidden, "only node %s itself may set its overlay key", node.Name)
	}
	res, idx, err := n.apply(r.Context(), &fsm.NodeOverlaySet{ID: node.ID, PublicKey: req.PublicKey, Port: req.Port, Interface: req.Interface}, nil)
	if err != nil {
		return err
	}
	return writeJSON(w, idx, res)
}

// getOverlayStatus asks a node how its overlay runs: device, peers and
// their last handshakes, resolver addresses.
func (n *Node) getOverlayStatus(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, node, err := n.pathNode(r)
	if err != nil {
		return err
	}
	var st api.NodeStatus
	if node.ID == n.id.ID {
		st = n.status()
	} else {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		c := api.NewClientTLS([]string{net.JoinHostPort(node.Addr, strconv.Itoa(node.APIPort))}, n.clientTLS, "")
		if _, err := c.Do(ctx, http.MethodGet, "/v1/internal/status", nil, &st); err != nil {
			return api.Errorf(api.CodeUnavailable, "node %s does not answer (%s): %v", node.Name, node.Status, err)
		}
	}
	if st.Overlay == nil {
		st.Overlay = &api.OverlayStatus{}
	}
	return writeJSON(w, store.Index(), st.Overlay)
}

// setResources records what a node's engine has; only the node itself may.
func (n *Node) setResources(w http.ResponseWriter, r *http.Request, p *principal) error {
	var res fsm.NodeResources
	if err := decodeBody(r, &res); err != nil {
		return err
	}
	_, node, err := n.pathNode(r)
	if err != nil {
		return err
	}
	if p.Node != node.ID {
		return api.Errorf(api.CodeForbidden, "only node %s itself may report its resources", node.Name)
	}
	out, idx, err := n.apply(r.Context(), &fsm.NodeResourcesSet{ID: node.ID, Resources: res}, nil)
	if err != nil {
		return err
	}
	return writeJSON(w, idx, out)
}
