//go:build !linux

package api

import "syscall"

func setSockopts(network, address string, c syscall.RawConn) error { return nil }
