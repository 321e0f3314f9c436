package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Reconcile makes one pass: it creates missing instances, replaces those of
// another revision, removes the undesired, restarts exited and unhealthy
// ones and adopts running ones of the right revision without touching
// them. It reports every instance's state, then returns the joined errors of
// the instances it could not bring up (other instances are still handled).
func (a *Agent) Reconcile(ctx context.Context, desired []ContainerSpec) error {
	a.mu.Lock()
	defer a.mu.Unlock()

	all, err := a.rt.List(ctx)
	if err != nil {
		return fmt.Errorf("agent: list containers: %w (is the Docker engine running?)", err)
	}
	containers := all[:0:0]
	for _, c := range all {
		if a.node.NodeID == "" || c.Labels[LabelNode] == a.node.NodeID {
			containers = append(containers, c)
		}
	}
	specs := append([]ContainerSpec(nil), desired...)
	sort.Slice(specs, func(i, j int) bool { return specs[i].Name < specs[j].Name })
	// strays are containers of no desired instance, and extra containers of
	// one instance (only one is kept).
	byName := make(map[string]Container, len(containers))
	var strays []Container
	for _, c := range containers {
		n := instanceName(c)
		if _, dup := byName[n]; dup || !inSpecs(specs, n) {
			strays = append(strays, c)
			continue
		}
		byName[n] = c
	}
	wanted := make(map[string]bool, len(specs))
	var errs []error
	var statuses []InstanceStatus

	// Remove first: an instance number that is gone frees its host ports
	// for the ones that come.
	for _, c := range strays {
		st := InstanceStatus{Name: instanceName(c), Stack: c.Labels[LabelStack],
			Service: c.Labels[LabelService], ContainerID: c.ID, State: StateRemoved}
		st.Revision, _ = revisionOf(c)
		st.Instance, _ = strconv.Atoi(c.Labels[LabelInstance])
		a.log.Info("removing container no longer desired", "container", st.Name, "id", c.ID)
		if err := a.destroy(ctx, c); err != nil {
			st.State, st.Error = StateFailed, err.Error()
			errs = append(errs, err)
		}
		a.dropHealth(c.ID)
		// A duplicate of a desired instance is not reported: the instance's
		// own status below is the one that counts.
		if !inSpecs(specs, st.Name) {
			statuses = append(statuses, st)
		}
	}

	var unique []ContainerSpec
	for _, s := range specs {
		if wanted[s.Name] {
			errs = append(errs, fmt.Errorf("agent: %s is desired twice; kept the first", s.Name))
			continue
		}
		wanted[s.Name] = true
		unique = append(unique, s)
	}
	// Instances are independent: bring several up at once (creating and
	// starting a container is mostly waiting on the engine), a few at a
	// time so a large scale-up does not swamp it. Results keep spec order.
	// A container that mounts another's volumes or joins its network needs
	// that one first: such dependents wait for a later wave.
	results := make([]InstanceStatus, len(unique))
	failures := make([]error, len(unique))
	sem := make(chan struct{}, parallelism)
	for _, wave := range waves(unique) {
		var wg sync.WaitGroup
		for _, i := range wave {
			s := unique[i]
			var cp *Container
			if c, ok := byName[s.Name]; ok {
				cp = &c
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				results[i], failures[i] = a.reconcileOne(ctx, s, cp)
			}()
		}
		wg.Wait()
	}
	for i := range unique {
		if failures[i] != nil {
			errs = append(errs, failures[i])
		}
		statuses = append(statuses, a.withEvent(results[i]))
	}
	a.forgetHealth(statuses)
	a.forgetLifecycle(statuses)
	for i := range statuses {
		if statuses[i].State != StateRemoved && statuses[i].State != StateFailed {
			var cp *Container
			if c, ok := byName[statuses[i].Name]; ok && c.ID == statuses[i].ContainerID {
				cp = &c
			}
			statuses[i].IP = a.ipOf(statuses[i].Name, cp)
		}
	}
	a.syncNetwork(ctx, specs, containers)

	if a.reporter != nil {
		a.reporter.Report(ctx, statuses)
	}
	return errors.Join(errs...)
}

// parallelism is how many instances one pass works on at once.
const parallelism = 4

// reconcileOne brings one instance to its spec. c is its current container
// (nil if none).
func (a *Agent) reconcileOne(ctx context.Context, s ContainerSpec, c *Container) (InstanceStatus, error) {
	st := InstanceStatus{Name: s.Name, Stack: s.Stack, Service: s.Service, Instance: s.Instance}
	fail := func(err error) (InstanceStatus, error) {
		st.State, st.Error = StateFailed, err.Error()
		return st, err
	}
	if s.Stopped {
		return a.reconcileStopped(ctx, s, c)
	}
	log := a.log.With("container", s.Name, "revision", s.Revision)

	var carried []string // oneshot hooks already run for this instance
	if c != nil {
		rev, _ := revisionOf(*c)
		carried = oneshotDoneOf(*c)
		if rev != s.Revision {
			log.Info("replacing container of another revision", "old_revision", rev, "id", c.ID)
			if err := a.destroy(ctx, *c); err != nil {
				return fail(err)
			}
			a.dropHealth(c.ID)
			c = nil
		}
	}
	if c == nil {
		log.Info("creating container")
		id, err := a.create(ctx, s, carried)
		st.ContainerID = id
		if err != nil {
			return fail(err)
		}
		st.Revision, st.State = s.Revision, StateRunning
		st.Health = a.initialHealth(s)
		a.startedFresh(s, id, &st)
		return st, nil
	}

	st.ContainerID, st.Revision = c.ID, s.Revision
	switch c.State {
	case "running", "restarting", "paused":
		// Adopt: the right revision runs; never touch it (this is what makes
		// an agent restart harmless to healthy workloads).
		st.State = StateRunning
		if a.restartDue(s, *c) {
			return a.restartOnRequest(ctx, s, *c, st)
		}
		st.Restart = a.knownRestart(s, *c)
		h, err := a.checkHealth(ctx, s, *c)
		st.Health = h
		if err != nil {
			log.Warn("restarting unhealthy container", "id", c.ID, "err", err)
			st.State, st.Error = StateUnhealthy, err.Error()
			a.noteEvent(s.Name, EventUnhealthy, err.Error()+"; restarted")
			a.forgetPort(c.ID)
			if rerr := a.restart(ctx, s, *c); rerr != nil {
				return fail(fmt.Errorf("%w; restart: %w", err, rerr))
			}
			if s.WaitForPort > 0 {
				st.WaitPort = WaitPortWaiting
			}
			return st, nil
		}
		a.checkPort(ctx, s, *c, &st)
		return st, nil
	default: // created, exited, dead
		log.Info("starting stopped container", "id", c.ID, "state", c.State, "exit_code", c.ExitCode)
		a.dropHealth(c.ID)
		a.forgetPort(c.ID)
		a.startEvent(s, *c)
		if err := a.startWithHooks(ctx, s, c.ID, carried); err != nil {
			return fail(err)
		}
		st.State = StateRunning
		st.Health = a.initialHealth(s)
		a.startedFresh(s, c.ID, &st)
		return st, nil
	}
}

// waves groups spec indexes so that every spec comes after the specs of
// this pass whose containers it uses (volumes_from, network_mode
// container:); a cycle ends up in the last wave, where the engine reports
// it.
func waves(specs []ContainerSpec) [][]int {
	wave := make(map[string]int, len(specs))
	for range specs { // a chain is at most len(specs) long
		changed := false
		for _, s := range specs {
			w := 0
			for _, d := range s.uses() {
				if dw, ok := wave[d]; ok && d != s.Name {
					w = max(w, dw+1)
				} else if inSpecs(specs, d) && d != s.Name {
					w = max(w, 1)
				}
			}
			if w >= len(specs) {
				w = len(specs) - 1
			}
			if old, ok := wave[s.Name]; !ok || old != w {
				wave[s.Name], changed = w, true
			}
		}
		if !changed {
			break
		}
	}
	var out [][]int
	for i, s := range specs {
		w := wave[s.Name]
		for len(out) <= w {
			out = append(out, nil)
		}
		out[w] = append(out[w], i)
	}
	return slices.DeleteFunc(out, func(w []int) bool { return len(w) == 0 })
}

// uses lists the engine containers s needs on this node.
func (s ContainerSpec) uses() []string {
	out := append([]string(nil), s.VolumesFrom...)
	if x, ok := strings.CutPrefix(s.NetworkMode, "container:"); ok {
		out = append(out, x)
	}
	return out
}

func inSpecs(specs []ContainerSpec, name string) bool {
	for _, s := range specs {
		if s.Name == name {
			return true
		}
	}
	return false
}
