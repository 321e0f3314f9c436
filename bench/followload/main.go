// Command followload holds many `logs --follow` streams and blocking
// queries open against one node for a while and samples the node's memory:
// Kontena's master leaked under exactly this load. It prints one line per
// sample and a summary; bench/follow.sh runs it.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kontena-ng/kontena/api"
)

func main() {
	addr := flag.String("api", "127.0.0.1:9700", "node API address")
	caFile := flag.String("ca", "", "grid CA certificate (PEM)")
	token := flag.String("token", os.Getenv("KONTENA_TOKEN"), "admin token")
	service := flag.String("service", "", "stack/service whose logs to follow")
	follows := flag.Int("follows", 100, "concurrent logs --follow streams")
	blocking := flag.Int("blocking", 100, "concurrent blocking queries (re-armed as they return)")
	duration := flag.Duration("duration", 10*time.Minute, "how long to hold the load")
	pid := flag.Int("pid", 0, "node process to sample (VmRSS)")
	every := flag.Duration("sample", 15*time.Second, "sampling interval")
	flag.Parse()
	ca, err := os.ReadFile(*caFile)
	if err != nil {
		fail(err)
	}
	cl, err := api.NewClient([]string{*addr}, ca, *token, nil)
	if err != nil {
		fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	var lines, queries, errs atomic.Int64
	var wg sync.WaitGroup
	// Clients start 20 ms apart: the API refuses more than 64 handshakes
	// in progress from one address (limits.go), and a burst of 200 would
	// count as errors that say nothing about a held load.
	for range *follows {
		wg.Add(1)
		go func() { defer wg.Done(); follow(ctx, cl, *service, &lines, &errs) }()
		time.Sleep(20 * time.Millisecond)
	}
	for range *blocking {
		wg.Add(1)
		go func() { defer wg.Done(); block(ctx, cl, &queries, &errs) }()
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	var first, peak, last int64
	tick := time.NewTicker(*every)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
		}
		rss := rssKiB(*pid)
		if first == 0 {
			first = rss
		}
		peak, last = max(peak, rss), rss
		fmt.Printf("t=%4.0fs rss=%6d KiB log_lines=%d blocking_answers=%d errors=%d\n",
			time.Since(start).Seconds(), rss, lines.Load(), queries.Load(), errs.Load())
	}
	wg.Wait()
	fmt.Printf("SUMMARY follows=%d blocking=%d duration=%s rss_first=%dKiB rss_peak=%dKiB rss_last=%dKiB log_lines=%d blocking_answers=%d errors=%d\n",
		*follows, *blocking, *duration, first, peak, last, lines.Load(), queries.Load(), errs.Load())
}

// follow holds one log stream, reopening it if the node ends it.
func follow(ctx context.Context, cl *api.Client, service string, lines, errs *atomic.Int64) {
	for ctx.Err() == nil {
		body, err := cl.Stream(ctx, "/v1/services/"+service+"/logs?follow=true&tail=1")
		if err == nil {
			sc := bufio.NewScanner(body)
			for sc.Scan() {
				lines.Add(1)
			}
			err = sc.Err()
			_ = body.Close()
		}
		if err != nil && ctx.Err() == nil {
			errs.Add(1)
			time.Sleep(time.Second)
		}
	}
}

// block re-arms a blocking query on the node list as each one returns.
func block(ctx context.Context, cl *api.Client, answers, errs *atomic.Int64) {
	var index uint64
	for ctx.Err() == nil {
		idx, err := cl.Do(ctx, http.MethodGet, fmt.Sprintf("/v1/nodes?index=%d&wait=30s", index), nil, nil)
		if err != nil {
			if ctx.Err() == nil {
				errs.Add(1)
				time.Sleep(time.Second)
			}
			continue
		}
		index = idx
		answers.Add(1)
	}
}

func rssKiB(pid int) int64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "followload:", err)
	os.Exit(1)
}
