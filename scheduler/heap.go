package scheduler

// idxHeap is a binary min-heap of small integers (node or zone indexes)
// that knows where each item sits, so an item whose key changed can be
// fixed or removed in O(log n). Several heaps may share one pos slice when
// every item belongs to at most one of them.
type idxHeap struct {
	items []int32
	pos   []int32 // item → index in items, -1 when absent
	less  func(a, b int32) bool
}

func (h *idxHeap) has(x int32) bool { return h.pos[x] >= 0 }

func (h *idxHeap) top() int32 {
	if len(h.items) == 0 {
		return -1
	}
	return h.items[0]
}

func (h *idxHeap) push(x int32) {
	h.pos[x] = int32(len(h.items))
	h.items = append(h.items, x)
	h.up(len(h.items) - 1)
}

func (h *idxHeap) remove(x int32) {
	i := int(h.pos[x])
	last := len(h.items) - 1
	h.swap(i, last)
	h.items = h.items[:last]
	h.pos[x] = -1
	if i < last {
		h.fixAt(i)
	}
}

func (h *idxHeap) fix(x int32) { h.fixAt(int(h.pos[x])) }

func (h *idxHeap) fixAt(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h *idxHeap) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.pos[h.items[i]] = int32(i)
	h.pos[h.items[j]] = int32(j)
}

func (h *idxHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(h.items[i], h.items[p]) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h *idxHeap) down(i int) bool {
	start, n := i, len(h.items)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && h.less(h.items[r], h.items[l]) {
			m = r
		}
		if !h.less(h.items[m], h.items[i]) {
			break
		}
		h.swap(i, m)
		i = m
	}
	return i > start
}

// fenwick counts the feasible nodes below each index, so the k-th
// feasible node in grid order is found in O(log n): the random strategy
// then draws exactly what a scan of the filtered list would have drawn.
type fenwick struct {
	t    []int32
	size int
	step int // highest power of two <= size
}

func newFenwick(size int) *fenwick {
	f := &fenwick{t: make([]int32, size+1), size: size, step: 1}
	for f.step*2 <= size {
		f.step *= 2
	}
	return f
}

func (f *fenwick) add(i int32, d int32) {
	for j := int(i) + 1; j <= f.size; j += j & -j {
		f.t[j] += d
	}
}

// kth returns the index of the (k+1)-th set item, k from 0.
func (f *fenwick) kth(k int) int32 {
	pos, rem := 0, int32(k+1)
	for s := f.step; s > 0; s /= 2 {
		if n := pos + s; n <= f.size && f.t[n] < rem {
			pos = n
			rem -= f.t[n]
		}
	}
	return int32(pos)
}
