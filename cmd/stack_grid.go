package cmd

import (
	"context"
	"net/http"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/stack"
)

// gridResolver answers the stack language's grid resolvers (vault,
// service_instances, service_link) and its `to: vault` setter from the grid
// the session is logged in to.
type gridResolver struct {
	api *api.Client
}

var _ stack.GridResolver = gridResolver{}

// VaultRead reads a secret (audited, as `vault read`).
func (g gridResolver) VaultRead(ctx context.Context, name string) (string, bool, error) {
	v, err := g.api.ReadSecret(ctx, name)
	if api.IsCode(err, api.CodeNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return v.Value, true, nil
}

// VaultWrite stores a value a variable resolved (`to: vault`). The same
// value again changes nothing and redeploys nothing.
func (g gridResolver) VaultWrite(ctx context.Context, name, value string) error {
	_, err := g.api.WriteSecret(ctx, name, api.SecretWriteRequest{Value: value, Mode: fsm.SecretUpsert})
	return err
}

// ServiceInstances is a service's desired instance count.
func (g gridResolver) ServiceInstances(ctx context.Context, stackName, service string) (int, bool, error) {
	svc, err := g.api.Service(ctx, fsm.ServiceID(stackName, service), 0)
	if api.IsCode(err, api.CodeNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return svc.Desired, true, nil
}

// Services are the grid's services, for service_link.
func (g gridResolver) Services(ctx context.Context) ([]stack.GridService, error) {
	all, err := g.api.Services(ctx, "")
	if err != nil {
		return nil, err
	}
	out := make([]stack.GridService, 0, len(all))
	for _, s := range all {
		out = append(out, stack.GridService{Stack: s.Stack, Name: s.Name, Image: s.Image})
	}
	return out, nil
}

// Certificates are the subjects of the grid's certificates.
func (g gridResolver) Certificates(ctx context.Context) ([]string, error) {
	var certs []api.CertificateInfo
	if _, err := g.api.Do(ctx, http.MethodGet, "/v1/certificates", nil, &certs); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(certs))
	for _, c := range certs {
		out = append(out, c.Subject)
	}
	return out, nil
}

// readOnlyGrid is the grid as `stack validate --online` sees it: resolvers
// read, but `to: vault` writes nothing (validate changes no state).
type readOnlyGrid struct{ gridResolver }

func (readOnlyGrid) VaultWrite(context.Context, string, string) error { return nil }
