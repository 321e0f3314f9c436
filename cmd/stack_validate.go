package cmd

import (
	"encoding/json"
	"errors"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/kontena-ng/kontena/stack"
)

// StackValidateCommand is `kontena stack validate [FILE]`: it renders and
// checks a stack file exactly as install would, without a grid.
func StackValidateCommand() *cli.Command {
	return &cli.Command{
		Name:      "validate",
		Usage:     "check a stack file and print it rendered (no grid needed; --online asks the grid's resolvers)",
		ArgsUsage: "[FILE]",
		Description: `Reads FILE (default kontena.yml, or a registry stack like user/name:1.0.0),
resolves its variables, renders Liquid and ${VAR}, validates every key and prints
the result. All problems are listed at once as file:line:col: key.path: message.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Aliases: []string{"n"}, Usage: "name the stack is installed under (${STACK}); default: from the file"},
			// A generic flag so that values may contain commas (-v hosts=a,b).
			&cli.GenericFlag{Name: "var", Aliases: []string{"v"}, Value: &valueFlags{}, Usage: "set a variable: -v key=value, -v dep.key=value for a dependency (repeatable)"},
			&cli.StringFlag{Name: "values-from", Usage: "read variable values from a YAML file"},
			&cli.StringFlag{Name: "values-to", Usage: "write the resolved variable values to a YAML file"},
			&cli.StringFlag{Name: "format", Value: "yaml", Usage: "output format: yaml or json"},
			&cli.BoolFlag{Name: "dependency-tree", Usage: "print the dependency tree instead of the stack"},
			&cli.BoolFlag{Name: "online", Usage: "ask the grid you are logged in to for the vault, service_link and service_instances resolvers (offline they give no value); `to: vault` writes nothing"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				// urfave/cli stops reading flags at the first argument.
				return usageError("stack validate takes one FILE and flags go before it: kontena stack validate [-n NAME] [-v key=value ...] FILE (got %s)", strings.Join(c.Args().Slice(), " "))
			}
			if f := c.String("format"); f != "yaml" && f != "json" {
				return usageError("--format: expected yaml or json, got %q", f)
			}
			req := stack.ValidateRequest{
				File:           c.Args().First(),
				Name:           c.String("name"),
				ValuesFrom:     c.String("values-from"),
				ValuesTo:       c.String("values-to"),
				Format:         c.String("format"),
				DependencyTree: c.Bool("dependency-tree"),
			}
			if v, ok := c.Generic("var").(*valueFlags); ok {
				req.Values = v.list
			}
			// Offline, GRID is "validate" (as Kontena's CLI had it) unless
			// --grid names one; online it is the grid asked.
			req.Options.Grid = c.String("grid")
			if c.Bool("online") {
				s, err := openSession(c)
				if err != nil {
					return err
				}
				req.Options.Grid, req.Options.GridResolver = s.grid, readOnlyGrid{gridResolver{api: s.api}}
			} else if req.Options.Grid == "" {
				req.Options.Grid = "validate"
			}
			if stack.IsTerminal(os.Stdin) {
				req.Options.Prompter = stack.NewTerminalPrompter(os.Stdin, c.App.ErrWriter)
			}
			err := stack.Validate(c.Context, req, c.App.Writer, c.App.ErrWriter)
			var list stack.Errors
			switch {
			case err == nil:
				return nil
			case errors.As(err, &list):
				return cli.Exit("error: the stack file is not valid:\n"+err.Error(), ExitError)
			default:
				return cli.Exit("error: "+err.Error(), ExitError)
			}
		},
	}
}

// valueFlags collects repeated -v flags without splitting on commas.
type valueFlags struct{ list []string }

// urfave/cli copies a flag given by one name to its aliases through
// Serialize and Set; both names share this value, so that copy must
// restore the same list instead of appending to it.
const valueFlagsSerialized = "\x00kontena-values\x00"

func (v *valueFlags) Set(s string) error {
	if rest, ok := strings.CutPrefix(s, valueFlagsSerialized); ok {
		var list []string
		if err := json.Unmarshal([]byte(rest), &list); err != nil {
			return err
		}
		v.list = list
		return nil
	}
	v.list = append(v.list, s)
	return nil
}

func (v *valueFlags) String() string { return strings.Join(v.list, " ") }

// Serialize implements cli.Serializer.
func (v *valueFlags) Serialize() string {
	b, _ := json.Marshal(v.list)
	return valueFlagsSerialized + string(b)
}
