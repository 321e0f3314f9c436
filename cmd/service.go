package cmd

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

// waitFlags are the flags of every command that deploys and waits.
func waitFlags(what string) []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "no-wait", Usage: "return once the change is stored, without waiting for " + what},
		&cli.DurationFlag{Name: "timeout", Value: 5 * time.Minute, Usage: "how long to wait for " + what},
	}
}

const deployExitHelp = `Progress shows the instances converging; the command exits 0 once the deploy
finished, 1 when it failed (an instance failed to start or died, no progress for
5 minutes, --timeout) and 6 when instances cannot be placed, with the reason.
--no-wait returns as soon as the change is stored.`

// serviceLifecycleCommands are the `service` subcommands of the lifecycle.
func serviceLifecycleCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name: "show", Usage: "show a service: spec, instances, deploy state and errors", ArgsUsage: "STACK/SERVICE",
			Description: `Shows the desired and running counts, the revision, the state of the last deploy
(deploying, running, failed, with its error), why instances cannot be placed, the next
deploy.interval redeploy, and every instance with its node, state and health.

   kontena service show shop/web
   kontena service show shop/web -o json`,
			Flags:  []cli.Flag{outputFlag},
			Action: withSession(serviceShow),
		},
		{
			Name: "deploy", Usage: "deploy a service (again); --force replaces every instance, rolling", ArgsUsage: "STACK/SERVICE",
			Description: `Without --force: places a service installed with --no-deploy, resumes a deploy that
failed, or confirms that every instance runs what it should.
With --force: every instance is replaced by a new container of the same spec, at most
max(1, floor(instances * (1 - deploy.min_health))) at a time.

   kontena service deploy shop/web
   kontena service deploy shop/web --force --timeout 10m

` + deployExitHelp,
			Flags:  append([]cli.Flag{&cli.BoolFlag{Name: "force", Usage: "replace every instance with a new container (rolling)"}}, waitFlags("the deploy")...),
			Action: withSession(serviceAction("deploy")),
		},
		{
			Name: "restart", Usage: "restart every instance in place, rolling within deploy.min_health", ArgsUsage: "STACK/SERVICE",
			Description: `Each instance's container is stopped and started again on its node (same container:
its files and volumes stay; pre_stop, pre_start and post_start hooks run). At most
max(1, floor(instances * (1 - deploy.min_health))) instances restart at once, and the next
only once those run again (and answer on deploy.wait_for_port): with the default
min_health 0.8 one at a time, so a service of 3 never has fewer than 2 running.

   kontena service restart shop/web

` + deployExitHelp,
			Flags:  waitFlags("the restart"),
			Action: withSession(serviceAction("restart")),
		},
		{
			Name: "stop", Usage: "stop every instance; containers and placement are kept", ArgsUsage: "STACK/SERVICE",
			Description: `The containers are stopped, not removed, and stay stopped: across agent restarts,
health checks and node failures (an instance that moves is not started). 'service ls'
says "stopped". Start them again with 'kontena service start'.

   kontena service stop shop/worker`,
			Flags:  waitFlags("the containers to stop"),
			Action: withSession(serviceAction("stop")),
		},
		{
			Name: "start", Usage: "start a stopped service again", ArgsUsage: "STACK/SERVICE",
			Description: `Every instance starts at once, in the container it had (or a new one where it moved).

   kontena service start shop/worker

` + deployExitHelp,
			Flags:  waitFlags("the instances"),
			Action: withSession(serviceAction("start")),
		},
		{
			Name: "rm", Aliases: []string{"remove"}, Usage: "remove a service from its stack with its containers", ArgsUsage: "STACK/SERVICE",
			Description: `Refused while another service links to it or depends on it (links, depends_on), when
the stack exposes it, or when it is the stack's only service (use 'kontena stack rm').
A later 'stack upgrade' from a file that still has the service installs it again.

   kontena service rm shop/cron --force`,
			Flags:  []cli.Flag{&cli.BoolFlag{Name: "force", Usage: "do not ask for confirmation"}},
			Action: withSession(serviceRemove),
		},
		{
			Name: "containers", Usage: "list the containers of a service: node, state, health, container ID", ArgsUsage: "STACK/SERVICE",
			Description: `   kontena service containers shop/web
   kontena service containers shop/web -o json`,
			Flags:  []cli.Flag{outputFlag},
			Action: withSession(serviceContainers),
		},
		{
			Name: "events", Usage: "what happened to a service: deploys, scaling, placements, deaths, restarts", ArgsUsage: "STACK/SERVICE",
			Description: `The grid event log filtered to the service and its instances: scaled, deploy
started/finished/failed, instance placed/moved/removed/died/unhealthy/restarted,
stopped/started, placement errors. Events of a removed service stay listed.

   kontena service events shop/web
   kontena service events shop/web --tail 20 -o json`,
			Flags:  []cli.Flag{outputFlag, &cli.IntFlag{Name: "tail", Value: 100, Usage: "show the last N events (0: all kept)"}},
			Action: withSession(serviceEvents),
		},
	}
}

// stackLifecycleCommands are the `stack` subcommands of the lifecycle.
func stackLifecycleCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name: "deploy", Usage: "deploy every service of a stack (after install --no-deploy, or again)", ArgsUsage: "STACK",
			Description: `Places the services of a stack installed with --no-deploy, resumes failed deploys,
or confirms every instance runs what it should. Stopped services are left alone.

   kontena stack install --no-deploy kontena.yml && kontena stack deploy shop

` + deployExitHelp,
			Flags:  waitFlags("the deploy"),
			Action: withSession(stackAction("deploy")),
		},
		{
			Name: "stop", Usage: "stop every service of a stack (containers are kept)", ArgsUsage: "STACK",
			Description: "Like 'kontena service stop' for each service.\n\n   kontena stack stop shop",
			Flags:       waitFlags("the containers to stop"),
			Action:      withSession(stackAction("stop")),
		},
		{
			Name: "start", Usage: "start the stopped services of a stack", ArgsUsage: "STACK",
			Description: "Like 'kontena service start' for each stopped service.\n\n   kontena stack start shop\n\n" + deployExitHelp,
			Flags:       waitFlags("the instances"),
			Action:      withSession(stackAction("start")),
		},
		{
			Name: "restart", Usage: "restart every service of a stack in place, each rolling within its min_health", ArgsUsage: "STACK",
			Description: "Like 'kontena service restart' for each running service, all at once.\n\n   kontena stack restart shop\n\n" + deployExitHelp,
			Flags:       waitFlags("the restart"),
			Action:      withSession(stackAction("restart")),
		},
		{
			Name: "logs", Usage: "show the logs of every instance of every service of a stack, merged by time", ArgsUsage: "STACK",
			Description: `   kontena stack logs shop --tail 20
   kontena stack logs shop -f --since 10m`,
			Flags: []cli.Flag{
				&cli.IntFlag{Name: "tail", Value: 100, Usage: "lines from the end (0: all)"},
				&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep streaming new lines"},
				&cli.StringFlag{Name: "since", Usage: "only lines newer than a duration (10m) or an RFC 3339 time"},
			},
			Action: withSession(stackLogs),
		},
	}
}

// serviceArg is the one STACK/SERVICE argument.
func serviceArg(c *cli.Context) (string, error) {
	id, err := oneArg(c, "STACK/SERVICE")
	if err != nil {
		return "", err
	}
	st, name, ok := strings.Cut(id, "/")
	if !ok || st == "" || name == "" || strings.Contains(name, "/") {
		return "", usageError("service %q: expected STACK/SERVICE", id)
	}
	return id, nil
}

func serviceAction(action string) func(c *cli.Context, s *session) error {
	return func(c *cli.Context, s *session) error {
		id, err := serviceArg(c)
		if err != nil {
			return err
		}
		var body any
		if action == "deploy" {
			body = api.ServiceDeployRequest{Force: c.Bool("force")}
		}
		res, idx, err := s.api.ServiceAction(c.Context, id, action, body)
		if err != nil {
			return err
		}
		return afterAction(c, s, action, "service "+id, res, waitSpec{services: []string{id}, since: idx})
	}
}

func stackAction(action string) func(c *cli.Context, s *session) error {
	return func(c *cli.Context, s *session) error {
		name, err := oneArg(c, "STACK")
		if err != nil {
			return err
		}
		res, idx, err := s.api.StackAction(c.Context, name, action)
		if err != nil {
			return err
		}
		return afterAction(c, s, action, "stack "+name, res, waitSpec{stacks: []string{name}, since: idx})
	}
}

var actionDone = map[string]string{"deploy": "deploying", "stop": "stopping", "start": "starting", "restart": "restarting"}

// afterAction reports what a lifecycle command changed and waits for it.
func afterAction(c *cli.Context, s *session, action, what string, res *api.LifecycleResult, w waitSpec) error {
	for _, sk := range res.Skipped {
		fmt.Fprintf(c.App.Writer, "Left alone: %s.\n", sk)
	}
	if len(res.Services) == 0 {
		fmt.Fprintf(c.App.Writer, "Nothing to %s in %s.\n", action, what)
		return nil
	}
	var ids []string
	for _, svc := range res.Services {
		ids = append(ids, svc.ID)
	}
	fmt.Fprintf(c.App.Writer, "%s %s: %s.\n", capitalize(actionDone[action]), what, strings.Join(ids, ", "))
	if c.Bool("no-wait") {
		return nil
	}
	w.services, w.stacks = ids, nil
	w.timeout = c.Duration("timeout")
	w.stop = action == "stop"
	return waitServices(c, s, w)
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// waitSpec is what a command that changed the grid waits for.
type waitSpec struct {
	stacks   []string // every service of these stacks
	services []string // and these services
	since    uint64   // index of the change: reads must see it
	timeout  time.Duration
	stop     bool // wait for the containers to stop instead of a deploy
}

// waitServices shows the instances converging until every deploy that the
// change started finished (or, for stop, every container stopped), and
// fails with the reason when a deploy fails or the timeout passes.
func waitServices(c *cli.Context, s *session, w waitSpec) error {
	ctx, cancel := context.WithTimeout(c.Context, w.timeout)
	defer cancel()
	lastLine := ""
	var last []api.ServiceInfo
	timedOut := func() error {
		msg := fmt.Sprintf("error: not done after %s (%s)", w.timeout, lastLine)
		var waiting []string
		for _, svc := range last {
			if svc.WaitsFor != "" {
				waiting = append(waiting, svc.ID+" starts after "+svc.WaitsFor)
			}
			waiting = append(waiting, svc.Waiting...)
		}
		if len(waiting) > 0 {
			msg += "; waiting for " + strings.Join(waiting, ", ")
		}
		return cli.Exit(msg+"; the deploy goes on: see `kontena service show`", ExitError)
	}
	for {
		svcs, err := fetchServices(ctx, s, w)
		if err != nil {
			if ctx.Err() != nil {
				return timedOut()
			}
			return err
		}
		last = svcs
		done, parts := true, []string{}
		for _, svc := range svcs {
			part, ok, err := serviceProgress(svc, w)
			if err != nil {
				return err
			}
			parts = append(parts, part)
			done = done && ok
		}
		label := "running"
		if w.stop {
			label = "stopped"
		}
		if line := strings.Join(parts, ", "); line != lastLine {
			fmt.Fprintf(c.App.Writer, "  %s: %s\n", label, line)
			lastLine = line
		}
		if done {
			if w.stop {
				fmt.Fprintln(c.App.Writer, "Stopped.")
			} else {
				fmt.Fprintln(c.App.Writer, "Deployed.")
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return timedOut()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func fetchServices(ctx context.Context, s *session, w waitSpec) ([]api.ServiceInfo, error) {
	var out []api.ServiceInfo
	for _, name := range w.stacks {
		st, err := s.api.StackAt(ctx, name, w.since)
		if err != nil {
			return nil, err
		}
		out = append(out, st.Services...)
	}
	for _, id := range w.services {
		svc, err := s.api.Service(ctx, id, w.since)
		if err != nil {
			return nil, err
		}
		out = append(out, *svc)
	}
	return out, nil
}

// serviceProgress describes one service while waiting, and tells whether it
// is done; a failed deploy that the change started is an error.
func serviceProgress(svc api.ServiceInfo, w waitSpec) (string, bool, error) {
	if w.stop {
		stopped := 0
		for _, in := range svc.Instances {
			if in.Actual.State == fsm.StateStopped {
				stopped++
			}
		}
		return fmt.Sprintf("%s %d/%d", svc.ID, stopped, len(svc.Instances)), stopped == len(svc.Instances), nil
	}
	part := fmt.Sprintf("%s %d/%d", svc.ID, svc.Running, svc.Desired)
	switch {
	case svc.Stopped:
		return part + " (stopped)", true, nil
	case svc.Undeployed:
		return part + " (not deployed)", true, nil
	case svc.Deploy.ID != 0 && svc.Deploy.ID < w.since:
		// This change started no deploy of it (an upgrade that left it as
		// it was): nothing to wait for.
		return part, true, nil
	}
	switch svc.Deploy.State {
	case fsm.DeployRunning:
		return part, true, nil
	case fsm.DeployFailed:
		if svc.Error != "" {
			return "", false, cli.Exit(fmt.Sprintf("error: %s cannot be placed: %s", svc.ID, svc.Error), ExitConflict)
		}
		return "", false, cli.Exit(fmt.Sprintf("error: deploy of %s failed: %s", svc.ID, svc.Deploy.Error), ExitError)
	case "":
		// A service from before deploy states: the counts tell.
		return part, svc.Running == svc.Desired && len(svc.Instances) == svc.Desired, nil
	}
	var notes []string
	if svc.WaitsFor != "" {
		notes = append(notes, "starts after "+svc.WaitsFor)
	}
	var ports []string
	for _, in := range svc.Instances {
		if in.Actual.WaitPort == fsm.WaitPortWaiting {
			ports = append(ports, in.Name)
		}
	}
	if len(ports) > 0 {
		notes = append(notes, fmt.Sprintf("waiting for port %d: %s", svc.WaitForPort, strings.Join(ports, " ")))
	}
	if r := svc.Deploy.Reason; r == fsm.ReasonRestart || r == fsm.ReasonStart {
		notes = append(notes, r)
	}
	if len(notes) > 0 {
		part += " (" + strings.Join(notes, "; ") + ")"
	}
	return part, false, nil
}

func serviceShow(c *cli.Context, s *session) error {
	id, err := serviceArg(c)
	if err != nil {
		return err
	}
	svc, err := s.api.Service(c.Context, id, 0)
	if err != nil {
		return err
	}
	return render(c, svc, func(w io.Writer) {
		row(w, "service:", svc.ID)
		row(w, "image:", svc.Image)
		row(w, "status:", svc.Status)
		row(w, "instances:", fmt.Sprintf("%d running of %d desired", svc.Running, svc.Desired))
		row(w, "revision:", svc.Revision)
		row(w, "strategy:", orDash(svc.Strategy))
		d := svc.Deploy
		if d.State != "" {
			line := fmt.Sprintf("%s (%s, revision %d, started %s", d.State, d.Reason, d.Revision, ago(d.StartedAt))
			if !d.FinishedAt.IsZero() {
				line += ", took " + d.FinishedAt.Sub(d.StartedAt).Round(time.Second).String()
			}
			row(w, "last deploy:", line+")")
		}
		if d.Error != "" {
			row(w, "deploy error:", d.Error)
		}
		if svc.Error != "" {
			row(w, "cannot place:", svc.Error)
		}
		if svc.WaitsFor != "" {
			row(w, "starts after:", svc.WaitsFor+" (depends_on: waits until its deploy is done)")
		}
		for i, wt := range svc.Waiting {
			label := ""
			if i == 0 {
				label = "waiting for:"
			}
			row(w, label, wt)
		}
		if svc.Spec != nil {
			if iv := time.Duration(svc.Spec.Deploy.Interval); iv > 0 {
				row(w, "next deploy:", nextDeployIn(svc.NextDeploy, time.Now())+" (deploy.interval "+iv.String()+")")
			}
			if svc.WaitForPort > 0 {
				row(w, "wait for port:", svc.WaitForPort)
			}
			row(w, "min health:", svc.Spec.Deploy.MinHealth)
			if svc.Spec.Stateful {
				row(w, "stateful:", "yes: instances stay on their node")
			}
			if hc := svc.Spec.HealthCheck; hc != nil {
				row(w, "health check:", fmt.Sprintf("%s :%d%s every %ds (timeout %ds, initial delay %ds)", hc.Protocol, hc.Port, hc.URI, hc.Interval, hc.Timeout, hc.InitialDelay))
			}
			for _, p := range svc.Spec.Ports {
				row(w, "port:", fmt.Sprintf("%d:%d/%s", p.NodePort, p.ContainerPort, orDash(p.Protocol)))
			}
			for _, l := range svc.Spec.Links {
				row(w, "link:", strings.TrimPrefix(l.Stack+"/"+l.Service, "/"))
			}
			for _, dep := range svc.Spec.DependsOn {
				row(w, "depends on:", dep)
			}
			if len(svc.Spec.Command) > 0 {
				row(w, "command:", strings.Join(svc.Spec.Command, " "))
			}
		}
		row(w, "")
		instanceTable(w, svc.Instances)
	})
}

func instanceTable(w io.Writer, insts []api.InstanceInfo) {
	row(w, "INSTANCE", "NODE", "STATE", "HEALTH", "REVISION", "CONTAINER", "LAST EVENT")
	for _, in := range insts {
		state := orDash(in.Actual.State)
		if in.Actual.WaitPort == fsm.WaitPortWaiting {
			state += " (port not open)"
		}
		if in.Actual.Error != "" && in.Actual.State != fsm.StateRunning {
			state += ": " + in.Actual.Error
		}
		ev := "-"
		if in.Actual.Event != "" {
			ev = string(in.Actual.Event) + " " + ago(in.Actual.EventAt)
		}
		row(w, in.Name, orDash(in.Node), state, orDash(in.Actual.Health), in.Revision, orDash(shortContainerID(in.Actual.ContainerID)), ev)
	}
}

func nextDeployIn(t *time.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	d := t.Sub(now).Round(time.Second)
	if d <= 0 {
		return "due"
	}
	return "in " + d.String() + " (" + t.Format(time.RFC3339) + ")"
}

func serviceRemove(c *cli.Context, s *session) error {
	id, err := serviceArg(c)
	if err != nil {
		return err
	}
	if err := confirmRemoval(c, fmt.Sprintf("Remove service %s and its containers?", id), id); err != nil {
		return err
	}
	if err := s.api.RemoveService(c.Context, id); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "Service %s removed; its containers are being stopped.\n", id)
	return nil
}

func serviceContainers(c *cli.Context, s *session) error {
	id, err := serviceArg(c)
	if err != nil {
		return err
	}
	svc, err := s.api.Service(c.Context, id, 0)
	if err != nil {
		return err
	}
	return render(c, svc.Instances, func(w io.Writer) {
		row(w, "NAME", "NODE", "STATE", "HEALTH", "REVISION", "CONTAINER ID", "REPORTED")
		for _, in := range svc.Instances {
			state := orDash(in.Actual.State)
			if in.Actual.WaitPort != "" {
				state += " (port " + string(in.Actual.WaitPort) + ")"
			}
			row(w, in.Name, orDash(in.Node), state, orDash(in.Actual.Health), in.Revision, orDash(shortContainerID(in.Actual.ContainerID)), ago(in.Actual.At))
		}
	})
}

func serviceEvents(c *cli.Context, s *session) error {
	id, err := serviceArg(c)
	if err != nil {
		return err
	}
	evs, err := s.api.ServiceEvents(c.Context, id)
	if err != nil {
		return err
	}
	if k := c.Int("tail"); k > 0 && len(evs) > k {
		evs = evs[len(evs)-k:]
	}
	return render(c, evs, func(w io.Writer) {
		row(w, "TIME", "TYPE", "MESSAGE")
		for _, ev := range evs {
			row(w, ev.Time.Local().Format(time.RFC3339), ev.Type, ev.Message)
		}
	})
}

func stackLogs(c *cli.Context, s *session) error {
	name, err := oneArg(c, "STACK")
	if err != nil {
		return err
	}
	return streamLogs(c, s, "/v1/stacks/"+name+"/logs")
}

// streamLogs copies a merged log stream (service or stack logs) to stdout.
func streamLogs(c *cli.Context, s *session, path string) error {
	q := fmt.Sprintf("?tail=%d", c.Int("tail"))
	if c.Bool("follow") {
		q += "&follow=true"
	}
	if since := c.String("since"); since != "" {
		q += "&since=" + since
	}
	body, err := s.api.Stream(c.Context, path+q)
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

// shortContainerID is the 12-character form Docker shows.
func shortContainerID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
