package dns

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// benchZone: 10 stacks x 100 services x 3 instances in grid "bench", every
// stack exposing svc0 (the same shape cmd/dnsbench serves).
func benchZone(b testing.TB) ([]Record, map[string]string) {
	var recs []Record
	exp := map[string]string{}
	for st := 0; st < 10; st++ {
		stack := fmt.Sprintf("stack%d", st)
		exp[ExposeKey("bench", stack)] = "svc0"
		for sv := 0; sv < 100; sv++ {
			for i := 1; i <= 3; i++ {
				n := st*300 + sv*3 + i
				recs = append(recs, Record{"bench", stack, fmt.Sprintf("svc%d", sv), i,
					netip.AddrFrom4([4]byte{10, 81, byte(128 + n/256), byte(n)}), true})
			}
		}
	}
	return recs, exp
}

// BenchmarkResolve measures the answer path in-process: raw query in, raw
// response out (what a UDP worker does between its read and its write).
func BenchmarkResolve(b *testing.B) {
	recs, exp := benchZone(b)
	z, err := BuildZone(recs, exp, ZoneOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, q string }{
		{"service-3A", "svc42.stack7.bench.kontena.local."},
		{"instance-1A", "svc42-2.stack7.bench.kontena.local."},
		{"exposed-3A", "stack3.bench.kontena.local."},
		{"nxdomain", "nope.stack3.bench.kontena.local."},
	} {
		m := new(mdns.Msg)
		m.SetQuestion(c.q, mdns.TypeA)
		pkt, _ := m.Pack()
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				r := rng(1)
				out := make([]byte, 0, 512)
				for pb.Next() {
					resp, ok := z.answer(pkt, out, false, &r)
					if !ok || len(resp) < 12 {
						b.Fatal("no answer")
					}
				}
			})
		})
	}
	b.Run("build-3000-records", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := BuildZone(recs, exp, ZoneOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkResolveUDP measures a full round trip over loopback (client cost
// included; dnsperf in bench/dns.sh measures the server alone).
func BenchmarkResolveUDP(b *testing.B) {
	s, addr := startServer(b, Config{})
	s.Update(benchZone(b))
	m := new(mdns.Msg)
	m.SetQuestion("svc42.stack7.bench.kontena.local.", mdns.TypeA)
	pkt, _ := m.Pack()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("udp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		buf := make([]byte, 1500)
		for pb.Next() {
			c.SetDeadline(time.Now().Add(time.Second))
			if _, err := c.Write(pkt); err != nil {
				b.Error(err)
				return
			}
			if _, err := c.Read(buf); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
