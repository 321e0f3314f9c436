package scheduler

// sameAddress tells whether two host IPs of a published port collide: the
// empty and wildcard addresses collide with every address.
func sameAddress(a, b string) bool {
	wild := func(s string) bool { return s == "" || s == "0.0.0.0" || s == "::" }
	return wild(a) || wild(b) || a == b
}

// portsStep keeps an instance off nodes where another service already
// publishes one of its ports. Other services do not move during one Place
// call, so this is static.
func portsStep(pc *placeCtx) step {
	ports, nodePorts, own := pc.svc.Ports, pc.st.nodePorts, pc.id
	conflict := func(n int32) (Port, portUse, bool) {
		if nodePorts[n] == nil {
			return Port{}, portUse{}, false
		}
		for _, p := range ports {
			for _, u := range nodePorts[n][portKey{p.proto(), p.HostPort}] {
				if u.service != own && sameAddress(u.ip, p.HostIP) {
					return p, u, true
				}
			}
		}
		return Port{}, portUse{}, false
	}
	p := pred{
		ok: func(n int32) bool { _, _, c := conflict(n); return !c },
		why: func(n int32) string {
			p, u, _ := conflict(n)
			return "port " + p.String() + " is published by " + u.container
		},
	}
	return step{label: fixedLabel("ports"), static: true, bind: func(int) pred { return p }}
}

// ownPortsStep keeps two instances of one service that publishes ports
// off the same node. The service's current instances are being re-placed
// by this very plan, so only the plan's own placements count.
func ownPortsStep(pc *placeCtx) step {
	p := pred{
		ok: func(n int32) bool { return pc.planCount[n] == 0 },
		why: func(int32) string {
			return "port " + pc.svc.Ports[0].String() + " is taken by another instance of " + pc.id
		},
	}
	return step{label: fixedLabel("ports"), local: true, bind: func(int) pred { return p }}
}
