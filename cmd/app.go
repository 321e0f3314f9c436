// Package cmd is the `kontena` command line: the node daemon (`kontena up`)
// and the commands that talk to a grid through its API.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/cluster"
)

// Run executes the CLI and returns the process exit code.
func Run(args []string, stdout, stderr io.Writer) int {
	return RunContext(context.Background(), args, stdout, stderr)
}

// RunContext is Run with a context; cancelling it stops `kontena up`.
func RunContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := App()
	app.Writer, app.ErrWriter = stdout, stderr
	err := app.RunContext(ctx, reorderArgs(app, args))
	if err == nil {
		return ExitOK
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := ec.Error(); msg != "" {
			fmt.Fprintln(stderr, msg)
		}
		return ec.ExitCode()
	}
	fmt.Fprintln(stderr, "error:", err)
	return ExitUsage // urfave/cli's own errors are about the command line
}

// App builds the command tree.
func App() *cli.App {
	return &cli.App{
		Name:    "kontena",
		Usage:   "run a container grid where every node is a peer",
		Version: cluster.Version,
		Description: `Start a grid on one machine with 'kontena up', add machines with the
'kontena up --join ... --token ...' command it prints, then manage the grid from any
machine whose CLI config holds a token ('kontena grid login').`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "CLI config file (grids, tokens)", EnvVars: []string{"KONTENA_CONFIG"}, Value: defaultConfigPath()},
			&cli.StringFlag{Name: "grid", Usage: "grid to talk to (default: the current grid; see 'kontena grid ls')", EnvVars: []string{"KONTENA_GRID"}},
			&cli.BoolFlag{Name: "consistent", EnvVars: []string{"KONTENA_CONSISTENT"}, Usage: "linearizable reads: answered by the leader after it confirms with a majority (default reads may come from any caught-up master, a moment behind)"},
		},
		CustomAppHelpTemplate: cli.AppHelpTemplate + "\n" + exitCodesHelp + "\n",
		ExitErrHandler:        func(*cli.Context, error) {}, // Run prints and exits
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError("unknown command %q (see `kontena --help`)", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return usageError("%v (see `kontena --help`)", err)
		},
		Commands: []*cli.Command{
			upCommand(),
			nodeCommand(),
			gridCommand(),
			tokenCommand(),
			loginCommand(),
			userCommand(),
			vaultCommand(),
			stackCommand(),
			withServiceExtras(serviceCommand()),
			containerCommand(),
			execCommand("exec", "run a command in a container on any node (same as `container exec`)", false),
			statsCommand("stats", "CPU, memory and network use of every container (or of --stack, --service, NAME...)"),
			vpnCommand(),
			lbCommand(),
			certificateCommand(),
			auditLogCommand(),
			{
				Name:  "whoami",
				Usage: "show who the CLI is authenticated as",
				Flags: []cli.Flag{outputFlag},
				Action: func(c *cli.Context) error {
					cl, err := newClient(c)
					if err != nil {
						return err
					}
					who, err := cl.WhoAmI(c.Context)
					if err != nil {
						return exitError(err)
					}
					return render(c, who, func(w io.Writer) {
						row(w, "GRID", "USER", "ROLES", "STACKS")
						row(w, orDash(who.Grid), who.User, fmt.Sprint(who.Roles), orDash(strings.Join(who.Stacks, ",")))
					})
				},
			},
		},
	}
}

// session is the CLI's connection to one grid.
type session struct {
	cfg  *cliConfig
	ctx  *gridContext
	api  *api.Client
	grid string
}

// openSession opens the session of the grid the flags name, renewing
// its login first if its access token is about to expire.
func openSession(c *cli.Context) (*session, error) {
	s, err := openSessionNoRefresh(c)
	if err != nil {
		return nil, err
	}
	if os.Getenv("KONTENA_TOKEN") == "" {
		if err := s.keepLogin(c.Context, time.Now()); err != nil {
			return nil, cli.Exit("error: "+err.Error(), ExitAuth)
		}
	}
	return s, nil
}

// openSessionNoRefresh opens a session with the token the config holds.
func openSessionNoRefresh(c *cli.Context) (*session, error) {
	cfg, err := loadConfig(c.String("config"))
	if err != nil {
		return nil, cli.Exit("error: "+err.Error(), ExitUsage)
	}
	gc, err := cfg.context(c.String("grid"))
	if err != nil {
		return nil, cli.Exit("error: "+err.Error(), ExitUsage)
	}
	token := gc.Token
	if t := os.Getenv("KONTENA_TOKEN"); t != "" {
		token = t
	}
	cl, err := api.NewClient(gc.Addresses, []byte(gc.CACert), token, nil)
	if err != nil {
		return nil, cli.Exit("error: "+err.Error(), ExitUsage)
	}
	if c.Bool("consistent") {
		cl = cl.Consistent()
	}
	return &session{cfg: cfg, ctx: gc, api: cl, grid: gc.Name}, nil
}

func newClient(c *cli.Context) (*api.Client, error) {
	s, err := openSession(c)
	if err != nil {
		return nil, err
	}
	return s.api, nil
}

// refreshMasters records the current masters' addresses in the CLI config
// so that the next command still finds the grid if this master goes down.
func (s *session) refreshMasters(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	g, err := s.api.Grid(ctx)
	if err != nil {
		return
	}
	// The node that just answered goes first: the next command then does
	// not wait on a master that is down.
	fresh := []string{s.api.Current()}
	for _, v := range g.Voters {
		fresh = append(fresh, api.BaseURL(v.APIAddr))
	}
	merged := mergeAddresses(fresh, s.ctx.Addresses)
	if fmt.Sprint(merged) == fmt.Sprint(s.ctx.Addresses) {
		return
	}
	s.ctx.Addresses = merged
	if err := s.cfg.save(); err != nil {
		slog.Debug("could not update CLI config", "err", err)
	}
}

// withSession runs fn with a session and refreshes the master list after a
// successful call.
func withSession(fn func(c *cli.Context, s *session) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		s, err := openSession(c)
		if err != nil {
			return err
		}
		if err := fn(c, s); err != nil {
			return exitError(err)
		}
		s.refreshMasters(c.Context)
		return nil
	}
}
