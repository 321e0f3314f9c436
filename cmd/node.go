package cmd

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

func nodeCommand() *cli.Command {
	return &cli.Command{
		Name:  "node",
		Usage: "list and manage the machines of the grid",
		Subcommands: []*cli.Command{
			{
				Name: "ls", Aliases: []string{"list"}, Usage: "list nodes",
				Flags:  []cli.Flag{outputFlag},
				Action: withSession(nodeList),
			},
			{
				Name: "show", Usage: "show one node", ArgsUsage: "NODE",
				Flags:  []cli.Flag{outputFlag},
				Action: withSession(nodeShow),
			},
			{
				Name: "update", Usage: "change a node's availability or replace its labels", ArgsUsage: "NODE",
				Description: "--availability drain stops scheduling on the node; active allows it again.\n" +
					"--label replaces the whole label set; use `node label add|rm` to change one label.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "availability", Usage: "active or drain"},
					&cli.StringSliceFlag{Name: "label", Usage: "key=value (repeatable); replaces all labels"},
					outputFlag,
				},
				Action: withSession(nodeUpdate),
			},
			{
				Name:  "label",
				Usage: "add or remove node labels",
				Subcommands: []*cli.Command{
					{Name: "add", Usage: "add labels", ArgsUsage: "NODE key=value...", Flags: []cli.Flag{outputFlag}, Action: withSession(nodeLabel(true))},
					{Name: "rm", Aliases: []string{"remove"}, Usage: "remove labels by key (or exact key=value)", ArgsUsage: "NODE key...", Flags: []cli.Flag{outputFlag}, Action: withSession(nodeLabel(false))},
				},
			},
			{
				Name: "rm", Aliases: []string{"remove"}, Usage: "forget an offline node (and remove it from Raft if it was a voter)", ArgsUsage: "NODE",
				Flags:  []cli.Flag{&cli.BoolFlag{Name: "force", Usage: "do not ask for confirmation"}},
				Action: withSession(nodeRemove),
			},
			{
				Name: "promote", Usage: "make a worker a Raft voter (a master candidate)", ArgsUsage: "NODE",
				Flags:  []cli.Flag{outputFlag},
				Action: withSession(nodeRole(fsm.RoleVoter)),
			},
			{
				Name: "demote", Usage: "make a voter a worker; its Raft seat is given up", ArgsUsage: "NODE",
				Flags:  []cli.Flag{outputFlag},
				Action: withSession(nodeRole(fsm.RoleWorker)),
			},
		},
	}
}

func oneArg(c *cli.Context, what string) (string, error) {
	if c.NArg() != 1 {
		return "", usageError("expected exactly one %s argument, got %d (see `%s --help`)", what, c.NArg(), c.Command.HelpName)
	}
	return c.Args().First(), nil
}

func nodeList(c *cli.Context, s *session) error {
	nodes, _, err := s.api.Nodes(c.Context, 0, 0)
	if err != nil {
		return err
	}
	return render(c, nodes, func(w io.Writer) {
		row(w, "NAME", "ROLE", "STATUS", "AVAILABILITY", "ADDRESS", "LABELS", "LAST SEEN")
		for _, n := range nodes {
			seen := "now"
			if n.Status != fsm.StatusOnline {
				seen = ago(n.LastSeen)
			}
			row(w, n.Name, n.Role, n.Status, n.Availability, n.Addr, orDash(strings.Join(n.Labels, ",")), seen)
		}
	})
}

func printNode(c *cli.Context, n *fsm.Node) error {
	return render(c, n, func(w io.Writer) { printNodeRows(w, n) })
}

func printNodeRows(w io.Writer, n *fsm.Node) {
	row(w, "name:", n.Name)
	row(w, "id:", n.ID)
	row(w, "number:", n.Number)
	row(w, "role:", n.Role)
	row(w, "status:", n.Status+" (since "+ago(n.StatusAt)+")")
	row(w, "last seen:", ago(n.LastSeen))
	row(w, "availability:", n.Availability)
	row(w, "address:", n.Addr)
	row(w, "public address:", orDash(n.PublicAddr))
	row(w, "ports:", fmt.Sprintf("api %d, raft %d, gossip %d", n.APIPort, n.RaftPort, n.GossipPort))
	row(w, "version:", n.Version)
	row(w, "labels:", orDash(strings.Join(n.Labels, ", ")))
	if r := n.Resources; r.Engine != "" {
		row(w, "resources:", fmt.Sprintf("%s CPUs, %.1f GiB memory, %s", fmtNum(r.CPUs), float64(r.MemoryTotal)/(1<<30), r.Engine))
		row(w, "volume drivers:", orDash(strings.Join(r.VolumeDrivers, ", ")))
	} else {
		row(w, "resources:", "not reported (no container engine?)")
	}
	row(w, "joined:", n.JoinedAt.Format("2006-01-02 15:04:05 MST"))
}

func nodeShow(c *cli.Context, s *session) error {
	name, err := oneArg(c, "NODE")
	if err != nil {
		return err
	}
	n, err := s.api.Node(c.Context, name)
	if err != nil {
		return err
	}
	// The live overlay comes from the node itself; a node that does not
	// answer still shows what the grid state knows.
	var ov api.OverlayStatus
	_, ovErr := s.api.Do(c.Context, http.MethodGet, "/v1/nodes/"+url.PathEscape(n.Name)+"/overlay", nil, &ov)
	out := struct {
		*fsm.Node
		OverlayStatus *api.OverlayStatus `json:"overlay_status,omitempty"`
	}{Node: n}
	if ovErr == nil {
		out.OverlayStatus = &ov
	}
	return render(c, out, func(w io.Writer) {
		printNodeRows(w, n)
		printOverlayRows(w, n, out.OverlayStatus, ovErr)
	})
}

func printOverlayRows(w io.Writer, n *fsm.Node, ov *api.OverlayStatus, ovErr error) {
	switch {
	case n.Overlay.Port == 0 && ov != nil && ov.Reason != "":
		row(w, "overlay:", "off ("+ov.Reason+")")
	case n.Overlay.Port == 0:
		row(w, "overlay:", "off")
	default:
		row(w, "overlay:", fmt.Sprintf("%s in %s (WireGuard udp/%d)", n.Overlay.Address, n.Overlay.Subnet, n.Overlay.Port))
		row(w, "wireguard key:", n.Overlay.PublicKey)
	}
	if ovErr != nil {
		row(w, "overlay status:", "unknown: "+ovErr.Error())
		return
	}
	if ov == nil {
		return
	}
	if ov.Interface != "" {
		row(w, "interface:", ov.Interface+" ("+ov.Mode+"), "+fmt.Sprint(ov.Containers)+" container addresses")
	}
	if len(ov.DNS) > 0 {
		row(w, "dns:", strings.Join(ov.DNS, ", "))
	}
	for i, p := range ov.Peers {
		label := ""
		if i == 0 {
			label = "peers:"
		}
		hs := "no handshake yet"
		if !p.LastHandshake.IsZero() {
			hs = "handshake " + ago(p.LastHandshake)
		}
		row(w, label, fmt.Sprintf("%s %s via %s, %s, rx %d B tx %d B", orDash(p.Name), strings.Join(p.AllowedIPs, ","), orDash(p.Endpoint), hs, p.RxBytes, p.TxBytes))
	}
}

func nodeUpdate(c *cli.Context, s *session) error {
	name, err := oneArg(c, "NODE")
	if err != nil {
		return err
	}
	req := api.NodeUpdateRequest{Availability: c.String("availability")}
	if c.IsSet("label") {
		labels := c.StringSlice("label")
		req.SetLabels = &labels
	}
	if req.Availability == "" && req.SetLabels == nil {
		return usageError("nothing to update: give --availability and/or --label")
	}
	if a := req.Availability; a != "" && a != fsm.AvailabilityActive && a != fsm.AvailabilityDrain {
		return usageError("--availability %q: expected active or drain", a)
	}
	n, err := s.api.UpdateNode(c.Context, name, req)
	if err != nil {
		return err
	}
	return printNode(c, n)
}

func nodeLabel(add bool) func(*cli.Context, *session) error {
	return func(c *cli.Context, s *session) error {
		if c.NArg() < 2 {
			return usageError("expected NODE and at least one label (see `%s --help`)", c.Command.HelpName)
		}
		name, labels := c.Args().First(), c.Args().Tail()
		req := api.NodeUpdateRequest{}
		if add {
			for _, l := range labels {
				if !strings.Contains(l, "=") {
					return usageError("label %q: expected key=value", l)
				}
			}
			req.AddLabels = labels
		} else {
			req.RemoveLabels = labels
		}
		n, err := s.api.UpdateNode(c.Context, name, req)
		if err != nil {
			return err
		}
		return render(c, n, func(w io.Writer) { row(w, n.Name+":", orDash(strings.Join(n.Labels, ", "))) })
	}
}

func nodeRemove(c *cli.Context, s *session) error {
	name, err := oneArg(c, "NODE")
	if err != nil {
		return err
	}
	if err := confirmRemoval(c, fmt.Sprintf("Remove node %s from grid %s?", name, s.grid), name); err != nil {
		return err
	}
	if err := s.api.RemoveNode(c.Context, name); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "Node %s removed.\n", name)
	return nil
}

func nodeRole(role string) func(*cli.Context, *session) error {
	return func(c *cli.Context, s *session) error {
		name, err := oneArg(c, "NODE")
		if err != nil {
			return err
		}
		n, err := s.api.SetRole(c.Context, name, role)
		if err != nil {
			return err
		}
		if c.String("output") == "json" {
			return render(c, n, nil)
		}
		fmt.Fprintf(c.App.Writer, "Node %s is now a %s; the leader is changing the Raft configuration (see `kontena grid health`).\n", n.Name, n.Role)
		return nil
	}
}

func fmtNum(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
