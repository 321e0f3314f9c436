package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/kontena-ng/kontena/fsm"
)

// ServiceDeployRequest is the body of POST /v1/services/{stack}/{service}/deploy.
type ServiceDeployRequest struct {
	// Force replaces every instance with a new container of the same spec
	// (a new revision, rolling).
	Force bool `json:"force,omitempty"`
}

// LifecycleResult answers a deploy, stop, start or restart of a stack or a
// service: the services as they are right after the change, and the ones
// that were left alone with why.
type LifecycleResult struct {
	Services []ServiceInfo `json:"services"`
	Skipped  []string      `json:"skipped,omitempty"`
}

// atIndex is the query of a read that must see the change at index (a
// blocking query, bounded): reads may go to a follower a moment behind.
func atIndex(index uint64) string {
	if index == 0 {
		return ""
	}
	return fmt.Sprintf("index=%d&wait=5s", index-1)
}

func withQuery(path string, q ...string) string {
	sep := "?"
	for _, p := range q {
		if p == "" {
			continue
		}
		path += sep + p
		sep = "&"
	}
	return path
}

// InstallStackAt installs a stack, optionally without deploying it, and
// returns the index of the change.
func (c *Client) InstallStackAt(ctx context.Context, req StackInstallRequest, noDeploy bool) (*StackInfo, uint64, error) {
	var out StackInfo
	q := ""
	if noDeploy {
		q = "no_deploy=true"
	}
	idx, err := c.Do(ctx, http.MethodPost, withQuery("/v1/stacks", q), req, &out)
	return &out, idx, err
}

// UpgradeStackAt is UpgradeStack returning the index of the change.
func (c *Client) UpgradeStackAt(ctx context.Context, req StackInstallRequest) (*UpgradePlan, uint64, error) {
	var out UpgradePlan
	idx, err := c.Do(ctx, http.MethodPut, "/v1/stacks/"+url.PathEscape(req.Name), req, &out)
	return &out, idx, err
}

// ScaleServiceAt is ScaleService returning the index of the change.
func (c *Client) ScaleServiceAt(ctx context.Context, id string, n int) (*ServiceInfo, uint64, error) {
	var out ServiceInfo
	idx, err := c.Do(ctx, http.MethodPost, "/v1/services/"+id+"/scale", ScaleRequest{Instances: n}, &out)
	return &out, idx, err
}

// StackAt describes a stack as of index or later.
func (c *Client) StackAt(ctx context.Context, name string, index uint64) (*StackInfo, error) {
	var out StackInfo
	_, err := c.Do(ctx, http.MethodGet, withQuery("/v1/stacks/"+url.PathEscape(name), atIndex(index)), nil, &out)
	return &out, err
}

// Service describes one service ("stack/service") as of index or later.
func (c *Client) Service(ctx context.Context, id string, index uint64) (*ServiceInfo, error) {
	var out ServiceInfo
	_, err := c.Do(ctx, http.MethodGet, withQuery("/v1/services/"+id, atIndex(index)), nil, &out)
	return &out, err
}

// StackAction runs deploy, stop, start or restart on every service of a
// stack and returns the index of the change.
func (c *Client) StackAction(ctx context.Context, name, action string) (*LifecycleResult, uint64, error) {
	var out LifecycleResult
	idx, err := c.Do(ctx, http.MethodPost, "/v1/stacks/"+url.PathEscape(name)+"/"+action, nil, &out)
	return &out, idx, err
}

// ServiceAction runs deploy, stop, start or restart on one service; body
// is nil or a ServiceDeployRequest.
func (c *Client) ServiceAction(ctx context.Context, id, action string, body any) (*LifecycleResult, uint64, error) {
	var out LifecycleResult
	idx, err := c.Do(ctx, http.MethodPost, "/v1/services/"+id+"/"+action, body, &out)
	return &out, idx, err
}

// RemoveService removes one service from its stack.
func (c *Client) RemoveService(ctx context.Context, id string) error {
	_, err := c.Do(ctx, http.MethodDelete, "/v1/services/"+id, nil, nil)
	return err
}

// ServiceEvents lists the events of a service and its instances.
func (c *Client) ServiceEvents(ctx context.Context, id string) ([]*fsm.Event, error) {
	var out []*fsm.Event
	_, err := c.Do(ctx, http.MethodGet, "/v1/services/"+id+"/events", nil, &out)
	return out, err
}
