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
		Subcommands: []*cli.Command{
			{
				Name: "create", Usage: "create an API token for yourself (its value is shown once)",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "description", Usage: "what the token is for"},
					&cli.StringFlag{Name: "expires-in", Usage: "lifetime such as 2h or 720h (default: no expiry)"},
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
	res, err := s.api.CreateToken(c.Context, api.TokenCreateRequest{Description: c.String("description"), ExpiresIn: c.String("expires-in")})
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
		row(w, "ID", "USER", "DESCRIPTION", "CREATED", "EXPIRES")
		for _, t := range toks {
			exp := "never"
			if !t.ExpiresAt.IsZero() {
				exp = t.ExpiresAt.Format(time.RFC3339)
			}
			row(w, t.ID, t.User, orDash(t.Description), t.CreatedAt.Format(time.RFC3339), exp)
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
