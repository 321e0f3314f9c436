package cmd

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/pki"
)

func userCommand() *cli.Command {
	return &cli.Command{
		Name:  "user",
		Usage: "users and their roles (user_admin, master_admin)",
		Description: `   Roles:
     master_admin  everything, users and roles included
     user_admin    users and invites, nothing else
     grid_admin    nodes, grid settings, join tokens, VPN, vault, every stack
     developer     stacks, services, logs, exec, vault writes; with --stacks only
                   the stacks matching the patterns
     viewer        read-only: never a secret value, never exec

   kontena user invite ann@example.com --role developer --stacks 'shop-*'
   (prints the one-time code and the command the user logs in with)`,
		Subcommands: []*cli.Command{
			{
				Name: "invite", Usage: "invite a user by email; prints a one-time code", ArgsUsage: "EMAIL",
				Flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "role", Required: true, Usage: "role to give (repeat for several)"},
					&cli.StringSliceFlag{Name: "stacks", Usage: "limit a developer to stacks matching this pattern (repeat for several)"},
					&cli.StringFlag{Name: "expires-in", Value: "24h", Usage: "how long the code may be redeemed"},
					outputFlag,
				},
				Action: withSession(userInvite),
			},
			{Name: "ls", Aliases: []string{"list"}, Usage: "list users", Flags: []cli.Flag{outputFlag}, Action: withSession(userList)},
			{Name: "show", Usage: "show a user", ArgsUsage: "NAME", Flags: []cli.Flag{outputFlag}, Action: withSession(userShow)},
			{Name: "rm", Aliases: []string{"remove"}, Usage: "remove a user and revoke every token of theirs", ArgsUsage: "NAME", Action: withSession(userRemove)},
			{Name: "invites", Usage: "list open invites", Flags: []cli.Flag{outputFlag}, Action: withSession(inviteList)},
			{
				Name: "role", Usage: "give or take roles",
				Subcommands: []*cli.Command{
					{Name: "add", Usage: "give a user a role", ArgsUsage: "NAME ROLE", Flags: []cli.Flag{
						&cli.StringSliceFlag{Name: "stacks", Usage: "with developer: limit the user to stacks matching this pattern"}, outputFlag},
						Action: withSession(userRole(true))},
					{Name: "rm", Aliases: []string{"remove"}, Usage: "take a role from a user", ArgsUsage: "NAME ROLE", Flags: []cli.Flag{outputFlag},
						Action: withSession(userRole(false))},
				},
			},
		},
	}
}

func userInvite(c *cli.Context, s *session) error {
	email, err := oneArg(c, "EMAIL")
	if err != nil {
		return err
	}
	res, err := s.api.Invite(c.Context, api.InviteRequest{Email: email, Roles: c.StringSlice("role"), Stacks: c.StringSlice("stacks"), ExpiresIn: c.String("expires-in")})
	if err != nil {
		return err
	}
	digest := ""
	if ca, err := pki.ParseCert([]byte(s.ctx.CACert)); err == nil {
		digest = pki.Digest(ca)
	}
	addr := s.api.Current()
	return render(c, res, func(w io.Writer) {
		fmt.Fprintf(w, "Invited %s as %v; the code works once, until %s.\nThey log in with:\n\n  kontena grid login --ca-digest %s --code %s %s\n\n",
			email, res.Invite.Roles, res.Invite.ExpiresAt.Local().Format(time.RFC3339), digest, res.Code, addr)
	})
}

func userList(c *cli.Context, s *session) error {
	users, err := s.api.Users(c.Context)
	if err != nil {
		return err
	}
	return render(c, users, func(w io.Writer) {
		row(w, "NAME", "ROLES", "STACKS", "LOGIN", "CREATED")
		for _, u := range users {
			via := "invite"
			if u.Issuer != "" {
				via = u.Issuer
			}
			row(w, u.Name, orDash(strings.Join(u.Roles, ",")), orDash(strings.Join(u.Stacks, ",")), via, u.CreatedAt.Local().Format(time.RFC3339))
		}
	})
}

func userShow(c *cli.Context, s *session) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	u, err := s.api.User(c.Context, name)
	if err != nil {
		return err
	}
	return render(c, u, func(w io.Writer) {
		row(w, "name:", u.Name)
		row(w, "roles:", orDash(strings.Join(u.Roles, ", ")))
		row(w, "stacks:", orDash(strings.Join(u.Stacks, ", ")))
		if u.Issuer != "" {
			row(w, "single sign-on:", u.Issuer+" subject "+u.Subject)
		}
		row(w, "created:", u.CreatedAt.Local().Format(time.RFC3339))
	})
}

func userRemove(c *cli.Context, s *session) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	if err := s.api.RemoveUser(c.Context, name); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "Removed user %s; every token of theirs is revoked.\n", name)
	return nil
}

func inviteList(c *cli.Context, s *session) error {
	invs, err := s.api.Invites(c.Context)
	if err != nil {
		return err
	}
	return render(c, invs, func(w io.Writer) {
		row(w, "ID", "EMAIL", "ROLES", "BY", "EXPIRES")
		for _, i := range invs {
			row(w, i.ID, i.Email, strings.Join(i.Roles, ","), i.CreatedBy, i.ExpiresAt.Local().Format(time.RFC3339))
		}
	})
}

func userRole(add bool) func(c *cli.Context, s *session) error {
	return func(c *cli.Context, s *session) error {
		if c.NArg() != 2 {
			return usageError("expected NAME ROLE")
		}
		name, role := c.Args().Get(0), c.Args().Get(1)
		req := api.UserRolesRequest{Remove: []string{role}}
		if add {
			req = api.UserRolesRequest{Add: []string{role}}
			if c.IsSet("stacks") {
				st := c.StringSlice("stacks")
				req.Stacks = &st
			}
		}
		u, err := s.api.UserRoles(c.Context, name, req)
		if err != nil {
			return err
		}
		return render(c, u, func(w io.Writer) {
			fmt.Fprintf(w, "User %s has roles %v.\n", u.Name, u.Roles)
		})
	}
}
