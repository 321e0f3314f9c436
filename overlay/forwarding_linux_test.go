package overlay

import (
	"fmt"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// inNetns runs f on an OS thread switched into the named namespace; the
// iptables processes f starts inherit it. The thread is never unlocked, so
// the runtime discards it afterwards instead of reusing it elsewhere.
func inNetns(t *testing.T, name string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		h, err := netns.GetFromName(name)
		if err != nil {
			t.Errorf("open netns %s: %v", name, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			t.Errorf("enter netns %s: %v", name, err)
			return
		}
		f()
	}()
	<-done
	if t.Failed() {
		t.FailNow()
	}
}

// rules lists the rules of table/chain (iptables -S) that carry our comment.
func rules(t *testing.T, table, chain string) []string {
	t.Helper()
	out, err := exec.Command("iptables", "-w", "-t", table, "-S", chain).CombinedOutput()
	if err != nil {
		t.Errorf("iptables -S %s: %v: %s", chain, err, out)
		return nil
	}
	var ours []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, ruleComment) {
			ours = append(ours, l)
		}
	}
	return ours
}

func TestForwarding(t *testing.T) {
	requireNetAdmin(t)
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("needs the iptables command")
	}
	ns := fmt.Sprintf("kt-ovl-f-%d", testPID())
	newNetns(t, ns)
	subnet := netip.MustParsePrefix("10.99.1.0/24")
	grid := netip.MustParsePrefix("10.99.0.0/16")
	ipt := func(args ...string) {
		if out, err := exec.Command("iptables", append([]string{"-w"}, args...)...).CombinedOutput(); err != nil {
			t.Errorf("iptables %v: %v: %s", args, err, out)
		}
	}
	expectCount := func(step, table, chain string, want int) []string {
		got := rules(t, table, chain)
		if len(got) != want {
			t.Errorf("%s: %d kontena-overlay rules in %s %s, want %d: %q", step, len(got), table, chain, want, got)
		}
		return got
	}

	inNetns(t, ns, func() {
		// Without dockerd: FORWARD. Twice, to prove idempotence.
		ipt("-A", "FORWARD", "-i", "eth9", "-j", "ACCEPT") // someone else's rule
		// A broader rule of an earlier version: it must go.
		ipt("-A", "FORWARD", "-i", "kt-f0", "-m", "comment", "--comment", ruleComment, "-j", "ACCEPT")
		for range 2 {
			if err := EnsureForwarding("kt-f0", subnet, grid); err != nil {
				t.Errorf("EnsureForwarding: %v", err)
				return
			}
		}
		fwd := expectCount("no DOCKER-USER", "filter", "FORWARD", 1)
		if len(fwd) == 1 && !strings.Contains(fwd[0], "-s 10.99.0.0/16 -d 10.99.0.0/16") {
			t.Errorf("FORWARD rule %q: want only grid to grid accepted", fwd[0])
		}
		nat := expectCount("no DOCKER-USER", "nat", "POSTROUTING", 1)
		if len(nat) == 1 && (!strings.Contains(nat[0], "-s 10.99.1.0/24 ! -d 10.99.0.0/16") || !strings.HasSuffix(nat[0], "-j MASQUERADE")) {
			t.Errorf("nat rule %q", nat[0])
		}

		if err := RemoveForwarding("kt-f0", subnet, grid); err != nil {
			t.Errorf("RemoveForwarding: %v", err)
		}
		expectCount("after remove", "filter", "FORWARD", 0)
		expectCount("after remove", "nat", "POSTROUTING", 0)
		ipt("-C", "FORWARD", "-i", "eth9", "-j", "ACCEPT") // still there

		// With dockerd's DOCKER-USER chain (ending in RETURN, as older
		// engines make it): rules go there, ahead of the RETURN.
		ipt("-N", "DOCKER-USER")
		ipt("-A", "DOCKER-USER", "-j", "RETURN")
		ipt("-I", "FORWARD", "-j", "DOCKER-USER")
		if err := EnsureForwarding("kt-f0", subnet, grid); err != nil {
			t.Errorf("EnsureForwarding: %v", err)
			return
		}
		expectCount("with DOCKER-USER", "filter", "FORWARD", 0)
		expectCount("with DOCKER-USER", "filter", "DOCKER-USER", 1)
		out, _ := exec.Command("iptables", "-w", "-S", "DOCKER-USER").Output()
		if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); lines[len(lines)-1] != "-A DOCKER-USER -j RETURN" {
			t.Errorf("DOCKER-USER does not end with RETURN:\n%s", out)
		}

		// A duplicate (a crash between check and add) is removed as well.
		ipt("-A", "DOCKER-USER", "-o", "kt-f0", "-m", "comment", "--comment", ruleComment, "-j", "ACCEPT")
		if err := RemoveForwarding("kt-f0", subnet, grid); err != nil {
			t.Errorf("RemoveForwarding: %v", err)
		}
		expectCount("after remove with DOCKER-USER", "filter", "DOCKER-USER", 0)
		expectCount("after remove with DOCKER-USER", "nat", "POSTROUTING", 0)

		if err := EnsureForwarding("bad/name", subnet, grid); err == nil {
			t.Error("EnsureForwarding accepted an invalid interface name")
		}
	})
}
