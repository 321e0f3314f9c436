//go:build linux

package api

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// userTimeoutMs makes the kernel drop a connection whose sent data stays
// unacknowledged this long: a peer cut off mid-request then fails in
// seconds instead of when the request deadline ends.
const userTimeoutMs = 5000

func setSockopts(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, userTimeoutMs)
	})
	if err != nil {
		return err
	}
	return serr
}
