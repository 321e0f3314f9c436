package cmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kontena-ng/kontena/api"
)

// Exit codes. Scripts can rely on these; they are listed in `kontena --help`.
const (
	ExitOK          = 0
	ExitError       = 1 // the operation failed
	ExitUsage       = 2 // wrong command line
	ExitAuth        = 3 // not authenticated or not allowed
	ExitUnreachable = 4 // no node answered, or no leader
	ExitNotFound    = 5 // the named thing does not exist
	ExitConflict    = 6 // refused because of the current state (e.g. removing an online node, join refused)
	ExitDegraded    = 7 // grid health: warning
	ExitNoQuorum    = 8 // grid health: error
)

const exitCodesHelp = `EXIT CODES:
   0 ok, 1 failed, 2 usage error, 3 not authenticated or not allowed, 4 no node reachable or no leader,
   5 not found, 6 refused in the current state, 7 grid health warning, 8 grid health error (no quorum)`

// exitError maps an error to the exit code scripts see.
func exitError(err error) error {
	if err == nil {
		return nil
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return err
	}
	code := ExitError
	var ae *api.Error
	var ue *api.UnreachableError
	switch {
	case errors.As(err, &ue):
		code = ExitUnreachable
	case errors.As(err, &ae):
		switch ae.Code {
		case api.CodeUnauthorized, api.CodeForbidden:
			code = ExitAuth
		case api.CodeNotFound:
			code = ExitNotFound
		case api.CodeConflict, api.CodeJoinRefused:
			code = ExitConflict
		case api.CodeUnavailable:
			code = ExitUnreachable
		case api.CodeInvalid:
			code = ExitUsage
		}
	}
	return cli.Exit("error: "+err.Error(), code)
}

func usageError(format string, args ...any) error {
	return cli.Exit("error: "+fmt.Sprintf(format, args...), ExitUsage)
}

var outputFlag = &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "output format: table or json"}

// render prints v as JSON with -o json, else calls table.
func render(c *cli.Context, v any, table func(w io.Writer)) error {
	switch c.String("output") {
	case "json":
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "table", "":
		tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
		table(tw)
		return tw.Flush()
	default:
		return usageError("-o %q: expected table or json", c.String("output"))
	}
}

func row(w io.Writer, cols ...any) {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = fmt.Sprint(c)
	}
	fmt.Fprintln(w, strings.Join(parts, "\t"))
}

// ago formats a time for tables: "12s ago".
func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String() + " ago"
}

func orDash[S ~string](s S) string {
	if s == "" {
		return "-"
	}
	return string(s)
}
