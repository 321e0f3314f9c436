package scheduler

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// affinity is one parsed rule: key==value, key!=value, or the soft forms
// key==~value / key!=~value that are dropped when no node matches. Keys are
// node, service, container and label; a value written /.../ is a regular
// expression; "%s" in a rule becomes the instance number.
type affinity struct {
	raw    string
	key    string
	neg    bool
	soft   bool
	value  string
	perNum bool // contains %s: resolved per instance
	grid   bool // from the grid's default_affinity
}

// parseAffinity splits a rule at its first == or !=.
func parseAffinity(raw string) (affinity, error) {
	i := strings.Index(raw, "==")
	if j := strings.Index(raw, "!="); j >= 0 && (i < 0 || j < i) {
		i = j
	}
	if i <= 0 || i+2 >= len(raw) {
		return affinity{}, fmt.Errorf("affinity %q: expected key==value or key!=value (soft: ==~, !=~) with key node, service, container or label", raw)
	}
	a := affinity{raw: raw, key: raw[:i], neg: raw[i] == '!', value: raw[i+2:], perNum: strings.Contains(raw, "%s")}
	if v, ok := strings.CutPrefix(a.value, "~"); ok {
		a.soft, a.value = true, v
	}
	if a.value == "" {
		return affinity{}, fmt.Errorf("affinity %q: the value after %s is empty", raw, raw[i:i+2])
	}
	switch a.key {
	case "node", "service", "container", "label":
	default:
		// Neither form of an unknown key means anything: refuse it rather
		// than let key!=value match every node.
		return affinity{}, fmt.Errorf("affinity %q: unknown key %q (use node, service, container or label)", raw, a.key)
	}
	return a, nil
}

// CheckAffinity tells whether rule is an affinity rule placement can use
// (for settings such as the grid's default affinity, checked when set).
func CheckAffinity(rule string) error {
	a, err := parseAffinity(rule)
	if err != nil {
		return err
	}
	_, err = a.resolve("", 1)
	return err
}

// affMatch is a rule resolved for one instance number.
type affMatch struct {
	a   *affinity
	val string         // value with %s replaced; stack-qualified for service/container
	re  *regexp.Regexp // set for /regex/ values
}

func isRegex(v string) bool { return len(v) >= 2 && v[0] == '/' && v[len(v)-1] == '/' }

func (a *affinity) resolve(stack string, num int) (affMatch, error) {
	m := affMatch{a: a, val: subst(a.value, num)}
	if isRegex(m.val) {
		re, err := regexp.Compile(m.val[1 : len(m.val)-1])
		if err != nil {
			return m, fmt.Errorf("affinity %q: invalid regular expression: %v", a.raw, err)
		}
		m.re = re
	} else if a.key == "service" || a.key == "container" {
		m.val = qualifyRef(stack, m.val)
	}
	return m, nil
}

// matchRef matches a regex against a stack-qualified service or container
// name, and against its bare name when it is in the same stack.
func matchRef(re *regexp.Regexp, ref, stack string) bool {
	if re.MatchString(ref) {
		return true
	}
	bare, ok := strings.CutPrefix(ref, stack+"/")
	return ok && stack != "" && re.MatchString(bare)
}

// dependsOnPlan tells whether the rule's verdict changes as this plan
// places instances, which makes it a per-instance step.
func (m *affMatch) dependsOnPlan(pc *placeCtx) bool {
	switch m.a.key {
	case "service":
		if m.re != nil {
			return matchRef(m.re, pc.id, pc.svc.Stack)
		}
		return m.val == pc.id
	case "container":
		return m.re == nil && pc.ownContainer(m.val)
	}
	return false
}

// matches reports whether node n has what the rule names (before != is
// applied).
func (m *affMatch) matches(pc *placeCtx, target int32, n int32) bool {
	nd := &pc.st.nodes[n]
	switch m.a.key {
	case "node":
		if m.re != nil {
			return m.re.MatchString(nd.Name) || m.re.MatchString(nd.ID)
		}
		return nd.Name == m.val || nd.ID == m.val
	case "label":
		if m.re != nil {
			return slices.ContainsFunc(nd.Labels, m.re.MatchString)
		}
		return slices.Contains(nd.Labels, m.val)
	case "service":
		return len(m.services(pc, n, true)) > 0
	case "container":
		if m.re == nil {
			return target == n
		}
		return len(m.containers(pc, n, true)) > 0
	}
	return false
}

// services lists the services on node n the rule names (the first one
// only when first is set), in name order.
func (m *affMatch) services(pc *placeCtx, n int32, first bool) []string {
	if m.re == nil {
		if m.val == pc.id {
			if pc.planCount[n] > 0 {
				return []string{m.val}
			}
			return nil
		}
		if pc.st.nodeServices[n][m.val] > 0 {
			return []string{m.val}
		}
		return nil
	}
	var out []string
	if pc.planCount[n] > 0 && matchRef(m.re, pc.id, pc.svc.Stack) {
		out = append(out, pc.id)
	}
	for s := range pc.st.nodeServices[n] {
		if s != pc.id && matchRef(m.re, s, pc.svc.Stack) {
			if out = append(out, s); first {
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// containers lists other services' containers on node n that a regex rule
// names (its own service's containers are being re-placed and not seen).
func (m *affMatch) containers(pc *placeCtx, n int32, first bool) []string {
	var out []string
	for _, c := range pc.st.nodeContainers[n] {
		if !pc.ownContainer(c) && matchRef(m.re, c, pc.svc.Stack) {
			if out = append(out, c); first {
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// why says what about node n made the rule reject it.
func (m *affMatch) why(pc *placeCtx, target int32, n int32) string {
	nd := &pc.st.nodes[n]
	neg := m.a.neg
	switch m.a.key {
	case "node":
		return ""
	case "label":
		if m.re != nil {
			if neg {
				return firstMatch(nd.Labels, m.re)
			}
			if len(nd.Labels) == 0 {
				return "no labels"
			}
			return "labels " + strings.Join(nd.Labels, ", ")
		}
		if neg {
			return m.val
		}
		k, _, _ := strings.Cut(m.val, "=")
		for _, l := range nd.Labels {
			if lk, _, _ := strings.Cut(l, "="); lk == k {
				return l
			}
		}
		return "no " + k + " label"
	case "service":
		if neg {
			return "runs " + m.services(pc, n, false)[0]
		}
		if m.re != nil {
			return "no service matching " + m.val
		}
		return "no " + m.val + " instance"
	case "container":
		if neg {
			if m.re != nil {
				return "runs " + m.containers(pc, n, false)[0]
			}
			return "runs " + m.val
		}
		if m.re != nil {
			return "no container matching " + m.val
		}
		if target >= 0 {
			return m.val + " runs on " + pc.name(target)
		}
		if id, ok := pc.st.containers[m.val]; ok && !pc.ownContainer(m.val) {
			return m.val + " is on node " + id + ", which is not in the grid"
		}
		return m.val + " does not exist"
	}
	return fmt.Sprintf("unknown affinity key %q (use node, service, container or label)", m.a.key)
}

func firstMatch(l []string, re *regexp.Regexp) string {
	for _, s := range l {
		if re.MatchString(s) {
			return s
		}
	}
	return ""
}
