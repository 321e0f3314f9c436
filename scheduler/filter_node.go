package scheduler

import (
	"fmt"
	"strconv"

	"github.com/kontena-ng/kontena/fsm"
)

// availabilityStep keeps work off nodes an operator drained and off nodes
// that are not online: they could not start a container now. A held node
// (see Node.Hold) passes only for the instance number already on it, which
// makes the step depend on the instance; without holds it is static.
func availabilityStep(pc *placeCtx) step {
	nodes := pc.st.nodes
	why := func(n int32) string {
		nd := &nodes[n]
		switch {
		case nd.Availability == fsm.AvailabilityDrain:
			return "drain"
		case nd.Hold != "":
			return nd.Hold + "; takes no new instances"
		case nd.Status == "":
			return "status unknown"
		}
		return nd.Status
	}
	held := false
	for i := range nodes {
		held = held || nodes[i].Hold != ""
	}
	if !held {
		p := pred{ok: func(n int32) bool { return nodes[n].schedulable() }, why: why}
		return step{label: fixedLabel("availability"), static: true, bind: func(int) pred { return p }}
	}
	return step{label: fixedLabel("availability"), bind: func(num int) pred {
		prev := pc.prevOf(num)
		return pred{ok: func(n int32) bool { return nodes[n].schedulable() || (n == prev && nodes[n].keeps()) }, why: why}
	}}
}

// ephemeralStep keeps stateful services off ephemeral nodes, whose disks
// may vanish with them.
func ephemeralStep(pc *placeCtx) step {
	nodes := pc.st.nodes
	p := pred{
		ok:  func(n int32) bool { return !nodes[n].Ephemeral() },
		why: func(int32) string { return "ephemeral node, service is stateful" },
	}
	return step{label: fixedLabel("ephemeral"), static: true, bind: func(int) pred { return p }}
}

// cpusStep needs the node to have at least the CPUs a service may use: a
// container cannot be limited to more CPUs than its host has.
func cpusStep(pc *placeCtx) step {
	nodes, need := pc.st.nodes, pc.svc.CPUs
	p := pred{
		ok: func(n int32) bool { return nodes[n].CPUs >= need },
		why: func(n int32) string {
			if nodes[n].CPUs == 0 {
				return "CPU count not reported yet"
			}
			return fmt.Sprintf("needs %s CPUs, has %s", fmtFloat(need), fmtFloat(nodes[n].CPUs))
		},
	}
	return step{label: fixedLabel("cpus"), static: true, bind: func(int) pred { return p }}
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
