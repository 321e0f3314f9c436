package cmd

import "github.com/urfave/cli/v2"

// stackCommand groups the stack commands.
func stackCommand() *cli.Command {
	return &cli.Command{
		Name:  "stack",
		Usage: "install, deploy, stop, start, restart, list and remove stacks; their logs; validate stack files (kontena.yml)",
		Subcommands: append([]*cli.Command{
			StackValidateCommand(),
			stackInstallCommand(),
			stackUpgradeCommand(),
			{Name: "ls", Aliases: []string{"list"}, Usage: "list installed stacks", Flags: []cli.Flag{outputFlag}, Action: withSession(stackList)},
			{Name: "show", Usage: "show a stack, its services and instances", ArgsUsage: "STACK", Flags: []cli.Flag{outputFlag}, Action: withSession(stackShow)},
			{
				Name: "rm", Aliases: []string{"remove"}, Usage: "remove a stack and its services", ArgsUsage: "STACK",
				Flags:  []cli.Flag{&cli.BoolFlag{Name: "force", Usage: "do not ask for confirmation"}},
				Action: withSession(stackRemove),
			},
		}, stackLifecycleCommands()...),
	}
}
