package httpapi

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/stack"
)

// A blocking query on some tables answers when one of them changes, not
// when a command changes only others (node status, grid settings).
func TestBlockingWaitTablesWatchesItsTables(t *testing.T) {
	store, err := fsm.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	apply := func(idx uint64, cmd fsm.Command) {
		t.Helper()
		if _, err := store.Apply(idx, cmd, &fsm.AuditInfo{User: "admin"}); err != nil {
			t.Fatal(err)
		}
	}
	apply(1, &fsm.GridInit{Grid: fsm.Grid{Name: "g", Subnet: "10.81.0.0/16"}, Node: fsm.Node{ID: "id-1", Name: "n1", Role: fsm.RoleVoter},
		Admin: fsm.User{Name: "admin"}, AdminToken: fsm.Token{ID: "t1", Hash: "h1", User: "admin"}})
	apply(2, &fsm.StackInstall{Stack: fsm.Stack{Name: "shop", Spec: stack.Stack{Name: "shop", Services: []*stack.Service{{Name: "web", Image: "web", Instances: 1}}}}})
	done := make(chan error, 1)
	go func() {
		r := httptest.NewRequest("GET", "/v1/nodes/n1/assignments?index=2&wait=10s", nil)
		done <- blockingWaitTables(r, store, fsm.TableInstances, fsm.TableServices, fsm.TableStacks)
	}()
	apply(3, &fsm.NodeStatus{Updates: []fsm.NodeStatusUpdate{{ID: "id-1", Status: fsm.StatusOffline}}})
	apply(4, &fsm.GridUpdate{})
	select {
	case err := <-done:
		t.Fatalf("answered (%v) after changes of other tables only", err)
	case <-time.After(50 * time.Millisecond):
	}
	apply(5, &fsm.ServiceScale{ID: "shop/web", Instances: 2})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a change of a watched table did not answer the query")
	}
	// Without ?index the query answers at once.
	if err := blockingWaitTables(httptest.NewRequest("GET", "/x", nil), store, fsm.TableStacks); err != nil {
		t.Fatal(err)
	}
}
