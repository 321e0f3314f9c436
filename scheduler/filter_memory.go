package scheduler

import "fmt"

// memoryStep needs the service's memory free on the node: total minus what
// the node reports used minus what this plan already put there. An
// instance that already runs on the node is counted in its usage, so it
// always fits where it is.
func memoryStep(pc *placeCtx) step {
	nodes, used, need := pc.st.nodes, pc.st.memUsed, pc.svc.Memory
	free := func(n int32) int64 { return nodes[n].MemoryTotal - used[n] - pc.memPlanned[n] }
	return step{
		label: fixedLabel("memory"),
		local: true,
		bind: func(num int) pred {
			prev := pc.prevOf(num)
			return pred{
				ok: func(n int32) bool { return n == prev || free(n) >= need },
				why: func(n int32) string {
					if nodes[n].MemoryTotal == 0 {
						return "memory not reported yet"
					}
					return fmt.Sprintf("needs %s, %s free", fmtBytes(need), fmtBytes(max(0, free(n))))
				},
			}
		},
	}
}
