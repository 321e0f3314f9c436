package scheduler

// placeCtx is the scratch state of one Place call: what this plan has
// placed so far, per node and zone, and where each instance number ran
// before. It lives only for the call, so State stays read-only.
type placeCtx struct {
	st  *State
	svc *Service
	id  string

	planCount  []int32 // node → instances of this service placed by this plan
	zoneCount  []int32 // zone → the same, per zone
	memPlanned []int64 // node → memory this plan added there

	prev    []int32 // number → node of the current instance, -1 none
	prevVol []int32 // number → node holding the instance's volumes, -1 none
	placed  []int32 // number → node chosen by this plan, -1 not yet
	scratch []int32
	one     [1]int32
}

func newPlaceCtx(st *State, svc *Service) *placeCtx {
	k := len(st.nodes)
	return &placeCtx{
		st:         st,
		svc:        svc,
		id:         svc.ID(),
		planCount:  make([]int32, k),
		zoneCount:  make([]int32, len(st.zones)),
		memPlanned: make([]int64, k),
	}
}

func at(l []int32, i int) int32 {
	if i < 0 || i >= len(l) {
		return -1
	}
	return l[i]
}

func setAt(l *[]int32, i int, v int32) {
	for len(*l) <= i {
		*l = append(*l, -1)
	}
	(*l)[i] = v
}

func (pc *placeCtx) prevOf(num int) int32   { return at(pc.prev, num) }
func (pc *placeCtx) placedOf(num int) int32 { return at(pc.placed, num) }

// assign records instance num on node n in the plan's running totals.
func (pc *placeCtx) assign(num int, n int32) {
	setAt(&pc.placed, num, n)
	pc.planCount[n]++
	pc.zoneCount[pc.st.zoneOf[n]]++
	if pc.prevOf(num) != n {
		pc.memPlanned[n] += pc.svc.Memory
	}
}

func (pc *placeCtx) name(n int32) string { return pc.st.nodes[n].display() }
