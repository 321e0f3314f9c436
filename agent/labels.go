package agent

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Labels the agent puts on what it creates. They are the agent's only
// memory: an agent restart rebuilds everything it needs from them.
const (
	LabelManaged = "io.kontena.managed" // "true" on every agent container and volume
	// LabelNode is the ID of the node whose agent made the container: nodes
	// sharing one engine (several nodes on a development host) leave each
	// other's containers alone.
	LabelNode     = "io.kontena.node.id"
	LabelName     = "io.kontena.container.name"
	LabelStack    = "io.kontena.stack.name"
	LabelService  = "io.kontena.service.name"
	LabelInstance = "io.kontena.service.instance_number"
	LabelRevision = "io.kontena.service.revision"
	// LabelOneshotDone lists the oneshot hooks already run for the instance,
	// so that a restart or redeploy does not run them again.
	LabelOneshotDone = "io.kontena.hooks.oneshot_done"
	// LabelHook marks throw-away pre_start hook containers; they are not
	// managed containers (no LabelManaged) so a pass never adopts them.
	LabelHook = "io.kontena.hook"
	// LabelPreStop holds the instance's pre_stop hooks (JSON), so that a
	// container can be stopped properly even when its spec is gone (scale
	// down, service removed) or has changed (the old revision's hooks apply).
	LabelPreStop = "io.kontena.hooks.pre_stop"
	// LabelDrain is how long (ms) the container runs on once it is to stop.
	LabelDrain = "io.kontena.drain_ms"
	// LabelRestart is the restart generation a container was created at: a
	// new container has reached every restart asked for before it.
	LabelRestart = "io.kontena.service.restart_gen"
)

// containerLabels returns the user labels plus the agent's own; the agent's
// win so a stack file cannot fake another instance.
func containerLabels(s ContainerSpec, oneshotDone []string) map[string]string {
	l := make(map[string]string, len(s.Labels)+7)
	for k, v := range s.Labels {
		l[k] = v
	}
	l[LabelManaged] = "true"
	l[LabelName] = s.Name
	l[LabelStack] = s.Stack
	l[LabelService] = s.Service
	l[LabelInstance] = strconv.Itoa(s.Instance)
	l[LabelRevision] = strconv.FormatUint(s.Revision, 10)
	if hooks := hooksFor(s.Hooks.PreStop, s.Instance, nil); len(hooks) > 0 {
		if b, err := json.Marshal(hooks); err == nil {
			l[LabelPreStop] = string(b)
		}
	}
	if s.Drain > 0 {
		l[LabelDrain] = strconv.FormatInt(s.Drain.Milliseconds(), 10)
	}
	if len(oneshotDone) > 0 {
		l[LabelOneshotDone] = strings.Join(oneshotDone, ",")
	}
	if s.RestartGen > 0 {
		l[LabelRestart] = strconv.FormatUint(s.RestartGen, 10)
	}
	return l
}

func revisionOf(c Container) (uint64, bool) {
	r, err := strconv.ParseUint(c.Labels[LabelRevision], 10, 64)
	return r, err == nil
}

func oneshotDoneOf(c Container) []string {
	v := c.Labels[LabelOneshotDone]
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// instanceName is the key that pairs a container with its spec. The name
// label is authoritative; the Docker name is the fallback for containers
// whose label was lost.
func instanceName(c Container) string {
	if n := c.Labels[LabelName]; n != "" {
		return n
	}
	return c.Name
}

func sortedUnion(a, b []string) []string {
	set := map[string]bool{}
	for _, s := range append(append([]string{}, a...), b...) {
		set[s] = true
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func preStopOf(c Container) ([]Hook, error) {
	v := c.Labels[LabelPreStop]
	if v == "" {
		return nil, nil
	}
	var hooks []Hook
	if err := json.Unmarshal([]byte(v), &hooks); err != nil {
		return nil, fmt.Errorf("agent: label %s of %s: %w", LabelPreStop, c.Name, err)
	}
	return hooks, nil
}
