package cmd

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/cluster"
	"github.com/kontena-ng/kontena/pki"
)

func recoverAdminCommand() *cli.Command {
	return &cli.Command{
		Name:  "recover-admin",
		Usage: "log in as admin with this voter's certificate (root on a voter machine, when no admin can log in)",
		Description: `   Run on a master (voter) machine as root: the node's certificate in its data
   directory asks the grid for a new admin login (the user admin gets the
   master_admin role back, or is made again). Whoever can read a voter's data
   directory holds the grid's keys already; the recovery is in the audit log.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data-dir", Value: "/var/lib/kontena", EnvVars: []string{"KONTENA_DATA_DIR"}, Usage: "the voter's data directory"},
			&cli.StringFlag{Name: "api", Value: net.JoinHostPort("127.0.0.1", strconv.Itoa(cluster.DefaultAPIPort)), Usage: "the voter's API address"},
		},
		Action: recoverAdmin,
	}
}

// voterFiles are what recover-admin reads from a voter's data directory.
type voterFiles struct {
	grid                   string
	caPEM, certPEM, keyPEM []byte
}

func readVoterFiles(dir string) (voterFiles, error) {
	var f voterFiles
	for name, dst := range map[string]*[]byte{"ca.pem": &f.caPEM, "node.pem": &f.certPEM, "node-key.pem": &f.keyPEM} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return f, usageError("%v (run on a voter, as root, with its --data-dir)", err)
		}
		*dst = b
	}
	raw, err := os.ReadFile(filepath.Join(dir, "node.json"))
	if err != nil {
		return f, usageError("%v (run on a voter, as root, with its --data-dir)", err)
	}
	var id struct {
		Grid string `json:"grid"`
	}
	if err := json.Unmarshal(raw, &id); err != nil || id.Grid == "" {
		return f, usageError("%s/node.json names no grid", dir)
	}
	f.grid = id.Grid
	return f, nil
}

func recoverAdmin(c *cli.Context) error {
	f, err := readVoterFiles(c.String("data-dir"))
	if err != nil {
		return err
	}
	kp, err := pki.KeyPair(f.certPEM, f.keyPEM, f.caPEM)
	if err != nil {
		return exitError(err)
	}
	cl, err := api.NewClient([]string{c.String("api")}, f.caPEM, "", &kp)
	if err != nil {
		return exitError(err)
	}
	var res api.LoginResponse
	if _, err := cl.Do(c.Context, "POST", "/v1/login/recover", nil, &res); err != nil {
		return exitError(err)
	}
	cfg, err := loadConfig(c.String("config"))
	if err != nil {
		return exitError(err)
	}
	gc := &gridContext{Name: f.grid, Addresses: []string{api.BaseURL(c.String("api"))}, CACert: string(f.caPEM)}
	saveLogin(gc, &res)
	cfg.Grids[f.grid] = gc
	cfg.Current = f.grid
	if err := cfg.save(); err != nil {
		return exitError(err)
	}
	fmt.Fprintf(c.App.Writer, "Logged in to grid %s as admin (master_admin); the login is saved in %s.\n", f.grid, cfg.path)
	return nil
}
