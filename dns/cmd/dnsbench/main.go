// Command dnsbench serves a synthetic grid from the node resolver (package
// dns) for bench/dns.sh, and writes the same records as a hosts file (for
// dnsmasq) and a dnsperf query file.
//
//	dnsbench -addr 127.0.0.53:5353 -hosts /tmp/h -queries /tmp/q   # serves until SIGINT/SIGTERM
//	dnsbench -write-only -hosts /tmp/h -queries /tmp/q
//	dnsbench -write-only -check 127.0.0.53:5353,127.0.0.54:5353  # both serve the grid?
//
// Grid "bench": -stacks stacks x -services services x -instances instances,
// every stack exposing svc0. Names: svcN.stackM.bench.kontena.local (all
// instances), svcN-I.stackM... (one), stackM.bench.kontena.local and
// stackM-I.bench.kontena.local (the exposed svc0).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/kontena-ng/kontena/dns"
)

func main() {
	addr := flag.String("addr", "127.0.0.53:5353", "listen address (UDP and TCP)")
	stacks := flag.Int("stacks", 10, "stacks in the grid")
	services := flag.Int("services", 100, "services per stack")
	instances := flag.Int("instances", 3, "instances per service")
	hosts := flag.String("hosts", "", "write the records as a hosts file here (dnsmasq --addn-hosts)")
	queries := flag.String("queries", "", "write a dnsperf query file here (every name once, shuffled)")
	writeOnly := flag.Bool("write-only", false, "write the files and exit")
	check := flag.String("check", "", "with -write-only: ask these servers (comma-separated host:port) every name and exit 1 unless all give the expected addresses")
	workers := flag.Int("workers", 0, "UDP reader goroutines (0: the dns.Config default)")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	const grid, domain = "bench", "kontena.local"
	var recs []dns.Record
	exposes := map[string]string{}
	names := map[string][]netip.Addr{}
	var order []string
	add := func(name string, ip netip.Addr) {
		if _, ok := names[name]; !ok {
			order = append(order, name)
		}
		names[name] = append(names[name], ip)
	}
	n := 0
	for st := 0; st < *stacks; st++ {
		stack := fmt.Sprintf("stack%d", st)
		exposes[dns.ExposeKey(grid, stack)] = "svc0"
		for sv := 0; sv < *services; sv++ {
			svc := fmt.Sprintf("svc%d", sv)
			for i := 1; i <= *instances; i++ {
				n++
				ip := netip.AddrFrom4([4]byte{10, byte(81 + n>>16), byte(n >> 8), byte(n)})
				recs = append(recs, dns.Record{Grid: grid, Stack: stack, Service: svc, Instance: i, IP: ip, Healthy: true})
				add(fmt.Sprintf("%s.%s.%s.%s", svc, stack, grid, domain), ip)
				add(fmt.Sprintf("%s-%d.%s.%s.%s", svc, i, stack, grid, domain), ip)
				if sv == 0 {
					add(fmt.Sprintf("%s.%s.%s", stack, grid, domain), ip)
					add(fmt.Sprintf("%s-%d.%s.%s", stack, i, grid, domain), ip)
				}
			}
		}
	}
	if *hosts != "" {
		must(writeLines(*hosts, func(w *bufio.Writer) {
			for _, name := range order {
				for _, ip := range names[name] {
					fmt.Fprintf(w, "%s %s\n", ip, name)
				}
			}
		}))
	}
	if *queries != "" {
		shuffled := append([]string(nil), order...)
		r := rand.New(rand.NewPCG(1, 2)) // same file every run
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		must(writeLines(*queries, func(w *bufio.Writer) {
			for _, name := range shuffled {
				fmt.Fprintf(w, "%s A\n", name)
			}
		}))
	}
	log.Info("synthetic grid", "records", len(recs), "names", len(order))
	if *writeOnly {
		if *check != "" {
			if bad := checkServers(strings.Split(*check, ","), order, names); bad > 0 {
				log.Error("servers disagree with the synthetic grid", "names", bad)
				os.Exit(1)
			}
			log.Info("servers answer every name as expected", "servers", *check, "names", len(order))
		}
		return
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s := dns.New(dns.Config{Logger: log, UDPWorkers: *workers, ResolvConf: "/nonexistent"})
	s.Update(recs, exposes)
	if err := s.Start(ctx, *addr); err != nil {
		log.Error("start", "err", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	<-ctx.Done()
	s.Close()
}

// checkServers asks each server for every name (A) and counts the names
// whose answer is not exactly the expected set of addresses.
func checkServers(servers, order []string, names map[string][]netip.Addr) int {
	bad := 0
	c := &mdns.Client{Timeout: 2 * time.Second}
	for _, srv := range servers {
		for _, name := range order {
			m := new(mdns.Msg)
			m.SetQuestion(name+".", mdns.TypeA)
			r, _, err := c.Exchange(m, srv)
			var got, want []string
			if err == nil {
				for _, rr := range r.Answer {
					if a, ok := rr.(*mdns.A); ok {
						got = append(got, a.A.String())
					}
				}
			}
			for _, ip := range names[name] {
				want = append(want, ip.String())
			}
			slices.Sort(got)
			slices.Sort(want)
			if err != nil || !slices.Equal(got, want) {
				if bad < 5 {
					slog.Error("wrong answer", "server", srv, "name", name, "got", got, "want", want, "err", err)
				}
				bad++
			}
		}
	}
	return bad
}

func writeLines(path string, fill func(*bufio.Writer)) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fill(w)
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func must(err error) {
	if err != nil {
		slog.Error("dnsbench", "err", err)
		os.Exit(1)
	}
}
