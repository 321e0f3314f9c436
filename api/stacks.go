package api

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/kontena-ng/kontena/dispatcher"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/stack"
)

// StackInstallRequest carries a stack the CLI loaded, rendered and
// validated (with the user's files, environment and prompts, as Kontena's
// CLI did) together with its source and values, stored for upgrades.
type StackInstallRequest struct {
	Name     string         `json:"name"`
	FileName string         `json:"file_name"`
	Source   string         `json:"source"`
	Values   map[string]any `json:"values,omitempty"`
	Spec     stack.Stack    `json:"spec"`
}

// StackInfo is a stack with its services and their instances.
type StackInfo struct {
	Name      string        `json:"name"`
	Stack     string        `json:"stack"`
	Version   string        `json:"version"`
	Revision  uint64        `json:"revision"`
	CreatedAt time.Time     `json:"created_at"`
	Services  []ServiceInfo `json:"services"`
	// Values are the variable values the stack was rendered with (never
	// vault-backed ones), for `upgrade --reuse-values`.
	Values map[string]any `json:"values,omitempty"`
	// Warnings name what the grid accepted but will not do (a load
	// balancer setting it does not know, by line).
	Warnings []string `json:"warnings,omitempty"`
}

// UpgradePlan is what `stack upgrade --dry-run` shows.
type UpgradePlan struct {
	Stack    string   `json:"stack"`
	Changes  []string `json:"changes"`
	Warnings []string `json:"warnings,omitempty"`
}

// ServiceInfo is a service with its instances as nodes report them.
type ServiceInfo struct {
	ID        string         `json:"id"`
	Stack     string         `json:"stack"`
	Name      string         `json:"name"`
	Image     string         `json:"image"`
	Revision  uint64         `json:"revision"`
	Desired   int            `json:"desired"`
	Running   int            `json:"running"`
	Strategy  string         `json:"strategy"`
	Instances []InstanceInfo `json:"instances"`
	Error     string         `json:"error,omitempty"` // why instances could not be placed
	// Status is stopped, not deployed, or the deploy state (deploying,
	// running, failed).
	Status     string          `json:"status"`
	Stopped    bool            `json:"stopped,omitempty"`
	Undeployed bool            `json:"undeployed,omitempty"`
	Deploy     fsm.DeployState `json:"deploy,omitzero"`
	// NextDeploy is when deploy.interval redeploys the service next.
	NextDeploy  *time.Time `json:"next_deploy,omitempty"`
	WaitForPort int        `json:"wait_for_port,omitempty"`
	// WaitsFor is the service this one's deploy waits for (depends_on:
	// it starts once that one is up).
	WaitsFor string `json:"waits_for,omitempty"`
	// Waiting says, while a deploy runs, what each instance of it that is
	// not up yet waits for ("shop.web-2 on n2 (not healthy yet)").
	Waiting []string `json:"waiting,omitempty"`
	// Spec is the service definition (`service show` only).
	Spec *stack.Service `json:"spec,omitempty"`
}

// InstanceInfo is one instance and where it runs.
type InstanceInfo struct {
	Name     string             `json:"name"` // <stack>.<service>-<n>
	Number   int                `json:"number"`
	Node     string             `json:"node"`
	Revision uint64             `json:"revision"`
	Actual   fsm.InstanceActual `json:"actual"`
}

// ScaleRequest sets a service's instance count.
type ScaleRequest struct {
	Instances int `json:"instances"`
}

// Assignment and Assignments are what a node's agent watches (see
// dispatcher).
type (
	Assignment  = dispatcher.Assignment
	Assignments = dispatcher.Assignments
)

// InstallStack installs a stack.
func (c *Client) InstallStack(ctx context.Context, req StackInstallRequest) (*StackInfo, error) {
	var out StackInfo
	_, err := c.Do(ctx, http.MethodPost, "/v1/stacks", req, &out)
	return &out, err
}

// UpgradeStack replaces a stack's definition; with dryRun it only says what
// would change.
func (c *Client) UpgradeStack(ctx context.Context, req StackInstallRequest, dryRun bool) (*UpgradePlan, error) {
	var out UpgradePlan
	q := ""
	if dryRun {
		q = "?dry_run=true"
	}
	_, err := c.Do(ctx, http.MethodPut, "/v1/stacks/"+url.PathEscape(req.Name)+q, req, &out)
	return &out, err
}

// Stacks lists installed stacks.
func (c *Client) Stacks(ctx context.Context) ([]*StackInfo, error) {
	var out []*StackInfo
	_, err := c.Do(ctx, http.MethodGet, "/v1/stacks", nil, &out)
	return out, err
}

// Stack describes one stack.
func (c *Client) Stack(ctx context.Context, name string) (*StackInfo, error) {
	var out StackInfo
	_, err := c.Do(ctx, http.MethodGet, "/v1/stacks/"+url.PathEscape(name), nil, &out)
	return &out, err
}

// RemoveStack removes a stack and its services.
func (c *Client) RemoveStack(ctx context.Context, name string) error {
	_, err := c.Do(ctx, http.MethodDelete, "/v1/stacks/"+url.PathEscape(name), nil, nil)
	return err
}

// Services lists services, of one stack when stack is set.
func (c *Client) Services(ctx context.Context, stackName string) ([]*ServiceInfo, error) {
	var out []*ServiceInfo
	q := ""
	if stackName != "" {
		q = "?stack=" + url.QueryEscape(stackName)
	}
	_, err := c.Do(ctx, http.MethodGet, "/v1/services"+q, nil, &out)
	return out, err
}

// ScaleService sets the instance count of stack/service.
func (c *Client) ScaleService(ctx context.Context, id string, n int) (*ServiceInfo, error) {
	var out ServiceInfo
	_, err := c.Do(ctx, http.MethodPost, "/v1/services/"+id+"/scale", ScaleRequest{Instances: n}, &out)
	return &out, err
}
