package overlay

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Device is the node's WireGuard interface, kernel or userspace, driven
// through wgctrl either way.
type Device struct {
	name   string
	mode   string
	pub    wgtypes.Key
	addr   netip.Addr
	grid   netip.Prefix
	log    *slog.Logger
	client *wgctrl.Client
	user   *userspace // nil in kernel mode
	memory memoryBound

	mu     sync.Mutex // serializes SetPeers and Close
	names  map[wgtypes.Key]string
	closed bool
}

// Up creates the interface (taking over a stale one left by a previous run),
// configures key and port, assigns Address/32, routes Grid into it and
// enables IPv4 forwarding. ctx bounds the setup only: the device lives until
// Close.
func Up(ctx context.Context, cfg Config) (*Device, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	d := &Device{
		name:  cfg.Interface,
		pub:   cfg.PrivateKey.PublicKey(),
		addr:  cfg.Address,
		grid:  cfg.Grid,
		log:   cfg.Logger.With("interface", cfg.Interface),
		names: map[wgtypes.Key]string{},
	}
	if err := d.up(ctx, cfg); err != nil {
		if cerr := d.teardown(); cerr != nil {
			d.log.Warn("overlay: cleaning up after failed start", "err", cerr)
		}
		return nil, err
	}
	d.log.Info("overlay up", "mode", d.mode, "address", d.addr, "grid", d.grid,
		"listen_port", cfg.ListenPort, "public_key", d.pub.String())
	return d, nil
}

func (d *Device) up(ctx context.Context, cfg Config) error {
	if err := takeOverStale(cfg.Interface, d.log); err != nil {
		return err
	}
	if err := checkGridRoute(cfg.Interface, cfg.Grid, cfg.Subnet, d.log); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("overlay: start %s: %w", cfg.Interface, err)
	}
	switch cfg.Mode {
	case ModeKernel:
		if err := createKernel(cfg.Interface, cfg.MTU); err != nil {
			return err
		}
		d.mode = ModeKernel
	case ModeAuto:
		err := createKernel(cfg.Interface, cfg.MTU)
		if err == nil {
			d.mode = ModeKernel
			break
		}
		d.log.Debug("overlay: no kernel WireGuard, using the userspace implementation", "reason", err)
		fallthrough
	case ModeUserspace:
		d.memory = boundMemory(cfg.MemoryLimit, d.log)
		u, err := startUserspace(cfg.Interface, cfg.MTU, d.log)
		if err != nil {
			return err
		}
		d.user, d.mode = u, ModeUserspace
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("overlay: start %s: %w", cfg.Interface, err)
	}

	client, err := wgctrl.New()
	if err != nil {
		return fmt.Errorf("overlay: open WireGuard control client: %w", err)
	}
	d.client = client
	port := cfg.ListenPort
	if err := client.ConfigureDevice(cfg.Interface, wgtypes.Config{PrivateKey: &cfg.PrivateKey, ListenPort: &port}); err != nil {
		return fmt.Errorf("overlay: configure %s (private key, UDP port %d; is the port in use?): %w", cfg.Interface, port, err)
	}
	if err := configureLink(cfg.Interface, cfg.Address, cfg.MTU); err != nil {
		return err
	}
	if d.user != nil {
		if err := d.bindUserspace(port); err != nil {
			return err
		}
	}
	dev, err := client.Device(cfg.Interface)
	if err != nil {
		return fmt.Errorf("overlay: read back %s: %w", cfg.Interface, err)
	}
	if dev.ListenPort != port || dev.PublicKey != d.pub {
		return fmt.Errorf("overlay: %s did not take its configuration (listen port %d, want %d)", cfg.Interface, dev.ListenPort, port)
	}
	// Routing comes last: RouteReplace takes the grid prefix over, so it
	// must only happen once the device is known to work.
	if err := routeGrid(cfg.Interface, cfg.Grid, cfg.Address); err != nil {
		return err
	}
	return enableIPForward()
}

// bindUserspace makes sure the userspace device is up and listening on
// port. wireguard-go opens its UDP socket only when the device goes up,
// which the TUN's link event triggers concurrently with us; when that bind
// fails it forgets the port, and a later bring-up would silently pick a
// random one. Setting the port again on the running device binds
// synchronously and reports a clash.
func (d *Device) bindUserspace(port int) error {
	if err := d.user.dev.Up(); err != nil {
		return fmt.Errorf("overlay: start %s on UDP port %d (is the port in use?): %w", d.name, port, err)
	}
	if err := d.client.ConfigureDevice(d.name, wgtypes.Config{ListenPort: &port}); err != nil {
		return fmt.Errorf("overlay: listen on UDP port %d for %s (is the port in use?): %w", port, d.name, err)
	}
	return nil
}

// PublicKey is the key the other nodes know this one by.
func (d *Device) PublicKey() wgtypes.Key { return d.pub }

// Name is the interface name.
func (d *Device) Name() string { return d.name }

// Mode is ModeKernel or ModeUserspace.
func (d *Device) Mode() string { return d.mode }

// SetPeers makes the device's peers exactly peers: it adds new ones, updates
// changed endpoints, allowed IPs and keepalives, removes the rest and leaves
// unchanged peers alone so their sessions carry on. The device's own key is
// ignored, so callers can pass every node of the grid.
func (d *Device) SetPeers(peers []Peer) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errClosed
	}
	want := make([]Peer, 0, len(peers))
	for _, p := range peers {
		if p.PublicKey != d.pub {
			want = append(want, p)
		}
	}
	dev, err := d.client.Device(d.name)
	if err != nil {
		return fmt.Errorf("overlay: read peers of %s: %w", d.name, err)
	}
	changes, err := diffPeers(dev.Peers, want)
	if err != nil {
		return err
	}
	if len(changes) > 0 {
		if err := d.client.ConfigureDevice(d.name, wgtypes.Config{Peers: changes}); err != nil {
			return fmt.Errorf("overlay: configure peers of %s: %w", d.name, err)
		}
	}
	names := make(map[wgtypes.Key]string, len(want))
	for _, p := range want {
		names[p.PublicKey] = p.Name
	}
	for _, c := range changes {
		name := names[c.PublicKey]
		if c.Remove {
			name = d.names[c.PublicKey]
		}
		attrs := []any{"peer", name, "public_key", c.PublicKey.String()}
		if c.Endpoint != nil {
			attrs = append(attrs, "endpoint", c.Endpoint.String())
		}
		if c.ReplaceAllowedIPs {
			attrs = append(attrs, "allowed_ips", fmt.Sprint(fromIPNets(c.AllowedIPs)))
		}
		d.log.Info("overlay peer "+changeKind(c), attrs...)
	}
	d.names = names
	return nil
}

// Peers reports every peer with its traffic counters and last handshake,
// sorted by name.
func (d *Device) Peers() ([]PeerStatus, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errClosed
	}
	dev, err := d.client.Device(d.name)
	if err != nil {
		return nil, fmt.Errorf("overlay: read peers of %s: %w", d.name, err)
	}
	out := make([]PeerStatus, 0, len(dev.Peers))
	for _, p := range dev.Peers {
		out = append(out, peerStatus(p, d.names[p.PublicKey]))
	}
	slices.SortFunc(out, func(a, b PeerStatus) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.PublicKey, b.PublicKey))
	})
	return out, nil
}

// Close stops the device and removes the interface, its route and the UAPI
// socket. It is safe to call more than once.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	err := d.teardown()
	d.log.Info("overlay down")
	return err
}

// teardown undoes whatever part of up succeeded.
func (d *Device) teardown() error {
	var errs []error
	// Without a mode nothing was created, and the interface may belong to
	// the process that made Up fail.
	if d.mode != "" {
		errs = append(errs, unrouteGrid(d.name, d.grid))
		if d.user != nil {
			errs = append(errs, d.user.close())
		}
		errs = append(errs, deleteLink(d.name))
	}
	if d.client != nil {
		errs = append(errs, d.client.Close())
	}
	d.memory.restore()
	return joinErrs("overlay: close "+d.name, errs)
}
