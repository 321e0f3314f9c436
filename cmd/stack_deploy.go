package cmd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/stack"
)

func stackInstallCommand() *cli.Command {
	return &cli.Command{
		Name:      "install",
		Usage:     "install a stack file on the grid and wait until its instances run",
		ArgsUsage: "[FILE]",
		Description: `The file is rendered and validated here, exactly like 'kontena stack validate'
(your files, environment and -v values), then sent to the grid with its source and values.
Child stacks of 'depends' are installed first, as <name>-<dep>.

   kontena stack install kontena.yml -v greeting=hi
   kontena stack install --no-deploy -n shop kontena.yml && kontena stack deploy shop

` + deployExitHelp,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Aliases: []string{"n"}, Usage: "name to install the stack under (default: from the file)"},
			&cli.GenericFlag{Name: "var", Aliases: []string{"v"}, Value: &valueFlags{}, Usage: "set a variable: -v key=value (repeatable)"},
			&cli.StringFlag{Name: "values-from", Usage: "read variable values from a YAML file"},
			&cli.BoolFlag{Name: "no-wait", Usage: "return once the stack is stored, without waiting for its instances"},
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Minute, Usage: "how long to wait for the instances"},
			&cli.BoolFlag{Name: "no-deploy", Usage: "only store the stack: nothing runs until `kontena stack deploy NAME`"},
		},
		Action: withSession(stackInstall),
	}
}

// loadStack renders and validates FILE as `stack validate` does, with the
// values of --values-from, then base, then -v (later ones win).
func loadStack(c *cli.Context, s *session, file, name string, base map[string]any) (*stack.Result, error) {
	values := map[string]any{}
	for k, v := range base {
		values[k] = v
	}
	if f := c.String("values-from"); f != "" {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, usageError("--values-from: %v", err)
		}
		fromFile, err := stack.ParseValuesFile(data)
		if err != nil {
			return nil, usageError("--values-from %s: %v", f, err)
		}
		for k, v := range fromFile {
			values[k] = v
		}
	}
	if v, ok := c.Generic("var").(*valueFlags); ok {
		flags, err := stack.ParseValueFlags(v.list)
		if err != nil {
			return nil, usageError("%v", err)
		}
		for k, val := range flags {
			values[k] = val
		}
	}
	opts := stack.Options{Name: name, Grid: s.grid, Values: values, GridResolver: gridResolver{api: s.api}}
	if stack.IsTerminal(os.Stdin) {
		opts.Prompter = stack.NewTerminalPrompter(os.Stdin, c.App.ErrWriter)
	}
	res, err := stack.Load(c.Context, file, opts)
	if err != nil {
		var list stack.Errors
		if errors.As(err, &list) {
			return nil, cli.Exit("error: the stack file is not valid:\n"+err.Error(), ExitError)
		}
		return nil, err
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(c.App.ErrWriter, "warning:", w)
	}
	for _, w := range unsupportedWarnings(res.Stack) {
		fmt.Fprintln(c.App.ErrWriter, "warning:", w)
	}
	return res, nil
}

// unsupportedWarnings names what the file asks for that this grid does not
// do yet, so that nobody believes a secret reached a container.
func unsupportedWarnings(st *stack.Stack) []string {
	var out []string
	for _, svc := range st.Services {
		if svc.Build != nil {
			out = append(out, fmt.Sprintf("service %s: build is not run by the grid: image %q must be on the nodes or in a registry they reach", svc.Name, svc.Image))
		}
	}
	return out
}

// childrenFirst orders a stack and its dependencies so that every child
// comes before its parent: a parent's services may link to them.
func childrenFirst(res *stack.Result) []*stack.Result {
	var order []*stack.Result
	var walk func(r *stack.Result)
	walk = func(r *stack.Result) {
		for _, ch := range r.Children {
			walk(ch)
		}
		order = append(order, r)
	}
	walk(res)
	return order
}

// writeSecrets keeps sensitive values out of the stack (SealSpec) and
// writes them, with the `to: vault` values, to the vault first: the
// services that inject them are refused while the vault lacks them.
func writeSecrets(c *cli.Context, s *session, res *stack.Result) error {
	return sealOrWrite(c, s, res, false)
}

// sealOrWrite is writeSecrets; with dryRun the spec is sealed (what the
// server would store) but nothing is written.
func sealOrWrite(c *cli.Context, s *session, res *stack.Result, dryRun bool) error {
	sealed, err := res.SealSpec()
	if err != nil {
		return cli.Exit("error: "+err.Error(), ExitError)
	}
	if dryRun {
		return nil
	}
	g := gridResolver{api: s.api}
	if err := res.WriteVault(c.Context, g); err != nil {
		return err
	}
	for _, w := range sealed {
		if err := g.VaultWrite(c.Context, w.Secret, w.Value); err != nil {
			return fmt.Errorf("variable %s: writing secret %s to the vault: %w", w.Variable, w.Secret, err)
		}
	}
	return nil
}

func installRequest(r *stack.Result) api.StackInstallRequest {
	return api.StackInstallRequest{Name: r.Name, FileName: filepath.Base(r.File), Source: r.Source, Values: r.Variables, Spec: *r.Stack}
}

func stackInstall(c *cli.Context, s *session) error {
	if c.NArg() > 1 {
		return usageError("stack install takes one FILE, got %d arguments", c.NArg())
	}
	file := c.Args().First()
	if file == "" {
		file = "kontena.yml"
	}
	res, err := loadStack(c, s, file, c.String("name"), nil)
	if err != nil {
		return err
	}
	if err := writeSecrets(c, s, res); err != nil {
		return err
	}
	order := childrenFirst(res)
	var installed []string
	var since uint64
	for _, r := range order {
		info, idx, err := s.api.InstallStackAt(c.Context, installRequest(r), c.Bool("no-deploy"))
		if err != nil {
			return fmt.Errorf("install stack %s: %w", r.Name, err)
		}
		for _, w := range info.Warnings {
			fmt.Fprintln(c.App.ErrWriter, "warning:", w)
		}
		if c.Bool("no-deploy") {
			fmt.Fprintf(c.App.Writer, "Stack %s installed (%d services), not deployed: run `kontena stack deploy %s`.\n", info.Name, len(info.Services), info.Name)
		} else {
			fmt.Fprintf(c.App.Writer, "Stack %s installed (%d services).\n", info.Name, len(info.Services))
		}
		installed = append(installed, info.Name)
		since = max(since, idx)
	}
	if c.Bool("no-wait") || c.Bool("no-deploy") {
		return nil
	}
	return waitStacks(c, s, installed, since, c.Duration("timeout"))
}

func stackUpgradeCommand() *cli.Command {
	return &cli.Command{
		Name:      "upgrade",
		Usage:     "upgrade an installed stack from a stack file; changed services are redeployed, rolling",
		ArgsUsage: "STACK [FILE]",
		Description: `Services whose definition changed get a new revision and their instances are replaced a few
at a time: at most max(1, floor(instances * (1 - deploy.min_health))) are being replaced at once,
and the rollout stops where it is if one fails. --dry-run shows what would change.`,
		Flags: []cli.Flag{
			&cli.GenericFlag{Name: "var", Aliases: []string{"v"}, Value: &valueFlags{}, Usage: "set a variable: -v key=value (repeatable)"},
			&cli.StringFlag{Name: "values-from", Usage: "read variable values from a YAML file"},
			&cli.BoolFlag{Name: "reuse-values", Usage: "reuse the values of the installed stack (then --values-from, then -v)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "only show what would change"},
			&cli.BoolFlag{Name: "no-wait", Usage: "return once the upgrade is stored"},
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Minute, Usage: "how long to wait for the rollout"},
		},
		Action: withSession(stackUpgrade),
	}
}

func stackUpgrade(c *cli.Context, s *session) error {
	if c.NArg() < 1 || c.NArg() > 2 {
		return usageError("expected STACK [FILE] (see `%s --help`)", c.Command.HelpName)
	}
	name, file := c.Args().Get(0), c.Args().Get(1)
	if file == "" {
		file = "kontena.yml"
	}
	var base map[string]any
	if c.Bool("reuse-values") {
		cur, err := s.api.Stack(c.Context, name)
		if err != nil {
			return err
		}
		base = cur.Values
	}
	res, err := loadStack(c, s, file, name, base)
	if err != nil {
		return err
	}
	if err := sealOrWrite(c, s, res, c.Bool("dry-run")); err != nil {
		return err
	}
	// A child the file now depends on is installed, the others upgraded.
	order := childrenFirst(res)
	var plans []*api.UpgradePlan
	var names []string
	var since uint64
	for _, r := range order {
		if r != res {
			if _, err := s.api.Stack(c.Context, r.Name); api.IsCode(err, api.CodeNotFound) {
				plan := &api.UpgradePlan{Stack: r.Name, Changes: []string{fmt.Sprintf("stack %s: new dependency, installed", r.Name)}}
				plans = append(plans, plan)
				if c.Bool("dry-run") {
					continue
				}
				_, idx, err := s.api.InstallStackAt(c.Context, installRequest(r), false)
				if err != nil {
					return fmt.Errorf("install stack %s: %w", r.Name, err)
				}
				names, since = append(names, r.Name), max(since, idx)
				continue
			} else if err != nil {
				return err
			}
		}
		var plan *api.UpgradePlan
		var idx uint64
		if c.Bool("dry-run") {
			plan, err = s.api.UpgradeStack(c.Context, installRequest(r), true)
		} else {
			plan, idx, err = s.api.UpgradeStackAt(c.Context, installRequest(r))
		}
		if err != nil {
			return fmt.Errorf("upgrade stack %s: %w", r.Name, err)
		}
		for _, w := range plan.Warnings {
			fmt.Fprintln(c.App.ErrWriter, "warning:", w)
		}
		if plan.Stack == "" {
			plan.Stack = r.Name
		}
		plans = append(plans, plan)
		names, since = append(names, r.Name), max(since, idx)
	}
	prefix := func(p *api.UpgradePlan, ch string) string {
		if len(plans) > 1 && !strings.HasPrefix(ch, "stack ") {
			return "stack " + p.Stack + ": " + ch
		}
		return ch
	}
	if c.Bool("dry-run") {
		var out any = plans[len(plans)-1]
		if len(plans) > 1 {
			out = plans
		}
		return render(c, out, func(w io.Writer) {
			n := 0
			for _, p := range plans {
				for _, ch := range p.Changes {
					fmt.Fprintln(w, prefix(p, ch))
					n++
				}
			}
			if n == 0 {
				fmt.Fprintln(w, "No changes.")
			}
		})
	}
	for _, p := range plans {
		for _, ch := range p.Changes {
			fmt.Fprintln(c.App.Writer, prefix(p, ch))
		}
	}
	fmt.Fprintf(c.App.Writer, "Stack %s upgraded.\n", name)
	if c.Bool("no-wait") {
		return nil
	}
	return waitStacks(c, s, names, since, c.Duration("timeout"))
}

// waitStacks shows instances converging until every deploy the change at
// index since started in the stacks finished, or one failed (its reason),
// or the timeout passes.
func waitStacks(c *cli.Context, s *session, names []string, since uint64, timeout time.Duration) error {
	return waitServices(c, s, waitSpec{stacks: names, since: since, timeout: timeout})
}

func stackList(c *cli.Context, s *session) error {
	stacks, err := s.api.Stacks(c.Context)
	if err != nil {
		return err
	}
	return render(c, stacks, func(w io.Writer) {
		row(w, "NAME", "STACK", "VERSION", "SERVICES", "INSTANCES")
		for _, st := range stacks {
			running, desired := 0, 0
			for _, svc := range st.Services {
				running += svc.Running
				desired += svc.Desired
			}
			row(w, st.Name, st.Stack, st.Version, len(st.Services), fmt.Sprintf("%d/%d", running, desired))
		}
	})
}

func stackShow(c *cli.Context, s *session) error {
	name, err := oneArg(c, "STACK")
	if err != nil {
		return err
	}
	st, err := s.api.Stack(c.Context, name)
	if err != nil {
		return err
	}
	return render(c, st, func(w io.Writer) {
		row(w, "stack:", st.Name+" ("+st.Stack+" "+st.Version+")")
		row(w, "revision:", st.Revision)
		row(w, "created:", st.CreatedAt.Format(time.RFC3339))
		for _, svc := range st.Services {
			row(w, "service:", fmt.Sprintf("%s %s %d/%d running, %s", svc.Name, svc.Image, svc.Running, svc.Desired, orDash(svc.Status)))
			for _, in := range svc.Instances {
				row(w, "", fmt.Sprintf("%s on %s: %s", in.Name, orDash(in.Node), orDash(in.Actual.State)))
			}
			if svc.Error != "" {
				row(w, "", "cannot place: "+svc.Error)
			}
		}
	})
}

func stackRemove(c *cli.Context, s *session) error {
	name, err := oneArg(c, "STACK")
	if err != nil {
		return err
	}
	if err := confirmRemoval(c, fmt.Sprintf("Remove stack %s and all its services?", name), name); err != nil {
		return err
	}
	if err := s.api.RemoveStack(c.Context, name); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "Stack %s removed; its containers are being stopped.\n", name)
	return nil
}

func serviceCommand() *cli.Command {
	return &cli.Command{
		Name:  "service",
		Usage: "list, show, scale, deploy, stop, start, restart and remove services; their logs and events",
		Subcommands: append([]*cli.Command{
			{
				Name: "ls", Aliases: []string{"list"}, Usage: "list services",
				Flags:  []cli.Flag{&cli.StringFlag{Name: "stack", Usage: "only this stack's services"}, outputFlag},
				Action: withSession(serviceList),
			},
			{
				Name: "logs", Usage: "show the logs of every instance of a service, merged by time", ArgsUsage: "STACK/SERVICE",
				Flags: []cli.Flag{
					&cli.IntFlag{Name: "tail", Value: 100, Usage: "lines from the end of each instance's log (0: all)"},
					&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep streaming new lines"},
					&cli.StringFlag{Name: "since", Usage: "only lines newer than a duration (10m) or an RFC 3339 time"},
				},
				Action: withSession(serviceLogs),
			},
			{
				Name: "scale", Usage: "set the number of instances and wait for them", ArgsUsage: "STACK/SERVICE N",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "no-wait", Usage: "return at once"},
					&cli.DurationFlag{Name: "timeout", Value: 5 * time.Minute, Usage: "how long to wait"},
				},
				Action: withSession(serviceScale),
			},
		}, serviceLifecycleCommands()...),
	}
}

func serviceList(c *cli.Context, s *session) error {
	svcs, err := s.api.Services(c.Context, c.String("stack"))
	if err != nil {
		return err
	}
	return render(c, svcs, func(w io.Writer) {
		row(w, "SERVICE", "IMAGE", "STRATEGY", "INSTANCES", "STATUS", "NODES", "PROBLEM")
		for _, svc := range svcs {
			var nodes []string
			for _, in := range svc.Instances {
				nodes = append(nodes, in.Node)
			}
			problem := svc.Error
			if problem == "" && svc.Deploy.State == fsm.DeployFailed {
				problem = svc.Deploy.Error
			}
			row(w, svc.ID, svc.Image, orDash(svc.Strategy), fmt.Sprintf("%d/%d", svc.Running, svc.Desired), orDash(svc.Status),
				orDash(strings.Join(nodes, ",")), orDash(problem))
		}
	})
}

func serviceScale(c *cli.Context, s *session) error {
	if c.NArg() != 2 {
		return usageError("expected STACK/SERVICE and N (see `%s --help`)", c.Command.HelpName)
	}
	id := c.Args().Get(0)
	st, _, ok := strings.Cut(id, "/")
	if !ok {
		return usageError("service %q: expected STACK/SERVICE", id)
	}
	k, err := strconv.Atoi(c.Args().Get(1))
	if err != nil || k < 0 {
		return usageError("instances %q: expected a number, 0 or more", c.Args().Get(1))
	}
	_, since, err := s.api.ScaleServiceAt(c.Context, id, k)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "Service %s scaled to %d.\n", id, k)
	if c.Bool("no-wait") {
		return nil
	}
	return waitStacks(c, s, []string{st}, since, c.Duration("timeout"))
}

func serviceLogs(c *cli.Context, s *session) error {
	id, err := oneArg(c, "STACK/SERVICE")
	if err != nil {
		return err
	}
	if !strings.Contains(id, "/") {
		return usageError("service %q: expected STACK/SERVICE", id)
	}
	q := fmt.Sprintf("?tail=%d", c.Int("tail"))
	if c.Bool("follow") {
		q += "&follow=true"
	}
	if since := c.String("since"); since != "" {
		q += "&since=" + since
	}
	body, err := s.api.Stream(c.Context, "/v1/services/"+id+"/logs"+q)
	if err != nil {
		return err
	}
	defer body.Close()
	_, err = io.Copy(c.App.Writer, body)
	if err != nil && c.Context.Err() != nil {
		return nil
	}
	return err
}
