package cmd

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/internal/atomicfile"
	"github.com/kontena-ng/kontena/pki"
)

func gridCommand() *cli.Command {
	return &cli.Command{
		Name:  "grid",
		Usage: "show the grid, its health and join token; switch between grids",
		Subcommands: []*cli.Command{
			{Name: "show", Usage: "show the grid and its masters", Flags: []cli.Flag{outputFlag}, Action: withSession(gridShow)},
			{
				Name: "update", Usage: "change grid settings: default affinity, offline grace, host access, single sign-on",
				Description: `   Services without affinity of their own are placed by the grid's default
   affinity (same forms as a stack file's affinity); the offline grace is how
   long a node may be offline before its instances move (0s: each strategy's
   own, random 30s, ha 2m, daemon 10m). Changes apply at the next placement.

   kontena grid update --default-affinity label==region=eu --default-affinity label!=disk=hdd
   kontena grid update --clear-default-affinity
   kontena grid update --offline-grace 1m

   Services that can take over their host (privileged, cap_add, pid: host,
   network_mode: host, host-path volumes) are installed only by a grid_admin,
   unless --allow-host-access lets developers install them too.

   Single sign-on (master_admin only): users log in with ` + "`kontena login --oidc`" + `
   through an OpenID Connect provider; the role claim's values map to roles.

   kontena grid update --oidc-issuer https://idp.example.com --oidc-client-id kontena \
     --oidc-client-secret-file secret.txt --oidc-role-claim groups \
     --oidc-role-map 'ops=grid_admin,dev=developer'
   kontena grid update --oidc-issuer ''    # single sign-on off`,
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "allow-host-access", Usage: "let developers install services that can take over their host (--allow-host-access=false: only grid admins)"},
					&cli.StringFlag{Name: "oidc-issuer", Usage: "OpenID Connect issuer URL ('' turns single sign-on off)"},
					&cli.StringFlag{Name: "oidc-client-id", Usage: "the grid's client ID at the provider"},
					&cli.StringFlag{Name: "oidc-client-secret-file", Usage: "file holding the client secret (sealed by the grid)"},
					&cli.StringFlag{Name: "oidc-role-claim", Value: "groups", Usage: "ID token claim whose values map to roles"},
					&cli.StringFlag{Name: "oidc-role-map", Usage: "claim value=role pairs, comma separated: 'ops=grid_admin,dev=developer'"},
					&cli.StringFlag{Name: "oidc-scopes", Usage: "scopes to ask for besides openid, email and profile, such as 'groups offline_access'"},
					&cli.StringSliceFlag{Name: "default-affinity", Usage: "affinity rule for services without one (repeat for several)"},
					&cli.BoolFlag{Name: "clear-default-affinity", Usage: "remove the default affinity"},
					&cli.StringFlag{Name: "offline-grace", Usage: "grace before instances of an offline node move, for every strategy (0s: their own)"},
					outputFlag,
				},
				Action: withSession(gridUpdate),
			},
			{
				Name: "health", Usage: "ok, warning (a voter is down) or error (no quorum)",
				Description: "Exit code 0 for ok, 7 for warning, 8 for error, so scripts can alert on it.",
				Flags:       []cli.Flag{outputFlag}, Action: gridHealth,
			},
			{
				Name: "token", Usage: "print the join token (--rotate makes a new one; the old one stops working)",
				Flags:  []cli.Flag{&cli.BoolFlag{Name: "rotate", Usage: "replace the join token"}, outputFlag},
				Action: withSession(gridToken),
			},
			{
				Name: "backup", Usage: "write the grid's whole state to FILE (secrets stay sealed); prints the backup key, once", ArgsUsage: "FILE",
				Description: `The file holds the state at one index, read from the leader after a majority confirmed it:
nodes, users, tokens, stacks, services, the vault (sealed). The voter keys (CA, master and
gossip keys) in it are sealed with a new backup key that is printed, or written to --key-file,
and is not in the file: keep the two apart. Restore on a fresh machine with
  kontena up --restore FILE --restore-key-file KEYFILE [--name NODE] --advertise IP`,
				Flags:  []cli.Flag{&cli.StringFlag{Name: "key-file", Usage: "write the backup key to `FILE` (0600) instead of printing it"}},
				Action: withSession(gridBackup),
			},
			{
				Name: "lock", Usage: "lock the grid: the master key leaves the voters' disks, sealed with an unlock key shown once",
				Description: `Like Swarm's autolock: after this a voter that restarts serves no secrets (vault,
secrets in assignments, joins) until ` + "`kontena grid unlock`" + ` gives it the unlock key. Its
containers, DNS and load balancer keep running from their last state meanwhile.
Keep the unlock key somewhere safe: a grid whose voters all restart cannot open its
vault without it. ` + "`kontena grid unlock-key --rotate`" + ` replaces it.`,
				Flags: []cli.Flag{outputFlag}, Action: withSession(gridLock(false)),
			},
			{
				Name: "unlock", Usage: "give every locked voter the unlock key (read from --key-file or standard input)",
				Flags:  []cli.Flag{&cli.StringFlag{Name: "key-file", Usage: "read the unlock key from `FILE` (default: standard input)"}, outputFlag},
				Action: withSession(gridUnlock),
			},
			{
				Name: "unlock-key", Usage: "replace the unlock key of a locked grid (--rotate); the old one stops working",
				Description: "The unlock key is shown once, by `grid lock` or `grid unlock-key --rotate`; no node keeps it.",
				Flags:       []cli.Flag{&cli.BoolFlag{Name: "rotate", Usage: "make a new unlock key"}, outputFlag},
				Action: withSession(func(c *cli.Context, s *session) error {
					if !c.Bool("rotate") {
						return usageError("no node keeps the unlock key, so it cannot be shown again: `kontena grid unlock-key --rotate` makes a new one")
					}
					return gridLock(true)(c, s)
				}),
			},
			{Name: "events", Usage: "recent grid events (joins, status changes, removals)", Flags: []cli.Flag{outputFlag}, Action: withSession(gridEvents)},
			{Name: "ls", Aliases: []string{"list"}, Usage: "list the grids in the CLI config", Flags: []cli.Flag{outputFlag}, Action: gridList},
			{Name: "use", Usage: "make a grid the current one", ArgsUsage: "GRID", Action: gridUse},
			recoverAdminCommand(),
			{
				Name: "login", Usage: "add a grid to the CLI config", ArgsUsage: "URL",
				Description: "The CA digest (printed by `kontena up`, `kontena grid show` and `kontena user invite`)\n" +
					"pins the grid's CA: the CLI refuses a server that does not hold it. Log in with an\n" +
					"invite code (--code), single sign-on (--oidc), or a token (--token, KONTENA_TOKEN, or\n" +
					"standard input; a refresh token ktr_... is traded for an access token).",
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "name", Usage: "name of the grid context (default: the grid's name)"},
					&cli.StringFlag{Name: "ca-digest", Required: true, Usage: "SHA-256 of the grid CA certificate"},
					&cli.StringFlag{Name: "token", EnvVars: []string{"KONTENA_TOKEN"}, Usage: "API or refresh token"},
				}, loginFlags()...),
				Action: gridLogin,
			},
		},
	}
}

func gridUpdate(c *cli.Context, s *session) error {
	var req api.GridUpdateRequest
	switch {
	case c.Bool("clear-default-affinity") && c.IsSet("default-affinity"):
		return usageError("--default-affinity and --clear-default-affinity exclude each other")
	case c.Bool("clear-default-affinity"):
		req.DefaultAffinity = &[]string{}
	case c.IsSet("default-affinity"):
		rules := c.StringSlice("default-affinity")
		req.DefaultAffinity = &rules
	}
	if c.IsSet("offline-grace") {
		g := c.String("offline-grace")
		req.OfflineGrace = &g
	}
	if c.IsSet("allow-host-access") {
		b := c.Bool("allow-host-access")
		req.AllowHostAccess = &b
	}
	if c.IsSet("oidc-issuer") {
		o, err := oidcSettingsFlags(c)
		if err != nil {
			return err
		}
		req.OIDC = o
	}
	if req.DefaultAffinity == nil && req.OfflineGrace == nil && req.AllowHostAccess == nil && req.OIDC == nil {
		return usageError("nothing to change: give --default-affinity, --clear-default-affinity, --offline-grace, --allow-host-access or --oidc-issuer")
	}
	var g api.GridInfo
	if _, err := s.api.Do(c.Context, http.MethodPatch, "/v1/grid", req, &g); err != nil {
		return err
	}
	return render(c, g, func(w io.Writer) {
		row(w, "default affinity:", orDash(strings.Join(g.DefaultAffinity, ", ")))
		row(w, "offline grace:", offlineGrace(g))
		row(w, "host access:", hostAccess(g.AllowHostAccess))
		if g.OIDC != nil {
			row(w, "single sign-on:", g.OIDC.Issuer+" (client "+g.OIDC.ClientID+", claim "+g.OIDC.RoleClaim+")")
		}
	})
}

// oidcSettingsFlags reads the --oidc-* flags of grid update.
func oidcSettingsFlags(c *cli.Context) (*api.OIDCSettings, error) {
	o := &api.OIDCSettings{Issuer: c.String("oidc-issuer")}
	if o.Issuer == "" {
		return o, nil
	}
	o.ClientID, o.RoleClaim = c.String("oidc-client-id"), c.String("oidc-role-claim")
	o.Scopes = strings.FieldsFunc(c.String("oidc-scopes"), func(r rune) bool { return r == ' ' || r == ',' })
	if o.ClientID == "" || c.String("oidc-role-map") == "" {
		return nil, usageError("--oidc-issuer needs --oidc-client-id and --oidc-role-map (such as 'ops=grid_admin,dev=developer')")
	}
	o.RoleMap = map[string]string{}
	for _, pair := range strings.Split(c.String("oidc-role-map"), ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || k == "" || v == "" {
			return nil, usageError("--oidc-role-map %q: expected value=role pairs, comma separated", pair)
		}
		o.RoleMap[k] = v
	}
	if f := c.String("oidc-client-secret-file"); f != "" {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, usageError("--oidc-client-secret-file: %v", err)
		}
		o.ClientSecret = strings.TrimSpace(string(data))
	}
	return o, nil
}

// offlineGrace says how long instances of an offline node wait to move.
func offlineGrace(g api.GridInfo) string {
	if g.OfflineGrace == "" {
		return "per strategy (random 30s, ha 2m, daemon 10m)"
	}
	return g.OfflineGrace
}

func gridShow(c *cli.Context, s *session) error {
	g, err := s.api.Grid(c.Context)
	if err != nil {
		return err
	}
	return render(c, g, func(w io.Writer) {
		row(w, "name:", g.Name)
		row(w, "subnet:", g.Subnet)
		row(w, "supernet:", g.Supernet)
		row(w, "initial size:", g.InitialSize)
		row(w, "nodes:", g.Nodes)
		row(w, "leader:", orDash(g.Leader))
		row(w, "ca digest:", g.CADigest)
		row(w, "created:", g.CreatedAt.Format(time.RFC3339))
		row(w, "default affinity:", orDash(strings.Join(g.DefaultAffinity, ", ")))
		row(w, "offline grace:", offlineGrace(*g))
		row(w, "host access:", hostAccess(g.AllowHostAccess))
		sso := "-"
		if g.OIDC != nil {
			sso = g.OIDC.Issuer + " (client " + g.OIDC.ClientID + ", claim " + g.OIDC.RoleClaim + ")"
		}
		row(w, "single sign-on:", sso)
		row(w, "masters:", "")
		for _, v := range g.Voters {
			lead := ""
			if v.Leader {
				lead = " (leader)"
			}
			row(w, "", fmt.Sprintf("%s %s %s%s", v.Name, v.APIAddr, v.Status, lead))
		}
		row(w, "overlay:", fmt.Sprintf("%s, %d VPN peers; handshakes as seen from %s", g.Subnet, g.VPNPeers, orDash(g.SeenFrom)))
		for _, o := range g.Overlay {
			switch {
			case !o.Enabled:
				row(w, "", fmt.Sprintf("%s %s off", o.Name, orDash(o.Subnet)))
			case o.Name == g.SeenFrom:
				row(w, "", fmt.Sprintf("%s %s in %s (this node)", o.Name, o.Address, o.Subnet))
			case o.LastHandshake.IsZero():
				row(w, "", fmt.Sprintf("%s %s in %s, no handshake yet", o.Name, o.Address, o.Subnet))
			default:
				row(w, "", fmt.Sprintf("%s %s in %s, handshake %s", o.Name, o.Address, o.Subnet, ago(o.LastHandshake)))
			}
		}
	})
}

func gridHealth(c *cli.Context) error {
	s, err := openSession(c)
	if err != nil {
		return err
	}
	h, err := s.api.Health(c.Context)
	if err != nil {
		return exitError(err)
	}
	err = render(c, h, func(w io.Writer) {
		row(w, "health:", h.Status)
		row(w, "leader:", orDash(h.Leader))
		row(w, "quorum:", fmt.Sprintf("%d of %d voters", h.Quorum, len(h.Voters)))
		for _, v := range h.Voters {
			lead := ""
			if v.Leader {
				lead = ", leader"
			}
			row(w, "voter:", fmt.Sprintf("%s %s %s%s, applied %d, %d behind", v.Name, v.Addr, v.Status, lead, v.AppliedIndex, v.Lag))
		}
		for _, m := range h.Messages {
			row(w, "note:", m)
		}
	})
	if err != nil {
		return err
	}
	switch h.Status {
	case api.HealthWarning:
		return cli.Exit("", ExitDegraded)
	case api.HealthError:
		return cli.Exit("", ExitNoQuorum)
	}
	return nil
}

func gridToken(c *cli.Context, s *session) error {
	tok, err := s.api.JoinToken(c.Context, c.Bool("rotate"))
	if err != nil {
		return err
	}
	return render(c, api.JoinTokenResponse{Token: tok}, func(w io.Writer) { fmt.Fprintln(w, tok) })
}

func gridEvents(c *cli.Context, s *session) error {
	evs, err := s.api.Events(c.Context, 0)
	if err != nil {
		return err
	}
	return render(c, evs, func(w io.Writer) {
		row(w, "TIME", "TYPE", "RESOURCE", "MESSAGE")
		for _, e := range evs {
			row(w, e.Time.Format(time.RFC3339), e.Type, e.Resource, e.Message)
		}
	})
}

type gridListEntry struct {
	Name      string   `json:"name"`
	Current   bool     `json:"current"`
	Addresses []string `json:"addresses"`
}

func gridList(c *cli.Context) error {
	cfg, err := loadConfig(c.String("config"))
	if err != nil {
		return exitError(err)
	}
	var out []gridListEntry
	for _, n := range cfg.names() {
		out = append(out, gridListEntry{Name: n, Current: n == cfg.Current, Addresses: cfg.Grids[n].Addresses})
	}
	return render(c, out, func(w io.Writer) {
		row(w, "NAME", "CURRENT", "MASTERS")
		for _, e := range out {
			cur := ""
			if e.Current {
				cur = "*"
			}
			row(w, e.Name, cur, strings.Join(e.Addresses, ","))
		}
	})
}

func gridUse(c *cli.Context) error {
	name, err := oneArg(c, "GRID")
	if err != nil {
		return err
	}
	cfg, err := loadConfig(c.String("config"))
	if err != nil {
		return exitError(err)
	}
	if _, ok := cfg.Grids[name]; !ok {
		return cli.Exit(fmt.Sprintf("error: grid %q is not in the CLI config (known: %v)", name, cfg.names()), ExitNotFound)
	}
	cfg.Current = name
	if err := cfg.save(); err != nil {
		return exitError(err)
	}
	fmt.Fprintf(c.App.Writer, "Using grid %s.\n", name)
	return nil
}

// gridLogin fetches the CA through a pinned TLS handshake, checks the token
// with whoami, and stores the context.
func gridLogin(c *cli.Context) error {
	url, err := oneArg(c, "URL")
	if err != nil {
		return err
	}
	token := c.String("token")
	if token == "" && c.String("code") == "" && !c.Bool("oidc") {
		fmt.Fprint(c.App.ErrWriter, "API token: ")
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && line == "" {
			return usageError("no token given: use --token, KONTENA_TOKEN or standard input")
		}
		token = strings.TrimSpace(line)
	}
	var ca *x509.Certificate
	tr := &http.Transport{TLSClientConfig: pki.PinnedConfig(c.String("ca-digest"), func(cert *x509.Certificate) { ca = cert })}
	ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, api.BaseURL(url)+"/v1/whoami", nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		if errors.Is(err, pki.ErrCAMismatch) {
			return cli.Exit("error: "+pki.ErrCAMismatch.Error()+" (check --ca-digest)", ExitAuth)
		}
		return cli.Exit("error: "+err.Error(), ExitUnreachable)
	}
	resp.Body.Close()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
	cl, err := api.NewClient([]string{url}, caPEM, "", nil)
	if err != nil {
		return exitError(err)
	}
	gc := &gridContext{Token: token, CACert: string(caPEM)}
	var res *api.LoginResponse
	switch {
	case c.String("code") != "" || c.Bool("oidc"):
		res, err = login(c, cl)
	case strings.HasPrefix(token, "ktr_"):
		res, err = cl.Login(c.Context, api.LoginRequest{RefreshToken: token})
	}
	if err != nil {
		return exitError(err)
	}
	if res != nil {
		saveLogin(gc, res)
	}
	cl = cl.WithToken(gc.Token)
	who, err := cl.WhoAmI(c.Context)
	if err != nil {
		return exitError(err)
	}
	// A user_admin may not read the grid: its name then comes from whoami.
	g, err := cl.Grid(c.Context)
	if err != nil && !api.IsCode(err, api.CodeForbidden) {
		return exitError(err)
	}
	name := c.String("name")
	if name == "" {
		name = who.Grid
	}
	cfg, err := loadConfig(c.String("config"))
	if err != nil {
		return exitError(err)
	}
	var addrs []string
	for _, v := range gridVoters(g, err) {
		addrs = append(addrs, api.BaseURL(v.APIAddr))
	}
	gc.Name, gc.Addresses, gc.User = name, mergeAddresses(addrs, []string{api.BaseURL(url)}), who.User
	cfg.Grids[name] = gc
	cfg.Current = name
	if err := cfg.save(); err != nil {
		return exitError(err)
	}
	fmt.Fprintf(c.App.Writer, "Logged in to grid %s as %s (roles %v); it is now the current grid.\n", name, who.User, who.Roles)
	return nil
}

// confirm asks on a terminal; without one it refuses, so scripts must say
// --force.
func confirm(c *cli.Context, prompt, want string) (bool, error) {
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		return false, usageError("not a terminal: add --force to confirm")
	}
	fmt.Fprint(c.App.ErrWriter, prompt)
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	return strings.TrimSpace(line) == want, nil
}

// confirmRemoval asks the user to type name unless --force was given; a
// wrong answer aborts with ExitError.
func confirmRemoval(c *cli.Context, question, name string) error {
	if c.Bool("force") {
		return nil
	}
	ok, err := confirm(c, question+" Type its name to confirm: ", name)
	if err != nil {
		return err
	}
	if !ok {
		return cli.Exit("aborted", ExitError)
	}
	return nil
}

// gridLock locks the grid (or rotates its unlock key) and shows the key.
func gridLock(rotate bool) func(*cli.Context, *session) error {
	return func(c *cli.Context, s *session) error {
		path := "/v1/grid/lock"
		if rotate {
			path = "/v1/grid/unlock-key/rotate"
		}
		var out api.UnlockKey
		if _, err := s.api.Do(c.Context, http.MethodPost, path, nil, &out); err != nil {
			return err
		}
		return render(c, out, func(w io.Writer) {
			fmt.Fprintf(w, "Unlock key (shown once; keep it safe):\n\n  %s\n\n", out.Key)
			fmt.Fprintln(w, "A voter that restarts serves no secrets until `kontena grid unlock` gives it this key.")
		})
	}
}

// gridUnlock sends the unlock key to every voter; the locked ones take
// the master key it opens.
func gridUnlock(c *cli.Context, s *session) error {
	var r io.Reader = c.App.Reader
	if f := c.String("key-file"); f != "" {
		data, err := os.ReadFile(f)
		if err != nil {
			return usageError("--key-file: %v", err)
		}
		r = strings.NewReader(string(data))
	} else if r == nil {
		r = os.Stdin
	}
	data, err := io.ReadAll(io.LimitReader(r, 4096))
	if err != nil {
		return err
	}
	key := strings.TrimSpace(string(data))
	if key == "" {
		return usageError("no unlock key: give it on standard input or with --key-file")
	}
	addrs := s.ctx.Addresses
	if g, err := s.api.Grid(c.Context); err == nil {
		addrs = addrs[:0:0]
		for _, v := range g.Voters {
			addrs = append(addrs, v.APIAddr)
		}
	}
	var results []api.UnlockResult
	var failed []string
	for _, addr := range addrs {
		cl := s.api.At(addr)
		var res api.UnlockResult
		if _, err := cl.Do(c.Context, http.MethodPost, "/v1/grid/unlock", api.UnlockRequest{Key: key}, &res); err != nil {
			if api.IsCode(err, api.CodeForbidden) || api.IsCode(err, api.CodeInvalid) {
				return err // a wrong key is wrong everywhere
			}
			failed = append(failed, fmt.Sprintf("%s: %v", addr, err))
			continue
		}
		results = append(results, res)
	}
	if err := render(c, results, func(w io.Writer) {
		row(w, "VOTER", "STATE")
		for _, res := range results {
			state := "unlocked"
			if res.Already {
				state = "was not locked"
			}
			row(w, res.Node, state)
		}
	}); err != nil {
		return err
	}
	if len(failed) > 0 {
		return cli.Exit("error: not every voter answered (run unlock again once they do): "+strings.Join(failed, "; "), ExitUnreachable)
	}
	return nil
}

// gridBackup writes a backup file and shows (or saves) its key.
func gridBackup(c *cli.Context, s *session) error {
	file, err := oneArg(c, "FILE")
	if err != nil {
		return err
	}
	var out api.BackupResponse
	if _, err := s.api.Do(c.Context, http.MethodGet, "/v1/grid/backup", nil, &out); err != nil {
		return err
	}
	data, err := json.MarshalIndent(out.Backup, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(file, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	fmt.Fprintf(c.App.Writer, "Backup of grid %s at index %d written to %s (%d bytes).\n", out.Backup.Grid, out.Backup.Index, file, len(data))
	if kf := c.String("key-file"); kf != "" {
		if err := atomicfile.Write(kf, []byte(out.Key+"\n"), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", kf, err)
		}
		fmt.Fprintf(c.App.Writer, "Backup key written to %s: keep it apart from the backup.\n", kf)
		return nil
	}
	fmt.Fprintf(c.App.Writer, "Backup key (shown once; keep it apart from the backup):\n\n  %s\n", out.Key)
	return nil
}

// gridVoters are the voters of a grid read (none if it was refused).
func gridVoters(g *api.GridInfo, err error) []api.VoterInfo {
	if err != nil || g == nil {
		return nil
	}
	return g.Voters
}

// hostAccess says who may install services that can take over their host.
func hostAccess(developers bool) string {
	if developers {
		return "grid admins and developers"
	}
	return "grid admins only"
}
