package cmd

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/kontena-ng/kontena/api"
)

func vpnCommand() *cli.Command {
	return &cli.Command{
		Name:  "vpn",
		Usage: "let an admin's machine into the overlay with WireGuard",
		Description: "`vpn create` makes a WireGuard key pair on THIS machine (the private key never leaves it),\n" +
			"registers the public key with the grid and prints a wg-quick configuration. Save it and bring it up:\n\n" +
			"   kontena vpn create laptop > kontena.conf\n" +
			"   sudo wg-quick up ./kontena.conf\n" +
			"   curl http://web.shop.default.kontena.local/\n\n" +
			"The tunnel ends on one node (--node, default: an online master); from there it reaches every\n" +
			"container address of the grid, and the node's resolver answers *.kontena.local.",
		Subcommands: []*cli.Command{
			{
				Name: "create", Usage: "create a VPN peer and print its wg-quick configuration", ArgsUsage: "[NAME]",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "node", Usage: "node the tunnel ends on (default: an online master)"},
					&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "write the configuration to this file (mode 0600) instead of stdout"},
					outputFlag,
				},
				Action: withSession(vpnCreate),
			},
			{
				Name: "ls", Aliases: []string{"list"}, Usage: "list VPN peers",
				Flags:  []cli.Flag{outputFlag},
				Action: withSession(vpnList),
			},
			{
				Name: "rm", Aliases: []string{"remove"}, Usage: "revoke a VPN peer: every node drops its key", ArgsUsage: "NAME",
				Action: withSession(vpnRemove),
			},
		},
	}
}

func vpnCreate(c *cli.Context, s *session) error {
	if c.NArg() > 1 {
		return usageError("expected at most one NAME argument, got %d (see `kontena vpn create --help`)", c.NArg())
	}
	name := c.Args().First()
	if name == "" {
		name = "vpn"
	}
	key, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return fmt.Errorf("generate WireGuard key: %w", err)
	}
	var info api.VPNInfo
	req := api.VPNCreateRequest{Name: name, PublicKey: key.PublicKey().String(), Node: c.String("node")}
	if _, err := s.api.Do(c.Context, http.MethodPost, "/v1/vpn", req, &info); err != nil {
		return err
	}
	conf := wgQuickConfig(key, info)
	if f := c.String("file"); f != "" {
		if err := os.WriteFile(f, []byte(conf), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", f, err)
		}
		fmt.Fprintf(c.App.ErrWriter, "wrote %s: bring it up with `sudo wg-quick up %s`\n", f, f)
		return nil
	}
	if c.String("output") == "json" {
		out := struct {
			api.VPNInfo
			Config string `json:"config"`
		}{info, conf}
		return render(c, out, nil)
	}
	_, err = io.WriteString(c.App.Writer, conf)
	return err
}

// wgQuickConfig is the client side of the tunnel. The DNS line carries the
// grid's search domain, so short names like `web.shop` resolve too.
func wgQuickConfig(key wgtypes.Key, info api.VPNInfo) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# kontena vpn %s: through node %s\n", info.Name, info.Node)
	fmt.Fprintf(&b, "[Interface]\nPrivateKey = %s\nAddress = %s/32\nDNS = %s, %s\n\n", key, info.Address, info.DNS, info.Domain)
	fmt.Fprintf(&b, "[Peer]\nPublicKey = %s\nEndpoint = %s\nAllowedIPs = %s\nPersistentKeepalive = 25\n", info.NodeKey, info.Endpoint, info.GridSubnet)
	return b.String()
}

func vpnList(c *cli.Context, s *session) error {
	var list []api.VPNInfo
	if _, err := s.api.Do(c.Context, http.MethodGet, "/v1/vpn", nil, &list); err != nil {
		return err
	}
	return render(c, list, func(w io.Writer) {
		row(w, "NAME", "ADDRESS", "NODE", "ENDPOINT", "CREATED")
		for _, v := range list {
			row(w, v.Name, v.Address, v.Node, v.Endpoint, v.CreatedAt)
		}
	})
}

func vpnRemove(c *cli.Context, s *session) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	if _, err := s.api.Do(c.Context, http.MethodDelete, "/v1/vpn/"+url.PathEscape(name), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "vpn %s revoked\n", name)
	return nil
}
