package cmd

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/kontena-ng/kontena/api"
)

const execHelp = `The command runs in the container on whatever node runs it; the CLI may talk to any node
(a worker passes the session to a master, which passes it to the container's node).
Put the command after --, so that its flags are not taken for kontena's.

Without -i the command gets no input. -i sends this CLI's stdin (a pipe or a file works:
'echo hi | kontena ... -i -- cat'). -t allocates a terminal in the container (so stdout and
stderr arrive merged, with CRLF line ends); when this CLI's stdin is a terminal too, -it
switches it to raw mode (keys like Ctrl-C go to the container) and forwards its size as it
changes. -t with stdin not a terminal still allocates the container's terminal (unlike
'docker exec -it', which refuses).

The exit code is the command's. kontena's own failures keep their codes (see EXIT CODES
in 'kontena --help'), e.g. 5 for an unknown container, 4 when its node is offline.`

// execCommand is `container exec`, `service exec` and the top-level `exec`.
// service selects the STACK/SERVICE form with --instance.
func execCommand(name, usage string, service bool) *cli.Command {
	flags := []cli.Flag{
		&cli.BoolFlag{Name: "interactive", Aliases: []string{"i"}, Usage: "send stdin to the command"},
		&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "allocate a terminal in the container"},
	}
	argsUsage := "NAME -- COMMAND [ARG...]"
	examples := `
   kontena container exec shop.web-2 -- cat /etc/hosts
   kontena container exec -it shop.web-2 -- sh
   echo 'select 1' | kontena container exec -i shop.db-1 -- psql -U app`
	if service {
		flags = append(flags, &cli.IntFlag{Name: "instance", Value: 1, Usage: "instance number (the <n> of <stack>.<service>-<n>)"})
		argsUsage = "STACK/SERVICE -- COMMAND [ARG...]"
		examples = `
   kontena service exec shop/web -- hostname
   kontena service exec shop/web --instance 3 -it -- sh
   kontena service exec shop/db -- sh -c 'exit 3'; echo $?   # 3`
	}
	return &cli.Command{
		Name: name, Usage: usage, ArgsUsage: argsUsage,
		Description:            execHelp + "\n" + examples,
		Flags:                  flags,
		UseShortOptionHandling: true, // -it
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return usageError("%v (the command goes after --: kontena %s %s)", err, c.Command.HelpName, argsUsage)
		},
		Action: withSession(func(c *cli.Context, s *session) error {
			target, cmd, err := execArgs(c.Args().Slice(), service, c.Int("instance"))
			if err != nil {
				return err
			}
			return runExec(c, s, target, cmd)
		}),
	}
}

// execArgs splits `NAME [--] CMD...` (or STACK/SERVICE) into the container
// name and the command.
func execArgs(args []string, service bool, instance int) (string, []string, error) {
	what := "NAME"
	if service {
		what = "STACK/SERVICE"
	}
	if len(args) == 0 {
		return "", nil, usageError("expected %s -- COMMAND [ARG...]", what)
	}
	target, cmd := args[0], args[1:]
	if len(cmd) > 0 && cmd[0] == "--" {
		cmd = cmd[1:]
	}
	if len(cmd) == 0 || cmd[0] == "" {
		return "", nil, usageError("no command to run: expected %s -- COMMAND [ARG...]", what)
	}
	if service {
		st, svc, ok := strings.Cut(target, "/")
		if !ok || st == "" || svc == "" || strings.Contains(svc, "/") {
			return "", nil, usageError("service %q: expected STACK/SERVICE", target)
		}
		if instance < 1 {
			return "", nil, usageError("--instance %d: instances are numbered from 1", instance)
		}
		target = st + "." + svc + "-" + strconv.Itoa(instance)
	} else if strings.Contains(target, "/") {
		return "", nil, usageError("%q is a service, not a container: use `kontena service exec %s -- ...` or a container name from `kontena container ls`", target, target)
	}
	return target, cmd, nil
}

// runExec runs one exec session and returns the command's exit code as
// the CLI's.
func runExec(c *cli.Context, s *session, name string, cmd []string) error {
	opts := api.ExecOptions{Cmd: cmd, Stdin: c.Bool("interactive"), Tty: c.Bool("tty")}
	stdin := c.App.Reader
	if stdin == nil {
		stdin = os.Stdin
	}
	inFd, inTerm := terminalFd(stdin)
	outFd, outTerm := terminalFd(c.App.Writer)
	if opts.Tty && outTerm {
		if w, h, err := term.GetSize(outFd); err == nil {
			opts.Cols, opts.Rows = clampSize(w), clampSize(h)
		}
	}
	sess, err := s.api.Exec(c.Context, name, opts)
	if err != nil {
		return err
	}
	defer sess.Close()
	if opts.Tty && opts.Stdin && inTerm {
		old, err := term.MakeRaw(inFd)
		if err != nil {
			return fmt.Errorf("switch the terminal to raw mode: %w", err)
		}
		defer func() { _ = term.Restore(inFd, old) }()
	}
	if opts.Tty && outTerm {
		stop := onResize(func() {
			if w, h, err := term.GetSize(outFd); err == nil {
				_ = sess.Resize(clampSize(w), clampSize(h))
			}
		})
		defer stop()
	}
	if opts.Stdin {
		go func() { _ = sess.CopyStdin(stdin) }()
	}
	code, err := sess.Wait(c.App.Writer, c.App.ErrWriter)
	if err != nil {
		return err
	}
	if code == 0 {
		return nil
	}
	if code < 0 || code > 255 {
		code = ExitError
	}
	return cli.Exit("", code)
}

// terminalFd tells whether v is a terminal, and its descriptor.
func terminalFd(v any) (int, bool) {
	f, ok := v.(interface{ Fd() uintptr })
	if !ok {
		return 0, false
	}
	fd := int(f.Fd())
	return fd, term.IsTerminal(fd)
}

func clampSize(v int) uint16 {
	return uint16(max(0, min(v, 65535)))
}

// onResize calls fn whenever the terminal is resized, until stop.
func onResize(fn func()) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch, unsubscribe := resizeSignals()
	go func() {
		for {
			select {
			case <-ch:
				fn()
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() {
		unsubscribe()
		cancel()
	}
}
