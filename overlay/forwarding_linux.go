package overlay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"time"
)

// ruleComment marks every iptables rule this package adds, so a human can
// tell them apart and RemoveForwarding deletes exactly those.
const ruleComment = "kontena-overlay"

// iptablesTimeout bounds one iptables run: -w waits for the xtables lock,
// and a wedged holder must not stall the agent forever.
const iptablesTimeout = 30 * time.Second

type iptRule struct {
	table, chain string
	spec         []string
}

func (r iptRule) String() string {
	return "-t " + r.table + " " + r.chain + " " + strings.Join(r.spec, " ")
}

func markedRule(table, chain string, spec ...string) iptRule {
	n := len(spec)
	s := append(append(append([]string{}, spec[:n-2]...), "-m", "comment", "--comment", ruleComment), spec[n-2:]...)
	return iptRule{table: table, chain: chain, spec: s}
}

// forwardingRules are the rules EnsureForwarding keeps in place. dockerd
// sets the FORWARD policy to DROP, so traffic between grid addresses (a
// container and another node's container through the tunnel, a VPN client,
// two containers of this node with bridge-nf-call-iptables) must be
// accepted explicitly; nothing else is: WireGuard already drops a packet
// from a peer whose source is not that peer's, and a host next to the node
// must not route into the overlay through it. Only traffic leaving the
// grid is masqueraded: across nodes, containers see each other's real
// addresses.
func forwardingRules(filterChain string, subnet, grid netip.Prefix) []iptRule {
	return []iptRule{
		markedRule("filter", filterChain, "-s", grid.String(), "-d", grid.String(), "-j", "ACCEPT"),
		markedRule("nat", "POSTROUTING", "-s", subnet.String(), "!", "-d", grid.String(), "-j", "MASQUERADE"),
	}
}

// legacyRules are rules earlier versions added that were broader than
// needed (any traffic in or out of the tunnel); EnsureForwarding deletes them.
func legacyRules(filterChain, iface string) []iptRule {
	return []iptRule{
		markedRule("filter", filterChain, "-i", iface, "-j", "ACCEPT"),
		markedRule("filter", filterChain, "-o", iface, "-j", "ACCEPT"),
	}
}

// EnsureForwarding installs the host rules that let containers of subnet
// talk across iface to the rest of grid and reach the outside world through
// NAT. It is idempotent (each rule is checked before it is added), so the
// agent can call it on every pass and repair rules someone flushed. The
// filter rules go into DOCKER-USER when dockerd made it (dockerd jumps there
// before its own rules and never touches it), else into FORWARD.
func EnsureForwarding(iface string, subnet, grid netip.Prefix) error {
	if err := checkForwardingArgs(iface, subnet, grid); err != nil {
		return err
	}
	chain, err := filterChain()
	if err != nil {
		return err
	}
	for _, r := range legacyRules(chain, iface) {
		if err := deleteRule(r); err != nil {
			return fmt.Errorf("overlay: remove an old rule: %w", err)
		}
	}
	for _, r := range forwardingRules(chain, subnet.Masked(), grid.Masked()) {
		exists, err := ruleExists(r)
		if err != nil {
			return err
		}
		if exists {
			continue
		}
		op := []string{"-A", r.chain}
		if r.table == "filter" {
			// Ahead of anything already there (a RETURN or DROP).
			op = []string{"-I", r.chain, "1"}
		}
		if _, err := iptables(append(append([]string{"-t", r.table}, op...), r.spec...)...); err != nil {
			return fmt.Errorf("overlay: add iptables rule %s: %w", r, err)
		}
	}
	return nil
}

// RemoveForwarding deletes the rules EnsureForwarding added for the same
// arguments, from DOCKER-USER and FORWARD alike (dockerd may have appeared
// or gone since).
func RemoveForwarding(iface string, subnet, grid netip.Prefix) error {
	if err := checkForwardingArgs(iface, subnet, grid); err != nil {
		return err
	}
	chains := []string{"FORWARD"}
	if ok, err := chainExists("filter", "DOCKER-USER"); err != nil {
		return err
	} else if ok {
		chains = append(chains, "DOCKER-USER")
	}
	var errs []error
	for _, chain := range chains {
		for _, r := range append(forwardingRules(chain, subnet.Masked(), grid.Masked()), legacyRules(chain, iface)...) {
			if r.table == "nat" && chain != "FORWARD" {
				continue // one nat rule, whatever the filter chain
			}
			errs = append(errs, deleteRule(r))
		}
	}
	return joinErrs("overlay: remove forwarding rules", errs)
}

func checkForwardingArgs(iface string, subnet, grid netip.Prefix) error {
	if !ifaceName.MatchString(iface) {
		return fmt.Errorf("overlay: invalid interface name %q", iface)
	}
	if !subnet.IsValid() || !grid.IsValid() {
		return fmt.Errorf("overlay: forwarding needs a valid subnet and grid prefix (got %v, %v)", subnet, grid)
	}
	return nil
}

// deleteRule deletes every copy of r (a crash between check and add, or two
// agents racing, can leave duplicates).
func deleteRule(r iptRule) error {
	for range 100 {
		exists, err := ruleExists(r)
		if err != nil || !exists {
			return err
		}
		if _, err := iptables(append([]string{"-t", r.table, "-D", r.chain}, r.spec...)...); err != nil {
			return fmt.Errorf("delete %s: %w", r, err)
		}
	}
	return fmt.Errorf("delete %s: still present after 100 deletions", r)
}

func filterChain() (string, error) {
	ok, err := chainExists("filter", "DOCKER-USER")
	if err != nil {
		return "", err
	}
	if ok {
		return "DOCKER-USER", nil
	}
	return "FORWARD", nil
}

func chainExists(table, chain string) (bool, error) {
	_, err := iptables("-t", table, "-n", "-L", chain)
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 1 {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("overlay: list iptables chain %s: %w", chain, err)
	}
	return true, nil
}

// ruleExists runs `iptables -C`: exit status 1 means "no such rule", a
// missing chain is reported the same way and also means "no rule".
func ruleExists(r iptRule) (bool, error) {
	_, err := iptables(append([]string{"-t", r.table, "-C", r.chain}, r.spec...)...)
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 1 {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("overlay: check iptables rule %s: %w", r, err)
	}
	return true, nil
}

// iptables runs the iptables binary (whatever backend it is: nft here) with
// -w so that concurrent runs by dockerd wait for the lock instead of failing.
func iptables(args ...string) (string, error) {
	path, err := exec.LookPath("iptables")
	if err != nil {
		return "", fmt.Errorf("iptables not found in PATH (install the iptables package): %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), iptablesTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, append([]string{"-w"}, args...)...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return "", fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, msg)
		}
		return "", fmt.Errorf("iptables %s: %w", strings.Join(args, " "), err)
	}
	return out.String(), nil
}
