package agent

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// preStopTimeout bounds all pre_stop hooks of one stop.
const preStopTimeout = time.Minute

// create creates and starts a new container for s. carried lists oneshot
// hooks that already ran for this instance (from the container it replaces).
// If any step after the create fails the container is removed again, so the
// next pass retries the whole thing instead of adopting a half-started one.
func (a *Agent) create(ctx context.Context, s ContainerSpec, carried []string) (string, error) {
	if err := a.rt.EnsureImage(ctx, s.Image); err != nil {
		return "", fmt.Errorf("agent: image %q for %s: %w", s.Image, s.Name, err)
	}
	mounts, err := a.mounts(ctx, s)
	if err != nil {
		return "", err
	}
	done := sortedUnion(carried, oneshotNames(s, carried))
	labels := containerLabels(s, done)
	if a.node.NodeID != "" {
		labels[LabelNode] = a.node.NodeID
	}
	at, err := a.attach(s)
	if err != nil {
		return "", fmt.Errorf("agent: address for %s: %w", s.Name, err)
	}
	req := CreateRequest{Spec: s, Name: s.Name, Env: containerEnv(s, a.node), Labels: labels, Mounts: mounts, Net: at}
	id, err := a.rt.Create(ctx, req)
	if err != nil {
		return "", fmt.Errorf("agent: create %s from image %q: %w", s.Name, s.Image, err)
	}
	if err := a.startWithHooks(ctx, s, id, carried); err != nil {
		if rerr := a.rt.Remove(ctx, id); rerr != nil {
			a.log.Warn("could not remove container after failed start", "container", s.Name, "id", id, "err", rerr)
		}
		return id, err
	}
	return id, nil
}

// startWithHooks runs pre_start hooks, starts the container, then runs
// post_start hooks. Oneshot hooks listed in carried are skipped.
func (a *Agent) startWithHooks(ctx context.Context, s ContainerSpec, id string, carried []string) error {
	for _, h := range hooksFor(s.Hooks.PreStart, s.Instance, carried) {
		mounts, err := a.mounts(ctx, s)
		if err != nil {
			return err
		}
		req := CreateRequest{Spec: s, Name: s.Name + ".pre_start-" + h.Name, Env: containerEnv(s, a.node),
			Labels: hookLabels(s), Mounts: mounts,
			Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{h.Cmd}, NoPorts: true, Net: a.hookAttach(s)}
		code, out, err := a.rt.RunOnce(ctx, req)
		if err := hookErr(s, "pre_start", h, code, out, err); err != nil {
			return err
		}
	}
	if err := a.rt.Start(ctx, id); err != nil {
		return fmt.Errorf("agent: start %s: %w", s.Name, err)
	}
	for _, h := range hooksFor(s.Hooks.PostStart, s.Instance, carried) {
		code, out, err := a.rt.Exec(ctx, id, []string{"/bin/sh", "-c", h.Cmd})
		if err := hookErr(s, "post_start", h, code, out, err); err != nil {
			return err
		}
	}
	return nil
}

// stopWithHooks runs the container's pre_stop hooks (from its label) when it
// runs, then stops it with its own stop signal and grace period. A failing
// pre_stop hook is logged, not fatal: the container must stop anyway.
func (a *Agent) stopWithHooks(ctx context.Context, c Container) error {
	if c.State == "running" {
		// A hung pre_stop hook must not block the pass (and every other
		// instance) forever.
		hctx, cancel := context.WithTimeout(ctx, preStopTimeout)
		defer cancel()
		hooks, err := preStopOf(c)
		if err != nil {
			a.log.Warn("skipping pre_stop hooks", "container", c.Name, "err", err)
		}
		for _, h := range hooks {
			code, out, err := a.rt.Exec(hctx, c.ID, []string{"/bin/sh", "-c", h.Cmd})
			if err := hookErr(ContainerSpec{Name: instanceName(c)}, "pre_stop", h, code, out, err); err != nil {
				a.log.Warn("pre_stop hook failed; stopping anyway", "container", c.Name, "err", err)
			}
		}
		// A load balancer's backend drains: the load balancers stop routing
		// to it (its instance left the state) before it stops.
		if ms, err := strconv.ParseInt(c.Labels[LabelDrain], 10, 64); err == nil && ms > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(min(time.Duration(ms)*time.Millisecond, 30*time.Second)):
			}
		}
	}
	if err := a.rt.Stop(ctx, c.ID); err != nil {
		return fmt.Errorf("agent: stop %s (%s): %w", instanceName(c), c.ID, err)
	}
	return nil
}

// destroy stops (with pre_stop hooks) and removes a container.
func (a *Agent) destroy(ctx context.Context, c Container) error {
	if err := a.stopWithHooks(ctx, c); err != nil {
		return err
	}
	if err := a.rt.Remove(ctx, c.ID); err != nil {
		return fmt.Errorf("agent: remove %s (%s): %w", instanceName(c), c.ID, err)
	}
	if a.secrets != nil {
		if err := a.secrets.Remove(c.Name); err != nil {
			a.log.Warn("could not remove the secret files of a removed container", "container", c.Name, "err", err)
		}
	}
	return nil
}

// mounts are the spec's volume mounts and, when it has secrets of type
// file, their directory at /run/secrets (read-only).
func (a *Agent) mounts(ctx context.Context, s ContainerSpec) ([]Mount, error) {
	mounts, err := a.ensureVolumes(ctx, s)
	if err != nil || len(s.SecretFiles) == 0 {
		return mounts, err
	}
	if a.secrets == nil {
		return nil, fmt.Errorf("agent: %s has secrets of type file and this node keeps no secret files (it found no tmpfs for them; see the node's log)", s.Name)
	}
	dir, err := a.secrets.Write(s.Name, s.SecretFiles)
	if err != nil {
		return nil, fmt.Errorf("agent: secret files of %s: %w", s.Name, err)
	}
	return append(mounts, Mount{Kind: VolumeBind, Source: dir, Target: SecretsPath, ReadOnly: true}), nil
}

// restart stops and starts a container in place (same ID), with hooks.
func (a *Agent) restart(ctx context.Context, s ContainerSpec, c Container) error {
	a.dropHealth(c.ID)
	if err := a.stopWithHooks(ctx, c); err != nil {
		return err
	}
	return a.startWithHooks(ctx, s, c.ID, oneshotDoneOf(c))
}

// ensureVolumes creates the spec's named volumes and resolves every mount.
// Named volumes are never removed by the agent: they hold the instance's data
// (Kontena keeps volumes per instance).
func (a *Agent) ensureVolumes(ctx context.Context, s ContainerSpec) ([]Mount, error) {
	mounts := make([]Mount, 0, len(s.Volumes))
	for _, v := range s.Volumes {
		m := Mount{Kind: v.Kind, Target: v.Path, ReadOnly: v.ReadOnly}
		switch v.Kind {
		case VolumeNamed:
			m.Source = volumeName(s, v)
			labels := map[string]string{LabelManaged: "true", LabelStack: s.Stack,
				"io.kontena.volume.scope": string(scopeOf(v))}
			switch scopeOf(v) {
			case ScopeGrid:
				delete(labels, LabelStack) // shared beyond the stack
			case ScopeInstance:
				labels[LabelService] = s.Service
				labels[LabelInstance] = fmt.Sprint(s.Instance)
			}
			if err := a.rt.EnsureVolume(ctx, VolumeRequest{Name: m.Source, Driver: v.Driver, Labels: labels}); err != nil {
				return nil, fmt.Errorf("agent: volume %s for %s: %w", m.Source, s.Name, err)
			}
		case VolumeBind:
			m.Source = v.HostPath
		case VolumeAnonymous:
		default:
			return nil, fmt.Errorf("agent: %s: volume for %s has unknown kind %q (want named, bind or anonymous)", s.Name, v.Path, v.Kind)
		}
		mounts = append(mounts, m)
	}
	return mounts, nil
}

func scopeOf(v Volume) VolumeScope {
	if v.Scope == "" {
		return ScopeInstance
	}
	return v.Scope
}

// volumeName is the engine name of a named volume.
func volumeName(s ContainerSpec, v Volume) string {
	switch scopeOf(v) {
	case ScopeStack:
		return s.Stack + "." + v.Name
	case ScopeGrid:
		return v.Name
	}
	return s.Name + "." + v.Name
}

func hookLabels(s ContainerSpec) map[string]string {
	return map[string]string{LabelHook: "true", LabelStack: s.Stack, LabelService: s.Service,
		LabelName: s.Name}
}

// hooksFor returns the hooks that apply to instance, minus oneshot hooks
// already done.
func hooksFor(hooks []Hook, instance int, done []string) []Hook {
	var out []Hook
	for _, h := range hooks {
		if h.appliesTo(instance) && !(h.Oneshot && slices.Contains(done, h.Name)) {
			out = append(out, h)
		}
	}
	return out
}

// oneshotNames are the oneshot pre/post_start hooks a start of s will run.
func oneshotNames(s ContainerSpec, done []string) []string {
	var out []string
	for _, h := range append(hooksFor(s.Hooks.PreStart, s.Instance, done), hooksFor(s.Hooks.PostStart, s.Instance, done)...) {
		if h.Oneshot {
			out = append(out, h.Name)
		}
	}
	return out
}

func hookErr(s ContainerSpec, kind string, h Hook, code int, out string, err error) error {
	if err != nil {
		return fmt.Errorf("agent: %s hook %q of %s: %w", kind, h.Name, s.Name, err)
	}
	if code != 0 {
		return fmt.Errorf("agent: %s hook %q of %s exited with code %d: %s", kind, h.Name, s.Name, code, strings.TrimSpace(out))
	}
	return nil
}
