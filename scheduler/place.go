package scheduler

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
)

// Place decides the node of every instance of svc on the grid st. It keeps
// instances where they are when their node still fits (stateful ones never
// move), and lists the instances to remove. Every instance that cannot be
// placed gets a *NoFitError (joined when several); the plan still holds
// the others. Other errors mean the service itself is invalid.
func Place(st *State, svc Service, opt Options) (Plan, error) {
	if err := checkService(&svc); err != nil {
		return Plan{}, err
	}
	pc := newPlaceCtx(st, &svc)
	plan := Plan{Service: pc.id}
	limit := svc.Instances
	if svc.strategy() == StrategyDaemon {
		limit = math.MaxInt
	}
	existing, gone := pc.previous(limit, &plan)
	steps, err := buildSteps(pc)
	if err != nil {
		return Plan{}, fmt.Errorf("service %s: %w", pc.id, err)
	}
	ch := newChain(pc, steps)
	var fails []*NoFitError
	// When every per-instance filter is local (see step.local), the
	// feasible nodes are kept up to date one placement at a time;
	// otherwise every node is filtered for every instance. Both choose
	// the same nodes (TestIncrementalMatchesScan).
	fast := ch.incremental() && !opt.scan
	switch svc.strategy() {
	case StrategyDaemon:
		fails = placeDaemon(pc, ch, existing, gone, &plan)
	case StrategyRandom:
		rng := opt.Rand
		if rng == nil {
			h := fnv.New64a()
			h.Write([]byte(pc.id))
			rng = rand.New(rand.NewPCG(h.Sum64(), 0))
		}
		var c chooser = &scanChooser{pc, ch, randomPicker(rng)}
		if fast {
			c = newRandomChooser(pc, ch, rng)
		}
		fails = placeNumbered(pc, ch, gone, c, &plan)
	default:
		var c chooser = &scanChooser{pc, ch, pickHA}
		if fast {
			c = newHAChooser(pc, ch)
		}
		fails = placeNumbered(pc, ch, gone, c, &plan)
	}
	n := svc.Instances
	if svc.strategy() == StrategyDaemon {
		n = len(plan.Placements)
	}
	plan.MaxInFlight = max(1, int(math.Floor(float64(n)*(1-svc.MinHealth)+1e-9)))
	return plan, joinFits(pc.id, fails, len(plan.Unplaced))
}

func checkService(svc *Service) error {
	id := svc.ID()
	switch {
	case svc.Name == "":
		return fmt.Errorf("service has no name")
	case svc.Instances < 0:
		return fmt.Errorf("service %s: instances is %d; it must be 0 or more", id, svc.Instances)
	case svc.CPUs < 0 || svc.Memory < 0:
		return fmt.Errorf("service %s: cpus and memory must not be negative", id)
	case svc.MinHealth < 0 || svc.MinHealth > 1:
		return fmt.Errorf("service %s: min_health is %v; it must be between 0 and 1", id, svc.MinHealth)
	}
	switch svc.strategy() {
	case StrategyHA, StrategyDaemon, StrategyRandom:
	default:
		return fmt.Errorf("service %s: unknown deploy strategy %q (use ha, daemon or random)", id, svc.Strategy)
	}
	for _, p := range svc.Ports {
		if p.HostPort < 1 || p.HostPort > 65535 || (p.proto() != "tcp" && p.proto() != "udp") {
			return fmt.Errorf("service %s: published port %q is invalid (want 1-65535, tcp or udp)", id, p.String())
		}
	}
	return nil
}

// previous indexes where each instance number runs now. Numbers above
// limit, numbers below 1 and second records of a number go to plan.Remove.
// It returns the instances kept for placement and, for those on nodes that
// left the grid, their node IDs by number.
func (pc *placeCtx) previous(limit int, plan *Plan) ([]Instance, map[int]string) {
	var kept []Instance
	gone := map[int]string{}
	seen := map[int]bool{}
	for _, in := range pc.st.instances[pc.id] {
		if in.Number < 1 || in.Number > limit || seen[in.Number] {
			plan.Remove = append(plan.Remove, in)
			continue
		}
		seen[in.Number] = true
		kept = append(kept, in)
		n := pc.st.node(in.NodeID)
		if n < 0 {
			gone[in.Number] = in.NodeID
			continue
		}
		setAt(&pc.prev, in.Number, n)
		if in.Volumes {
			setAt(&pc.prevVol, in.Number, n)
		}
	}
	return kept, gone
}

// prevID is the node the instance number runs on now, "" if new.
func (pc *placeCtx) prevID(num int, gone map[int]string) string {
	if n := pc.prevOf(num); n >= 0 {
		return pc.st.nodes[n].ID
	}
	return gone[num]
}

// placeNumbered places instances 1..Instances one by one (ha, random).
func placeNumbered(pc *placeCtx, ch *chain, gone map[int]string, c chooser, plan *Plan) []*NoFitError {
	var fails []*NoFitError
	fail := func(e *NoFitError, explain func() []Rejection) {
		plan.Unplaced = append(plan.Unplaced, e.Number)
		if len(fails) < maxExplained {
			if explain != nil {
				e.Rejections = explain()
			}
			fails = append(fails, e)
		}
	}
	plan.Placements = make([]Placement, 0, pc.svc.Instances)
	for num := 1; num <= pc.svc.Instances; num++ {
		prev, prevID := pc.prevOf(num), pc.prevID(num, gone)
		var n int32
		switch {
		case pc.svc.Stateful && prevID != "" && prev < 0:
			fail(&NoFitError{Service: pc.id, Number: num, StaysOn: prevID, NodeGone: true}, nil)
			continue
		case pc.svc.Stateful && prevID != "":
			if !ch.fitsAll(num, prev, nil) {
				fail(&NoFitError{Service: pc.id, Number: num, StaysOn: pc.name(prev)}, func() []Rejection { return ch.explain(num, prev) })
				continue
			}
			n = prev
		default:
			var ok bool
			if n, ok = c.choose(num); !ok {
				fail(&NoFitError{Service: pc.id, Number: num}, func() []Rejection { return ch.explain(num, -1) })
				continue
			}
		}
		pc.assign(num, n)
		c.assigned(n)
		plan.Placements = append(plan.Placements, Placement{Number: num, NodeID: pc.st.nodes[n].ID, Previous: prevID})
	}
	return fails
}

// placeDaemon runs Instances instances on every node that passes the
// filters. Instances that still fit keep their node and number; new ones
// take the lowest free numbers, nodes in grid order.
func placeDaemon(pc *placeCtx, ch *chain, existing []Instance, gone map[int]string, plan *Plan) []*NoFitError {
	var fails []*NoFitError
	per := int32(pc.svc.Instances)
	used := map[int]bool{}
	for _, in := range existing {
		num, n := in.Number, pc.st.node(in.NodeID)
		switch {
		case n >= 0 && pc.planCount[n] < per && ch.fitsNode(num, n, nil):
			pc.assign(num, n)
			plan.Placements = append(plan.Placements, Placement{Number: num, NodeID: in.NodeID, Previous: in.NodeID})
			used[num] = true
		case pc.svc.Stateful && n < 0:
			fails = append(fails, &NoFitError{Service: pc.id, Number: num, StaysOn: gone[num], NodeGone: true})
			plan.Unplaced = append(plan.Unplaced, num)
			used[num] = true
		case pc.svc.Stateful && pc.planCount[n] < per:
			var raws []rawRej
			ch.fitsNode(num, n, &raws)
			fails = append(fails, &NoFitError{Service: pc.id, Number: num, StaysOn: pc.name(n), Rejections: ch.words(num, raws)})
			plan.Unplaced = append(plan.Unplaced, num)
			used[num] = true
		default:
			plan.Remove = append(plan.Remove, in)
		}
	}
	next := 1
	for n := range int32(len(pc.st.nodes)) {
		for pc.planCount[n] < per {
			for used[next] {
				next++
			}
			if !ch.fitsNode(next, n, nil) {
				var raws []rawRej
				ch.fitsNode(next, n, &raws)
				plan.Skipped = append(plan.Skipped, ch.words(next, raws)...)
				break
			}
			pc.assign(next, n)
			plan.Placements = append(plan.Placements, Placement{Number: next, NodeID: pc.st.nodes[n].ID})
			used[next] = true
		}
	}
	slices.SortFunc(plan.Placements, func(a, b Placement) int { return cmp.Compare(a.Number, b.Number) })
	slices.SortFunc(plan.Remove, func(a, b Instance) int { return cmp.Compare(a.Number, b.Number) })
	if per > 0 && len(plan.Placements) == 0 && len(fails) == 0 {
		fails = append(fails, &NoFitError{Service: pc.id, Rejections: plan.Skipped})
	}
	return fails
}
