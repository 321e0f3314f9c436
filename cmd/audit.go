package cmd

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kontena-ng/kontena/fsm"
)

func auditLogCommand() *cli.Command {
	return &cli.Command{
		Name:  "audit-log",
		Usage: "who did what, from where, with which role, and the result (grid_admin, master_admin)",
		Description: `   Every change, every login (granted or refused), every refused change, every
   secret read and every exec is an audit record.

   kontena audit-log --user ann@example.com --since 1h --resource stack
   kontena audit-log -o json
   kontena audit-log -o jsonl --tail 0 > audit.jsonl   (JSON lines, for a SIEM)`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "table, json, or jsonl (one record per line)"},
			&cli.IntFlag{Name: "tail", Value: 100, Usage: "show the last N records (0: all kept)"},
			&cli.StringFlag{Name: "user", Usage: "only this user's records"},
			&cli.DurationFlag{Name: "since", Usage: "only records of the last DURATION (1h, 30m)"},
			&cli.StringFlag{Name: "resource", Usage: "only records of this kind (stack, service, secret, user, token, container...) or resource (stack/web)"},
		},
		Action: withSession(func(c *cli.Context, s *session) error {
			q := url.Values{}
			if u := c.String("user"); u != "" {
				q.Set("user", u)
			}
			if r := c.String("resource"); r != "" {
				q.Set("resource", r)
			}
			if d := c.Duration("since"); d > 0 {
				q.Set("after", time.Now().Add(-d).UTC().Format(time.RFC3339))
			}
			var recs []*fsm.AuditRecord
			if _, err := s.api.Do(c.Context, "GET", "/v1/audit?"+q.Encode(), nil, &recs); err != nil {
				return err
			}
			if k := c.Int("tail"); k > 0 && len(recs) > k {
				recs = recs[len(recs)-k:]
			}
			if c.String("output") == "jsonl" {
				enc := json.NewEncoder(c.App.Writer)
				for _, a := range recs {
					if err := enc.Encode(a); err != nil {
						return err
					}
				}
				return nil
			}
			return render(c, recs, func(w io.Writer) {
				row(w, "TIME", "USER", "ROLES", "ACTION", "RESOURCE", "RESULT", "SOURCE")
				for _, a := range recs {
					row(w, a.Time.Local().Format(time.RFC3339), a.User, orDash(strings.Join(a.Roles, ",")), a.Action, orDash(a.Resource),
						shorten(orDash(a.Result), 60), orDash(a.SourceIP))
				}
			})
		}),
	}
}

// shorten cuts s to n characters for a table cell.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("%s...", s[:n-3])
}
