package scheduler

// affinitySteps turns the service's affinity rules (or, when it has none,
// the grid's default affinity) into one step each, in the order written:
// a soft rule is judged on what the rules before it left.
func affinitySteps(pc *placeCtx) ([]step, error) {
	rules, grid := pc.svc.Affinity, false
	if len(rules) == 0 {
		rules, grid = pc.st.defaultAffinity, true
	}
	steps := make([]step, 0, len(rules))
	for _, raw := range rules {
		a, err := parseAffinity(raw)
		if err != nil {
			return nil, err
		}
		a.grid = grid
		s, err := affinityStep(pc, &a)
		if err != nil {
			return nil, err
		}
		steps = append(steps, s)
	}
	return steps, nil
}

func affinityStep(pc *placeCtx, a *affinity) (step, error) {
	suffix := ""
	if a.grid {
		suffix = " (grid default)"
	}
	// Resolving for instance 1 checks the regex once, before any placement.
	m1, err := a.resolve(pc.svc.Stack, 1)
	if err != nil {
		return step{}, err
	}
	bindMatch := func(m affMatch) pred {
		target := int32(-1)
		if m.a.key == "container" && m.re == nil {
			target = pc.containerNode(m.val)
		}
		return pred{
			ok:  func(n int32) bool { return m.matches(pc, target, n) != a.neg },
			why: func(n int32) string { return m.why(pc, target, n) },
		}
	}
	s := step{
		label: func(num int) string { return "affinity " + subst(a.raw, num) + suffix },
		soft:  a.soft,
	}
	if !a.perNum && !m1.dependsOnPlan(pc) {
		p := bindMatch(m1)
		s.static, s.bind = true, func(int) pred { return p }
		return s, nil
	}
	// An exact or regex rule on the service itself, without %s, only
	// looks at how many of its instances this plan put on each node.
	s.local = !a.perNum && !a.soft && a.key == "service"
	s.bind = func(num int) pred {
		m, err := a.resolve(pc.svc.Stack, num)
		if err != nil { // "%s" made the pattern invalid for this number
			return pred{ok: func(int32) bool { return false }, why: func(int32) string { return err.Error() }}
		}
		return bindMatch(m)
	}
	return s, nil
}
