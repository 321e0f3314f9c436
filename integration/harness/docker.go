// Package harness runs real multi-host kontena test grids: every node is a
// container with its own address on a private Docker network and, optionally,
// its own Docker engine inside (Docker-in-Docker). It drives the docker CLI.
package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
)

// dockerCmd runs `docker args...` with stdin (may be nil) and returns its
// stdout. Errors name the command and include its stderr.
func dockerCmd(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	stdout, stderr, err := dockerRun(ctx, stdin, args...)
	if err != nil {
		return stdout, cmdError(args, err, stderr)
	}
	return stdout, nil
}

func dockerRun(ctx context.Context, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdin = stdin
	var o, e bytes.Buffer
	cmd.Stdout = &o
	cmd.Stderr = &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func cmdError(args []string, err error, stderr string) error {
	return fmt.Errorf("docker %s: %w: %s", shortArgs(args), err, strings.TrimSpace(tail(stderr, 2000)))
}

// shortArgs renders a command line for error messages, eliding huge arguments.
func shortArgs(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		if len(a) > 200 {
			a = a[:200] + "..."
		}
		if strings.ContainsAny(a, " \t\n'\"$") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		b.WriteString(a)
	}
	return b.String()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

func exitCode(err error) (int, bool) {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), true
	}
	return 0, false
}
