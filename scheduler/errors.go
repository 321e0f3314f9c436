package scheduler

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Rejection is one node turned down by one filter.
type Rejection struct {
	Filter string // "availability", "affinity label==az=b", "memory", ...
	Node   string // node name
	Reason string // what about the node made the filter reject it; may be ""
}

// NoFitError says why an instance could not be placed: every filter that
// rejected nodes, which nodes and why, so the user knows what to change
// (a label, a drained node, the memory asked for).
type NoFitError struct {
	Service string // "stack/name"
	Number  int    // instance number; 0 for a daemon service as a whole
	// Stateful instances never move: StaysOn is the node they are bound to
	// and NodeGone tells that the node left the grid.
	StaysOn    string
	NodeGone   bool
	Rejections []Rejection
}

// maxListed bounds the node names printed per reason; a thousand-node grid
// would otherwise print a thousand names.
const maxListed = 10

func (e *NoFitError) Error() string {
	var b strings.Builder
	b.WriteString("cannot place ")
	b.WriteString(e.Service)
	if e.Number > 0 {
		b.WriteString("-" + strconv.Itoa(e.Number))
	} else {
		b.WriteString(" on any node")
	}
	switch {
	case e.NodeGone:
		b.WriteString(": it is stateful and its node " + e.StaysOn + " is no longer in the grid; its data is there, so it is not moved elsewhere (bring the node back, or remove the instance to start it afresh)")
		return b.String()
	case e.StaysOn != "":
		b.WriteString(" (stateful: it stays on " + e.StaysOn + ", where its data is)")
	}
	if len(e.Rejections) == 0 {
		b.WriteString(": the grid has no nodes")
		return b.String()
	}
	b.WriteString(": ")
	b.WriteString(describe(e.Rejections))
	return b.String()
}

// describe groups rejections by filter, then by reason, keeping their order:
// "availability rejected n2 (drain); memory rejected n4 (needs 512 MiB, 128 MiB free)".
func describe(rs []Rejection) string {
	type group struct {
		reason string
		nodes  []string
	}
	type clause struct {
		filter string
		groups []*group
	}
	var clauses []*clause
	byFilter := map[string]*clause{}
	for _, r := range rs {
		c := byFilter[r.Filter]
		if c == nil {
			c = &clause{filter: r.Filter}
			byFilter[r.Filter] = c
			clauses = append(clauses, c)
		}
		var g *group
		for _, x := range c.groups {
			if x.reason == r.Reason {
				g = x
			}
		}
		if g == nil {
			g = &group{reason: r.Reason}
			c.groups = append(c.groups, g)
		}
		g.nodes = append(g.nodes, r.Node)
	}
	parts := make([]string, 0, len(clauses))
	for _, c := range clauses {
		gs := make([]string, 0, len(c.groups))
		for _, g := range c.groups {
			s := listNodes(g.nodes)
			if g.reason != "" {
				s += " (" + g.reason + ")"
			}
			gs = append(gs, s)
		}
		parts = append(parts, c.filter+" rejected "+strings.Join(gs, ", "))
	}
	return strings.Join(parts, "; ")
}

func listNodes(nodes []string) string {
	if len(nodes) <= maxListed {
		return strings.Join(nodes, ", ")
	}
	return strings.Join(nodes[:maxListed], ", ") + " and " + strconv.Itoa(len(nodes)-maxListed) + " more"
}

// maxExplained bounds the instances explained per Place call: explaining
// is O(nodes) in strings, and a service 10,000 instances too big would
// otherwise spend seconds writing the same reasons 10,000 times.
const maxExplained = 5

// joinFits returns nil, the single error, or all of them joined (each is
// still reachable with errors.As), with a count of the unexplained rest.
func joinFits(service string, fails []*NoFitError, unplaced int) error {
	if len(fails) == 1 && unplaced <= 1 {
		return fails[0]
	}
	errs := make([]error, 0, len(fails)+1)
	for _, f := range fails {
		errs = append(errs, f)
	}
	if rest := unplaced - len(fails); rest > 0 {
		errs = append(errs, fmt.Errorf("%d more instances of %s cannot be placed either (Plan.Unplaced lists them)", rest, service))
	}
	return errors.Join(errs...)
}
