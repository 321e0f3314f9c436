package nodeagent

import (
	"testing"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/stack"
)

func TestLifecycleSpec(t *testing.T) {
	a := api.Assignment{Stack: "s", Service: stack.Service{Name: "db", Image: "db", Deploy: stack.Deploy{WaitForPort: 5432}},
		Instance: fsm.Instance{ID: "s/db-1", ServiceID: "s/db", Number: 1, Revision: 2, Restart: 3, Stopped: true,
			Actual: fsm.InstanceActual{ContainerID: "c1", Restart: 2}}}
	spec := containerSpec(a)
	if !spec.Stopped || spec.RestartGen != 3 || spec.RestartDone != 2 || spec.RestartDoneID != "c1" || spec.WaitForPort != 5432 {
		t.Fatalf("spec = %+v", spec)
	}
}
