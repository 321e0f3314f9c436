package overlay

import (
	"log/slog"
	"math"
	"runtime/debug"
)

// memoryBound remembers a soft memory limit Up set, so Close can lift it.
type memoryBound struct {
	set  int64 // the limit set; 0 if none
	prev int64
}

// boundMemory caps the process heap for the userspace device. wireguard-go
// takes a 64 KiB buffer per packet in flight from pools that are unbounded
// on Linux (device.PreallocatedBuffersPerPool is a constant 0 there, not a
// variable one could lower), and under load RSS was measured at 150-390 MB.
// A soft limit makes the garbage collector hand idle pool buffers back
// early instead of letting the heap double; it never fails an allocation.
// A limit the operator chose (GOMEMLIMIT) wins.
func boundMemory(limit int64, log *slog.Logger) memoryBound {
	if limit < 0 {
		return memoryBound{}
	}
	prev := debug.SetMemoryLimit(-1)
	if prev != math.MaxInt64 {
		log.Debug("overlay: keeping the process memory limit", "limit_bytes", prev)
		return memoryBound{}
	}
	debug.SetMemoryLimit(limit)
	log.Debug("overlay: soft memory limit for userspace WireGuard", "limit_bytes", limit)
	return memoryBound{set: limit, prev: prev}
}

// restore lifts the limit if it is still the one boundMemory set.
func (m *memoryBound) restore() {
	if m.set == 0 {
		return
	}
	if debug.SetMemoryLimit(-1) == m.set {
		debug.SetMemoryLimit(m.prev)
	}
	m.set = 0
}
