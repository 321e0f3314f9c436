package scheduler

import (
	"fmt"
	"strconv"

	"github.com/kontena-ng/kontena/fsm"
)

// availabilityStep keeps work off nodes an operator drained and off nodes
// that are not online: they could not start a container now.
func availabilityStep(pc *placeCtx) step {
	nodes := pc.st.nodes
	p := pred{
		ok: func(n int32) bool { return nodes[n].schedulable() },
		why: func(n int32) string {
			nd := &nodes[n]
			if nd.Availability == fsm.AvailabilityDrain {
				return "drain"
			}
			if nd.Status == "" {
				return "status unknown"
			}
			return nd.Status
		},
	}
	return step{label: fixedLabel("availability"), static: true, bind: func(int) pred { return p }}
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
