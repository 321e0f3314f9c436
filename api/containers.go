package api

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// ContainerInfo is one instance container as the grid state knows it
// (`container ls`): where it is placed and what its node last reported.
type ContainerInfo struct {
	Name        string    `json:"name"` // <stack>.<service>-<n>
	Stack       string    `json:"stack"`
	Service     string    `json:"service"` // <stack>/<service>
	Instance    int       `json:"instance"`
	Node        string    `json:"node"`
	NodeStatus  string    `json:"node_status,omitempty"`
	State       string    `json:"state,omitempty"` // as the node reported it; empty: not reported yet
	Health      string    `json:"health,omitempty"`
	Revision    uint64    `json:"revision"`         // the revision the node runs
	Desired     uint64    `json:"desired_revision"` // the revision it must run
	ContainerID string    `json:"container_id,omitempty"`
	IP          string    `json:"ip,omitempty"`
	Image       string    `json:"image"`
	Error       string    `json:"error,omitempty"`
	ReportedAt  time.Time `json:"reported_at,omitzero"`
}

// ContainerDetails is a trimmed `docker inspect` of an instance container,
// read from the node that runs it. Environment values are never included:
// secrets live there.
type ContainerDetails struct {
	Name         string             `json:"name"`
	Node         string             `json:"node"`
	ID           string             `json:"id"`
	Image        string             `json:"image"`
	ImageID      string             `json:"image_id"`
	Cmd          []string           `json:"cmd,omitempty"`
	Entrypoint   []string           `json:"entrypoint,omitempty"`
	State        string             `json:"state"`
	Health       string             `json:"health,omitempty"`
	CreatedAt    string             `json:"created_at,omitempty"`
	StartedAt    string             `json:"started_at,omitempty"`
	FinishedAt   string             `json:"finished_at,omitempty"`
	ExitCode     int                `json:"exit_code"`
	OOMKilled    bool               `json:"oom_killed,omitempty"`
	RestartCount int                `json:"restart_count"`
	EnvNames     []string           `json:"env_names"`
	Labels       map[string]string  `json:"labels,omitempty"`
	Mounts       []ContainerMount   `json:"mounts"`
	Networks     []ContainerNetwork `json:"networks"`
	Ports        []ContainerPort    `json:"ports"`
}

// ContainerMount is one volume or bind mount.
type ContainerMount struct {
	Type        string `json:"type"`
	Name        string `json:"name,omitempty"`
	Source      string `json:"source,omitempty"`
	Destination string `json:"destination"`
	RW          bool   `json:"rw"`
}

// ContainerNetwork is one network the container is attached to.
type ContainerNetwork struct {
	Name    string `json:"name"`
	IP      string `json:"ip,omitempty"`
	Gateway string `json:"gateway,omitempty"`
	MAC     string `json:"mac,omitempty"`
}

// ContainerPort is a published port.
type ContainerPort struct {
	ContainerPort string `json:"container_port"` // "8080/tcp"
	HostIP        string `json:"host_ip,omitempty"`
	HostPort      string `json:"host_port,omitempty"`
}

// ContainerStats is one container's resource use, sampled on its node. A
// container whose node could not be asked has only Name, Node and Error.
type ContainerStats struct {
	Name          string    `json:"name"`
	Node          string    `json:"node"`
	CPUPercent    float64   `json:"cpu_percent"` // 100 = one CPU busy
	MemoryUsage   uint64    `json:"memory_usage"`
	MemoryLimit   uint64    `json:"memory_limit"`
	MemoryPercent float64   `json:"memory_percent"`
	NetRx         uint64    `json:"net_rx"`
	NetTx         uint64    `json:"net_tx"`
	PIDs          uint64    `json:"pids"`
	At            time.Time `json:"at,omitzero"`
	Error         string    `json:"error,omitempty"`
}

// ContainerFilter narrows `container ls` and stats.
type ContainerFilter struct {
	Stack   string
	Service string // <stack>/<service>
	Node    string
	Names   []string
}

func (f ContainerFilter) query() string {
	v := url.Values{}
	if f.Stack != "" {
		v.Set("stack", f.Stack)
	}
	if f.Service != "" {
		v.Set("service", f.Service)
	}
	if f.Node != "" {
		v.Set("node", f.Node)
	}
	for _, n := range f.Names {
		v.Add("name", n)
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

// Containers lists instance containers from the grid state.
func (c *Client) Containers(ctx context.Context, f ContainerFilter) ([]*ContainerInfo, error) {
	var out []*ContainerInfo
	_, err := c.Do(ctx, http.MethodGet, "/v1/containers"+f.query(), nil, &out)
	return out, err
}

// InspectContainer asks the node that runs a container for its details.
func (c *Client) InspectContainer(ctx context.Context, name string) (*ContainerDetails, error) {
	var out ContainerDetails
	_, err := c.Do(ctx, http.MethodGet, "/v1/containers/"+url.PathEscape(name), nil, &out)
	return &out, err
}

// ContainerStats samples the containers f selects on their nodes, in
// parallel.
func (c *Client) ContainerStats(ctx context.Context, f ContainerFilter) ([]*ContainerStats, error) {
	var out []*ContainerStats
	_, err := c.Do(ctx, http.MethodGet, "/v1/stats"+f.query(), nil, &out)
	return out, err
}
