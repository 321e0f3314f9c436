package scheduler

import "math/rand/v2"

// picker chooses one of the nodes that passed every filter.
type picker func(pc *placeCtx, num int, cands []int32) int32

// pickHA spreads a service: fewest of its instances in the node's zone
// first, then on the node, then the node where this instance number runs
// now (so a redeploy moves nothing that need not move), then the least
// memory used, then the fewest instances of any service, then grid order.
func pickHA(pc *placeCtx, num int, cands []int32) int32 {
	prev := pc.prevOf(num)
	best := cands[0]
	for _, n := range cands[1:] {
		if haBetter(pc, prev, n, best) {
			best = n
		}
	}
	return best
}

func haBetter(pc *placeCtx, prev, a, b int32) bool {
	st := pc.st
	if za, zb := pc.zoneCount[st.zoneOf[a]], pc.zoneCount[st.zoneOf[b]]; za != zb {
		return za < zb
	}
	if ca, cb := pc.planCount[a], pc.planCount[b]; ca != cb {
		return ca < cb
	}
	if pa, pb := a == prev, b == prev; pa != pb {
		return pa
	}
	if ma, mb := st.memUsed[a]+pc.memPlanned[a], st.memUsed[b]+pc.memPlanned[b]; ma != mb {
		return ma < mb
	}
	if ta, tb := st.nodeTotal[a], st.nodeTotal[b]; ta != tb {
		return ta < tb
	}
	return a < b
}

// randomPicker keeps an instance on its node while that node still fits,
// and otherwise picks uniformly with the given generator.
func randomPicker(rng *rand.Rand) picker {
	return func(pc *placeCtx, num int, cands []int32) int32 {
		if prev := pc.prevOf(num); prev >= 0 {
			for _, n := range cands {
				if n == prev {
					return prev
				}
			}
		}
		return cands[rng.IntN(len(cands))]
	}
}
