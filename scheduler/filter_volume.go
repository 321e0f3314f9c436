package scheduler

import (
	"slices"
	"strings"
)

// neededDrivers lists the volume plugins a service's volumes need, "" and
// "local" left out since every engine has them.
func neededDrivers(svc *Service) []string {
	var out []string
	for _, v := range svc.Volumes {
		if v.Driver != "" && v.Driver != "local" && !slices.Contains(out, v.Driver) {
			out = append(out, v.Driver)
		}
	}
	return out
}

// hasDriver matches "name" against "name" or "name:version", and
// "name:version" exactly.
func hasDriver(have []string, need string) bool {
	for _, h := range have {
		if h == need || (!strings.Contains(need, ":") && strings.HasPrefix(h, need+":")) {
			return true
		}
	}
	return false
}

// volumeDriverStep needs every volume plugin the service uses on the node:
// without it the volume cannot be created there.
func volumeDriverStep(pc *placeCtx, drivers []string) step {
	nodes := pc.st.nodes
	missing := func(n int32) []string {
		var out []string
		for _, d := range drivers {
			if !hasDriver(nodes[n].VolumeDrivers, d) {
				out = append(out, d)
			}
		}
		return out
	}
	p := pred{
		ok: func(n int32) bool { return len(missing(n)) == 0 },
		why: func(n int32) string {
			m := missing(n)
			if len(m) == 1 {
				return "no volume driver " + m[0]
			}
			return "no volume drivers " + strings.Join(m, ", ")
		},
	}
	return step{label: fixedLabel("volume driver"), static: true, bind: func(int) pred { return p }}
}

// volumeInstanceStep prefers the node that already holds an instance's
// volumes, so a stateless instance with data finds it again. It is soft:
// when that node is filtered out, the instance goes elsewhere.
func volumeInstanceStep(pc *placeCtx) step {
	return step{
		label: fixedLabel("volume instance"),
		soft:  true,
		bind: func(num int) pred {
			v := at(pc.prevVol, num)
			return pred{
				ok:  func(n int32) bool { return v < 0 || n == v },
				why: func(int32) string { return "volumes of " + pc.id + "-" + itoa(num) + " are on " + pc.name(v) },
			}
		},
	}
}
