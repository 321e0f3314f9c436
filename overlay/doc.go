// Package overlay is the grid's container network: a full mesh of
// WireGuard tunnels between nodes, with one address space (the grid prefix,
// DefaultGridPrefix) for every container of the grid.
//
// # Addressing
//
// The leader cuts the grid prefix into per-node subnets (a /24 out of a /16
// by default) and hands one out once, when a node joins (AllocateSubnet),
// recording it in the replicated state. Doing it at join and only there
// means the one decision that needs agreement between nodes is taken under
// Raft, and never again: a node keeps its subnet across restarts and leader
// changes, so its containers never need renumbering. The first subnet is
// reserved and the last one belongs to VPN clients (VPNPrefix), so VPN
// addresses can never collide with a node that joined later.
//
// The node's first host address (NodeAddr, x.x.N.1) is both its address on
// the WireGuard interface and the gateway of its container bridge: from
// anywhere in the grid, that one address reaches the node.
//
// Container addresses are allocated by the node itself (Allocator), from
// its own subnet, with a local file as the only state. No other node can
// allocate from that subnet, so there is nothing to agree on and starting a
// container never waits for a quorum, nor fails when the masters are
// unreachable. Allocations survive restarts, an instance keeps its address
// while allocated (a replaced container comes back where it was), and a
// round-robin cursor delays reuse of a released address so that stale DNS
// answers and connections hit nothing rather than another container.
//
// # Routing
//
// Every node is a WireGuard peer of every other node (full mesh): a peer's
// allowed IPs are its subnet, so the tunnel both routes to and
// authenticates the containers behind each node. There is no encapsulation
// beyond WireGuard and no NAT inside the grid: containers see each other's
// real addresses, which is what makes grid DNS and service discovery
// simple. The whole grid prefix is routed into the interface, with the
// node address as source so that the host's own traffic into the grid
// passes the peers' allowed-IP check; the node's own subnet is more
// specific and stays on the local bridge. Traffic leaving the grid is
// masqueraded by the host (EnsureForwarding). SetPeers only touches the
// peers that changed, so reconciling the mesh every few seconds never
// disturbs a working tunnel.
//
// # Kernel or userspace
//
// Kernel WireGuard is used where the kernel has it: it is faster and costs
// no process memory. Elsewhere (containers, minimal kernels) the binary
// embeds wireguard-go on a TUN device, which needs only /dev/net/tun and
// CAP_NET_ADMIN. Both are configured through wgctrl (the userspace device
// serves the same UAPI socket as wireguard-go's daemon), so everything above
// Up runs one code path, and `wg show` works either way.
//
// # Memory
//
// wireguard-go takes a 64 KiB buffer per packet in flight from pools that
// are unbounded on Linux (device.PreallocatedBuffersPerPool is a constant
// 0 there, so it cannot be lowered from outside the library), and under
// load the process grew to 150-390 MB. Since the overlay shares the process
// with the rest of the node, Up gives the process a soft memory limit
// (Config.MemoryLimit, DefaultMemoryLimit) when it runs the userspace device
// and no limit was set otherwise: the garbage collector then returns idle
// pool buffers early instead of letting the heap double. It bounds memory
// at the price of more GC work near the limit, never by failing
// allocations; GOMEMLIMIT, when set, wins.
package overlay
