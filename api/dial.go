package api

import (
	"net"
	"time"
)

// Dialer is the dialer for every connection between the CLI and nodes and
// between nodes: short connect timeout, keep-alives, and (on Linux) a TCP
// user timeout so a vanished peer is noticed in seconds.
func Dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, KeepAlive: 15 * time.Second, Control: setSockopts}
}
