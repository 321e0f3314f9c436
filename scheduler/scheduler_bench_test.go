package scheduler

import (
	"fmt"
	"testing"

	"github.com/kontena-ng/kontena/fsm"
)

// benchNodes builds a grid of k online nodes over three zones, 16 GiB and
// 8 CPUs each, every tenth one drained and every seventh one with an
// hdd disk label, so the availability and affinity filters have work.
func benchNodes(k int) []Node {
	nodes := make([]Node, k)
	for i := range nodes {
		n := Node{
			ID: fmt.Sprintf("id-%04d", i+1), Name: fmt.Sprintf("node-%04d", i+1), Number: i + 1,
			Status: fsm.StatusOnline, Availability: fsm.AvailabilityActive,
			Labels:      []string{"az=" + string(rune('a'+i%3))},
			CPUs:        8,
			MemoryTotal: 16 << 30,
			MemoryUsed:  int64(i%50) << 26,
		}
		if i%10 == 9 {
			n.Availability = fsm.AvailabilityDrain
		}
		if i%7 == 0 {
			n.Labels = append(n.Labels, "disk=hdd")
		}
		nodes[i] = n
	}
	return nodes
}

// benchServices returns count services of per instances each: 64 MiB and
// 0.5 CPUs apiece, half of them with an anti-affinity to hdd nodes, every
// hundredth publishing a port (when it has no more instances than the grid
// has nodes: a published port allows one instance per node).
func benchServices(count, per int) []Service {
	svcs := make([]Service, count)
	for i := range svcs {
		s := Service{Stack: "bench", Name: fmt.Sprintf("svc-%04d", i), Instances: per, Memory: 64 << 20, CPUs: 0.5, MinHealth: 0.8}
		if i%2 == 0 {
			s.Affinity = []string{"label!=disk=hdd"}
		}
		if i%100 == 0 && per <= 500 {
			s.Ports = []Port{{HostPort: 10000 + i}}
		}
		svcs[i] = s
	}
	return svcs
}

// placeAll places every service in turn on a fresh grid, applying each plan
// so the next service sees it, as one reconcile pass would.
func placeAll(b *testing.B, nodes []Node, svcs []Service, opt Options) int {
	st := NewState(nodes, nil, nil)
	placed := 0
	for _, s := range svcs {
		p, err := Place(st, s, opt)
		if err != nil {
			b.Fatal(err)
		}
		st.Apply(s, p)
		placed += len(p.Placements)
	}
	return placed
}

func benchPlace(b *testing.B, count, per int, opt Options) {
	nodes, svcs := benchNodes(1000), benchServices(count, per)
	b.ReportAllocs()
	placed := 0
	for b.Loop() {
		placed += placeAll(b, nodes, svcs, opt)
	}
	b.ReportMetric(float64(placed)/b.Elapsed().Seconds(), "placements/s")
}

// BenchmarkPlace100kOn1k places 100,000 instances over 1,000 nodes, the
// shape of SwarmKit's published micro-benchmark (100k tasks, 1k nodes,
// 22.6 s).
func BenchmarkPlace100kOn1k(b *testing.B) {
	b.Run("1000x100", func(b *testing.B) { benchPlace(b, 1000, 100, Options{}) })
	b.Run("1x100000", func(b *testing.B) { benchPlace(b, 1, 100000, Options{}) })
	// The same first pass through the filter-every-node path, for scale.
	b.Run("1000x100-fullscan", func(b *testing.B) { benchPlace(b, 1000, 100, Options{scan: true}) })
}
