//go:build unix

package cmd

import "syscall"

// privateUmask makes every file the node creates readable by its user only.
func privateUmask() { syscall.Umask(0o077) }
