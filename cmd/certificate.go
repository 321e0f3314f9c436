package cmd

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kontena-ng/kontena/api"
)

func certificateCommand() *cli.Command {
	return &cli.Command{
		Name:    "certificate",
		Aliases: []string{"cert"},
		Usage:   "TLS certificates for services and load balancers",
		Description: `   Certificates are kept by subject with their private keys sealed like vault
   secrets. A service gets one as a PEM bundle (chain and key) in an environment
   variable:

     services:
       lb:
         image: kontena/lb:latest
         certificates:
           - subject: shop.example.com
             name: SSL_CERTS
             type: env

   Replacing a certificate redeploys the services that use it, rolling.`,
		Subcommands: []*cli.Command{
			{
				Name: "register", Usage: "make the grid's account at an ACME CA (Let's Encrypt by default; its terms are accepted)", ArgsUsage: "EMAIL",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "directory", Usage: "ACME directory `URL` (default Let's Encrypt's)"},
					&cli.StringFlag{Name: "directory-ca", Usage: "PEM `FILE` of the CA the directory's TLS is checked against (a private CA)"},
					outputFlag,
				},
				Action: withSession(certificateRegister),
			},
			{
				Name: "request", Usage: "get a certificate from the ACME CA: the first domain is the subject, the rest alt names", ArgsUsage: "DOMAIN...",
				Description: `   http-01 (the default): the CA asks every domain for
   /.well-known/acme-challenge/ on port 80, which the grid's load balancers
   answer; such certificates renew by themselves when a third of their life is
   left. dns-01: the command prints the TXT records to create, waits for Enter,
   then completes; without a terminal it stops there and prints the command
   that completes it (--order).`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "type", Value: "http-01", Usage: "challenge: http-01 or dns-01"},
					&cli.StringFlag{Name: "order", Usage: "complete this dns-01 order (once its TXT records exist)"},
					outputFlag,
				},
				Action: withSession(certificateRequest),
			},
			{
				Name: "import", Usage: "bring your own certificate (the subject is its common name)",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "cert", Required: true, Usage: "PEM `FILE` of the certificate (may hold its chain)"},
					&cli.StringFlag{Name: "chain", Usage: "PEM `FILE` of the intermediate certificates"},
					&cli.StringFlag{Name: "key", Required: true, Usage: "PEM `FILE` of the private key"},
					outputFlag,
				},
				Action: withSession(certificateImport),
			},
			{Name: "ls", Aliases: []string{"list"}, Usage: "list certificates", Flags: []cli.Flag{outputFlag}, Action: withSession(certificateList)},
			{Name: "show", Usage: "show a certificate (not its key)", ArgsUsage: "SUBJECT", Flags: []cli.Flag{outputFlag}, Action: withSession(certificateShow)},
			{Name: "export", Usage: "print the chain and the private key (audited)", ArgsUsage: "SUBJECT", Flags: []cli.Flag{outputFlag}, Action: withSession(certificateExport)},
			{Name: "rm", Aliases: []string{"remove"}, Usage: "remove a certificate", ArgsUsage: "SUBJECT",
				Flags:  []cli.Flag{&cli.BoolFlag{Name: "force", Usage: "remove it even if services use it (they redeploy without it)"}},
				Action: withSession(certificateRemove)},
		},
	}
}

func readFlagFile(c *cli.Context, flag string) (string, error) {
	f := c.String(flag)
	if f == "" {
		return "", nil
	}
	b, err := os.ReadFile(f)
	if err != nil {
		return "", usageError("--%s: %v", flag, err)
	}
	return string(b), nil
}

func certificateImport(c *cli.Context, s *session) error {
	var req api.CertificateImportRequest
	var err error
	if req.CertPEM, err = readFlagFile(c, "cert"); err != nil {
		return err
	}
	if req.ChainPEM, err = readFlagFile(c, "chain"); err != nil {
		return err
	}
	if req.KeyPEM, err = readFlagFile(c, "key"); err != nil {
		return err
	}
	var info api.CertificateInfo
	if _, err := s.api.Do(c.Context, http.MethodPost, "/v1/certificates", req, &info); err != nil {
		return err
	}
	return render(c, info, func(w io.Writer) {
		fmt.Fprintf(w, "Certificate %s imported (expires %s).\n", info.Subject, info.ExpiresAt.Local().Format(time.RFC3339))
	})
}

func certificateList(c *cli.Context, s *session) error {
	var certs []api.CertificateInfo
	if _, err := s.api.Do(c.Context, http.MethodGet, "/v1/certificates", nil, &certs); err != nil {
		return err
	}
	return render(c, certs, func(w io.Writer) {
		row(w, "SUBJECT", "ALT NAMES", "EXPIRES", "SOURCE")
		for _, ct := range certs {
			row(w, ct.Subject, orDash(strings.Join(ct.AltNames, ",")), ct.ExpiresAt.Local().Format(time.RFC3339), orDash(ct.Source))
		}
	})
}

func certificateGet(c *cli.Context, s *session, export bool) (*api.CertificateInfo, error) {
	subject, err := oneArg(c, "SUBJECT")
	if err != nil {
		return nil, err
	}
	path := "/v1/certificates/" + url.PathEscape(subject)
	if export {
		path += "/export"
	}
	var info api.CertificateInfo
	_, err = s.api.Do(c.Context, http.MethodGet, path, nil, &info)
	return &info, err
}

func certificateShow(c *cli.Context, s *session) error {
	info, err := certificateGet(c, s, false)
	if err != nil {
		return err
	}
	return render(c, info, func(w io.Writer) {
		row(w, "subject:", info.Subject)
		row(w, "alt names:", orDash(strings.Join(info.AltNames, ", ")))
		row(w, "expires:", info.ExpiresAt.Local().Format(time.RFC3339))
		row(w, "source:", orDash(info.Source))
	})
}

func certificateExport(c *cli.Context, s *session) error {
	info, err := certificateGet(c, s, true)
	if err != nil {
		return err
	}
	return render(c, info, func(w io.Writer) {
		fmt.Fprint(w, strings.TrimRight(info.CertPEM, "\n")+"\n"+info.KeyPEM)
	})
}

func certificateRemove(c *cli.Context, s *session) error {
	subject, err := oneArg(c, "SUBJECT")
	if err != nil {
		return err
	}
	path := "/v1/certificates/" + url.PathEscape(subject)
	if c.Bool("force") {
		path += "?force=true"
	}
	if _, err := s.api.Do(c.Context, http.MethodDelete, path, nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "Certificate %s removed.\n", subject)
	return nil
}

func certificateRegister(c *cli.Context, s *session) error {
	email, err := oneArg(c, "EMAIL")
	if err != nil {
		return err
	}
	req := api.ACMERegisterRequest{Email: email, Directory: c.String("directory")}
	if req.DirectoryCA, err = readFlagFile(c, "directory-ca"); err != nil {
		return err
	}
	var info api.ACMEAccountInfo
	if _, err := s.api.Do(c.Context, http.MethodPost, "/v1/certificates/register", req, &info); err != nil {
		return err
	}
	return render(c, info, func(w io.Writer) {
		fmt.Fprintf(w, "Registered %s at %s (account %s).\n", info.Email, info.Directory, info.URI)
	})
}

func certificateRequest(c *cli.Context, s *session) error {
	if c.NArg() == 0 {
		return usageError("name the domains: the first is the subject")
	}
	req := api.CertificateRequest{Domains: c.Args().Slice(), Type: c.String("type"), Order: c.String("order")}
	fmt.Fprintf(c.App.ErrWriter, "Asking the CA for %s (%s)...\n", strings.Join(req.Domains, ", "), req.Type)
	var res api.CertificateResponse
	if _, err := s.api.Do(c.Context, http.MethodPost, "/v1/certificates/request", req, &res); err != nil {
		return err
	}
	if res.Certificate == nil && len(res.Records) > 0 {
		done := func(w io.Writer) {
			fmt.Fprintln(w, "Create these DNS records:")
			for _, r := range res.Records {
				fmt.Fprintf(w, "  %s %s %q\n", r.Name, r.Type, r.Value)
			}
		}
		if c.String("output") == "json" || !isTerminal(os.Stdin) {
			if err := render(c, res, func(w io.Writer) {
				done(w)
				fmt.Fprintf(w, "then run:\n  kontena certificate request --type dns-01 --order %s %s\n", res.Order, strings.Join(req.Domains, " "))
			}); err != nil {
				return err
			}
			return nil
		}
		done(c.App.Writer)
		fmt.Fprint(c.App.Writer, "Press Enter once they are published... ")
		_, _ = fmt.Fscanln(os.Stdin)
		req.Order = res.Order
		if _, err := s.api.Do(c.Context, http.MethodPost, "/v1/certificates/request", req, &res); err != nil {
			return err
		}
	}
	return render(c, res.Certificate, func(w io.Writer) {
		fmt.Fprintf(w, "Certificate %s issued (expires %s).\n", res.Certificate.Subject, res.Certificate.ExpiresAt.Local().Format(time.RFC3339))
	})
}
