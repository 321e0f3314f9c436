// Command gridwrite is the write load generator of bench/grid.sh (issue 2).
//
// It drives N concurrent clients for a bounded time (and a bounded number of
// operations) against either a kontena grid or an etcd cluster, and prints one
// JSON line: ops/s, p50, p99, errors.
//
//	go run ./bench/gridwrite -target kontena -clients 16 -duration 20s \
//	    -addrs 127.0.2.1:9700,127.0.2.2:9700,127.0.2.3:9700 -config $KONTENA_CONFIG
//	go run ./bench/gridwrite -target etcd -clients 16 -duration 20s \
//	    -addrs 127.0.3.1:2379,127.0.3.2:2379,127.0.3.3:2379
//
// One write on kontena is PATCH /v1/nodes/<node> with add_labels
// ["k<client>=<seq>"] (one Raft commit; the label key per client is fixed, its
// value changes, so every write is a real state change of the node). One write
// on etcd is POST /v3/kv/put of key "bench/k<client>" = "<seq>" through etcd's
// JSON gRPC gateway. Client c always talks to addrs[c % len(addrs)], so with
// three addresses the writes are spread round-robin over all members and two
// thirds of them are forwarded by a follower to the leader, on both systems.
// Every client has its own connection (keep-alive), on both systems.
//
// With -summarize it instead reads such JSON lines on stdin and prints a
// Markdown table with the median of each target and the ratios.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kontena-ng/kontena/api"
)

// Result is the one JSON line a run prints.
type Result struct {
	Target     string         `json:"target"`
	Clients    int            `json:"clients"`
	Endpoints  []string       `json:"endpoints"`
	DurationS  float64        `json:"duration_s"`
	Ops        int            `json:"ops"`    // successful writes
	Errors     int            `json:"errors"` // failed writes (not in the latencies)
	OpsPerS    float64        `json:"ops_per_s"`
	P50Ms      float64        `json:"p50_ms"`
	P99Ms      float64        `json:"p99_ms"`
	MaxMs      float64        `json:"max_ms"`
	ErrSamples map[string]int `json:"error_samples,omitempty"`
	Capped     bool           `json:"capped,omitempty"` // stopped by -max-ops, not by -duration
	// With -pids: CPU time (user+system) the server processes used during
	// the run, and that per successful write.
	ServerCPUS    float64 `json:"server_cpu_s,omitempty"`
	CPUMsPerWrite float64 `json:"server_cpu_ms_per_write,omitempty"`
	// The load generator's own CPU time per write (its HTTP client: TLS
	// for kontena, plain HTTP for etcd), which shares the machine.
	ClientCPUMsPerWrite float64 `json:"client_cpu_ms_per_write,omitempty"`
}

type writer func(ctx context.Context, client, seq int) error

func main() {
	var (
		target    = flag.String("target", "kontena", "kontena or etcd")
		clients   = flag.Int("clients", 16, "concurrent clients, each with its own connection, each one write in flight")
		duration  = flag.Duration("duration", 20*time.Second, "how long to write")
		maxOps    = flag.Int("max-ops", 2_000_000, "stop after this many writes in total (bounds memory and time)")
		opTimeout = flag.Duration("op-timeout", 10*time.Second, "timeout of one write")
		addrsFlag = flag.String("addrs", "", "comma-separated host:port of the members to write to (client c uses addrs[c%n]); kontena default: the addresses in the CLI config")
		config    = flag.String("config", os.Getenv("KONTENA_CONFIG"), "kontena CLI config with the admin token and CA (kontena)")
		node      = flag.String("node", "n4", "node whose labels are written (kontena)")
		prefix    = flag.String("prefix", "k", "label key / etcd key prefix")
		summarize = flag.Bool("summarize", false, "read result lines on stdin and print a Markdown table of medians")
		pidsFlag  = flag.String("pids", "", "comma-separated PIDs of the server processes whose CPU time to report (Linux /proc)")
	)
	flag.Parse()
	if *summarize {
		if err := summarizeLines(os.Stdin, os.Stdout); err != nil {
			fatal(err)
		}
		return
	}
	if *clients < 1 || *clients > 1024 {
		fatal(fmt.Errorf("-clients %d: want 1..1024", *clients))
	}
	if *duration <= 0 || *duration > time.Hour {
		fatal(fmt.Errorf("-duration %s: want (0, 1h]", *duration))
	}
	addrs := splitList(*addrsFlag)

	var writers []writer // one per client
	switch *target {
	case "kontena":
		ctxCfg, err := loadKontenaConfig(*config)
		if err != nil {
			fatal(err)
		}
		if len(addrs) == 0 {
			addrs = ctxCfg.Addresses
		}
		if len(addrs) == 0 {
			fatal(errors.New("no kontena address: pass -addrs"))
		}
		for c := 0; c < *clients; c++ {
			// One address per client: no client-side failover, so a failed
			// write is counted, not retried on another node.
			cl, err := api.NewClient([]string{addrs[c%len(addrs)]}, []byte(ctxCfg.CACert), ctxCfg.Token, nil)
			if err != nil {
				fatal(err)
			}
			writers = append(writers, func(ctx context.Context, client, seq int) error {
				_, err := cl.UpdateNode(ctx, *node, api.NodeUpdateRequest{
					AddLabels: []string{*prefix + strconv.Itoa(client) + "=" + strconv.Itoa(seq)}})
				return err
			})
		}
	case "etcd":
		if len(addrs) == 0 {
			fatal(errors.New("etcd: pass -addrs"))
		}
		for c := 0; c < *clients; c++ {
			hc := &http.Client{Transport: &http.Transport{
				DialContext:         (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConnsPerHost: 64,
				IdleConnTimeout:     90 * time.Second,
			}}
			url := "http://" + addrs[c%len(addrs)] + "/v3/kv/put"
			key := base64.StdEncoding.EncodeToString([]byte("bench/" + *prefix + strconv.Itoa(c)))
			writers = append(writers, func(ctx context.Context, client, seq int) error {
				return etcdPut(ctx, hc, url, key, strconv.Itoa(seq))
			})
		}
	default:
		fatal(fmt.Errorf("-target %q: want kontena or etcd", *target))
	}

	var pids []int
	for _, p := range splitList(*pidsFlag) {
		pid, err := strconv.Atoi(p)
		if err != nil {
			fatal(fmt.Errorf("-pids: %w", err))
		}
		pids = append(pids, pid)
	}
	cpu0, err := cpuSeconds(pids)
	if err != nil {
		fatal(err)
	}
	self0, err := cpuSeconds([]int{os.Getpid()})
	if err != nil {
		fatal(err)
	}
	res := run(*target, addrs, writers, *duration, *maxOps, *opTimeout)
	if self1, err := cpuSeconds([]int{os.Getpid()}); err == nil && res.Ops > 0 {
		res.ClientCPUMsPerWrite = round((self1-self0)*1000/float64(res.Ops), 3)
	}
	if len(pids) > 0 {
		cpu1, err := cpuSeconds(pids)
		if err != nil {
			fatal(err)
		}
		res.ServerCPUS = round(cpu1-cpu0, 2)
		if res.Ops > 0 {
			res.CPUMsPerWrite = round((cpu1-cpu0)*1000/float64(res.Ops), 3)
		}
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}

func run(target string, addrs []string, writers []writer, duration time.Duration, maxOps int, opTimeout time.Duration) *Result {
	n := len(writers)
	perClient := maxOps / n
	if perClient < 1 {
		perClient = 1
	}
	type clientRes struct {
		lat  []time.Duration
		errs map[string]int
		nerr int
	}
	results := make([]clientRes, n)
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for c := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[c]
			r.lat = make([]time.Duration, 0, min(perClient, 1<<16))
			r.errs = map[string]int{}
			for seq := 0; seq < perClient && ctx.Err() == nil; seq++ {
				// A write still in flight when the run ends is given its
				// own timeout to finish, so it is measured, not cut short.
				octx, ocancel := context.WithTimeout(context.Background(), opTimeout)
				t0 := time.Now()
				err := writers[c](octx, c, seq)
				d := time.Since(t0)
				ocancel()
				if err != nil {
					r.nerr++
					msg := err.Error()
					if len(msg) > 160 {
						msg = msg[:160]
					}
					if len(r.errs) < 8 || r.errs[msg] > 0 {
						r.errs[msg]++
					}
					continue
				}
				r.lat = append(r.lat, d)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	res := &Result{Target: target, Clients: n, Endpoints: addrs, DurationS: round(elapsed.Seconds(), 3)}
	var all []time.Duration
	for _, r := range results {
		all = append(all, r.lat...)
		res.Errors += r.nerr
		for m, k := range r.errs {
			if res.ErrSamples == nil {
				res.ErrSamples = map[string]int{}
			}
			res.ErrSamples[m] += k
		}
	}
	res.Ops = len(all)
	res.Capped = res.Ops+res.Errors >= perClient*n
	res.OpsPerS = round(float64(res.Ops)/elapsed.Seconds(), 1)
	if len(all) > 0 {
		slices.Sort(all)
		res.P50Ms = ms(quantile(all, 0.50))
		res.P99Ms = ms(quantile(all, 0.99))
		res.MaxMs = ms(all[len(all)-1])
	}
	return res
}

// cpuSeconds sums utime+stime of the processes (fields 14 and 15 of
// /proc/<pid>/stat, in clock ticks of 1/100 s on Linux).
func cpuSeconds(pids []int) (float64, error) {
	var ticks float64
	for _, pid := range pids {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return 0, err
		}
		// The command name (field 2) may contain spaces; fields resume after ')'.
		rest := string(data[bytes.LastIndexByte(data, ')')+2:])
		f := strings.Fields(rest) // f[0] is field 3
		if len(f) < 13 {
			return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
		}
		for _, s := range f[11:13] {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
			}
			ticks += v
		}
	}
	return ticks / 100, nil
}

// quantile is the nearest-rank quantile of sorted durations.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(float64(len(sorted))*q+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func etcdPut(ctx context.Context, hc *http.Client, url, key, value string) error {
	body, _ := json.Marshal(map[string]string{"key": key, "value": base64.StdEncoding.EncodeToString([]byte(value))})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("etcd put: %s: %s", resp.Status, bytes.TrimSpace(data))
	}
	// A successful put answers {"header":{"cluster_id":..,"revision":..}}.
	var out struct {
		Header *struct {
			Revision string `json:"revision"`
		} `json:"header"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return fmt.Errorf("etcd put: decode answer: %w", err)
	}
	if out.Error != "" || out.Header == nil || out.Header.Revision == "" {
		return fmt.Errorf("etcd put: unexpected answer: %s", bytes.TrimSpace(data))
	}
	return nil
}

type gridContext struct {
	Addresses []string `json:"addresses"`
	Token     string   `json:"token"`
	CACert    string   `json:"ca_cert"`
}

func loadKontenaConfig(path string) (*gridContext, error) {
	if path == "" {
		return nil, errors.New("kontena: pass -config or set KONTENA_CONFIG")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cfg struct {
		Current string                  `json:"current"`
		Grids   map[string]*gridContext `json:"grids"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	g := cfg.Grids[cfg.Current]
	if g == nil || g.Token == "" || g.CACert == "" {
		return nil, fmt.Errorf("%s: current grid %q has no token or CA", path, cfg.Current)
	}
	return g, nil
}

// summarizeLines reads Result lines and prints the medians side by side.
func summarizeLines(r io.Reader, w io.Writer) error {
	by := map[string][]*Result{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var res Result
		if err := json.Unmarshal([]byte(line), &res); err != nil {
			return err
		}
		by[res.Target] = append(by[res.Target], &res)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	k, e := by["kontena"], by["etcd"]
	if len(k) == 0 || len(e) == 0 {
		return fmt.Errorf("need results of both targets, have kontena=%d etcd=%d", len(k), len(e))
	}
	med := func(rs []*Result, f func(*Result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		sort.Float64s(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	sum := func(rs []*Result, f func(*Result) int) int {
		t := 0
		for _, r := range rs {
			t += f(r)
		}
		return t
	}
	runs := func(rs []*Result, f func(*Result) float64, prec int) string {
		parts := make([]string, len(rs))
		for i, r := range rs {
			parts[i] = strconv.FormatFloat(f(r), 'f', prec, 64)
		}
		return strings.Join(parts, " / ")
	}
	ops := func(r *Result) float64 { return r.OpsPerS }
	p50 := func(r *Result) float64 { return r.P50Ms }
	p99 := func(r *Result) float64 { return r.P99Ms }
	ko, eo := med(k, ops), med(e, ops)
	k50, e50 := med(k, p50), med(e, p50)
	k99, e99 := med(k, p99), med(e, p99)
	ratio := func(a, b float64) string {
		if b == 0 {
			return "n/a"
		}
		return strconv.FormatFloat(a/b, 'f', 2, 64)
	}
	fmt.Fprintf(w, "| | kontena (median of %d) | etcd (median of %d) | kontena / etcd |\n", len(k), len(e))
	fmt.Fprintf(w, "|---|---:|---:|---:|\n")
	fmt.Fprintf(w, "| writes/s | %.0f | %.0f | %s |\n", ko, eo, ratio(ko, eo))
	fmt.Fprintf(w, "| p50 latency (ms) | %.2f | %.2f | %s |\n", k50, e50, ratio(k50, e50))
	fmt.Fprintf(w, "| p99 latency (ms) | %.2f | %.2f | %s |\n", k99, e99, ratio(k99, e99))
	cpu := func(r *Result) float64 { return r.CPUMsPerWrite }
	if kc, ec := med(k, cpu), med(e, cpu); kc > 0 && ec > 0 {
		fmt.Fprintf(w, "| server CPU per write (ms, 3 members) | %.2f | %.2f | %s |\n", kc, ec, ratio(kc, ec))
	}
	ccpu := func(r *Result) float64 { return r.ClientCPUMsPerWrite }
	if kc, ec := med(k, ccpu), med(e, ccpu); kc > 0 && ec > 0 {
		fmt.Fprintf(w, "| load generator CPU per write (ms) | %.2f | %.2f | %s |\n", kc, ec, ratio(kc, ec))
	}
	fmt.Fprintf(w, "| failed writes (all runs) | %d | %d | |\n", sum(k, func(r *Result) int { return r.Errors }), sum(e, func(r *Result) int { return r.Errors }))
	fmt.Fprintf(w, "| successful writes (all runs) | %d | %d | |\n", sum(k, func(r *Result) int { return r.Ops }), sum(e, func(r *Result) int { return r.Ops }))
	fmt.Fprintf(w, "\nSingle runs in order (writes/s; p50; p99 ms): kontena %s; %s; %s — etcd %s; %s; %s.\n",
		runs(k, ops, 0), runs(k, p50, 2), runs(k, p99, 2), runs(e, ops, 0), runs(e, p50, 2), runs(e, p99, 2))
	for _, rs := range [][]*Result{k, e} {
		agg := map[string]int{}
		for _, r := range rs {
			for m, n := range r.ErrSamples {
				agg[m] += n
			}
		}
		msgs := make([]string, 0, len(agg))
		for m := range agg {
			msgs = append(msgs, m)
		}
		sort.Slice(msgs, func(i, j int) bool { return agg[msgs[i]] > agg[msgs[j]] })
		for i, m := range msgs {
			if i == 5 {
				fmt.Fprintf(w, "\n(%d more distinct %s errors)\n", len(msgs)-5, rs[0].Target)
				break
			}
			fmt.Fprintf(w, "\nError seen on %s (%d×): `%s`\n", rs[0].Target, agg[m], strings.ReplaceAll(m, "`", "'"))
		}
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func ms(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 3) }

func round(f float64, prec int) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(f, 'f', prec, 64), 64)
	return v
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "gridwrite:", err)
	os.Exit(2)
}
