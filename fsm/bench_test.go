package fsm

import (
	"fmt"
	"testing"
)

// BenchmarkApplyLabelWrite measures one label write on a store whose audit
// and event logs are full, the steady state of a grid in use.
func BenchmarkApplyLabelWrite(b *testing.B) {
	s, _ := NewStore()
	if _, err := s.Apply(1, initCmd(), audit("bootstrap")); err != nil {
		b.Fatal(err)
	}
	idx := uint64(2)
	write := func() {
		cmd := &NodeUpdate{ID: "id-1", AddLabels: []string{fmt.Sprintf("k%d=v", idx)}, RemoveLabels: []string{fmt.Sprintf("k%d", idx-1)}}
		if _, err := s.Apply(idx, cmd, audit("admin")); err != nil {
			b.Fatal(err)
		}
		idx++
	}
	for range maxAudit + 100 {
		write()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		write()
	}
}
