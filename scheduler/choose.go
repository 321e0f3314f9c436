package scheduler

import "math/rand/v2"

// chooser picks the node of each instance that is free to go anywhere
// (ha, random). assigned is called after every placement, pinned ones
// included, so an incremental chooser can update the one node it changed.
type chooser interface {
	choose(num int) (int32, bool)
	assigned(n int32)
}

// scanChooser filters every node for every instance: always correct, and
// the only way when a per-instance step depends on the instance number
// (%s) or on the whole candidate set (soft).
type scanChooser struct {
	pc   *placeCtx
	ch   *chain
	pick picker
}

func (s *scanChooser) choose(num int) (int32, bool) {
	cands := s.ch.candidates(num)
	if len(cands) == 0 {
		return -1, false
	}
	return s.pick(s.pc, num, cands), true
}

func (s *scanChooser) assigned(int32) {}

// haChooser keeps the feasible nodes in one heap per zone, ordered by the
// ha rank, and the zones in a heap by their instance count then their best
// node: a placement costs O(log nodes), not a pass over every node. It
// picks exactly what pickHA over a full scan would pick.
type haChooser struct {
	pc    *placeCtx
	ch    *chain
	zones []idxHeap // zone → feasible nodes
	zheap idxHeap   // zones with feasible nodes
}

func newHAChooser(pc *placeCtx, ch *chain) *haChooser {
	st := pc.st
	h := &haChooser{pc: pc, ch: ch, zones: make([]idxHeap, len(st.zones))}
	nodeLess := func(a, b int32) bool {
		if ca, cb := pc.planCount[a], pc.planCount[b]; ca != cb {
			return ca < cb
		}
		if ma, mb := st.memUsed[a]+pc.memPlanned[a], st.memUsed[b]+pc.memPlanned[b]; ma != mb {
			return ma < mb
		}
		if ta, tb := st.nodeTotal[a], st.nodeTotal[b]; ta != tb {
			return ta < tb
		}
		return a < b
	}
	pos := make([]int32, len(st.nodes))
	for i := range pos {
		pos[i] = -1
	}
	for z := range h.zones {
		h.zones[z] = idxHeap{pos: pos, less: nodeLess}
	}
	zpos := make([]int32, len(st.zones))
	for i := range zpos {
		zpos[i] = -1
	}
	h.zheap = idxHeap{pos: zpos, less: func(x, y int32) bool {
		if cx, cy := pc.zoneCount[x], pc.zoneCount[y]; cx != cy {
			return cx < cy
		}
		return nodeLess(h.zones[x].top(), h.zones[y].top())
	}}
	for _, n := range ch.base {
		if ch.feasibleAny(n) {
			z := st.zoneOf[n]
			h.zones[z].items = append(h.zones[z].items, n)
		}
	}
	for z := range h.zones {
		zh := &h.zones[z]
		for i, n := range zh.items { // base is in grid order: heapify by sifting
			pos[n] = int32(i)
		}
		for i := len(zh.items)/2 - 1; i >= 0; i-- {
			zh.down(i)
		}
		if len(zh.items) > 0 {
			h.zheap.push(int32(z))
		}
	}
	return h
}

func (h *haChooser) choose(num int) (int32, bool) {
	best := int32(-1)
	if z := h.zheap.top(); z >= 0 {
		best = h.zones[z].top()
	}
	// The current node of this instance ranks above equal ones, and may be
	// feasible only for it (memory it already uses): check it on its own.
	if prev := h.pc.prevOf(num); prev >= 0 && prev != best && h.ch.fitsNode(num, prev, nil) {
		if best < 0 || haBetter(h.pc, prev, prev, best) {
			return prev, true
		}
	}
	return best, best >= 0
}

func (h *haChooser) assigned(n int32) {
	z := h.pc.st.zoneOf[n]
	zh := &h.zones[z]
	switch ok := h.ch.feasibleAny(n); {
	case ok && zh.has(n):
		zh.fix(n)
	case ok:
		zh.push(n)
	case zh.has(n):
		zh.remove(n)
	}
	switch {
	case len(zh.items) == 0 && h.zheap.has(z):
		h.zheap.remove(z)
	case len(zh.items) > 0 && h.zheap.has(z):
		h.zheap.fix(z)
	case len(zh.items) > 0:
		h.zheap.push(z)
	}
}

// randomChooser keeps the feasible nodes in a Fenwick tree so drawing the
// k-th one costs O(log nodes); it draws exactly what randomPicker over a
// full scan would draw.
type randomChooser struct {
	pc   *placeCtx
	ch   *chain
	rng  *rand.Rand
	set  *fenwick
	in   []bool
	size int
}

func newRandomChooser(pc *placeCtx, ch *chain, rng *rand.Rand) *randomChooser {
	r := &randomChooser{pc: pc, ch: ch, rng: rng, set: newFenwick(len(pc.st.nodes)), in: make([]bool, len(pc.st.nodes))}
	for _, n := range ch.base {
		if ch.feasibleAny(n) {
			r.set.add(n, 1)
			r.in[n] = true
			r.size++
		}
	}
	return r
}

func (r *randomChooser) choose(num int) (int32, bool) {
	if prev := r.pc.prevOf(num); prev >= 0 && r.ch.fitsNode(num, prev, nil) {
		return prev, true
	}
	if r.size == 0 {
		return -1, false
	}
	return r.set.kth(r.rng.IntN(r.size)), true
}

func (r *randomChooser) assigned(n int32) {
	if ok := r.ch.feasibleAny(n); ok != r.in[n] {
		d := int32(1)
		if !ok {
			d = -1
		}
		r.set.add(n, d)
		r.size += int(d)
		r.in[n] = ok
	}
}
