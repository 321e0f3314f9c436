package httpapi

import (
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

// A watched answer (blockingAnswer) is sent when one of its tables changes
// past ?index and, given the ?hash of the answer the caller holds, only
// when the answer itself changed: commits of other tables, and commits of
// its tables that leave the answer as it was, keep the query waiting.
func TestBlockingAnswerWaitsForItsAnswerToChange(t *testing.T) {
	store, err := fsm.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	idx := uint64(0)
	apply := func(cmd fsm.Command) {
		t.Helper()
		idx++
		if _, err := store.Apply(idx, cmd, &fsm.AuditInfo{User: "admin"}); err != nil {
			t.Fatal(err)
		}
	}
	apply(&fsm.GridInit{Grid: fsm.Grid{Name: "g", Subnet: "10.81.0.0/16"}, Node: fsm.Node{ID: "id-1", Name: "n1", Role: fsm.RoleVoter},
		Admin: fsm.User{Name: "admin"}, AdminToken: fsm.Token{ID: "t1", Hash: "h1", User: "admin"}})
	// The answer: node n1's value of label "watched" (its other labels and
	// its status are in the same table, and do not change the answer).
	answer := func(v *fsm.View) (any, error) {
		n, err := v.Node("n1")
		if err != nil {
			return nil, err
		}
		val, _ := n.Label("watched")
		return map[string]string{"watched": val}, nil
	}
	type reply struct {
		body, hash string
		index      uint64
		err        error
	}
	query := func(q string) <-chan reply {
		done := make(chan reply, 1)
		go func() {
			w := httptest.NewRecorder()
			err := blockingAnswer(w, httptest.NewRequest("GET", "/v1/nodes/n1/netmap"+q, nil), store, []string{fsm.TableNodes}, answer)
			i, _ := strconv.ParseUint(w.Header().Get(api.HeaderIndex), 10, 64)
			done <- reply{body: w.Body.String(), hash: w.Header().Get(api.HeaderHash), index: i, err: err}
		}()
		return done
	}
	get := func(t *testing.T, c <-chan reply, within time.Duration) reply {
		t.Helper()
		select {
		case r := <-c:
			if r.err != nil {
				t.Fatal(r.err)
			}
			return r
		case <-time.After(within):
			t.Fatalf("no answer within %s", within)
		}
		return reply{}
	}
	quiet := func(t *testing.T, c <-chan reply, what string) {
		t.Helper()
		select {
		case r := <-c:
			t.Fatalf("answered (%+v) after %s", r, what)
		case <-time.After(50 * time.Millisecond):
		}
	}

	// Without ?index: at once, with the hash of the answer.
	first := get(t, query(""), 5*time.Second)
	if first.body != "{\"watched\":\"\"}\n" || first.hash == "" || first.index != idx {
		t.Fatalf("first answer %+v, want the empty label at index %d with a hash", first, idx)
	}

	// With the hash: other tables and same-answer changes keep it waiting.
	c := query("?index=" + strconv.FormatUint(first.index, 10) + "&wait=10s&hash=" + first.hash)
	apply(&fsm.GridUpdate{})
	quiet(t, c, "a change of another table")
	apply(&fsm.NodeUpdate{ID: "id-1", AddLabels: []string{"other=1"}})
	apply(&fsm.NodeStatus{Updates: []fsm.NodeStatusUpdate{{ID: "id-1", Status: fsm.StatusOffline}}})
	quiet(t, c, "changes of its table that leave the answer as it was")
	apply(&fsm.NodeUpdate{ID: "id-1", AddLabels: []string{"watched=yes"}})
	changed := get(t, c, 5*time.Second)
	if changed.body != "{\"watched\":\"yes\"}\n" || changed.hash == first.hash || changed.index != idx {
		t.Fatalf("answer after the change %+v, want the new label at index %d with a new hash", changed, idx)
	}

	// Without the hash (an older node): any change of its tables answers.
	c = query("?index=" + strconv.FormatUint(changed.index, 10) + "&wait=10s")
	quiet(t, c, "no change")
	apply(&fsm.NodeUpdate{ID: "id-1", AddLabels: []string{"other=2"}})
	if r := get(t, c, 5*time.Second); r.hash != changed.hash || r.index != idx {
		t.Fatalf("answer without ?hash %+v, want the same answer at index %d", r, idx)
	}

	// The wait ends: the unchanged answer again, at the index of now.
	apply(&fsm.NodeUpdate{ID: "id-1", AddLabels: []string{"other=3"}})
	r := get(t, query("?index="+strconv.FormatUint(idx, 10)+"&wait=100ms&hash="+changed.hash), 5*time.Second)
	if r.hash != changed.hash || r.index != idx {
		t.Fatalf("answer at the end of the wait %+v, want the same answer at index %d", r, idx)
	}
}
