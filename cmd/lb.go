package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/internal/atomicfile"
	"github.com/kontena-ng/kontena/lb"
)

func lbCommand() *cli.Command {
	return &cli.Command{
		Name:  "lb",
		Usage: "run a load balancer (what a grid's kontena/lb service runs)",
		Description: `   A load balancer serves the services linked to it: HTTP by virtual host and
   path, TCP by port, TLS by SNI from SSL_CERTS / SSL_CERT_*, its options from its
   environment as kontena/lb's (KONTENA_LB_HTTP2, KONTENA_LB_SSL_CIPHERS,
   KONTENA_LB_ACCEPT_PROXY, KONTENA_LB_HEALTH_URI, STATS_PASSWORD).

   With --routing FILE it serves the routing in FILE (JSON, as the grid hands it
   out) and reloads it when it changes, without dropping a request.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "routing", Usage: "JSON routing file to serve (reloaded when it changes)"},
			&cli.StringFlag{Name: "api", Usage: "read the routing from the grid at this node API URL (with KONTENA_LB_TOKEN, KONTENA_LB_CA, KONTENA_LB_SERVICE)"},
			&cli.StringFlag{Name: "cache", Usage: "with --api: keep the last routing in this file, to serve it after a restart without masters"},
			&cli.StringFlag{Name: "http", Value: ":80", Usage: "HTTP listen address ('' for none)"},
			&cli.StringFlag{Name: "https", Value: ":443", Usage: "HTTPS listen address ('' for none; needs certificates)"},
			&cli.StringFlag{Name: "stats", Value: ":1000", Usage: "stats and metrics listen address (with STATS_PASSWORD)"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
			&cli.StringFlag{Name: "pprof", Usage: "serve Go's profiler on loopback `ADDR` (for measuring)"},
		},
		Action: runLB,
	}
}

func runLB(c *cli.Context) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return usageError("--log-level %q: %v", c.String("log-level"), err)
	}
	log := slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level}))
	// A proxy's heap is small and churns per request: trading a little
	// memory for fewer collections is cheap CPU (unless $GOGC says).
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	file, apiURL := c.String("routing"), c.String("api")
	if (file == "") == (apiURL == "") {
		return usageError("give the routing to serve with --routing FILE, or the grid to read it from with --api URL")
	}
	env := environ()
	opts, certs, warnings, err := lb.OptionsFromEnv(env)
	if err != nil {
		return usageError("%v", err)
	}
	for _, w := range warnings {
		log.Warn(w)
	}
	// A routing from the grid is the services linked to the load
	// balancer; its options and certificates are its own environment's.
	toConfig := func(r lb.Routing) (lb.Config, []string) {
		cfg, warnings := lb.ConfigOf(r)
		cfg.Options, cfg.Certs = opts, append(slices.Clone(certs), cfg.Certs...)
		return cfg, warnings
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if a := c.String("pprof"); a != "" {
		if err := servePprof(ctx, a, log); err != nil {
			return err
		}
	}
	var s *lb.Server
	var https string
	newServer := func(cfg lb.Config) error {
		https = httpsAddr(c.String("https"), cfg)
		if apiURL != "" {
			https = c.String("https") // certificates may come with the routing
		}
		s = lb.New(lb.ServerConfig{HTTPAddr: c.String("http"), HTTPSAddr: https,
			StatsAddr: statsAddr(c.String("stats"), opts), Log: log})
		return s.Update(cfg)
	}
	if file != "" {
		load := func() (lb.Config, error) {
			raw, err := os.ReadFile(file)
			if err != nil {
				return lb.Config{}, err
			}
			var cfg lb.Config
			if err := json.Unmarshal(raw, &cfg); err != nil {
				return lb.Config{}, fmt.Errorf("%s: %w", file, err)
			}
			cfg.Options, cfg.Certs = opts, append(slices.Clone(certs), cfg.Certs...)
			return cfg, nil
		}
		cfg, err := load()
		if err == nil {
			err = newServer(cfg)
		}
		if err != nil {
			return cli.Exit("error: "+err.Error(), ExitUsage)
		}
		go watchRouting(ctx, file, load, s, log)
	} else {
		if err := newServer(lb.Config{Options: opts, Certs: certs}); err != nil {
			return cli.Exit("error: "+err.Error(), ExitUsage)
		}
		if err := followGrid(ctx, apiURL, c.String("cache"), env, toConfig, s, log); err != nil {
			return cli.Exit("error: "+err.Error(), ExitUsage)
		}
	}
	log.Info("load balancer up", "http", c.String("http"), "https", https)
	if err := s.Run(ctx); err != nil {
		return cli.Exit("error: "+err.Error(), ExitError)
	}
	return nil
}

// followGrid serves the routing the grid gives this load balancer (its
// token, CA and service are in its environment), as it changes; the last
// one is kept in the cache file, so a load balancer restarted while the
// masters are away serves what it served.
func followGrid(ctx context.Context, apiURL, cache string, env map[string]string, toConfig func(lb.Routing) (lb.Config, []string),
	s *lb.Server, log *slog.Logger) error {
	token, ca, svc := env["KONTENA_LB_TOKEN"], env["KONTENA_LB_CA"], env["KONTENA_LB_SERVICE"]
	stackName, service, ok := strings.Cut(svc, "/")
	if token == "" || ca == "" || !ok {
		return errors.New("--api needs KONTENA_LB_TOKEN, KONTENA_LB_CA and KONTENA_LB_SERVICE (the grid sets them for its load balancers)")
	}
	cl, err := api.NewClient([]string{apiURL}, []byte(ca), token, nil)
	if err != nil {
		return err
	}
	apply := func(r lb.Routing, from string) {
		cfg, warnings := toConfig(r)
		for _, w := range warnings {
			log.Warn(w)
		}
		if err := s.Update(cfg); err != nil {
			log.Error("routing refused; the last one still serves", "from", from, "err", err)
			return
		}
		log.Info("routing", "from", from, "services", len(cfg.Services))
	}
	if cache != "" {
		if raw, err := os.ReadFile(cache); err == nil {
			var r lb.Routing
			if json.Unmarshal(raw, &r) == nil {
				apply(r, "cache")
			}
		}
	}
	path := "/v1/lb/" + url.PathEscape(stackName) + "/" + url.PathEscape(service) + "/routing"
	go api.Watch(ctx, cl, path, func(err error) { log.Warn("routing not updated (the last one serves)", "err", err) }, func(r *lb.Routing) {
		apply(*r, "grid")
		if cache != "" {
			if raw, err := json.Marshal(r); err == nil {
				if err := atomicfile.Write(cache, raw, 0o600); err != nil {
					log.Warn("routing cache", "err", err)
				}
			}
		}
	})
	return nil
}

// httpsAddr: no HTTPS listener without a certificate to serve.
func httpsAddr(addr string, cfg lb.Config) string {
	if len(cfg.Certs) == 0 {
		return ""
	}
	return addr
}

// statsAddr: no stats listener without STATS_PASSWORD.
func statsAddr(addr string, o lb.Options) string {
	if o.StatsPassword == "" {
		return ""
	}
	return addr
}

// watchRouting reloads the routing file when its modification time
// changes; a routing that fails to load or apply leaves the last one
// serving.
func watchRouting(ctx context.Context, file string, load func() (lb.Config, error), s *lb.Server, log *slog.Logger) {
	last := modTime(file)
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m := modTime(file)
		if m.Equal(last) {
			continue
		}
		last = m
		cfg, err := load()
		if err == nil {
			err = s.Update(cfg)
		}
		if err != nil {
			log.Error("routing not changed: the new one is refused", "file", file, "err", err)
			continue
		}
		log.Info("routing changed", "services", len(cfg.Services))
	}
}

func modTime(file string) time.Time {
	fi, err := os.Stat(file)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// environ is the process environment as a map.
func environ() map[string]string {
	out := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out[k] = v
		}
	}
	return out
}
