package cmd

import (
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kontena-ng/kontena/api"
)

// containerCommand is `kontena container`: the instance containers of the
// grid, wherever they run, from the CLI on any machine.
func containerCommand() *cli.Command {
	return &cli.Command{
		Name:  "container",
		Usage: "list, inspect, read logs of, run commands in and sample instance containers on any node",
		Description: `Every instance of a service is one container named <stack>.<service>-<n>, on the node
the scheduler placed it on. These commands find that node for you: run them from any machine
whose CLI knows the grid.

   kontena container ls --stack shop
   kontena container logs shop.web-2 -f
   kontena container exec -it shop.web-2 -- sh
   kontena container stats`,
		Subcommands: []*cli.Command{
			{
				Name: "ls", Aliases: []string{"list"}, Usage: "list instance containers, where they run and what their node reported",
				Description: `Answered from the grid state (no node is asked): state, health and revision are what each
node's agent last reported. REVISION shows "2→3" while an instance is being replaced.

   kontena container ls
   kontena container ls --service shop/web -o json
   kontena container ls --node worker-2`,
				Flags:  append(containerFilterFlags(), outputFlag),
				Action: withSession(containerList),
			},
			{
				Name: "inspect", Usage: "show a container's details, read from the node that runs it", ArgsUsage: "NAME",
				Description: `Image, command, state, restarts, environment variable NAMES (never their values: secrets
live there), labels, mounts, networks and published ports, from the Docker engine of the
container's node. -o json gives everything.

   kontena container inspect shop.web-1
   kontena container inspect shop.web-1 -o json | jq .networks`,
				Flags:  []cli.Flag{outputFlag},
				Action: withSession(containerInspect),
			},
			containerLogsCommand(),
			execCommand("exec", "run a command in a container on any node", false),
			statsCommand("stats", "CPU, memory and network use of containers (all, or the NAMEs given)"),
		},
	}
}

func containerFilterFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "stack", Usage: "only the containers of this stack"},
		&cli.StringFlag{Name: "service", Usage: "only the containers of this service (STACK/SERVICE)"},
		&cli.StringFlag{Name: "node", Usage: "only the containers placed on this node"},
	}
}

func containerFilter(c *cli.Context) (api.ContainerFilter, error) {
	f := api.ContainerFilter{Stack: c.String("stack"), Service: c.String("service"), Node: c.String("node")}
	if f.Service != "" && !strings.Contains(f.Service, "/") {
		return f, usageError("--service %q: expected STACK/SERVICE", f.Service)
	}
	return f, nil
}

func containerList(c *cli.Context, s *session) error {
	if c.NArg() > 0 {
		return usageError("container ls takes no arguments; filter with --stack, --service or --node")
	}
	f, err := containerFilter(c)
	if err != nil {
		return err
	}
	list, err := s.api.Containers(c.Context, f)
	if err != nil {
		return err
	}
	return render(c, list, func(w io.Writer) {
		row(w, "NAME", "NODE", "STATE", "HEALTH", "REVISION", "CONTAINER", "IP", "IMAGE")
		for _, ct := range list {
			node := orDash(ct.Node)
			if ct.NodeStatus != "" && ct.NodeStatus != "online" {
				node += " (" + ct.NodeStatus + ")"
			}
			rev := fmt.Sprint(ct.Desired)
			if ct.Revision != 0 && ct.Revision != ct.Desired {
				rev = fmt.Sprintf("%d→%d", ct.Revision, ct.Desired)
			}
			row(w, ct.Name, node, orDash(ct.State), orDash(ct.Health), rev, orDash(shortID(ct.ContainerID)), orDash(ct.IP), ct.Image)
		}
	})
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func containerInspect(c *cli.Context, s *session) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	d, err := s.api.InspectContainer(c.Context, name)
	if err != nil {
		return err
	}
	return render(c, d, func(w io.Writer) {
		row(w, "name:", d.Name)
		row(w, "node:", d.Node)
		row(w, "id:", shortID(d.ID))
		row(w, "image:", fmt.Sprintf("%s (%s)", d.Image, shortID(d.ImageID)))
		if len(d.Entrypoint) > 0 {
			row(w, "entrypoint:", shellJoin(d.Entrypoint))
		}
		row(w, "command:", orDash(shellJoin(d.Cmd)))
		state := d.State
		if d.Health != "" {
			state += " (" + d.Health + ")"
		}
		row(w, "state:", state)
		row(w, "started:", orDash(dockerTime(d.StartedAt)))
		if d.State != "running" {
			row(w, "finished:", orDash(dockerTime(d.FinishedAt)))
			exit := fmt.Sprint(d.ExitCode)
			if d.OOMKilled {
				exit += " (out of memory)"
			}
			row(w, "exit code:", exit)
		}
		row(w, "restarts:", d.RestartCount)
		row(w, "env:", orDash(strings.Join(d.EnvNames, ", ")))
		keys := make([]string, 0, len(d.Labels))
		for k := range d.Labels {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			row(w, labelIf(i == 0, "labels:"), k+"="+d.Labels[k])
		}
		for i, m := range d.Mounts {
			src := m.Source
			if m.Type == "volume" && m.Name != "" {
				src = m.Name
			}
			mode := "ro"
			if m.RW {
				mode = "rw"
			}
			row(w, labelIf(i == 0, "mounts:"), fmt.Sprintf("%s %s → %s (%s)", m.Type, orDash(src), m.Destination, mode))
		}
		for i, nw := range d.Networks {
			row(w, labelIf(i == 0, "networks:"), strings.TrimSpace(nw.Name+" "+nw.IP))
		}
		for i, p := range d.Ports {
			target := "not published"
			if p.HostPort != "" {
				target = orDash(p.HostIP) + ":" + p.HostPort
			}
			row(w, labelIf(i == 0, "ports:"), p.ContainerPort+" → "+target)
		}
	})
}

func labelIf(first bool, label string) string {
	if first {
		return label
	}
	return ""
}

// dockerTime shortens Docker's RFC 3339 nano times; the zero time is "".
func dockerTime(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return ""
	}
	return t.UTC().Format(time.RFC3339) + " (" + ago(t) + ")"
}

// shellJoin quotes args the way a shell would need them.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`|&;<>()*?[]{}~#!") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

func containerLogsCommand() *cli.Command {
	return &cli.Command{
		Name: "logs", Usage: "show the log of one container, read from the node that runs it", ArgsUsage: "NAME",
		Description: `One "timestamp message" line per log line, stdout and stderr together. For every instance of a
service at once, use 'kontena service logs STACK/SERVICE'.

   kontena container logs shop.web-1 --tail 20
   kontena container logs shop.web-1 -f --since 10m`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "tail", Value: 100, Usage: "lines from the end of the log (0: all)"},
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep streaming new lines"},
			&cli.StringFlag{Name: "since", Usage: "only lines newer than a duration (10m) or an RFC 3339 time"},
		},
		Action: withSession(containerLogs),
	}
}

func containerLogs(c *cli.Context, s *session) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	if c.Int("tail") < 0 {
		return usageError("--tail %d: expected 0 or more", c.Int("tail"))
	}
	q := url.Values{"tail": {fmt.Sprint(c.Int("tail"))}}
	if c.Bool("follow") {
		q.Set("follow", "true")
	}
	if since := c.String("since"); since != "" {
		q.Set("since", since)
	}
	body, err := s.api.Stream(c.Context, "/v1/containers/"+url.PathEscape(name)+"/logs?"+q.Encode())
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

// statsCommand is `container stats` and the top-level `stats`.
func statsCommand(name, usage string) *cli.Command {
	return &cli.Command{
		Name: name, Usage: usage, ArgsUsage: "[NAME...]",
		Description: `Each container is sampled on its own node (all nodes in parallel): CPU % over half a second
(100 % = one CPU busy, as in 'docker stats'), memory in use without the page cache, its limit,
bytes received and sent over the network since the container started, and processes.
A node that cannot be asked shows as a row with its error; the others are still listed.

   kontena stats
   kontena stats --stack shop
   kontena container stats shop.web-1 shop.web-2 -o json`,
		Flags:  append(containerFilterFlags(), outputFlag),
		Action: withSession(containerStats),
	}
}

func containerStats(c *cli.Context, s *session) error {
	f, err := containerFilter(c)
	if err != nil {
		return err
	}
	f.Names = c.Args().Slice()
	return renderStats(c, s, f)
}

func renderStats(c *cli.Context, s *session, f api.ContainerFilter) error {
	stats, err := s.api.ContainerStats(c.Context, f)
	if err != nil {
		return err
	}
	return render(c, stats, func(w io.Writer) {
		row(w, "NAME", "NODE", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET RX / TX", "PIDS", "PROBLEM")
		for _, st := range stats {
			if st.Error != "" {
				row(w, st.Name, orDash(st.Node), "-", "-", "-", "-", "-", st.Error)
				continue
			}
			row(w, st.Name, st.Node, fmt.Sprintf("%.2f%%", st.CPUPercent), bytesIEC(st.MemoryUsage)+" / "+bytesIEC(st.MemoryLimit),
				fmt.Sprintf("%.2f%%", st.MemoryPercent), bytesIEC(st.NetRx)+" / "+bytesIEC(st.NetTx), st.PIDs, "-")
		}
	})
}

// bytesIEC formats a byte count: 512B, 1.5KiB, 23.4MiB.
func bytesIEC(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%dB", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit && exp < 5; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(b)/float64(div), "KMGTPE"[exp])
}

// withServiceExtras adds `service exec` and `service stats` to the service
// command.
func withServiceExtras(svc *cli.Command) *cli.Command {
	svc.Subcommands = append(svc.Subcommands,
		execCommand("exec", "run a command in one instance of a service (instance 1 unless --instance)", true),
		&cli.Command{
			Name: "stats", Usage: "CPU, memory and network use of every instance of a service", ArgsUsage: "STACK/SERVICE",
			Description: `Like 'kontena stats --service STACK/SERVICE': each instance sampled on its node.

   kontena service stats shop/web
   kontena service stats shop/web -o json`,
			Flags: []cli.Flag{outputFlag},
			Action: withSession(func(c *cli.Context, s *session) error {
				id, err := oneArg(c, "STACK/SERVICE")
				if err != nil {
					return err
				}
				if !strings.Contains(id, "/") {
					return usageError("service %q: expected STACK/SERVICE", id)
				}
				return renderStats(c, s, api.ContainerFilter{Service: id})
			}),
		},
	)
	return svc
}
