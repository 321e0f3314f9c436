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

// BenchmarkApplyBatchLabelWrite is BenchmarkApplyLabelWrite with the
// writes applied 16 at a time, as Raft hands a loaded FSM its commits
// (ApplyBatch); ns/op is per write.
func BenchmarkApplyBatchLabelWrite(b *testing.B) {
	s, _ := NewStore()
	if _, err := s.Apply(1, initCmd(), audit("bootstrap")); err != nil {
		b.Fatal(err)
	}
	idx := uint64(2)
	batch := make([]Entry, 16)
	write16 := func() {
		for i := range batch {
			batch[i] = Entry{Index: idx, Cmd: &NodeUpdate{ID: "id-1", AddLabels: []string{fmt.Sprintf("k%d=v", idx)},
				RemoveLabels: []string{fmt.Sprintf("k%d", idx-1)}}, Audit: audit("admin")}
			idx++
		}
		for _, r := range s.ApplyBatch(batch) {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	}
	for range (maxAudit + 100) / 16 {
		write16()
	}
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		if n%16 == 0 {
			write16()
		}
		n++
	}
}
