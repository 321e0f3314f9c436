package scheduler

import (
	"slices"
	"strings"
)

// dependencyTargets are the containers an instance must share a node with:
// volumes_from entries and network_mode "container:X". Docker can only
// mount volumes of, or join the network namespace of, a local container.
func dependencyTargets(svc *Service) []string {
	out := append([]string(nil), svc.VolumesFrom...)
	if x, ok := strings.CutPrefix(svc.NetworkMode, "container:"); ok && x != "" {
		out = append(out, x)
	}
	return out
}

// dependencyStep co-locates each instance with the containers it depends
// on, "%s" replaced by the instance number (db-%s: instance 3 goes next to
// db-3).
func dependencyStep(pc *placeCtx, targets []string) step {
	perNum := false
	for _, t := range targets {
		perNum = perNum || strings.Contains(t, "%s")
	}
	resolve := func(num int) ([]string, []int32) {
		names := make([]string, len(targets))
		nodes := make([]int32, len(targets))
		for i, t := range targets {
			names[i] = qualifyRef(pc.svc.Stack, subst(t, num))
			nodes[i] = pc.containerNode(names[i])
		}
		return names, nodes
	}
	bind := func(num int) pred {
		names, where := resolve(num)
		return pred{
			ok: func(n int32) bool {
				for _, w := range where {
					if w != n {
						return false
					}
				}
				return true
			},
			why: func(n int32) string {
				for i, w := range where {
					if w == n {
						continue
					}
					switch id, ok := pc.st.containers[names[i]]; {
					case w >= 0:
						return "needs " + names[i] + " on the same node; it runs on " + pc.name(w)
					case ok && !pc.ownContainer(names[i]):
						return "needs " + names[i] + " on the same node; it is on node " + id + ", which is not in the grid"
					default:
						return "needs " + names[i] + " on the same node; it does not exist"
					}
				}
				return ""
			},
		}
	}
	s := step{label: fixedLabel("dependency"), bind: bind}
	if !perNum && !slices.ContainsFunc(targets, func(t string) bool { return pc.ownContainer(qualifyRef(pc.svc.Stack, t)) }) {
		p := bind(0)
		s.static, s.bind = true, func(int) pred { return p }
	}
	return s
}
