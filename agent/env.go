package agent

import (
	"sort"
	"strconv"
)

// NodeInfo is what the agent knows about its node and grid, for the
// KONTENA_* variables.
type NodeInfo struct {
	// NodeID scopes the agent to the containers it made (LabelNode); ""
	// manages every container labelled LabelManaged on the engine.
	NodeID       string
	NodeName     string
	GridName     string
	PlatformName string // Kontena v1 name of the grid's platform; defaults to GridName
}

// containerEnv returns the "K=V" list for Docker: the spec's env plus the
// KONTENA_* variables of Kontena v1. The KONTENA_* values win, so a service
// cannot pretend to be another one. Sorted so that the same spec always
// gives the same container config.
func containerEnv(s ContainerSpec, n NodeInfo) []string {
	platform := n.PlatformName
	if platform == "" {
		platform = n.GridName
	}
	m := make(map[string]string, len(s.Env)+7)
	for k, v := range s.Env {
		m[k] = v
	}
	m["KONTENA_SERVICE_ID"] = s.ServiceID
	m["KONTENA_SERVICE_NAME"] = s.Service
	m["KONTENA_GRID_NAME"] = n.GridName
	m["KONTENA_PLATFORM_NAME"] = platform
	m["KONTENA_STACK_NAME"] = s.Stack
	m["KONTENA_NODE_NAME"] = n.NodeName
	m["KONTENA_SERVICE_INSTANCE_NUMBER"] = strconv.Itoa(s.Instance)
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
