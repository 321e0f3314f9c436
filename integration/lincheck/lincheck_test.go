package lincheck

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

func op(client int, call, ret int64, in Input, out string) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: Output{Value: out}, Return: ret}
}

// TestModel: the checker accepts what a linearizable store may answer and
// refuses a stale read, a read of a value never written, and a read that
// goes back in time.
func TestModel(t *testing.T) {
	put := func(k, v string) Input { return Input{Put: true, Key: k, Value: v} }
	get := func(k string) Input { return Input{Key: k} }
	cases := []struct {
		name string
		ops  []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"sequential", []porcupine.Operation{op(0, 0, 1, put("a", "1"), ""), op(1, 2, 3, get("a"), "1")}, porcupine.Ok},
		{"concurrent read may see either", []porcupine.Operation{op(0, 0, 10, put("a", "1"), ""), op(1, 2, 3, get("a"), ""), op(2, 4, 5, get("a"), "1")}, porcupine.Ok},
		{"stale read after the write returned", []porcupine.Operation{op(0, 0, 1, put("a", "1"), ""), op(1, 2, 3, get("a"), "")}, porcupine.Illegal},
		{"a value never written", []porcupine.Operation{op(0, 0, 1, put("a", "1"), ""), op(1, 2, 3, get("a"), "2")}, porcupine.Illegal},
		{"reads going back in time", []porcupine.Operation{op(0, 0, 10, put("a", "1"), ""), op(1, 2, 3, get("a"), "1"), op(2, 4, 5, get("a"), "")}, porcupine.Illegal},
		{"keys are independent", []porcupine.Operation{op(0, 0, 1, put("a", "1"), ""), op(1, 2, 3, get("b"), "")}, porcupine.Ok},
	}
	for _, c := range cases {
		if got := porcupine.CheckOperations(Model, c.ops); (got && c.want != porcupine.Ok) || (!got && c.want == porcupine.Ok) {
			t.Errorf("%s: linearizable=%v, want %s", c.name, got, c.want)
		}
	}
}

// TestUnknownPuts: a put that failed may have happened at any time after
// its call, so a later read of its value is legal; a failed get observed
// nothing and is dropped.
func TestUnknownPuts(t *testing.T) {
	h := NewHistory()
	c := h.Call()
	h.Failed(0, c, Input{Put: true, Key: "a", Value: "1"})
	h.Failed(1, h.Call(), Input{Key: "a"})
	time.Sleep(time.Millisecond)
	c = h.Call()
	h.Done(2, c, Input{Key: "a"}, Output{Value: "1"})
	if res, _ := h.Check(time.Second); res != porcupine.Ok {
		t.Fatalf("a read of a put of unknown outcome: %s", res)
	}
	if puts, gets, unknown := h.Counts(); puts != 1 || gets != 1 || unknown != 1 {
		t.Fatalf("counts %d %d %d", puts, gets, unknown)
	}
	c = h.Call()
	h.Done(2, c, Input{Key: "a"}, Output{Value: "2"})
	if res, _ := h.Check(time.Second); res != porcupine.Illegal {
		t.Fatalf("a value never written: %s", res)
	}
}
