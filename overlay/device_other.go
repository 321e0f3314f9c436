//go:build !linux

package overlay

import (
	"context"
	"net/netip"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Device is the node's WireGuard interface; only Linux has one.
type Device struct{}

// Up fails with ErrUnsupported outside Linux.
func Up(ctx context.Context, cfg Config) (*Device, error) { return nil, ErrUnsupported }

func (d *Device) SetPeers(peers []Peer) error                        { return ErrUnsupported }
func (d *Device) Peers() ([]PeerStatus, error)                       { return nil, ErrUnsupported }
func (d *Device) PublicKey() wgtypes.Key                             { return wgtypes.Key{} }
func (d *Device) Name() string                                       { return "" }
func (d *Device) Mode() string                                       { return "" }
func (d *Device) Close() error                                       { return nil }
func EnsureForwarding(iface string, subnet, grid netip.Prefix) error { return ErrUnsupported }
func RemoveForwarding(iface string, subnet, grid netip.Prefix) error { return ErrUnsupported }
