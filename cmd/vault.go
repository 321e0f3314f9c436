package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

func vaultCommand() *cli.Command {
	valueFlags := []cli.Flag{
		&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "read the value from `FILE` (- for standard input)"},
	}
	waitFlags := []cli.Flag{
		&cli.BoolFlag{Name: "no-wait", Usage: "return once the change is stored, without following the services it redeploys"},
		&cli.DurationFlag{Name: "timeout", Value: 5 * time.Minute, Usage: "how long to follow the redeploys"},
	}
	return &cli.Command{
		Name:  "vault",
		Usage: "keep secrets in the grid: sealed with the grid's master key before they enter the Raft log",
		Description: `A secret's value never needs to be on a command line: give it as the argument,
with --file FILE, or on standard input (with no value and no --file). Values are sealed on the
leader before they are stored; only voters hold the key. ls shows names and times, never values;
every read is in the audit log (kontena audit).

Services inject secrets with secrets: [{secret: NAME, name: ENV_OR_FILE, type: env|file}]
in their stack file. Changing a secret's value (update, import) redeploys every service that
uses it, rolling within its deploy.min_health, and follows their progress as stack upgrade does.`,
		Subcommands: []*cli.Command{
			{Name: "write", Usage: "create a secret (refused if it exists; see update)", ArgsUsage: "NAME [VALUE]", Flags: valueFlags,
				Action: withSession(vaultWrite(fsm.SecretCreate))},
			{Name: "update", Usage: "change a secret's value and redeploy the services that use it (--upsert creates it if missing)", ArgsUsage: "NAME [VALUE]",
				Flags:  append(append([]cli.Flag{&cli.BoolFlag{Name: "upsert", Usage: "create the secret if it does not exist"}}, valueFlags...), waitFlags...),
				Action: withSession(vaultWrite(fsm.SecretUpdate))},
			{Name: "read", Usage: "print a secret's value (audited)", ArgsUsage: "NAME", Flags: []cli.Flag{outputFlag}, Action: withSession(vaultRead)},
			{Name: "ls", Aliases: []string{"list"}, Usage: "list secrets: names and times, never values", Flags: []cli.Flag{outputFlag}, Action: withSession(vaultList)},
			{Name: "rm", Aliases: []string{"remove"}, Usage: "remove a secret (refused while a service uses it, unless --force)", ArgsUsage: "NAME",
				Flags:  append([]cli.Flag{&cli.BoolFlag{Name: "force", Usage: "remove it even if services use it: they redeploy without it"}}, waitFlags...),
				Action: withSession(vaultRemove)},
			{Name: "rotate-key", Usage: "replace the grid's master key: every secret and the join token are re-sealed under a new one",
				Description: `The new key is sealed with the old one in the grid's state, so every voter takes it up as
it applies the change, and a voter that was down derives it when it returns. Values sealed
with the old key are replaced in the same Raft entry. Shows the voters taking up the new key.`,
				Flags: append([]cli.Flag{outputFlag}, waitFlags...), Action: withSession(vaultRotateKey)},
			{Name: "export", Usage: "print every secret with its value (each read is audited) as YAML, or JSON with -o json", Flags: []cli.Flag{
				&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "yaml", Usage: "yaml or json"}},
				Action: withSession(vaultExport)},
			{Name: "import", Usage: "write secrets from a YAML or JSON map of name: value (null removes the secret)", ArgsUsage: "[FILE]",
				Description: `FILE (or standard input, or -) maps secret names to values, as export prints them.
A new name is created; a name that exists with another value is left alone unless --force;
a null value removes the secret. Services using a changed secret redeploy, rolling.`,
				Flags:  append([]cli.Flag{&cli.BoolFlag{Name: "force", Usage: "overwrite secrets that exist with another value, and remove ones in use"}}, waitFlags...),
				Action: withSession(vaultImport)},
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
		ch, err := s.api.WriteSecret(c.Context, name, api.SecretWriteRequest{Value: value, Mode: mode})
		if err != nil {
			return err
		}
		fmt.Fprintf(c.App.Writer, "Secret %s saved (updated %s).\n", ch.Name, ch.UpdatedAt.Format(time.RFC3339))
		return followRolling(c, s, []*api.SecretChange{ch})
	}
}

// followRolling says which services the changes redeploy and follows their
// rollout, as stack upgrade does.
func followRolling(c *cli.Context, s *session, changes []*api.SecretChange) error {
	var ids []string
	var since uint64
	for _, ch := range changes {
		if len(ch.Rolling) > 0 {
			fmt.Fprintf(c.App.Writer, "Redeploying, rolling, the services that use secret %s: %s\n", ch.Name, strings.Join(ch.Rolling, ", "))
		}
		for _, id := range ch.Rolling {
			if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
		since = max(since, ch.Index)
	}
	if len(ids) == 0 || c.Bool("no-wait") {
		return nil
	}
	return waitServices(c, s, waitSpec{services: ids, since: since, timeout: c.Duration("timeout")})
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
	ch, err := s.api.RemoveSecret(c.Context, name, c.Bool("force"))
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "Secret %s removed.\n", name)
	return followRolling(c, s, []*api.SecretChange{ch})
}

// vaultExport prints name: value for every secret. Each value is read as
// `vault read` does, so every one has its audit record.
func vaultExport(c *cli.Context, s *session) error {
	format := c.String("output")
	if format != "yaml" && format != "json" {
		return usageError("-o %s: expected yaml or json", format)
	}
	all, err := s.api.Secrets(c.Context)
	if err != nil {
		return err
	}
	out := make(map[string]string, len(all))
	for _, info := range all {
		v, err := s.api.ReadSecret(c.Context, info.Name)
		if err != nil {
			return fmt.Errorf("read secret %s: %w", info.Name, err)
		}
		out[info.Name] = v.Value
	}
	if format == "json" {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	data, err := yaml.Marshal(out)
	if err != nil {
		return err
	}
	_, err = c.App.Writer.Write(data)
	return err
}

// vaultImport writes the secrets of a name: value map (null removes).
func vaultImport(c *cli.Context, s *session) error {
	if c.NArg() > 1 {
		return usageError("expected [FILE], got %d arguments", c.NArg())
	}
	var r io.Reader = c.App.Reader
	if f := c.Args().First(); f != "" && f != "-" {
		fh, err := os.Open(f)
		if err != nil {
			return usageError("%v", err)
		}
		defer fh.Close()
		r = fh
	} else if r == nil {
		r = os.Stdin
	}
	data, err := io.ReadAll(io.LimitReader(r, 64<<20))
	if err != nil {
		return err
	}
	entries, err := parseVaultImport(data)
	if err != nil {
		return usageError("import: %v", err)
	}
	existing, err := s.api.Secrets(c.Context)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, e := range existing {
		have[e.Name] = true
	}
	var changes []*api.SecretChange
	var skipped []string
	for _, e := range entries {
		ch, skip, err := importOne(c, s, e, have[e.Name])
		if err != nil {
			return fmt.Errorf("import secret %s: %w", e.Name, err)
		}
		if skip {
			skipped = append(skipped, e.Name)
		}
		if ch != nil {
			changes = append(changes, ch)
		}
	}
	if len(skipped) > 0 {
		fmt.Fprintf(c.App.ErrWriter, "warning: left alone (they exist with another value; --force overwrites): %s\n", strings.Join(skipped, ", "))
	}
	return followRolling(c, s, changes)
}

// importOne writes, removes or skips one entry.
func importOne(c *cli.Context, s *session, e vaultEntry, exists bool) (ch *api.SecretChange, skipped bool, err error) {
	switch {
	case e.Value == nil && !exists:
		return nil, false, nil
	case e.Value == nil:
		ch, err = s.api.RemoveSecret(c.Context, e.Name, c.Bool("force"))
		if err == nil {
			fmt.Fprintf(c.App.Writer, "Secret %s removed.\n", e.Name)
		}
		return ch, false, err
	case exists:
		cur, err := s.api.ReadSecret(c.Context, e.Name)
		if err != nil {
			return nil, false, err
		}
		if cur.Value == *e.Value {
			return nil, false, nil
		}
		if !c.Bool("force") {
			return nil, true, nil
		}
	}
	mode := fsm.SecretCreate
	if exists {
		mode = fsm.SecretUpdate
	}
	ch, err = s.api.WriteSecret(c.Context, e.Name, api.SecretWriteRequest{Value: *e.Value, Mode: mode})
	if err == nil {
		fmt.Fprintf(c.App.Writer, "Secret %s saved.\n", e.Name)
	}
	return ch, false, err
}

// vaultEntry is one line of an import: a nil value removes the secret.
type vaultEntry struct {
	Name  string
	Value *string
}

// parseVaultImport reads a YAML (or JSON, which is YAML) map of secret
// names to scalar values, in the file's order.
func parseVaultImport(data []byte) ([]vaultEntry, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: expected a map of secret names to values", m.Line)
	}
	var out []vaultEntry
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if err := fsm.CheckSecretName(k.Value); err != nil {
			return nil, fmt.Errorf("line %d: %w", k.Line, err)
		}
		e := vaultEntry{Name: k.Value}
		switch {
		case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
		case v.Kind == yaml.ScalarNode:
			val := v.Value
			e.Value = &val
		default:
			return nil, fmt.Errorf("line %d: secret %s: expected a text value or null, found a list or map", v.Line, k.Value)
		}
		out = append(out, e)
	}
	return out, nil
}

// vaultRotateKey rotates the master key and follows the voters taking up
// the new generation.
func vaultRotateKey(c *cli.Context, s *session) error {
	var rot api.KeyRotation
	if _, err := s.api.Do(c.Context, http.MethodPost, "/v1/grid/master-key/rotate", nil, &rot); err != nil {
		return err
	}
	if c.String("output") != "json" {
		fmt.Fprintf(c.App.Writer, "Master key rotated to generation %d: %d secrets and the join token re-sealed.\n", rot.Generation, rot.Secrets)
	}
	if c.Bool("no-wait") {
		return render(c, rot, func(io.Writer) {})
	}
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	last := ""
	for {
		var h api.Health
		_, err := s.api.Do(ctx, http.MethodGet, "/v1/grid/health", nil, &h)
		var behind []string
		for _, v := range h.Voters {
			if v.KeyGeneration < rot.Generation {
				behind = append(behind, v.Name)
			}
		}
		if err == nil && len(behind) == 0 {
			return render(c, rot, func(w io.Writer) { fmt.Fprintln(w, "Every voter holds the new key.") })
		}
		if line := "waiting for: " + strings.Join(behind, ", "); err == nil && line != last && c.String("output") != "json" {
			fmt.Fprintln(c.App.ErrWriter, line)
			last = line
		}
		select {
		case <-ctx.Done():
			return cli.Exit(fmt.Sprintf("error: after %s these voters still hold the old key: %s (they take it up when they return; see `kontena grid health`)", c.Duration("timeout"), strings.Join(behind, ", ")), ExitError)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
