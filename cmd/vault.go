package cmd

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

func vaultCommand() *cli.Command {
	valueFlags := []cli.Flag{
		&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "read the value from `FILE` (- for standard input)"},
	}
	return &cli.Command{
		Name:  "vault",
		Usage: "keep secrets in the grid: sealed with the grid's master key before they enter the Raft log",
		Description: `A secret's value never needs to be on a command line: give it as the argument,
with --file FILE, or on standard input (with no value and no --file). Values are sealed on the
leader before they are stored; only voters hold the key. ls shows names and times, never values;
every read is in the audit log (kontena audit).`,
		Subcommands: []*cli.Command{
			{Name: "write", Usage: "create a secret (refused if it exists; see update)", ArgsUsage: "NAME [VALUE]", Flags: valueFlags,
				Action: withSession(vaultWrite(fsm.SecretCreate))},
			{Name: "update", Usage: "change a secret's value (--upsert creates it if missing)", ArgsUsage: "NAME [VALUE]",
				Flags:  append([]cli.Flag{&cli.BoolFlag{Name: "upsert", Usage: "create the secret if it does not exist"}}, valueFlags...),
				Action: withSession(vaultWrite(fsm.SecretUpdate))},
			{Name: "read", Usage: "print a secret's value (audited)", ArgsUsage: "NAME", Flags: []cli.Flag{outputFlag}, Action: withSession(vaultRead)},
			{Name: "ls", Aliases: []string{"list"}, Usage: "list secrets: names and times, never values", Flags: []cli.Flag{outputFlag}, Action: withSession(vaultList)},
			{Name: "rm", Aliases: []string{"remove"}, Usage: "remove a secret", ArgsUsage: "NAME", Action: withSession(vaultRemove)},
		},
	}
}

// secretValue is the value of `vault write|update NAME [VALUE]`: the
// argument, --file, or standard input.
func secretValue(c *cli.Context) (string, error) {
	file := c.String("file")
	switch {
	case c.NArg() == 2 && file != "":
		return "", usageError("give the value as an argument or with --file, not both")
	case c.NArg() == 2:
		return c.Args().Get(1), nil
	case c.NArg() != 1:
		return "", usageError("expected NAME [VALUE], got %d arguments (see `%s --help`)", c.NArg(), c.Command.HelpName)
	}
	var r io.Reader = c.App.Reader
	if file != "" && file != "-" {
		data, err := os.ReadFile(file)
		if err != nil {
			return "", usageError("--file: %v", err)
		}
		return string(data), nil
	}
	if r == nil {
		r = os.Stdin
	}
	data, err := io.ReadAll(io.LimitReader(r, 64<<10+1))
	if err != nil {
		return "", err
	}
	// One trailing newline is the terminal's, not the secret's.
	return strings.TrimSuffix(string(data), "\n"), nil
}

func vaultWrite(mode string) func(*cli.Context, *session) error {
	return func(c *cli.Context, s *session) error {
		value, err := secretValue(c)
		if err != nil {
			return err
		}
		name := c.Args().First()
		if mode == fsm.SecretUpdate && c.Bool("upsert") {
			mode = fsm.SecretUpsert
		}
		info, err := s.api.WriteSecret(c.Context, name, api.SecretWriteRequest{Value: value, Mode: mode})
		if err != nil {
			return err
		}
		fmt.Fprintf(c.App.Writer, "Secret %s saved (updated %s).\n", info.Name, info.UpdatedAt.Format(time.RFC3339))
		return nil
	}
}

func vaultRead(c *cli.Context, s *session) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	v, err := s.api.ReadSecret(c.Context, name)
	if err != nil {
		return err
	}
	return render(c, v, func(w io.Writer) { fmt.Fprintln(w, v.Value) })
}

func vaultList(c *cli.Context, s *session) error {
	all, err := s.api.Secrets(c.Context)
	if err != nil {
		return err
	}
	return render(c, all, func(w io.Writer) {
		row(w, "NAME", "CREATED", "UPDATED")
		for _, v := range all {
			row(w, v.Name, v.CreatedAt.Format(time.RFC3339), v.UpdatedAt.Format(time.RFC3339))
		}
	})
}

func vaultRemove(c *cli.Context, s *session) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	if err := s.api.RemoveSecret(c.Context, name); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "Secret %s removed.\n", name)
	return nil
}
