package scheduler

import (
	"strconv"
	"strings"
)

func itoa(i int) string { return strconv.Itoa(i) }

// subst replaces "%s" with the instance number, as Kontena did.
func subst(s string, num int) string {
	if !strings.Contains(s, "%s") {
		return s
	}
	return strings.ReplaceAll(s, "%s", strconv.Itoa(num))
}

// qualifyRef makes a service or container reference stack-qualified: names
// without "/" are in the referring service's stack.
func qualifyRef(stack, ref string) string {
	if strings.Contains(ref, "/") {
		return ref
	}
	return qualify(stack, ref)
}

// splitContainer splits "stack/svc-N" into "stack/svc" and N.
func splitContainer(name string) (string, int, bool) {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(name[i+1:])
	if err != nil || n < 1 {
		return "", 0, false
	}
	return name[:i], n, true
}

// ownContainer tells whether container name belongs to the service being
// placed, whose containers this plan is re-placing.
func (pc *placeCtx) ownContainer(name string) bool {
	svc, _, ok := splitContainer(name)
	return ok && svc == pc.id
}

// containerNode is the node container name runs on: for the service being
// placed, where this plan put it; otherwise where it runs now. -1 if none
// or on a node that is not in the grid.
func (pc *placeCtx) containerNode(name string) int32 {
	if svc, num, ok := splitContainer(name); ok && svc == pc.id {
		return pc.placedOf(num)
	}
	id, ok := pc.st.containers[name]
	if !ok {
		return -1
	}
	return pc.st.node(id)
}

// fmtBytes writes a size in binary units: "512 MiB", "1.5 GiB".
func fmtBytes(b int64) string {
	const unit = 1024
	if b < unit {
		return strconv.FormatInt(b, 10) + " B"
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit && exp < 4; n /= unit {
		div *= unit
		exp++
	}
	v := float64(b) / float64(div)
	s := strconv.FormatFloat(v, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + string("KMGTP"[exp]) + "iB"
}
