package overlay

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// createKernel creates a kernel WireGuard interface; it fails with
// EOPNOTSUPP ("Unknown device type") where the kernel has no WireGuard.
func createKernel(name string, mtu int) error {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	attrs.MTU = mtu
	if err := netlink.LinkAdd(&netlink.Wireguard{LinkAttrs: attrs}); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("overlay: kernel has no WireGuard (load the wireguard module or use mode %q): %w", ModeUserspace, err)
		}
		return fmt.Errorf("overlay: create kernel WireGuard interface %s (needs CAP_NET_ADMIN): %w", name, err)
	}
	return nil
}

// takeOverStale removes what a previous run left behind under name, so that
// Up starts from a clean interface. A WireGuard or TUN interface nobody
// serves is ours from a crash; anything else, or one a live process still
// serves, is refused rather than destroyed.
func takeOverStale(name string, log *slog.Logger) error {
	if uapiInUse(name) {
		return fmt.Errorf("overlay: interface %s is served by a running process (socket %s); stop the other kontena or wireguard-go, or choose another interface name", name, uapiPath(name))
	}
	link, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("overlay: look up interface %s: %w", name, err)
	}
	switch t := link.Type(); t {
	case "wireguard", "tun", "tuntap":
		log.Info("overlay: removing stale interface from a previous run", "type", t)
		if err := netlink.LinkDel(link); err != nil {
			return fmt.Errorf("overlay: remove stale interface %s: %w", name, err)
		}
		return nil
	default:
		return fmt.Errorf("overlay: interface %s already exists and is a %s device, not WireGuard; remove it or choose another interface name", name, t)
	}
}

// checkGridRoute refuses to take the grid prefix away from another
// interface (a second overlay on this host, or one configured under another
// name) and warns about host routes inside the grid that would win over it.
// The node's own container subnet on its bridge is such a route, and meant.
func checkGridRoute(name string, grid, subnet netip.Prefix, log *slog.Logger) error {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("overlay: list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		dst, ok := netipPrefix(r.Dst)
		if !ok || !dst.Overlaps(grid) {
			continue
		}
		via := linkName(r.LinkIndex)
		if via == name {
			continue // ours, from a previous run: replaced below
		}
		if dst == grid {
			return fmt.Errorf("overlay: the grid prefix %s is already routed via %s (another overlay on this host?); stop it or remove the route", grid, via)
		}
		if subnet.IsValid() && subnet.Contains(dst.Addr()) && dst.Bits() >= subnet.Bits() {
			continue
		}
		log.Warn("overlay: a host route overlaps the grid prefix; grid addresses in it are not reachable through the overlay",
			"route", dst, "via", via, "grid", grid)
	}
	return nil
}

func linkName(index int) string {
	if l, err := netlink.LinkByIndex(index); err == nil {
		return l.Attrs().Name
	}
	return fmt.Sprintf("ifindex %d", index)
}

func netipPrefix(n *net.IPNet) (netip.Prefix, bool) {
	addr, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	if addr.Is4In6() {
		addr = addr.Unmap()
		if ones > 32 {
			ones -= 96
		}
	}
	return netip.PrefixFrom(addr, ones), true
}

// configureLink sets MTU and the node address (as /32: the grid route, not
// the address, decides what goes into the tunnel) and brings the link up.
func configureLink(name string, addr netip.Addr, mtu int) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("overlay: look up interface %s: %w", name, err)
	}
	if err := netlink.LinkSetMTU(link, mtu); err != nil {
		return fmt.Errorf("overlay: set MTU %d on %s: %w", mtu, name, err)
	}
	want := netip.PrefixFrom(addr, addr.BitLen())
	family := netlink.FAMILY_V4
	if addr.Is6() {
		family = netlink.FAMILY_V6
	}
	existing, err := netlink.AddrList(link, family)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("overlay: list addresses of %s: %w", name, err)
	}
	for _, a := range existing {
		if a.IPNet != nil && a.IPNet.String() != want.String() {
			if err := netlink.AddrDel(link, &a); err != nil {
				return fmt.Errorf("overlay: remove old address %s from %s: %w", a.IPNet, name, err)
			}
		}
	}
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: ipNet(want)}); err != nil {
		return fmt.Errorf("overlay: assign %s to %s: %w", want, name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("overlay: bring %s up: %w", name, err)
	}
	return nil
}

// gridRoute sends the whole grid prefix into the interface, with the node
// address as source: without it, traffic the host itself sends into the
// grid would leave with its underlay address, which no peer's allowed IPs
// accept.
func gridRoute(link netlink.Link, grid netip.Prefix, src netip.Addr) *netlink.Route {
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(grid), Scope: netlink.SCOPE_LINK}
	if src.IsValid() {
		r.Src = net.IP(src.AsSlice())
	}
	return r
}

func routeGrid(name string, grid netip.Prefix, src netip.Addr) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("overlay: look up interface %s: %w", name, err)
	}
	if err := netlink.RouteReplace(gridRoute(link, grid, src)); err != nil {
		return fmt.Errorf("overlay: route %s via %s: %w", grid, name, err)
	}
	return nil
}

func unrouteGrid(name string, grid netip.Prefix) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil // no interface, no route
	}
	err = netlink.RouteDel(gridRoute(link, grid, netip.Addr{}))
	if err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("remove route %s: %w", grid, err)
	}
	return nil
}

func deleteLink(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil // already gone (a closed TUN takes its interface along)
	}
	if err := netlink.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("remove interface: %w", err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Masked().Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// enableIPForward turns on IPv4 forwarding: the node routes between its
// container bridge and the tunnel.
func enableIPForward() error {
	const path = "/proc/sys/net/ipv4/ip_forward"
	if cur, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(cur)) == "1" {
		return nil
	}
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("overlay: enable IPv4 forwarding (%s): %w; run with CAP_NET_ADMIN and a writable /proc/sys, or set net.ipv4.ip_forward=1 on the host", path, err)
	}
	return nil
}
