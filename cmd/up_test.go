package cmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kontena-ng/kontena/cluster"
)

// lockedBuffer is a bytes.Buffer that `kontena up` may write while the test
// reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// `kontena up` writing to a file or pipe (a daemon's log) prints neither the
// join token nor the admin token, and says how to get the join token.
func TestUpOutputToLogHasNoTokens(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cli.json")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var out, errOut lockedBuffer
	go func() {
		done <- RunContext(ctx, []string{"kontena", "--config", cfg, "up", "--data-dir", filepath.Join(dir, "data"), "--name", "solo",
			"--grid", "unit", "--bind", "127.0.0.1", "--api-port", fmt.Sprint(freePort(t)), "--raft-port", fmt.Sprint(freePort(t)),
			"--gossip-port", fmt.Sprint(freePort(t)), "--log-level", "debug"}, &out, &errOut)
	}()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("kontena up did not stop")
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "Manage the grid from another machine") {
		select {
		case code := <-done:
			t.Fatalf("kontena up exited %d: %s", code, errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("node did not start: %s", errOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	joinToken, stderr, code := run(t, nil, "--config", cfg, "grid", "token")
	joinToken = strings.TrimSpace(joinToken)
	if code != 0 || !strings.HasPrefix(joinToken, "K1.") {
		t.Fatalf("grid token: %d %q %s", code, joinToken, stderr)
	}
	conf, err := loadConfig(cfg)
	if err != nil || conf.Grids["unit"] == nil || conf.Grids["unit"].Token == "" {
		t.Fatalf("no admin token in the CLI config: %v", err)
	}
	adminToken := conf.Grids["unit"].Token
	secret := joinToken[strings.LastIndex(joinToken, ".")+1:]
	for name, s := range map[string]string{"stdout": out.String(), "stderr": errOut.String()} {
		for what, tok := range map[string]string{"join token": joinToken, "join secret": secret, "admin token": adminToken} {
			if strings.Contains(s, tok) {
				t.Errorf("%s shows the %s:\n%s", name, what, s)
			}
		}
	}
	for _, want := range []string{"--token-file FILE", "`kontena grid token` prints", "The admin token is saved in " + cfg} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestPrintBootstrappedSecretsOnlyOnATerminal(t *testing.T) {
	info := cluster.ReadyInfo{Grid: "unit", NodeName: "solo", APIAddr: "127.0.0.1:1", Bootstrapped: true,
		AdminToken: "ktn_admin_secret", AdminRefresh: "ktr_admin_secret", JoinToken: "K1.unit.digest.join_secret"}
	defer func(f func(io.Writer) bool) { isTerminal = f }(isTerminal)

	isTerminal = func(io.Writer) bool { return true }
	var tty bytes.Buffer
	printBootstrapped(&tty, info, "cli.json", errors.New("read-only"), t.TempDir())
	for _, want := range []string{"--token K1.unit.digest.join_secret", "Admin refresh token (log in with it on `kontena grid login --token`): ktr_admin_secret"} {
		if !strings.Contains(tty.String(), want) {
			t.Errorf("terminal output lacks %q:\n%s", want, tty.String())
		}
	}

	// Not a terminal, and the CLI config cannot be written: the admin token
	// goes to a 0600 file in the data dir, not to the log.
	isTerminal = func(io.Writer) bool { return false }
	dataDir := t.TempDir()
	var log bytes.Buffer
	printBootstrapped(&log, info, "cli.json", errors.New("read-only"), dataDir)
	if strings.Contains(log.String(), "secret") {
		t.Errorf("log output shows a token:\n%s", log.String())
	}
	path := filepath.Join(dataDir, fileAdminToken)
	if !strings.Contains(log.String(), "The admin's refresh token is in "+path) {
		t.Errorf("log output does not say where the admin token is:\n%s", log.String())
	}
	if b, err := os.ReadFile(path); err != nil || strings.TrimSpace(string(b)) != info.AdminRefresh {
		t.Errorf("admin token file: %q %v", b, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("admin token file mode: %v %v", fi.Mode(), err)
	}
}

func TestJoinTokenFlag(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "K1.unit.digest.secret\n")
	empty := write("empty", " \n")
	resumed := t.TempDir()
	if err := os.WriteFile(filepath.Join(resumed, "node.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string // the token, or part of the error
		err  bool
	}{
		{"file", nil, []string{"--token-file", good}, "K1.unit.digest.secret", false},
		{"file from the environment", map[string]string{"KONTENA_JOIN_TOKEN_FILE": good}, nil, "K1.unit.digest.secret", false},
		{"token from the environment", map[string]string{"KONTENA_JOIN_TOKEN": "K1.env"}, nil, "K1.env", false},
		{"flag", nil, []string{"--token", "K1.flag"}, "K1.flag", false},
		{"both", nil, []string{"--token", "K1.flag", "--token-file", good}, "not both", true},
		{"env token and file", map[string]string{"KONTENA_JOIN_TOKEN": "K1.env"}, []string{"--token-file", good}, "not both", true},
		{"missing file", nil, []string{"--token-file", filepath.Join(dir, "nope")}, "--token-file: open " + filepath.Join(dir, "nope"), true},
		{"empty file", nil, []string{"--token-file", empty}, "is empty", true},
		{"missing file, resuming node", nil, []string{"--token-file", filepath.Join(dir, "nope"), "--data-dir", resumed}, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KONTENA_JOIN_TOKEN", "")
			t.Setenv("KONTENA_JOIN_TOKEN_FILE", "")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var got string
			var err error
			app := &cli.App{Flags: upCommand().Flags, Writer: io.Discard, ErrWriter: io.Discard,
				Action: func(c *cli.Context) error {
					got, err = joinTokenFlag(c, slog.New(slog.NewTextHandler(io.Discard, nil)))
					return nil
				}}
			if rerr := app.Run(append([]string{"up"}, tc.args...)); rerr != nil {
				t.Fatal(rerr)
			}
			switch {
			case tc.err && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error = %v, want %q", err, tc.want)
			case !tc.err && (err != nil || got != tc.want):
				t.Errorf("token = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// The file's content is what `up --join` uses, and --help teaches the flag.
func TestUpTokenFileCLI(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "join.token")
	if err := os.WriteFile(f, []byte("not-a-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := run(t, nil, "up", "--data-dir", filepath.Join(dir, "data"), "--join", "127.0.0.1:1", "--token-file", f)
	if code == 0 || !strings.Contains(errOut, "malformed join token") {
		t.Errorf("up --token-file with a bad token: %d %s", code, errOut)
	}
	if exists := func(p string) bool { _, err := os.Stat(p); return err == nil }; exists(filepath.Join(dir, "data", "setup-incomplete")) {
		t.Error("a join that wrote nothing left its setup marker")
	}
	out, _, _ := run(t, nil, "up", "--help")
	for _, want := range []string{"--token-file FILE", "KONTENA_JOIN_TOKEN", "kontena grid token"} {
		if !strings.Contains(out, want) {
			t.Errorf("up --help lacks %q", want)
		}
	}
}
