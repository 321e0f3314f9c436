package agent

import (
	"context"
	"time"
)

// Run reconciles on every desired state received, on every container death
// the runtime reports, and every Interval (sooner when health checks are
// due). It returns when ctx ends.
//
// Nothing is reconciled before the first desired state arrives: an agent
// that restarts while the masters are unreachable must not take "no news"
// for "run nothing". When desired closes or goes quiet, the agent keeps
// enforcing the last state it got.
func (a *Agent) Run(ctx context.Context, desired <-chan []ContainerSpec) error {
	var (
		current []ContainerSpec
		have    bool
	)
	events := a.rt.Watch(ctx)
	timer := time.NewTimer(a.interval)
	defer timer.Stop()

	pass := func() {
		start := time.Now()
		if err := a.Reconcile(ctx, current); err != nil && ctx.Err() == nil {
			a.log.Warn("reconcile pass had errors", "err", err, "took", time.Since(start))
		}
		next := a.interval
		if d := nextHealthDue(current); d > 0 && d < next {
			next = d
		}
		if a.waitingForPorts() && portRecheck < next {
			next = portRecheck // a deploy waits on those ports
		}
		timer.Reset(next)
	}

	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case d, ok := <-desired:
			if !ok {
				a.log.Warn("desired state feed closed; keeping the last desired state")
				desired = nil
				continue
			}
			current, have = d, true
			pass()
		case _, ok := <-events:
			if !ok {
				events = nil // event stream broke: the ticker still covers us
				continue
			}
			if have {
				pass()
			}
		case <-timer.C:
			if have {
				pass()
			} else {
				timer.Reset(a.interval)
			}
		}
	}
}
