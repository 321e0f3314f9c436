//go:build !unix

package cmd

import "os"

// resizeSignals: no SIGWINCH here; the size is sent once, at the start.
func resizeSignals() (<-chan os.Signal, func()) { return nil, func() {} }
