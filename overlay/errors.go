package overlay

import "errors"

// ErrNoTUN is wrapped by Up's error when the userspace device cannot create
// its TUN interface for lack of the device node or the capability.
var ErrNoTUN = errors.New("userspace WireGuard needs /dev/net/tun and CAP_NET_ADMIN (in a container: --cap-add NET_ADMIN --device /dev/net/tun)")

// ErrSubnetFull is returned (wrapped) by Allocate when every address of the
// node's subnet is taken.
var ErrSubnetFull = errors.New("overlay: container subnet is full")

// ErrUnsupported is returned by Up and the forwarding functions on systems
// other than Linux.
var ErrUnsupported = errors.New("overlay: the WireGuard overlay is only supported on Linux")

var errClosed = errors.New("overlay: device is closed")
