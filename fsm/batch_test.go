package fsm

import (
	"bytes"
	"fmt"
	"testing"
)

// TestApplyBatchIsApplyOneByOne: batches of every size give the state
// and the results of applying the same commands one by one, with refused
// and panicking commands among them and enough writes that the capped
// tables (events, audit) are cut back inside a batch.
func TestApplyBatchIsApplyOneByOne(t *testing.T) {
	var cmds []Command
	cmds = append(cmds, fuzzSeedCommands()...)
	for i := 0; i < maxEvents+200; i++ {
		cmds = append(cmds, &NodeUpdate{ID: "id-1", AddLabels: []string{fmt.Sprintf("k%d=%d", i%5, i)}})
		if i%500 == 0 {
			cmds = append(cmds, &NodeUpdate{ID: "id-1", Availability: "sideways"}) // refused
		}
	}
	seq, err := NewStore()
	if err != nil {
		t.Fatal(err)
	}
	var want []Result
	for i, c := range cmds {
		res, err := seq.Apply(uint64(i+1), c, audit("admin"))
		if err != nil {
			seq.commit(nil, uint64(i+1))
		}
		want = append(want, Result{Res: res, Err: err})
	}
	for _, size := range []int{2, 3, 7, 64} {
		t.Run(fmt.Sprint("batches of ", size), func(t *testing.T) {
			bat, err := NewStore()
			if err != nil {
				t.Fatal(err)
			}
			var got []Result
			for lo := 0; lo < len(cmds); lo += size {
				var es []Entry
				for i := lo; i < min(lo+size, len(cmds)); i++ {
					es = append(es, Entry{Index: uint64(i + 1), Cmd: cmds[i], Audit: audit("admin")})
				}
				got = append(got, bat.ApplyBatch(es)...)
			}
			for i := range want {
				if fmt.Sprint(got[i].Err) != fmt.Sprint(want[i].Err) || fmt.Sprintf("%+v", got[i].Res) != fmt.Sprintf("%+v", want[i].Res) {
					t.Fatalf("command %d (%T): batched %+v / %v, one by one %+v / %v", i+1, cmds[i], got[i].Res, got[i].Err, want[i].Res, want[i].Err)
				}
			}
			if a, b := snapshotBytes(t, seq), snapshotBytes(t, bat); !bytes.Equal(a, b) {
				t.Fatalf("the batched state differs from the one-by-one state (%d and %d bytes)", len(b), len(a))
			}
			if seq.index != bat.index {
				t.Fatalf("index %d batched, %d one by one", bat.index, seq.index)
			}
		})
	}
}
