package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/cluster"
)

func upCommand() *cli.Command {
	return &cli.Command{
		Name:  "up",
		Usage: "run this machine as a node of a grid (bootstraps a new grid unless --join is given)",
		Description: `Without --join, 'kontena up' creates a new grid: its certificate authority, the first
master (a Raft voter), an admin token saved in the CLI config so 'kontena node ls' works at
once, and prints the command that joins more machines.

The join token and the admin token are secrets, and the output of a daemon usually ends
in a log file: they are printed only when standard output is a terminal. Otherwise the
admin token is only saved in the CLI config (mode 0600), and 'kontena grid token' (run
where that config is) prints the join token.

With --join ADDR --token-file FILE the node verifies that the master holds the grid CA named
in the token before sending the token's secret, receives its certificate, and becomes a voter
while the grid has fewer than --initial-size voters, a worker after that. Give the token in a
file (--token-file, best 0600) or in the environment (KONTENA_JOIN_TOKEN): --token TOKEN
works too, but any user of the machine sees a command line in 'ps'. For example:

  (umask 077; kontena grid token > join.token)        # where the CLI config is
  kontena up --join 10.0.0.1 --token-file join.token  # on the new machine

A node restarted with the same --data-dir resumes as the same node; --join and --token are
then ignored.

Several nodes can run on one host for development: give each its own --data-dir and
--bind/--advertise address (127.0.0.1, 127.0.0.2, ...) or its own ports.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data-dir", Value: "/var/lib/kontena", EnvVars: []string{"KONTENA_DATA_DIR"}, Usage: "node identity, certificates and Raft state"},
			&cli.StringFlag{Name: "restore", Usage: "start the grid from a backup `FILE` (`kontena grid backup`) in a fresh data dir; --name picks which of its nodes this machine is (default: its first master)"},
			&cli.StringFlag{Name: "restore-key-file", Usage: "the backup key for --restore, from `FILE` (default: standard input)"},
			&cli.StringFlag{Name: "secrets-dir", Value: "/run/kontena/secrets", Usage: "where containers' secrets of type file are kept (a tmpfs is mounted there: never the disk)"},
			&cli.StringFlag{Name: "name", EnvVars: []string{"KONTENA_NODE_NAME"}, Usage: "node name (default: the host name)"},
			&cli.StringFlag{Name: "grid", Value: "default", Usage: "name of the grid to create"},
			&cli.IntFlag{Name: "initial-size", Value: 1, Usage: "number of Raft voters (masters): 1, 3, 5 or 7"},
			&cli.StringFlag{Name: "subnet", Value: "10.81.0.0/16", Usage: "overlay subnet of the new grid"},
			&cli.StringFlag{Name: "supernet", Value: "10.80.0.0/12", Usage: "supernet the overlay subnet lies in"},
			&cli.StringFlag{Name: "join", EnvVars: []string{"KONTENA_JOIN"}, Usage: "join the grid at ADDR[,ADDR...] (a node's address, port optional)"},
			&cli.StringFlag{Name: "token", EnvVars: []string{"KONTENA_JOIN_TOKEN"}, Usage: "join token printed by `kontena grid token` (visible in `ps`: prefer --token-file or $KONTENA_JOIN_TOKEN)"},
			&cli.StringFlag{Name: "token-file", EnvVars: []string{"KONTENA_JOIN_TOKEN_FILE"}, Usage: "read the join token from `FILE` (e.g. the output of `kontena grid token`)"},
			&cli.StringSliceFlag{Name: "label", Usage: "node label key=value (repeatable), e.g. az=a, region=eu"},
			&cli.StringFlag{Name: "bind", Value: "0.0.0.0", Usage: "address to listen on"},
			&cli.StringFlag{Name: "advertise", Usage: "address other nodes reach this node at (default: bind address, or the first non-loopback IPv4)"},
			&cli.StringFlag{Name: "public-address", Usage: "address reachable from other regions"},
			&cli.IntFlag{Name: "api-port", Value: cluster.DefaultAPIPort, Usage: "HTTPS API port"},
			&cli.IntFlag{Name: "raft-port", Value: cluster.DefaultRaftPort, Usage: "Raft port (voters)"},
			&cli.IntFlag{Name: "gossip-port", Value: cluster.DefaultGossipPort, Usage: "gossip port (TCP and UDP)"},
			&cli.StringFlag{Name: "overlay", Value: "auto", Usage: "WireGuard overlay: on, off, or auto (off when advertising a loopback address: several dev nodes on one host)"},
			&cli.IntFlag{Name: "wireguard-port", Value: cluster.DefaultWireGuardPort, Usage: "overlay WireGuard UDP port"},
			&cli.StringFlag{Name: "dns-listen", Usage: "resolver address (default: the node's overlay address, port 53; \"off\" for none)"},
			&cli.StringSliceFlag{Name: "dns-upstream", Usage: "resolver for names outside kontena.local, host:port (repeatable; default: /etc/resolv.conf)"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
			&cli.DurationFlag{Name: "probe-interval", Hidden: true, Usage: "gossip probe interval (tests)"},
			&cli.StringFlag{Name: "pprof", Usage: "serve Go's profiler (/debug/pprof/) on loopback `ADDR`, e.g. 127.0.0.1:6060 (for measuring the node)"},
			&cli.DurationFlag{Name: "offline-grace", Usage: "new grid: move instances of a node offline this long, for every strategy (default: random 30s, ha 2m, daemon 10m)"},
			&cli.StringSliceFlag{Name: "default-affinity", Usage: "new grid: affinity rule for services without one, like label==region=eu (repeatable; `grid update` changes it)"},
		},
		Action: runUp,
	}
}

func runUp(c *cli.Context) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return usageError("--log-level %q: %v", c.String("log-level"), err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	// Everything the node writes (keys, Raft log and snapshots) is its own.
	privateUmask()
	gcPercent()
	token, err := joinTokenFlag(c, logger)
	if err != nil {
		return err
	}
	cfg := cluster.Config{
		DataDir: c.String("data-dir"), SecretsDir: c.String("secrets-dir"), Name: c.String("name"), Grid: c.String("grid"),
		InitialSize: c.Int("initial-size"), Subnet: c.String("subnet"), Supernet: c.String("supernet"),
		Token: token, Labels: c.StringSlice("label"),
		BindAddr: c.String("bind"), AdvertiseAddr: c.String("advertise"), PublicAddr: c.String("public-address"),
		APIPort: c.Int("api-port"), RaftPort: c.Int("raft-port"), GossipPort: c.Int("gossip-port"),
		OfflineGrace: c.Duration("offline-grace"), DefaultAffinity: c.StringSlice("default-affinity"),
		Overlay: c.String("overlay"), WireGuardPort: c.Int("wireguard-port"),
		DNSListen: c.String("dns-listen"), DNSUpstreams: c.StringSlice("dns-upstream"),
		Log: logger,
	}
	if f := c.String("restore"); f != "" {
		if cfg.Restore, err = restoreFlags(c, f); err != nil {
			return err
		}
	}
	if d := c.Duration("probe-interval"); d > 0 {
		cfg.Timing.ProbeInterval, cfg.Timing.ProbeTimeout = d, d/2
	}
	if j := c.String("join"); j != "" {
		for _, a := range strings.Split(j, ",") {
			if a = strings.TrimSpace(a); a != "" {
				cfg.Join = append(cfg.Join, a)
			}
		}
	}
	configPath := c.String("config")
	if configPath == "" {
		configPath = defaultConfigPath()
	}
	cfg.OnReady = func(info cluster.ReadyInfo) {
		if !info.Bootstrapped {
			fmt.Fprintf(c.App.Writer, "Node %s is up as a %s of grid %s (API https://%s).\n", info.NodeName, info.Role, info.Grid, info.APIAddr)
			return
		}
		printBootstrapped(c.App.Writer, info, configPath, saveBootstrapContext(configPath, info), cfg.DataDir)
	}
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if a := c.String("pprof"); a != "" {
		if err := servePprof(ctx, a, logger); err != nil {
			return err
		}
	}
	if err := cluster.Run(ctx, cfg); err != nil {
		return cli.Exit("error: "+err.Error(), upExitCode(err))
	}
	return nil
}

// gcPercent lets a node's heap grow to 3× its live data between
// collections (Go's default is 2×) unless $GOGC says otherwise: a voter
// taking writes allocates per request and per commit, and collecting half
// as often (bench/grid.sh: about a tenth of its CPU went to the collector)
// costs a few MB on a heap of tens.
func gcPercent() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
}

// isTerminal reports whether w is a terminal; tests replace it. Secrets are
// printed only to a terminal: a daemon's output goes to a log.
var isTerminal = func(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// fileAdminToken is where the admin token goes, in the data dir, when the
// CLI config cannot be written and the output is not a terminal.
const fileAdminToken = "admin-token"

// printBootstrapped tells how to use a new grid. saved is the outcome of
// writing the admin token into the CLI config.
func printBootstrapped(w io.Writer, info cluster.ReadyInfo, configPath string, saved error, dataDir string) {
	tty := isTerminal(w)
	fmt.Fprintf(w, "Grid %q is up. Node %s is its first master (API https://%s).\n", info.Grid, info.NodeName, info.APIAddr)
	switch {
	case saved == nil:
		fmt.Fprintf(w, "The admin token is saved in %s: `kontena node ls` works now.\n", configPath)
	case tty:
		fmt.Fprintf(w, "Could not save the CLI config (%v). Admin refresh token (log in with it on `kontena grid login --token`): %s\n", saved, info.AdminRefresh)
	default:
		path := filepath.Join(dataDir, fileAdminToken)
		if err := os.WriteFile(path, []byte(info.AdminRefresh+"\n"), 0o600); err != nil {
			fmt.Fprintf(w, "Could not save the CLI config (%v), nor the admin token in %s (%v); it is not printed because this output is not a terminal.\n",
				saved, path, err)
		} else {
			fmt.Fprintf(w, "Could not save the CLI config (%v). The admin's refresh token is in %s (mode 0600): move it somewhere safe, and log in with `kontena grid login --ca-digest %s --token \"$(cat %s)\" https://%s`.\n",
				saved, path, info.CADigest, path, info.APIAddr)
		}
	}
	if tty {
		fmt.Fprintf(w, "\nAdd machines to the grid by running on each:\n\n  kontena up --join %s --token %s\n\n", info.APIAddr, info.JoinToken)
	} else {
		fmt.Fprintf(w, "\nAdd machines to the grid by running on each:\n\n  kontena up --join %s --token-file FILE\n\n"+
			"with FILE holding the join token, which `kontena grid token` prints (it is not printed here: this output is not a terminal).\n\n",
			info.APIAddr)
	}
	fmt.Fprintf(w, "Manage the grid from another machine with:\n\n  kontena grid login --name %s --ca-digest %s https://%s  (with --code from `kontena user invite`)\n\n", info.Grid, info.CADigest, info.APIAddr)
}

// joinTokenFlag is the join token from --token-file, or --token /
// $KONTENA_JOIN_TOKEN. A token file that cannot be read is an error unless
// the data dir already holds a node (which ignores the token).
func joinTokenFlag(c *cli.Context, log *slog.Logger) (string, error) {
	token, file := c.String("token"), c.String("token-file")
	if file == "" {
		if token != "" && os.Getenv("KONTENA_JOIN_TOKEN") == "" {
			log.Warn("the join token given with --token is visible to other users in `ps`; prefer --token-file or KONTENA_JOIN_TOKEN")
		}
		return token, nil
	}
	if token != "" {
		return "", usageError("give the join token with --token-file or with --token/KONTENA_JOIN_TOKEN, not both")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		if _, serr := os.Stat(filepath.Join(c.String("data-dir"), "node.json")); serr == nil {
			return "", nil // resuming: the token is not needed
		}
		return "", usageError("--token-file: %v", err)
	}
	token = strings.TrimSpace(string(data))
	if token == "" {
		return "", usageError("--token-file %s is empty: put the output of `kontena grid token` in it", file)
	}
	return token, nil
}

func upExitCode(err error) int {
	switch {
	case errors.Is(err, cluster.ErrJoinRefused), errors.Is(err, cluster.ErrRemoved):
		return ExitConflict
	case errors.Is(err, cluster.ErrNoMaster):
		return ExitUnreachable
	case errors.Is(err, cluster.ErrConfig):
		return ExitUsage
	case errors.Is(err, cluster.ErrDataDir):
		return ExitConflict
	}
	return ExitError
}

// saveBootstrapContext writes the new grid into the CLI config and makes it
// the current grid.
func saveBootstrapContext(path string, info cluster.ReadyInfo) error {
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	cfg.Grids[info.Grid] = &gridContext{Name: info.Grid, Addresses: []string{api.BaseURL(info.APIAddr)},
		Token: info.AdminToken, TokenExpires: info.AdminExpires, Refresh: info.AdminRefresh, User: "admin", CACert: string(info.CACert)}
	cfg.Current = info.Grid
	return cfg.save()
}

// waitFor polls cond until it holds or d passes; used by commands that wait
// for the grid to converge.
func waitFor(ctx context.Context, d time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(d)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// restoreFlags reads --restore FILE and its key (--restore-key-file, or
// standard input).
func restoreFlags(c *cli.Context, file string) (*cluster.Restore, error) {
	if c.String("join") != "" {
		return nil, usageError("--restore starts a grid of its own: it takes no --join")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, usageError("--restore: %v", err)
	}
	var key []byte
	if kf := c.String("restore-key-file"); kf != "" {
		if key, err = os.ReadFile(kf); err != nil {
			return nil, usageError("--restore-key-file: %v", err)
		}
	} else {
		r := c.App.Reader
		if r == nil {
			r = os.Stdin
		}
		if key, err = io.ReadAll(io.LimitReader(r, 4096)); err != nil {
			return nil, err
		}
	}
	if strings.TrimSpace(string(key)) == "" {
		return nil, usageError("--restore needs the backup key: --restore-key-file FILE, or on standard input")
	}
	return &cluster.Restore{Backup: data, Key: strings.TrimSpace(string(key))}, nil
}
