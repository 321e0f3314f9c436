package cmd

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestExecArgs(t *testing.T) {
	tests := []struct {
		args     string
		service  bool
		instance int
		want     string // "name|cmd..." or "error: ..."
	}{
		{"shop.web-1 -- sh -c exit", false, 1, "shop.web-1|sh -c exit"},
		{"shop.web-1 echo hi", false, 1, "shop.web-1|echo hi"},
		{"shop.web-1 -- -- x", false, 1, "shop.web-1|-- x"},
		{"", false, 1, "error: expected NAME -- COMMAND"},
		{"shop.web-1", false, 1, "error: no command to run"},
		{"shop.web-1 --", false, 1, "error: no command to run"},
		{"shop/web -- ls", false, 1, "error: \"shop/web\" is a service"},
		{"shop/web -- ls", true, 1, "shop.web-1|ls"},
		{"shop/web -- ls", true, 3, "shop.web-3|ls"},
		{"shop/web -- ls", true, 0, "error: --instance 0"},
		{"shop -- ls", true, 1, "error: service \"shop\": expected STACK/SERVICE"},
		{"a/b/c -- ls", true, 1, "error: service \"a/b/c\""},
	}
	for _, tc := range tests {
		name, cmd, err := execArgs(strings.Fields(tc.args), tc.service, tc.instance)
		got := name + "|" + strings.Join(cmd, " ")
		if err != nil {
			got = "error: " + strings.TrimPrefix(err.Error(), "error: ")
		}
		if !strings.HasPrefix(got, tc.want) {
			t.Errorf("execArgs(%q, service=%v) = %q, want %q", tc.args, tc.service, got, tc.want)
		}
	}
}

func TestReorderExecArgs(t *testing.T) {
	app := App()
	tests := []struct{ in, want string }{
		{"kontena container exec shop.web-1 -it -- sh -c x", "kontena container exec -it shop.web-1 -- sh -c x"},
		{"kontena exec -i shop.web-1 -- cat", "kontena exec -i shop.web-1 -- cat"},
		{"kontena service exec shop/web --instance 2 -t -- ls -la", "kontena service exec --instance 2 -t shop/web -- ls -la"},
		{"kontena container logs shop.web-1 -f --tail 5", "kontena container logs -f --tail 5 shop.web-1"},
	}
	for _, tc := range tests {
		if got := strings.Join(reorderArgs(app, strings.Fields(tc.in)), " "); got != tc.want {
			t.Errorf("reorderArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestBytesIEC(t *testing.T) {
	for in, want := range map[uint64]string{0: "0B", 1023: "1023B", 1536: "1.5KiB", 5 << 20: "5.0MiB", 3 << 30: "3.0GiB"} {
		if got := bytesIEC(in); got != want {
			t.Errorf("bytesIEC(%d) = %q, want %q", in, got, want)
		}
	}
}

// TestContainerCLIErrors runs the container commands against a real
// one-node grid with no stack: argument errors, unknown names and empty
// lists.
func TestContainerCLIErrors(t *testing.T) {
	cfg := startNode(t)
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"ls empty", []string{"container", "ls"}, ExitOK, ""},
		{"ls takes no args", []string{"container", "ls", "x"}, ExitUsage, "takes no arguments"},
		{"ls bad service", []string{"container", "ls", "--service", "web"}, ExitUsage, "expected STACK/SERVICE"},
		{"ls unknown node", []string{"container", "ls", "--node", "ghost"}, ExitNotFound, "no node ghost"},
		{"ls unknown service", []string{"container", "ls", "--service", "shop/web"}, ExitNotFound, "no service shop/web"},
		{"inspect needs a name", []string{"container", "inspect"}, ExitUsage, "expected exactly one NAME"},
		{"inspect unknown", []string{"container", "inspect", "shop.web-1"}, ExitNotFound, "no container shop.web-1; see `kontena container ls`"},
		{"logs unknown", []string{"container", "logs", "shop.web-1", "-f"}, ExitNotFound, "no container shop.web-1"},
		{"logs bad tail", []string{"container", "logs", "shop.web-1", "--tail", "-1"}, ExitUsage, "--tail -1"},
		{"exec without args", []string{"container", "exec"}, ExitUsage, "expected NAME -- COMMAND"},
		{"exec without command", []string{"container", "exec", "shop.web-1"}, ExitUsage, "no command to run"},
		{"exec a service name", []string{"container", "exec", "shop/web", "--", "ls"}, ExitUsage, "is a service"},
		{"exec unknown", []string{"container", "exec", "shop.web-1", "--", "ls"}, ExitNotFound, "no container shop.web-1; see `kontena container ls`"},
		{"exec -it unknown", []string{"container", "exec", "-it", "shop.web-1", "--", "sh"}, ExitNotFound, "no container shop.web-1"},
		{"top-level exec unknown", []string{"exec", "-i", "shop.web-1", "--", "cat"}, ExitNotFound, "no container shop.web-1"},
		{"exec flag of the command without --", []string{"container", "exec", "shop.web-1", "ls", "-la"}, ExitUsage, "the command goes after --"},
		{"service exec bad id", []string{"service", "exec", "shop", "--", "ls"}, ExitUsage, "expected STACK/SERVICE"},
		{"service exec instance 0", []string{"service", "exec", "shop/web", "--instance", "0", "--", "ls"}, ExitUsage, "numbered from 1"},
		{"service exec unknown", []string{"service", "exec", "shop/web", "--", "ls"}, ExitNotFound, "no container shop.web-1"},
		{"stats empty", []string{"stats"}, ExitOK, "PROBLEM"},
		{"stats unknown name", []string{"container", "stats", "shop.web-1"}, ExitNotFound, "no container shop.web-1"},
		{"service stats bad id", []string{"service", "stats", "web"}, ExitUsage, "expected STACK/SERVICE"},
		{"service stats unknown", []string{"service", "stats", "shop/web"}, ExitNotFound, "no service shop/web"},
		{"stats bad output", []string{"stats", "-o", "yaml"}, ExitUsage, "expected table or json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := run(t, nil, append([]string{"--config", cfg}, tc.args...)...)
			if code != tc.code || !strings.Contains(errOut+out, tc.msg) {
				t.Fatalf("exit %d stderr %q stdout %q; want exit %d with %q", code, errOut, out, tc.code, tc.msg)
			}
		})
	}
	for _, args := range [][]string{{"container", "ls", "-o", "json"}, {"stats", "-o", "json"}} {
		out, errOut, code := run(t, nil, append([]string{"--config", cfg}, args...)...)
		var list []map[string]any
		if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 0 {
			t.Fatalf("%v: exit %d %q %q; want an empty JSON list", args, code, out, errOut)
		}
	}
}
