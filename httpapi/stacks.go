package httpapi

import (
	"errors"
	"net/http"
	"sort"
	"strings"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/dispatcher"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/lb"
	"github.com/kontena-ng/kontena/orchestrator"
	"github.com/kontena-ng/kontena/stack"
)

func (n *Server) installStack(w http.ResponseWriter, r *http.Request, p *principal) error {
	var req api.StackInstallRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if err := checkStackRequest(&req); err != nil {
		return err
	}
	if err := n.mayInstall(p, &req); err != nil {
		return err
	}
	warnings, err := lbWarnings(&req.Spec)
	if err != nil {
		return err
	}
	// No sensitive variable value is stored, whatever the client sent.
	stack.StripSensitive(&req.Spec)
	if err := n.checkSecrets(&req); err != nil {
		return err
	}
	res, idx, err := n.apply(r.Context(), &fsm.StackInstall{Stack: fsm.Stack{Name: req.Name, FileName: req.FileName,
		Source: req.Source, Values: req.Values, Spec: req.Spec}, NoDeploy: r.URL.Query().Get("no_deploy") == "true"}, auditOf(r, p))
	if err != nil {
		return err
	}
	store, _ := n.store()
	info := stackInfo(store, res.(*fsm.Stack))
	info.Warnings = warnings
	return writeJSON(w, idx, info)
}

func (n *Server) upgradeStack(w http.ResponseWriter, r *http.Request, p *principal) error {
	var req api.StackInstallRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	req.Name = r.PathValue("name")
	if err := checkStackRequest(&req); err != nil {
		return err
	}
	if err := n.mayInstall(p, &req); err != nil {
		return err
	}
	warnings, err := lbWarnings(&req.Spec)
	if err != nil {
		return err
	}
	// No sensitive variable value is stored, whatever the client sent.
	stack.StripSensitive(&req.Spec)
	if err := n.checkSecrets(&req); err != nil {
		return err
	}
	store, err := n.store()
	if err != nil {
		return err
	}
	if _, err := store.Stack(req.Name); err != nil {
		return err
	}
	current, err := store.Services(req.Name)
	if err != nil {
		return err
	}
	plan := api.UpgradePlan{Stack: req.Name, Changes: fsm.UpgradeChanges(current, req.Spec), Warnings: warnings}
	if r.URL.Query().Get("dry_run") == "true" {
		return writeJSON(w, store.Index(), plan)
	}
	_, idx, err := n.apply(r.Context(), &fsm.StackUpgrade{Stack: fsm.Stack{Name: req.Name, FileName: req.FileName,
		Source: req.Source, Values: req.Values, Spec: req.Spec}}, auditOf(r, p))
	if err != nil {
		return err
	}
	return writeJSON(w, idx, plan)
}

// checkStackRequest refuses what install and upgrade cannot run: the stack
// is checked by stack.ValidateSpec, the same check the CLI's loader runs,
// since nothing a client sends can be assumed to come from that loader.
func checkStackRequest(req *api.StackInstallRequest) error {
	if err := stack.ValidateStackName(req.Name); err != nil {
		return api.Errorf(api.CodeInvalid, "stack name %q: use lowercase letters, digits and dashes (a DNS label of at most %d)", req.Name, stack.MaxNameLen)
	}
	if len(req.Spec.Services) == 0 {
		return api.Errorf(api.CodeInvalid, "stack %s has no services", req.Name)
	}
	req.Spec.Name = req.Name
	if err := stack.ValidateSpec(&req.Spec); err != nil {
		return api.Errorf(api.CodeInvalid, "stack %s: %s", req.Name, problems(err))
	}
	for _, svc := range req.Spec.Services {
		if svc.Image == "" {
			return api.Errorf(api.CodeInvalid, "stack %s: service %s has no image (building images is not supported by install)", req.Name, svc.Name)
		}
	}
	return nil
}

// problems is a validation error on one line: each problem names its key.
func problems(err error) string {
	var list stack.Errors
	if errors.As(err, &list) {
		lines := make([]string, len(list))
		for i, e := range list {
			lines[i] = e.Error()
		}
		return strings.Join(lines, "; ")
	}
	return err.Error()
}

func (n *Server) listStacks(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, err := n.store()
	if err != nil {
		return err
	}
	if err := blockingWait(r, store); err != nil {
		return err
	}
	stacks, err := store.Stacks()
	if err != nil {
		return err
	}
	out := []*api.StackInfo{}
	for _, st := range stacks {
		out = append(out, stackInfo(store, st))
	}
	return writeJSON(w, store.Index(), out)
}

func (n *Server) getStack(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, err := n.store()
	if err != nil {
		return err
	}
	if err := blockingWait(r, store); err != nil {
		return err
	}
	st, err := store.Stack(r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, store.Index(), stackInfo(store, st))
}

func (n *Server) deleteStack(w http.ResponseWriter, r *http.Request, p *principal) error {
	_, idx, err := n.apply(r.Context(), &fsm.StackRemove{Name: r.PathValue("name")}, auditOf(r, p))
	if err != nil {
		return err
	}
	return writeJSON(w, idx, map[string]string{"removed": r.PathValue("name")})
}

func (n *Server) listServices(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, err := n.store()
	if err != nil {
		return err
	}
	if err := blockingWait(r, store); err != nil {
		return err
	}
	svcs, err := store.Services(r.URL.Query().Get("stack"))
	if err != nil {
		return err
	}
	names := nodeNames(store)
	out := []*api.ServiceInfo{}
	for _, svc := range svcs {
		out = append(out, serviceInfo(store, svc, names))
	}
	return writeJSON(w, store.Index(), out)
}

func (n *Server) scaleService(w http.ResponseWriter, r *http.Request, p *principal) error {
	var req api.ScaleRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if err := stack.ValidateInstances(req.Instances); err != nil {
		return api.Errorf(api.CodeInvalid, "service %s/%s: %v", r.PathValue("stack"), r.PathValue("service"), err)
	}
	res, idx, err := n.apply(r.Context(), &fsm.ServiceScale{ID: fsm.ServiceID(r.PathValue("stack"), r.PathValue("service")), Instances: req.Instances}, auditOf(r, p))
	if err != nil {
		return err
	}
	store, _ := n.store()
	return writeJSON(w, idx, serviceInfo(store, res.(*fsm.Service), nodeNames(store)))
}

// getAssignments is what a node's agent watches (a blocking query): the
// instances placed on the node with their service specs.
func (n *Server) getAssignments(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, node, err := n.pathNode(r)
	if err != nil {
		return err
	}
	if p.Node != node.ID && !p.admin() {
		return api.Errorf(api.CodeForbidden, "only node %s itself may read its assignments", node.Name)
	}
	// The instances, their services and stacks are read from one view: as
	// they were after the same command.
	return blockingAnswer(w, r, store, dispatcher.AssignmentTables(), func(view *fsm.View) (any, error) {
		return n.nodeAssignments(view, node.ID)
	})
}

// nodeAssignments are a node's assignments with the secrets they inject.
func (n *Server) nodeAssignments(view *fsm.View, nodeID string) (*dispatcher.Assignments, error) {
	out, err := dispatcher.NodeAssignments(view, nodeID)
	if err != nil {
		return nil, err
	}
	if err := n.withLBEnv(&out); err != nil {
		return nil, err
	}
	if needsSecrets(&out) {
		// Assignments without their secrets would start new containers
		// without them: a voter that cannot open them answers nothing,
		// and the node keeps running what it has.
		keys, err := n.keys()
		if err != nil {
			return nil, err
		}
		open := func(name string, sealed []byte) ([]byte, error) { return keys.Seal.Open(sealed, sealSecret(name)) }
		if err := dispatcher.WithSecrets(view, &out, open); err != nil && !errors.Is(err, fsm.ErrNotFound) {
			return nil, err
		}
	}
	return &out, nil
}

// needsSecrets tells whether any assignment injects a vault secret.
func needsSecrets(as *dispatcher.Assignments) bool {
	for i := range as.Items {
		if len(as.Items[i].Service.Secrets) > 0 || len(as.Items[i].Service.Certificates) > 0 {
			return true
		}
	}
	return false
}

// reportInstances records what a node's agent found; only the node itself
// may report on its instances.
func (n *Server) reportInstances(w http.ResponseWriter, r *http.Request, p *principal) error {
	var reports []fsm.InstanceReport
	if err := decodeBody(r, &reports); err != nil {
		return err
	}
	_, node, err := n.pathNode(r)
	if err != nil {
		return err
	}
	if p.Node != node.ID {
		return api.Errorf(api.CodeForbidden, "only node %s itself may report its instances", node.Name)
	}
	cmd, err := dispatcher.Report(node.ID, reports)
	if err != nil {
		return err
	}
	_, idx, err := n.apply(r.Context(), cmd, nil)
	if err != nil {
		return err
	}
	return writeJSON(w, idx, map[string]int{"reports": len(reports)})
}

func nodeNames(store *fsm.Store) map[string]string {
	names := map[string]string{}
	if nodes, err := store.Nodes(); err == nil {
		for _, nd := range nodes {
			names[nd.ID] = nd.Name
		}
	}
	return names
}

func stackInfo(store *fsm.Store, st *fsm.Stack) *api.StackInfo {
	info := &api.StackInfo{Name: st.Name, Stack: st.Spec.Stack, Version: st.Spec.Version, Revision: st.Revision,
		CreatedAt: st.CreatedAt, Values: st.Values}
	svcs, _ := store.Services(st.Name)
	names := nodeNames(store)
	for _, svc := range svcs {
		info.Services = append(info.Services, *serviceInfo(store, svc, names))
	}
	return info
}

func serviceInfo(store *fsm.Store, svc *fsm.Service, nodeNames map[string]string) *api.ServiceInfo {
	info := &api.ServiceInfo{ID: svc.ID, Stack: svc.Stack, Name: svc.Name, Image: svc.Spec.Image, Revision: svc.Revision,
		Desired: svc.Instances, Strategy: svc.Spec.Deploy.Strategy, Error: svc.PlacementError, Instances: []api.InstanceInfo{}}
	lifecycleInfo(info, svc)
	if all, err := store.Services(svc.Stack); err == nil {
		info.WaitsFor = orchestrator.DependencyWait(svc, all)
	}
	insts, _ := store.Instances(svc.ID)
	sort.Slice(insts, func(i, j int) bool { return insts[i].Number < insts[j].Number })
	if svc.Deploy.State == fsm.DeployDeploying {
		_, info.Waiting, _ = orchestrator.DeployProgress(svc, insts, nodeNames)
	}
	for _, in := range insts {
		if in.Actual.State == fsm.StateRunning && in.Actual.Revision == svc.Revision {
			info.Running++
		}
		info.Instances = append(info.Instances, api.InstanceInfo{Name: fsm.ContainerName(svc.Stack, svc.Name, in.Number),
			Number: in.Number, Node: nodeNames[in.NodeID], Revision: in.Revision, Actual: in.Actual})
	}
	return info
}

// checkSecrets refuses a stack whose services name vault secrets that do
// not exist, naming every one missing.
func (n *Server) checkSecrets(req *api.StackInstallRequest) error {
	store, err := n.store()
	if err != nil {
		return err
	}
	v := store.Snapshot()
	var missing []string
	for _, svc := range req.Spec.Services {
		for _, ref := range svc.Secrets {
			if _, err := v.Secret(ref.Secret); err != nil {
				missing = append(missing, svc.Name+": "+ref.Secret)
			}
		}
		for _, ref := range svc.Certificates {
			if _, err := v.Certificate(ref.Subject); err != nil {
				missing = append(missing, svc.Name+": certificate "+ref.Subject+" (kontena certificate import)")
			}
		}
	}
	if len(missing) > 0 {
		return api.Errorf(api.CodeInvalid, "stack %s names secrets that are not in the vault (%s); write them with `kontena vault write NAME`",
			req.Name, strings.Join(missing, ", "))
	}
	return nil
}

// mayInstall: a developer installs only stacks matching their patterns,
// and a stack whose containers could take over their host only when the
// grid allows it for developers; grid admins install anything.
func (n *Server) mayInstall(p *principal, req *api.StackInstallRequest) error {
	if !p.mayStack(req.Name) {
		return api.Errorf(api.CodeForbidden, "%s may act only on stacks matching %v, not on stack %q", p, p.Stacks, req.Name)
	}
	if p.admin() {
		return nil
	}
	uses := stack.HostAccesses(&req.Spec)
	if len(uses) == 0 {
		return nil
	}
	store, err := n.store()
	if err != nil {
		return err
	}
	if g, err := store.Grid(); err == nil && g.AllowHostAccess {
		return nil
	}
	list := make([]string, len(uses))
	for i, u := range uses {
		list[i] = u.String()
	}
	return api.Errorf(api.CodeForbidden, "stack %s can take over the hosts it runs on (%s): installing it needs the grid_admin role (%s acts with %v), or a grid that allows it for developers (`kontena grid update --allow-host-access`)",
		req.Name, strings.Join(list, "; "), p, p.Roles)
}

// withLBEnv gives each instance of a load balancer its token and the grid
// CA (as secrets: only its node gets them).
func (n *Server) withLBEnv(as *dispatcher.Assignments) error {
	for i := range as.Items {
		a := &as.Items[i]
		if !stack.IsLB(&a.Service) {
			continue
		}
		keys, err := n.keys()
		if err != nil {
			return err
		}
		if a.SecretEnv == nil {
			a.SecretEnv = map[string]string{}
		}
		for k, v := range n.lbEnv(a.Instance.ServiceID, keys) {
			a.SecretEnv[k] = v
		}
	}
	return nil
}

// lbWarnings checks the load balancer settings of a stack's services (the
// KONTENA_LB_* of services routed through one, the options of a load
// balancer): a value that cannot be served is refused, naming the service
// and the variable; a setting the load balancer ignores is a warning.
func lbWarnings(spec *stack.Stack) ([]string, error) {
	var out []string
	for _, svc := range spec.Services {
		if svc == nil {
			continue
		}
		env := map[string]string{}
		routed := false
		for _, e := range svc.Environment {
			if _, ok := env[e.Name]; !ok {
				env[e.Name] = e.Value
			}
			routed = routed || strings.HasPrefix(e.Name, "KONTENA_LB_") && !stack.IsLB(svc)
		}
		if stack.IsLB(svc) {
			_, _, w, err := lb.OptionsFromEnv(env)
			if err != nil {
				return nil, api.Errorf(api.CodeInvalid, "service %s (a load balancer): %v", svc.Name, err)
			}
			out = append(out, w...)
		}
		if routed {
			_, w, err := lb.ServiceFromEnv(spec.Name+"/"+svc.Name, env)
			if err != nil {
				return nil, api.Errorf(api.CodeInvalid, "%v", err)
			}
			out = append(out, w...)
		}
	}
	return out, nil
}
