package overlay

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

const (
	// DefaultInterface is the name of the node's WireGuard interface.
	DefaultInterface = "kontena0"
	// DefaultListenPort is the UDP port WireGuard listens on; every node's
	// firewall must let it in from the other nodes.
	DefaultListenPort = 9703
	// DefaultMTU leaves room for the WireGuard header (60 bytes over IPv4,
	// 80 over IPv6) inside a 1500-byte underlay.
	DefaultMTU = 1420
	// DefaultMemoryLimit is the soft memory limit Up gives the process when
	// it runs the userspace device and nothing else set one: see doc.go.
	DefaultMemoryLimit = 256 << 20
)

// Device modes (Config.Mode and Device.Mode).
const (
	ModeAuto      = "auto"
	ModeKernel    = "kernel"
	ModeUserspace = "userspace"
)

// Config describes the node's WireGuard interface.
type Config struct {
	Interface  string      // default DefaultInterface
	ListenPort int         // UDP; default DefaultListenPort
	PrivateKey wgtypes.Key // from LoadOrCreateKey
	Address    netip.Addr  // the node's overlay address, NodeAddr(Subnet)
	Subnet     netip.Prefix
	Grid       netip.Prefix // the whole grid prefix, routed into the interface
	MTU        int          // default DefaultMTU
	Logger     *slog.Logger // default slog.Default()
	// Mode is ModeAuto (kernel WireGuard when the kernel has it, else the
	// embedded userspace implementation), ModeKernel or ModeUserspace.
	Mode string
	// MemoryLimit is the soft limit (runtime/debug.SetMemoryLimit) Up sets
	// for the whole process when it runs the userspace device, unless the
	// process already has one (GOMEMLIMIT). 0 means DefaultMemoryLimit; a
	// negative value leaves the runtime alone.
	MemoryLimit int64
}

// ifaceName is what the kernel accepts as an interface name (IFNAMSIZ-1)
// and what is safe as a UAPI socket file name.
var ifaceName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)

// withDefaults fills in defaults and rejects what would fail later with a
// less helpful message.
func (c Config) withDefaults() (Config, error) {
	if c.Interface == "" {
		c.Interface = DefaultInterface
	}
	if c.ListenPort == 0 {
		c.ListenPort = DefaultListenPort
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.Mode == "" {
		c.Mode = ModeAuto
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MemoryLimit == 0 {
		c.MemoryLimit = DefaultMemoryLimit
	}
	var errs []error
	if !ifaceName.MatchString(c.Interface) || c.Interface == "." || c.Interface == ".." {
		errs = append(errs, fmt.Errorf("interface name %q must be 1-15 letters, digits, '_', '-' or '.'", c.Interface))
	}
	if c.ListenPort < 1 || c.ListenPort > 65535 {
		errs = append(errs, fmt.Errorf("listen port %d out of range 1-65535", c.ListenPort))
	}
	if c.MTU < 1280 || c.MTU > 65535 {
		errs = append(errs, fmt.Errorf("MTU %d out of range 1280-65535", c.MTU))
	}
	switch c.Mode {
	case ModeAuto, ModeKernel, ModeUserspace:
	default:
		errs = append(errs, fmt.Errorf("mode %q: want %q, %q or %q", c.Mode, ModeAuto, ModeKernel, ModeUserspace))
	}
	if c.PrivateKey == (wgtypes.Key{}) {
		errs = append(errs, errors.New("no private key (use LoadOrCreateKey)"))
	}
	if !c.Grid.IsValid() {
		errs = append(errs, errors.New("no grid prefix"))
	} else {
		c.Grid = c.Grid.Masked()
	}
	if !c.Address.IsValid() {
		errs = append(errs, errors.New("no overlay address"))
	} else if c.Grid.IsValid() && !c.Grid.Contains(c.Address) {
		errs = append(errs, fmt.Errorf("overlay address %s is outside the grid prefix %s", c.Address, c.Grid))
	}
	if c.Subnet.IsValid() {
		c.Subnet = c.Subnet.Masked()
		if c.Address.IsValid() && !c.Subnet.Contains(c.Address) {
			errs = append(errs, fmt.Errorf("overlay address %s is outside the node subnet %s", c.Address, c.Subnet))
		}
		if c.Grid.IsValid() && (c.Subnet.Bits() < c.Grid.Bits() || !c.Grid.Contains(c.Subnet.Addr())) {
			errs = append(errs, fmt.Errorf("node subnet %s is outside the grid prefix %s", c.Subnet, c.Grid))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("overlay: invalid config: %w", err)
	}
	return c, nil
}
