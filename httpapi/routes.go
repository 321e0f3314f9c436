package httpapi

import (
	"net/http"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

// routes is the API: every endpoint with who may call it and where it is
// served. A route that is not here does not exist (the admission table
// test fails for any route without an expected answer).
func (n *Server) routes() []route {
	const (
		user      = allowUser | allowAdmin
		admin     = allowAdmin
		nodeSelf  = allowNodeSelf
		voter     = allowVoter
		leader    = allowLeader
		public    = allowPublic
		adminNode = allowAdmin | allowNodeSelf
	)
	return []route{
		{method: "GET", pattern: "/v1/whoami", allow: user, h: n.getWhoAmI},
		{method: "GET", pattern: "/v1/nodes", allow: user, h: n.listNodes},
		{method: "GET", pattern: "/v1/nodes/{name}", allow: user, h: n.getNode},
		{method: "PATCH", pattern: "/v1/nodes/{name}", allow: admin, at: atLeader, h: n.patchNode},
		{method: "DELETE", pattern: "/v1/nodes/{name}", allow: admin, at: atLeader, h: n.deleteNode},
		{method: "POST", pattern: "/v1/nodes/{name}/promote", allow: admin, at: atLeader, h: n.roleNode(fsm.RoleVoter)},
		{method: "POST", pattern: "/v1/nodes/{name}/demote", allow: admin, at: atLeader, h: n.roleNode(fsm.RoleWorker)},
		{method: "GET", pattern: "/v1/grid", allow: user, h: n.getGrid},
		{method: "GET", pattern: "/v1/grid/health", allow: user, at: atAnyState, h: n.getHealth},
		{method: "PATCH", pattern: "/v1/grid", allow: admin, at: atLeader, h: n.updateGrid},
		{method: "GET", pattern: "/v1/grid/token", allow: admin, at: atLeader, h: n.getJoinToken},
		{method: "POST", pattern: "/v1/grid/token/rotate", allow: admin, at: atLeader, h: n.rotateJoinToken},
		{method: "POST", pattern: "/v1/grid/lock", allow: admin, at: atLeader, h: n.lockGrid},
		{method: "GET", pattern: "/v1/grid/backup", allow: admin, at: atLeader, h: n.backupGrid},
		{method: "POST", pattern: "/v1/grid/master-key/rotate", allow: admin, at: atLeader, h: n.rotateMasterKey},
		{method: "POST", pattern: "/v1/grid/unlock-key/rotate", allow: admin, at: atLeader, h: n.rotateUnlockKey},
		// Served by the voter asked, caught up or not: a restarted voter of
		// a locked grid needs the key before it can serve secrets.
		{method: "POST", pattern: "/v1/grid/unlock", allow: admin, at: atAnyState, h: n.unlockVoter},
		{method: "GET", pattern: "/v1/tokens", allow: user, h: n.listTokens},
		{method: "POST", pattern: "/v1/tokens", allow: user, at: atLeader, h: n.createToken},
		{method: "DELETE", pattern: "/v1/tokens/{id}", allow: user, at: atLeader, h: n.deleteToken},
		{method: "GET", pattern: "/v1/events", allow: user, h: n.listEvents},
		{method: "GET", pattern: "/v1/audit", allow: admin, h: n.listAudit},
		{method: "POST", pattern: "/v1/stacks", allow: admin, at: atLeader, h: n.installStack},
		{method: "GET", pattern: "/v1/stacks", allow: user, h: n.listStacks},
		{method: "GET", pattern: "/v1/stacks/{name}", allow: user, h: n.getStack},
		{method: "DELETE", pattern: "/v1/stacks/{name}", allow: admin, at: atLeader, h: n.deleteStack},
		{method: "PUT", pattern: "/v1/stacks/{name}", allow: admin, at: atLeader, h: n.upgradeStack},
		{method: "POST", pattern: "/v1/stacks/{name}/deploy", allow: admin, at: atLeader, h: n.stackAction("deploy")},
		{method: "POST", pattern: "/v1/stacks/{name}/stop", allow: admin, at: atLeader, h: n.stackAction("stop")},
		{method: "POST", pattern: "/v1/stacks/{name}/start", allow: admin, at: atLeader, h: n.stackAction("start")},
		{method: "POST", pattern: "/v1/stacks/{name}/restart", allow: admin, at: atLeader, h: n.stackAction("restart")},
		{method: "GET", pattern: "/v1/stacks/{name}/logs", allow: admin, h: n.stackLogs},
		{method: "GET", pattern: "/v1/services", allow: user, h: n.listServices},
		{method: "GET", pattern: "/v1/services/{stack}/{service}", allow: user, h: n.getService},
		{method: "DELETE", pattern: "/v1/services/{stack}/{service}", allow: admin, at: atLeader, h: n.deleteService},
		{method: "POST", pattern: "/v1/services/{stack}/{service}/scale", allow: admin, at: atLeader, h: n.scaleService},
		{method: "GET", pattern: "/v1/services/{stack}/{service}/logs", allow: admin, h: n.serviceLogs},
		{method: "GET", pattern: "/v1/services/{stack}/{service}/events", allow: user, h: n.serviceEvents},
		{method: "POST", pattern: "/v1/services/{stack}/{service}/deploy", allow: admin, at: atLeader, h: n.serviceAction("deploy")},
		{method: "POST", pattern: "/v1/services/{stack}/{service}/stop", allow: admin, at: atLeader, h: n.serviceAction("stop")},
		{method: "POST", pattern: "/v1/services/{stack}/{service}/start", allow: admin, at: atLeader, h: n.serviceAction("start")},
		{method: "POST", pattern: "/v1/services/{stack}/{service}/restart", allow: admin, at: atLeader, h: n.serviceAction("restart")},
		{method: "GET", pattern: "/v1/containers", allow: user, h: n.listContainers},
		{method: "GET", pattern: "/v1/containers/{name}", allow: admin, h: n.inspectContainer},
		{method: "GET", pattern: "/v1/containers/{name}/logs", allow: admin, h: n.containerLogs},
		{method: "POST", pattern: "/v1/containers/{name}/exec", allow: admin, upgrade: true, h: n.serveExec},
		{method: "GET", pattern: "/v1/stats", allow: user, h: n.containerStats},
		{method: "GET", pattern: "/v1/vault", allow: admin, h: n.listSecrets},
		{method: "GET", pattern: "/v1/vault/{name...}", allow: admin, at: atLeader, h: n.readSecret},
		{method: "PUT", pattern: "/v1/vault/{name...}", allow: admin, at: atLeader, h: n.writeSecret},
		{method: "DELETE", pattern: "/v1/vault/{name...}", allow: admin, at: atLeader, h: n.removeSecret},
		{method: "GET", pattern: "/v1/vpn", allow: admin, h: n.listVPN},
		{method: "POST", pattern: "/v1/vpn", allow: admin, at: atLeader, h: n.createVPN},
		{method: "DELETE", pattern: "/v1/vpn/{name}", allow: admin, at: atLeader, h: n.deleteVPN},

		// The node protocol: a node reads and writes its own resources only.
		{method: "GET", pattern: "/v1/nodes/{name}/assignments", allow: adminNode, h: n.getAssignments},
		{method: "POST", pattern: "/v1/nodes/{name}/instances", allow: nodeSelf, at: atLeader, h: n.reportInstances},
		{method: "GET", pattern: "/v1/nodes/{name}/netmap", allow: adminNode, h: n.getNetMap},
		{method: "GET", pattern: "/v1/nodes/{name}/overlay", allow: user, h: n.getOverlayStatus},
		{method: "PUT", pattern: "/v1/nodes/{name}/overlay", allow: nodeSelf, at: atLeader, h: n.setOverlay},
		{method: "PUT", pattern: "/v1/nodes/{name}/resources", allow: nodeSelf, at: atLeader, h: n.setResources},

		// Join: authenticated by the join token in the body, on the leader.
		{method: "POST", pattern: "/v1/join", allow: public, at: atLeader, h: n.serveJoin},

		// Node-to-node calls about the node that answers them.
		{method: "POST", pattern: "/v1/internal/promote", allow: leader, at: atThisNode, h: plain(n.servePromote)},
		{method: "POST", pattern: "/v1/internal/demote", allow: leader, at: atThisNode, h: plain(n.serveDemote)},
		{method: "POST", pattern: "/v1/internal/removed", allow: leader, at: atThisNode, h: plain(n.serveRemoved)},
		{method: "GET", pattern: "/v1/internal/status", allow: voter, at: atThisNode, h: plain(n.serveStatus)},
		{method: "GET", pattern: "/v1/internal/containers/{name}/logs", allow: voter, at: atThisNode, h: plain(n.serveContainerLogs)},
		{method: "GET", pattern: "/v1/internal/containers/{name}/inspect", allow: voter, at: atThisNode, h: plain(n.serveContainerInspect)},
		{method: "GET", pattern: "/v1/internal/containers/{name}/stats", allow: voter, at: atThisNode, h: plain(n.serveContainerStats)},
		{method: "POST", pattern: "/v1/internal/containers/{name}/exec", allow: voter, at: atThisNode, upgrade: true, h: plain(n.serveContainerExec)},
	}
}

// plain adapts a handler that writes its own answers.
func plain(h http.HandlerFunc) func(http.ResponseWriter, *http.Request, *principal) error {
	return func(w http.ResponseWriter, r *http.Request, _ *principal) error {
		h(w, r)
		return nil
	}
}

// handler builds the API from the route table: every route behind the one
// admission middleware.
func (n *Server) handler() http.Handler {
	return n.mux(n.routes())
}

func (n *Server) mux(routes []route) http.Handler {
	mux := http.NewServeMux()
	for _, rt := range routes {
		mux.Handle(rt.method+" "+rt.pattern, n.admit(rt))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, api.Errorf(api.CodeNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}
