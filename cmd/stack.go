package cmd

import "github.com/urfave/cli/v2"

// stackCommand groups the stack commands. Only `validate` exists until
// stacks can be installed on a grid (issue 4): no command is listed that
// does not work.
func stackCommand() *cli.Command {
	return &cli.Command{
		Name:        "stack",
		Usage:       "work with stack files (kontena.yml)",
		Subcommands: []*cli.Command{StackValidateCommand()},
	}
}
