package httpapi

import (
	"net/http"
	"slices"
	"strings"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

// lifecycleInfo adds the lifecycle of a service to what the API shows.
func lifecycleInfo(info *api.ServiceInfo, svc *fsm.Service) {
	info.Status, info.Stopped, info.Undeployed, info.Deploy = svc.Status(), svc.Stopped, svc.Undeployed, svc.Deploy
	info.WaitForPort = svc.Spec.Deploy.WaitForPort
	if next := svc.NextDeploy(); !next.IsZero() {
		info.NextDeploy = &next
	}
}

// lifecycleCommand is the FSM command of a lifecycle action.
func lifecycleCommand(action string, ids []string, force bool) (fsm.Command, error) {
	switch action {
	case "deploy":
		return &fsm.ServiceRedeploy{IDs: ids, Force: force}, nil
	case "stop":
		return &fsm.ServiceStop{IDs: ids}, nil
	case "start":
		return &fsm.ServiceStart{IDs: ids}, nil
	case "restart":
		return &fsm.ServiceRestart{IDs: ids}, nil
	}
	return nil, api.Errorf(api.CodeInvalid, "unknown action %q", action)
}

// skipReason says why a stack action leaves a service alone ("" = it
// applies).
func skipReason(action string, svc *fsm.Service) string {
	switch {
	case (action == "deploy" || action == "restart") && svc.Stopped:
		return "stopped; start it first"
	case action == "restart" && svc.Undeployed:
		return "not deployed yet"
	case action == "stop" && svc.Stopped:
		return "already stopped"
	case action == "start" && !svc.Stopped:
		return "not stopped"
	}
	return ""
}

// stackAction runs deploy, stop, start or restart on every service of a
// stack it applies to, in one change.
func (n *Server) stackAction(action string) func(http.ResponseWriter, *http.Request, *principal) error {
	return func(w http.ResponseWriter, r *http.Request, p *principal) error {
		store, err := n.store()
		if err != nil {
			return err
		}
		name := r.PathValue("name")
		if _, err := store.Stack(name); err != nil {
			return err
		}
		svcs, err := store.Services(name)
		if err != nil {
			return err
		}
		var ids, skipped []string
		for _, svc := range svcs {
			if why := skipReason(action, svc); why != "" {
				skipped = append(skipped, svc.ID+": "+why)
				continue
			}
			ids = append(ids, svc.ID)
		}
		idx := store.Index()
		if len(ids) == 0 {
			if action == "deploy" || action == "restart" {
				return api.Errorf(api.CodeConflict, "nothing to %s in stack %s: %s", action, name, strings.Join(skipped, "; "))
			}
		} else {
			cmd, err := lifecycleCommand(action, ids, false)
			if err != nil {
				return err
			}
			if _, idx, err = n.apply(r.Context(), cmd, auditOf(r, p)); err != nil {
				return err
			}
		}
		return writeJSON(w, idx, lifecycleResult(store, ids, skipped))
	}
}

// serviceAction runs deploy, stop, start or restart on one service.
func (n *Server) serviceAction(action string) func(http.ResponseWriter, *http.Request, *principal) error {
	return func(w http.ResponseWriter, r *http.Request, p *principal) error {
		id := fsm.ServiceID(r.PathValue("stack"), r.PathValue("service"))
		var req api.ServiceDeployRequest
		if action == "deploy" && r.ContentLength != 0 {
			if err := decodeBody(r, &req); err != nil {
				return err
			}
		}
		store, err := n.store()
		if err != nil {
			return err
		}
		svc, err := store.Service(id)
		if err != nil {
			return err
		}
		if why := skipReason(action, svc); why != "" && (action == "stop" || action == "start") {
			// Nothing to do; deploy and restart of a stopped service are
			// refused by the FSM with the way out.
			return writeJSON(w, store.Index(), lifecycleResult(store, nil, []string{svc.ID + ": " + why}))
		}
		cmd, err := lifecycleCommand(action, []string{id}, req.Force)
		if err != nil {
			return err
		}
		_, idx, err := n.apply(r.Context(), cmd, auditOf(r, p))
		if err != nil {
			return err
		}
		return writeJSON(w, idx, lifecycleResult(store, []string{id}, nil))
	}
}

func lifecycleResult(store *fsm.Store, ids, skipped []string) *api.LifecycleResult {
	out := &api.LifecycleResult{Services: []api.ServiceInfo{}, Skipped: skipped}
	names := nodeNames(store)
	for _, id := range ids {
		if svc, err := store.Service(id); err == nil {
			out.Services = append(out.Services, *serviceInfo(store, svc, names))
		}
	}
	return out
}

// getService is `service show`: the service with its spec and instances.
// Environment values are shown to admins only.
func (n *Server) getService(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, err := n.store()
	if err != nil {
		return err
	}
	if err := blockingWait(r, store); err != nil {
		return err
	}
	svc, err := store.Service(fsm.ServiceID(r.PathValue("stack"), r.PathValue("service")))
	if err != nil {
		return err
	}
	info := serviceInfo(store, svc, nodeNames(store))
	spec := svc.Spec
	if !p.admin() {
		spec.Environment = slices.Clone(spec.Environment)
		for i := range spec.Environment {
			spec.Environment[i].Value = "(hidden)"
		}
	}
	info.Spec = &spec
	return writeJSON(w, store.Index(), info)
}

func (n *Server) deleteService(w http.ResponseWriter, r *http.Request, p *principal) error {
	id := fsm.ServiceID(r.PathValue("stack"), r.PathValue("service"))
	_, idx, err := n.apply(r.Context(), &fsm.ServiceRemove{ID: id}, auditOf(r, p))
	if err != nil {
		return err
	}
	return writeJSON(w, idx, map[string]string{"removed": id})
}

// serviceEvents is the grid event log filtered to one service and its
// instances; a removed service still has its events.
func (n *Server) serviceEvents(w http.ResponseWriter, r *http.Request, p *principal) error {
	store, err := n.store()
	if err != nil {
		return err
	}
	id := fsm.ServiceID(r.PathValue("stack"), r.PathValue("service"))
	evs, err := store.ServiceEvents(id, 0)
	if err != nil {
		return err
	}
	if len(evs) == 0 {
		if _, err := store.Service(id); err != nil {
			return err
		}
	}
	return writeJSON(w, store.Index(), evs)
}

// stackLogs merges the logs of every instance of every service of a stack.
func (n *Server) stackLogs(w http.ResponseWriter, r *http.Request, p *principal) error {
	q, err := parseLogQuery(r)
	if err != nil {
		return err
	}
	store, err := n.store()
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	if _, err := store.Stack(name); err != nil {
		return err
	}
	return n.mergeLogs(w, r, q, func() ([]logSource, error) {
		store, err := n.store()
		if err != nil {
			return nil, err
		}
		svcs, err := store.Services(name)
		if err != nil {
			return nil, err
		}
		var sources []logSource
		for _, svc := range svcs {
			src, err := logSources(store, svc)
			if err != nil {
				return nil, err
			}
			sources = append(sources, src...)
		}
		return sources, nil
	})
}
