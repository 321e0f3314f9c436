package cmd

import (
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kontena-ng/kontena/api"
)

func tokenCommand() *cli.Command {
	return &cli.Command{
		Name:  "token",
		Usage: "create, list and revoke API tokens",
		Description: `   An API token is for automation: it lives as long as you choose (default 30
   days, at most a year), acts with your roles or one role no higher than yours
   (--role), and is revoked with the login it was made from (kontena token rm of
   that login, or kontena user rm). Revoking a token revokes every token made
   from it.

   kontena token create --role viewer --expires-in 720h --description ci`,
		Subcommands: []*cli.Command{
			{
				Name: "create", Usage: "create an API token for yourself (its value is shown once)",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "description", Usage: "what the token is for"},
					&cli.StringFlag{Name: "expires-in", Usage: "lifetime such as 2h or 720h (default 720h, at most 8784h)"},
					&cli.StringFlag{Name: "role", Usage: "the one role the token acts with (one you hold, or lower)"},
					outputFlag,
				},
				Action: withSession(tokenCreate),
			},
			{Name: "ls", Aliases: []string{"list"}, Usage: "list tokens (never their values)", Flags: []cli.Flag{outputFlag}, Action: withSession(tokenList)},
			{Name: "rm", Aliases: []string{"remove", "revoke"}, Usage: "revoke a token", ArgsUsage: "ID", Action: withSession(tokenRemove)},
		},
	}
}

func tokenCreate(c *cli.Context, s *session) error {
	if e := c.String("expires-in"); e != "" {
		if d, err := time.ParseDuration(e); err != nil || d <= 0 {
			return usageError("--expires-in %q: expected a positive duration such as 2h", e)
		}
	}
	res, err := s.api.CreateToken(c.Context, api.TokenCreateRequest{Description: c.String("description"), ExpiresIn: c.String("expires-in"), Role: c.String("role")})
	if err != nil {
		return err
	}
	return render(c, res, func(w io.Writer) {
		fmt.Fprintf(w, "%s\n", res.Value)
	})
}

func tokenList(c *cli.Context, s *session) error {
	toks, err := s.api.Tokens(c.Context)
	if err != nil {
		return err
	}
	return render(c, toks, func(w io.Writer) {
		row(w, "ID", "USER", "KIND", "ROLE", "EXPIRES", "LAST USED", "DESCRIPTION")
		for _, t := range toks {
			exp, used, role := "never", "-", "(user's)"
			if !t.ExpiresAt.IsZero() {
				exp = t.ExpiresAt.Local().Format(time.RFC3339)
			}
			if !t.LastUsedAt.IsZero() {
				used = t.LastUsedAt.Local().Format(time.RFC3339)
			}
			if t.Role != "" {
				role = t.Role
			}
			row(w, t.ID, t.User, t.KindOrAPI(), role, exp, used, orDash(t.Description))
		}
	})
}

func tokenRemove(c *cli.Context, s *session) error {
	id, err := oneArg(c, "ID")
	if err != nil {
		return err
	}
	if err := s.api.RemoveToken(c.Context, id); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "Token %s revoked.\n", id)
	return nil
}
