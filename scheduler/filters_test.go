package scheduler

import (
	"testing"
)

// Each case places one service and expects either the nodes of its
// instances or the exact error a user would read.
type filterCase struct {
	name      string
	nodes     []Node
	instances []Instance
	svc       Service
	want      []string // nodes by instance number
	err       string
}

func runFilterCases(t *testing.T, cases []filterCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := NewState(c.nodes, c.instances, nil)
			p, err := placeErr(st, c.svc)
			eq(t, "error", err, c.err)
			if c.err == "" || c.want != nil {
				eqList(t, "placements", where(p), c.want)
			}
		})
	}
}

func TestAvailabilityFilter(t *testing.T) {
	runFilterCases(t, []filterCase{
		{name: "drain and offline nodes get nothing",
			nodes: []Node{drained(nd("n1")), offline(nd("n2")), nd("n3")},
			svc:   web(2), want: []string{"n3", "n3"}},
		{name: "nothing schedulable",
			nodes: []Node{drained(nd("n1")), offline(nd("n2")), {ID: "n3", Name: "n3"}},
			svc:   web(1),
			err:   "cannot place app/web-1: availability rejected n1 (drain), n2 (offline), n3 (status unknown)"},
		{name: "empty availability means active",
			nodes: []Node{func() Node { n := nd("n1"); n.Availability = ""; return n }()},
			svc:   web(1), want: []string{"n1"}},
	})
}

func TestEphemeralFilter(t *testing.T) {
	stateful := web(1)
	stateful.Stateful = true
	runFilterCases(t, []filterCase{
		{name: "stateful avoids ephemeral nodes",
			nodes: []Node{nd("n1", "ephemeral"), nd("n2", "ephemeral=yes"), nd("n3", "ephemeral=false")},
			svc:   stateful, want: []string{"n3"}},
		{name: "stateless may use them",
			nodes: []Node{nd("n1", "ephemeral")},
			svc:   web(1), want: []string{"n1"}},
		{name: "only ephemeral nodes",
			nodes: []Node{nd("n1", "ephemeral"), drained(nd("n2"))},
			svc:   stateful,
			err:   "cannot place app/web-1: availability rejected n2 (drain); ephemeral rejected n1 (ephemeral node, service is stateful)"},
	})
}

func TestVolumeDriverFilter(t *testing.T) {
	withDrivers := func(n Node, d ...string) Node { n.VolumeDrivers = d; return n }
	svc := web(1)
	svc.Volumes = []Volume{{Name: "data", Driver: "rexray"}, {Name: "tmp", Driver: "local"}, {Name: "x"}}
	pinned := web(1)
	pinned.Volumes = []Volume{{Name: "data", Driver: "rexray:0.11"}}
	runFilterCases(t, []filterCase{
		{name: "node without the plugin is skipped",
			nodes: []Node{nd("n1"), withDrivers(nd("n2"), "rexray:0.11.4")},
			svc:   svc, want: []string{"n2"}},
		{name: "exact version",
			nodes: []Node{withDrivers(nd("n1"), "rexray:0.10"), withDrivers(nd("n2"), "rexray:0.11")},
			svc:   pinned, want: []string{"n2"}},
		{name: "local needs no plugin",
			nodes: []Node{nd("n1")},
			svc:   Service{Stack: "app", Name: "web", Instances: 1, Volumes: []Volume{{Name: "d", Driver: "local"}}},
			want:  []string{"n1"}},
		{name: "missing everywhere",
			nodes: []Node{nd("n1"), withDrivers(nd("n2"), "convoy")},
			svc:   svc,
			err:   "cannot place app/web-1: volume driver rejected n1, n2 (no volume driver rexray)"},
	})
}

func TestVolumeInstancePreference(t *testing.T) {
	nodes := []Node{nd("n1"), nd("n2"), nd("n3")}
	withVol := func(in Instance) Instance { in.Volumes = true; return in }
	// Instance 1 runs on n1 but its volumes are on n3: it goes back to them.
	runFilterCases(t, []filterCase{
		{name: "back to its volumes",
			nodes:     nodes,
			instances: []Instance{withVol(inst("app/web", 1, "n3")), inst("app/web", 2, "n1")},
			svc:       web(2), want: []string{"n3", "n1"}},
		{name: "volumes node drained: placed elsewhere",
			nodes:     []Node{nd("n1"), nd("n2"), drained(nd("n3"))},
			instances: []Instance{withVol(inst("app/web", 1, "n3"))},
			svc:       web(1), want: []string{"n1"}},
	})
}

func TestPortsFilter(t *testing.T) {
	nodes := []Node{nd("n1"), nd("n2"), nd("n3")}
	lb := func(num int, node string, ports ...Port) Instance {
		in := inst("app/lb", num, node)
		in.Ports = ports
		return in
	}
	svc := func(n int, ports ...Port) Service { s := web(n); s.Ports = ports; return s }
	runFilterCases(t, []filterCase{
		{name: "port taken by another service",
			nodes:     nodes,
			instances: []Instance{lb(1, "n1", Port{HostPort: 80})},
			svc:       svc(1, Port{HostPort: 80}), want: []string{"n2"}},
		{name: "other protocol is free",
			nodes:     nodes[:1],
			instances: []Instance{lb(1, "n1", Port{HostPort: 53, Protocol: "udp"})},
			svc:       svc(1, Port{HostPort: 53, Protocol: "tcp"}), want: []string{"n1"}},
		{name: "different addresses do not collide",
			nodes:     nodes[:1],
			instances: []Instance{lb(1, "n1", Port{HostIP: "10.0.0.1", HostPort: 80})},
			svc:       svc(1, Port{HostIP: "10.0.0.2", HostPort: 80}), want: []string{"n1"}},
		{name: "wildcard collides with an address",
			nodes:     nodes[:1],
			instances: []Instance{lb(1, "n1", Port{HostIP: "10.0.0.1", HostPort: 80})},
			svc:       svc(1, Port{HostIP: "0.0.0.0", HostPort: 80}),
			err:       "cannot place app/web-1: ports rejected n1 (port 80/tcp is published by app/lb-1)"},
		{name: "one instance per node when publishing",
			nodes: nodes[:2],
			svc:   svc(3, Port{HostPort: 8080}), want: []string{"n1", "n2"},
			err: "cannot place app/web-3: ports rejected n1, n2 (port 8080/tcp is taken by another instance of app/web)"},
		{name: "its own current instances do not block it",
			nodes:     nodes[:2],
			instances: []Instance{{Service: "app/web", Number: 1, NodeID: "n2", Ports: []Port{{HostPort: 80}}}},
			svc:       svc(1, Port{HostPort: 80}), want: []string{"n2"}},
	})
}

func TestCPUsFilter(t *testing.T) {
	small := nd("n1")
	small.CPUs = 1
	unknown := nd("n2")
	unknown.CPUs = 0
	svc := web(1)
	svc.CPUs = 2
	runFilterCases(t, []filterCase{
		{name: "enough CPUs", nodes: []Node{small, unknown, nd("n3")}, svc: svc, want: []string{"n3"}},
		{name: "fractional", nodes: []Node{small}, svc: Service{Stack: "app", Name: "web", Instances: 1, CPUs: 0.5}, want: []string{"n1"}},
		{name: "none", nodes: []Node{small, unknown}, svc: svc,
			err: "cannot place app/web-1: cpus rejected n1 (needs 2 CPUs, has 1), n2 (CPU count not reported yet)"},
	})
}

func TestMemoryFilter(t *testing.T) {
	mem := func(name string, total, used int64) Node {
		n := nd(name)
		n.MemoryTotal, n.MemoryUsed = total, used
		return n
	}
	svc := func(n int, m int64) Service { s := web(n); s.Memory = m; return s }
	runFilterCases(t, []filterCase{
		{name: "fits where free",
			nodes: []Node{mem("n1", gib, 900*mib), mem("n2", gib, 100*mib)},
			svc:   svc(1, 512*mib), want: []string{"n2"}},
		{name: "this plan's placements use memory up",
			nodes: []Node{mem("n1", gib, 0)},
			svc:   svc(3, 400*mib), want: []string{"n1", "n1"},
			err: "cannot place app/web-3: memory rejected n1 (needs 400 MiB, 224 MiB free)"},
		{name: "an instance already there fits where it is",
			nodes:     []Node{mem("n1", gib, gib)},
			instances: []Instance{inst("app/web", 1, "n1")},
			svc:       svc(1, 512*mib), want: []string{"n1"}},
		{name: "not reported",
			nodes: []Node{mem("n1", 0, 0)},
			svc:   svc(1, 1),
			err:   "cannot place app/web-1: memory rejected n1 (memory not reported yet)"},
		{name: "over-committed node shows 0 free",
			nodes: []Node{mem("n1", gib, 2*gib)},
			svc:   svc(1, 1536*mib),
			err:   "cannot place app/web-1: memory rejected n1 (needs 1.5 GiB, 0 B free)"},
	})
}

func TestDependencyFilter(t *testing.T) {
	nodes := []Node{nd("n1"), nd("n2"), nd("n3")}
	dbs := []Instance{inst("app/db", 1, "n3"), inst("app/db", 2, "n1"), inst("other/cache", 1, "n2")}
	volFrom := web(2)
	volFrom.VolumesFrom = []string{"db-%s"}
	netMode := web(1)
	netMode.NetworkMode = "container:other/cache-1"
	both := web(1)
	both.VolumesFrom = []string{"db-1"}
	both.NetworkMode = "container:other/cache-1"
	missing := web(3)
	missing.VolumesFrom = []string{"db-%s"}
	runFilterCases(t, []filterCase{
		{name: "volumes_from per instance", nodes: nodes, instances: dbs, svc: volFrom, want: []string{"n3", "n1"}},
		{name: "network_mode container", nodes: nodes, instances: dbs, svc: netMode, want: []string{"n2"}},
		{name: "two dependencies on different nodes", nodes: nodes, instances: dbs, svc: both,
			err: "cannot place app/web-1: dependency rejected n1, n2 (needs app/db-1 on the same node; it runs on n3), n3 (needs other/cache-1 on the same node; it runs on n2)"},
		{name: "dependency missing", nodes: nodes, instances: dbs, svc: missing, want: []string{"n3", "n1"},
			err: "cannot place app/web-3: dependency rejected n1, n2, n3 (needs app/db-3 on the same node; it does not exist)"},
		{name: "dependency on a node that left", nodes: nodes, instances: []Instance{inst("app/db", 1, "gone")},
			svc: Service{Stack: "app", Name: "web", Instances: 1, VolumesFrom: []string{"db-1"}},
			err: "cannot place app/web-1: dependency rejected n1, n2, n3 (needs app/db-1 on the same node; it is on node gone, which is not in the grid)"},
	})
}

func TestHeldNodes(t *testing.T) {
	held := func(n Node, why string) Node { n.Hold = why; return n }
	daemon := web(1)
	daemon.Strategy = StrategyDaemon
	stateful := web(1)
	stateful.Stateful = true
	runFilterCases(t, []filterCase{
		{name: "an offline node within its grace keeps its instance",
			nodes:     []Node{held(offline(nd("n1")), "offline for 40s, within the 2m0s grace"), nd("n2")},
			instances: []Instance{inst("app/web", 1, "n1"), inst("app/web", 2, "n2")},
			svc:       web(2), want: []string{"n1", "n2"}},
		{name: "a held node takes no new instance, even of a service it runs",
			nodes:     []Node{held(nd("n1"), "online again for 5s (20s grace)"), nd("n2")},
			instances: []Instance{inst("app/web", 1, "n1")},
			svc:       web(3), want: []string{"n1", "n2", "n2"}},
		{name: "a held node that is drained keeps nothing",
			nodes:     []Node{held(drained(offline(nd("n1"))), "offline for 40s, within the 2m0s grace"), nd("n2")},
			instances: []Instance{inst("app/web", 1, "n1")},
			svc:       web(1), want: []string{"n2"}},
		{name: "only held nodes: the error says why",
			nodes: []Node{held(offline(nd("n1")), "offline for 40s, within the 2m0s grace")},
			svc:   web(1),
			err:   "cannot place app/web-1: availability rejected n1 (offline for 40s, within the 2m0s grace; takes no new instances)"},
		{name: "daemon: a held node keeps its instance and gets no second one",
			nodes:     []Node{held(nd("n1"), "online again for 5s (20s grace)"), nd("n2")},
			instances: []Instance{inst("app/web", 1, "n1")},
			svc:       func() Service { s := daemon; s.Instances = 2; return s }(), want: []string{"n1", "n2", "n2"}},
		{name: "a stateful instance stays on its held node",
			nodes:     []Node{held(offline(nd("n1")), "offline for 40s, within the 2m0s grace"), nd("n2")},
			instances: []Instance{inst("app/web", 1, "n1")},
			svc:       stateful, want: []string{"n1"}},
	})
}

func TestSetHolds(t *testing.T) {
	st := NewState([]Node{nd("n1"), nd("n2")}, nil, nil)
	st.SetHolds(map[string]string{"n1": "online again for 1s (20s grace)"})
	eqList(t, "held", where(place(t, st, web(2))), []string{"n2", "n2"})
	st.SetHolds(nil)
	eqList(t, "released", where(place(t, st, web(2))), []string{"n1", "n2"})
}
