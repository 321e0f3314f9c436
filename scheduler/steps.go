package scheduler

// buildSteps lists the filters that apply to this service, in the order
// Kontena 1.x applied them (their order matters to soft steps and to the
// order of error messages). Filters with nothing to check are left out.
func buildSteps(pc *placeCtx) ([]step, error) {
	svc := pc.svc
	steps := []step{availabilityStep(pc)}
	if svc.Stateful {
		steps = append(steps, ephemeralStep(pc))
	}
	if d := neededDrivers(svc); len(d) > 0 {
		steps = append(steps, volumeDriverStep(pc, d))
	}
	if !svc.Stateful && hasAny(pc.prevVol) {
		steps = append(steps, volumeInstanceStep(pc))
	}
	aff, err := affinitySteps(pc)
	if err != nil {
		return nil, err
	}
	steps = append(steps, aff...)
	if len(svc.Ports) > 0 {
		steps = append(steps, portsStep(pc), ownPortsStep(pc))
	}
	if svc.CPUs > 0 {
		steps = append(steps, cpusStep(pc))
	}
	if svc.Memory > 0 {
		steps = append(steps, memoryStep(pc))
	}
	if t := dependencyTargets(svc); len(t) > 0 {
		steps = append(steps, dependencyStep(pc, t))
	}
	return steps, nil
}

func hasAny(l []int32) bool {
	for _, v := range l {
		if v >= 0 {
			return true
		}
	}
	return false
}
