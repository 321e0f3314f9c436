package lb

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"sort"
	"text/tabwriter"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The stats side (kontena/lb's :1000, user stats, STATS_PASSWORD): a
// plain-text page of every backend and Prometheus metrics at /metrics.
// Without STATS_PASSWORD it is off.

func (s *Server) statsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(statsCollector{s})
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pw := s.table.Load().cfg.Options.StatsPassword
		user, pass, ok := r.BasicAuth()
		if pw == "" || !ok || user != "stats" || subtle.ConstantTimeCompare([]byte(pass), []byte(pw)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="kontena lb stats"`)
			http.Error(w, "stats need the user stats and STATS_PASSWORD", http.StatusUnauthorized)
			return
		}
		if r.URL.Path == "/metrics" {
			metrics.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SERVICE\tMODE\tINSTANCE\tADDRESS\tUP\tACTIVE\tSERVED\tFAILED")
		for _, st := range s.snapshot() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\t%d\t%d\t%d\n", st.service, st.mode, st.b.id, st.b.addr, st.b.up.Load(),
				st.b.active.Load(), st.b.served.Load(), st.b.failed.Load())
		}
		_ = tw.Flush()
	})
}

type backendStat struct {
	service, mode string
	b             *backend
}

// snapshot lists every backend of the current routing, by service.
func (s *Server) snapshot() []backendStat {
	t := s.table.Load()
	var out []backendStat
	seen := map[*route]bool{}
	add := func(r *route) {
		if seen[r] {
			return
		}
		seen[r] = true
		for _, b := range r.pool.backends {
			out = append(out, backendStat{service: r.svc.Name, mode: r.svc.Mode, b: b})
		}
	}
	for _, rs := range t.exact {
		for _, r := range rs {
			add(r)
		}
	}
	for _, w := range t.wildcard {
		for _, r := range w.routes {
			add(r)
		}
	}
	for _, r := range t.anyHost {
		add(r)
	}
	for _, r := range t.tcp {
		add(r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].service != out[j].service {
			return out[i].service < out[j].service
		}
		return out[i].b.id < out[j].b.id
	})
	return out
}

var (
	descUp     = prometheus.NewDesc("kontena_lb_backend_up", "1 while the backend gets traffic.", []string{"service", "instance"}, nil)
	descActive = prometheus.NewDesc("kontena_lb_backend_active", "Requests or connections in flight.", []string{"service", "instance"}, nil)
	descServed = prometheus.NewDesc("kontena_lb_backend_served_total", "Requests or connections served.", []string{"service", "instance"}, nil)
	descFailed = prometheus.NewDesc("kontena_lb_backend_failed_total", "Requests that failed at the backend.", []string{"service", "instance"}, nil)
)

// statsCollector reads the backends at each scrape.
type statsCollector struct{ s *Server }

func (statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descUp
	ch <- descActive
	ch <- descServed
	ch <- descFailed
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.s.snapshot() {
		up := 0.0
		if st.b.up.Load() {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, st.service, st.b.id)
		ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, float64(st.b.active.Load()), st.service, st.b.id)
		ch <- prometheus.MustNewConstMetric(descServed, prometheus.CounterValue, float64(st.b.served.Load()), st.service, st.b.id)
		ch <- prometheus.MustNewConstMetric(descFailed, prometheus.CounterValue, float64(st.b.failed.Load()), st.service, st.b.id)
	}
}
