// Package lincheck records histories of operations on a key-value
// resource of the grid (node labels, in the integration suite) and checks
// them for linearizability with porcupine, as etcd's robustness tests do.
package lincheck

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Input is one operation: a put of Value under Key, or a get of Key.
type Input struct {
	Put   bool
	Key   string
	Value string
}

// Output is what a get returned ("" for no value); a put has none.
type Output struct {
	Value string
}

// Model is a register per key; histories are checked key by key.
var Model = porcupine.Model{
	Partition: partitionByKey,
	Init:      func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(Input)
		if in.Put {
			return true, in.Value
		}
		return output.(Output).Value == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(Input)
		if in.Put {
			return fmt.Sprintf("put(%s, %q)", in.Key, in.Value)
		}
		return fmt.Sprintf("get(%s) -> %q", in.Key, output.(Output).Value)
	},
	DescribeState: func(state any) string { return fmt.Sprintf("%q", state) },
}

func partitionByKey(history []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	for _, op := range history {
		k := op.Input.(Input).Key
		byKey[k] = append(byKey[k], op)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][]porcupine.Operation, 0, len(keys))
	for _, k := range keys {
		out = append(out, byKey[k])
	}
	return out
}

// History records operations from concurrent clients.
type History struct {
	mu    sync.Mutex
	start time.Time
	ops   []porcupine.Operation
	// unknown are puts whose outcome is not known (an error or timeout
	// after the request may have reached the leader): they may take
	// effect at any time after their call.
	unknown []int
}

// NewHistory starts an empty history; times are relative to now.
func NewHistory() *History { return &History{start: time.Now()} }

func (h *History) now() int64 { return int64(time.Since(h.start)) }

// Call marks the start of an operation; Done or Failed ends it.
func (h *History) Call() int64 { return h.now() }

// Done records an operation that answered.
func (h *History) Done(client int, call int64, in Input, out Output) {
	ret := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
}

// Failed records an operation that did not answer. A get is dropped (it
// observed nothing); a put may have happened, so it stays open until the
// end of the history.
func (h *History) Failed(client int, call int64, in Input) {
	if !in.Put {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.unknown = append(h.unknown, len(h.ops))
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: Output{}})
}

// Operations are the recorded operations; puts of unknown outcome return
// after everything else.
func (h *History) Operations() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := append([]porcupine.Operation(nil), h.ops...)
	end := h.now() + int64(time.Hour)
	for _, i := range h.unknown {
		out[i].Return = end
	}
	return out
}

// Counts says how many operations of each kind the history holds.
func (h *History) Counts() (puts, gets, unknown int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, op := range h.ops {
		if op.Input.(Input).Put {
			puts++
		} else {
			gets++
		}
	}
	return puts, gets, len(h.unknown)
}

// Check checks the history. A result of porcupine.Unknown (the checker
// timed out) is returned as such: the caller decides.
func (h *History) Check(timeout time.Duration) (porcupine.CheckResult, porcupine.LinearizationInfo) {
	return porcupine.CheckOperationsVerbose(Model, h.Operations(), timeout)
}

// Summary describes a history in one line.
func (h *History) Summary() string {
	puts, gets, unknown := h.Counts()
	return strings.TrimSpace(fmt.Sprintf("%d puts (%d of unknown outcome), %d gets", puts, unknown, gets))
}

// jsonOp is an operation as a history file keeps it.
type jsonOp struct {
	Client int    `json:"client"`
	Put    bool   `json:"put,omitempty"`
	Key    string `json:"key"`
	Value  string `json:"value"`
	Call   int64  `json:"call"`
	Return int64  `json:"return"`
}

// WriteFile saves the history (one JSON operation per line), so a
// violation found by a long run can be kept as a regression test.
func (h *History) WriteFile(path string) error {
	var b strings.Builder
	for _, op := range h.Operations() {
		in, out := op.Input.(Input), op.Output.(Output)
		v := in.Value
		if !in.Put {
			v = out.Value
		}
		line, err := json.Marshal(jsonOp{Client: op.ClientId, Put: in.Put, Key: in.Key, Value: v, Call: op.Call, Return: op.Return})
		if err != nil {
			return err
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// ReadFile loads a history WriteFile saved.
func ReadFile(path string) ([]porcupine.Operation, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var ops []porcupine.Operation
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var o jsonOp
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, i+1, err)
		}
		op := porcupine.Operation{ClientId: o.Client, Input: Input{Put: o.Put, Key: o.Key}, Output: Output{}, Call: o.Call, Return: o.Return}
		if o.Put {
			op.Input = Input{Put: true, Key: o.Key, Value: o.Value}
		} else {
			op.Output = Output{Value: o.Value}
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// CheckWith checks h's operations together with other's (e.g. reads of
// another kind, against the same writes).
func (h *History) CheckWith(other *History, timeout time.Duration) porcupine.CheckResult {
	ops := append(h.Operations(), other.Operations()...)
	return porcupine.CheckOperationsTimeout(Model, ops, timeout)
}
