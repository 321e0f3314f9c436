package scheduler

import (
	"cmp"
	"slices"
)

// pred is one filter's verdict on nodes for one instance number. why is
// only called to explain a rejection, so it may be slow.
type pred struct {
	ok  func(n int32) bool
	why func(n int32) string
}

// step is one link of the chain.
type step struct {
	label func(num int) string
	// static: the verdict is the same for every instance of this Place
	// call, so it is evaluated once per call, not once per instance.
	static bool
	// soft: if no candidate passes, the step is skipped instead of
	// rejecting everything (soft affinity, volume preference).
	soft bool
	// local: a per-instance step whose verdict on a node changes only when
	// this plan places an instance on that very node, and is the same for
	// every instance number (memory, with the exception that an instance
	// always fits the node it runs on; own ports; affinity to the service
	// itself). A chain of such steps can be kept up to date incrementally.
	local bool
	bind  func(num int) pred
}

func fixedLabel(s string) func(int) string { return func(int) string { return s } }

// rawRej is a rejection before it is put into words.
type rawRej struct {
	step int
	node int32
}

// chain holds the steps of one Place call and the nodes that survive its
// static prefix.
type chain struct {
	pc     *placeCtx
	steps  []step // spec order: messages and single-node checks use it
	order  []int  // evaluation order, see newChain
	prefix int    // order[:prefix] are static and already applied to base
	base   []int32
	baseOK []bool
	rej    []rawRej // rejections by the static prefix

	anyPreds []pred // per-instance steps bound for a new instance (incremental chains)
}

// newChain orders the steps for speed without changing the result: hard
// filters commute, so within each run of hard steps between soft ones the
// static steps go first; the longest static prefix is then evaluated once.
// Soft steps keep their place, since what they see depends on what ran
// before them.
func newChain(pc *placeCtx, steps []step) *chain {
	c := &chain{pc: pc, steps: steps}
	var dyn []int
	flush := func() { c.order = append(c.order, dyn...); dyn = dyn[:0] }
	for i, s := range steps {
		switch {
		case s.soft:
			flush()
			c.order = append(c.order, i)
		case s.static:
			c.order = append(c.order, i)
		default:
			dyn = append(dyn, i)
		}
	}
	flush()
	for c.prefix < len(c.order) && steps[c.order[c.prefix]].static {
		c.prefix++
	}
	k := len(pc.st.nodes)
	cands := make([]int32, k)
	for i := range cands {
		cands[i] = int32(i)
	}
	for _, i := range c.order[:c.prefix] {
		cands = c.run(i, 0, cands, &c.rej)
	}
	c.base = cands
	c.baseOK = make([]bool, k)
	for _, n := range cands {
		c.baseOK[n] = true
	}
	return c
}

// run applies step i for instance num to cands, filtering in place.
func (c *chain) run(i, num int, cands []int32, rec *[]rawRej) []int32 {
	s := &c.steps[i]
	p := s.bind(num)
	if s.soft && !slices.ContainsFunc(cands, p.ok) {
		return cands
	}
	out := cands[:0]
	for _, n := range cands {
		if p.ok(n) {
			out = append(out, n)
		} else if rec != nil {
			*rec = append(*rec, rawRej{i, n})
		}
	}
	return out
}

// dynamic applies the per-instance steps to cands (which it may reuse).
func (c *chain) dynamic(num int, cands []int32, rec *[]rawRej) []int32 {
	for _, i := range c.order[c.prefix:] {
		if len(cands) == 0 {
			break
		}
		cands = c.run(i, num, cands, rec)
	}
	return cands
}

// incremental tells whether every per-instance step is hard and local, so
// the feasible nodes can be maintained one placement at a time instead of
// re-filtering every node for every instance.
func (c *chain) incremental() bool {
	for _, i := range c.order[c.prefix:] {
		if s := &c.steps[i]; s.soft || !s.local {
			return false
		}
	}
	return true
}

// feasibleAny tells whether node n passes every step for an instance that
// does not run on it yet (instance number 0 matches no current instance).
// Only meaningful when the chain is incremental.
func (c *chain) feasibleAny(n int32) bool {
	if !c.baseOK[n] {
		return false
	}
	if c.anyPreds == nil { // local steps are number-independent: bind once
		c.anyPreds = make([]pred, 0, len(c.order)-c.prefix)
		for _, i := range c.order[c.prefix:] {
			c.anyPreds = append(c.anyPreds, c.steps[i].bind(0))
		}
	}
	for _, p := range c.anyPreds {
		if !p.ok(n) {
			return false
		}
	}
	return true
}

// candidates returns the nodes that may host instance num. The result may
// alias chain or context buffers: read it before the next call.
func (c *chain) candidates(num int) []int32 {
	if c.prefix == len(c.order) {
		return c.base
	}
	c.pc.scratch = append(c.pc.scratch[:0], c.base...)
	return c.dynamic(num, c.pc.scratch, nil)
}

// fitsAll runs every step, in spec order, on node n alone: the check for an
// instance that must stay where it is.
func (c *chain) fitsAll(num int, n int32, rec *[]rawRej) bool {
	cands := c.pc.one[:1]
	cands[0] = n
	for i := range c.steps {
		if cands = c.run(i, num, cands, rec); len(cands) == 0 {
			return false
		}
	}
	return true
}

// fitsNode tells whether node n may host instance num, using the static
// verdict already computed over all nodes (daemon).
func (c *chain) fitsNode(num int, n int32, rec *[]rawRej) bool {
	if !c.baseOK[n] {
		if rec != nil {
			for _, r := range c.rej {
				if r.node == n {
					*rec = append(*rec, r)
				}
			}
		}
		return false
	}
	cands := c.pc.one[:1]
	cands[0] = n
	return len(c.dynamic(num, cands, rec)) > 0
}

// explain replays the chain for instance num with recording on: over all
// nodes, or only over node pinned when pinned >= 0.
func (c *chain) explain(num int, pinned int32) []Rejection {
	var raws []rawRej
	if pinned >= 0 {
		c.fitsAll(num, pinned, &raws)
	} else {
		raws = append(raws, c.rej...)
		c.dynamic(num, append([]int32(nil), c.base...), &raws)
	}
	return c.words(num, raws)
}

// words puts rejections into words, in spec order of the filters and grid
// order of the nodes.
func (c *chain) words(num int, raws []rawRej) []Rejection {
	slices.SortStableFunc(raws, func(a, b rawRej) int {
		return cmp.Or(cmp.Compare(a.step, b.step), cmp.Compare(a.node, b.node))
	})
	out := make([]Rejection, 0, len(raws))
	var p pred
	last := -1
	for _, r := range raws {
		if r.step != last {
			p, last = c.steps[r.step].bind(num), r.step
		}
		out = append(out, Rejection{Filter: c.steps[r.step].label(num), Node: c.pc.name(r.node), Reason: p.why(r.node)})
	}
	return out
}
