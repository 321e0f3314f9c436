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
		anyUser   = allowAnyUser   // whoever logged in, whatever their roles
		read      = allowViewer    // viewer and up: reading the grid
		dev       = allowDeveloper // developer and up: stacks, services, logs, exec, vault writes
		admin     = allowGridAdmin // grid_admin and master_admin
		users     = allowUserAdmin // user_admin and master_admin
		nodeSelf  = allowNodeSelf
		voter     = allowVoter
		leader    = allowLeader
		public    = allowPublic
		adminNode = allowGridAdmin | allowNodeSelf
	)
	return []route{
		{method: "GET", pattern: "/v1/whoami", allow: anyUser, h: n.getWhoAmI},
		{method: "GET", pattern: "/v1/nodes", allow: read, h: n.listNodes},
		{method: "GET", pattern: "/v1/nodes/{name}", allow: read, h: n.getNode},
		{method: "PATCH", pattern: "/v1/nodes/{name}", allow: admin, at: atLeader, h: n.patchNode},
		{method: "DELETE", pattern: "/v1/nodes/{name}", allow: admin, at: atLeader, h: n.deleteNode},
		{method: "POST", pattern: "/v1/nodes/{name}/promote", allow: admin, at: atLeader, h: n.roleNode(fsm.RoleVoter)},
		{method: "POST", pattern: "/v1/nodes/{name}/demote", allow: admin, at: atLeader, h: n.roleNode(fsm.RoleWorker)},
		{method: "GET", pattern: "/v1/grid", allow: read, h: n.getGrid},
		{method: "GET", pattern: "/v1/grid/health", allow: read, at: atAnyState, h: n.getHealth},
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
		{method: "GET", pattern: "/v1/tokens", allow: anyUser, h: n.listTokens},
		{method: "POST", pattern: "/v1/tokens", allow: anyUser, at: atLeader, h: n.createToken},
		{method: "DELETE", pattern: "/v1/tokens/{id}", allow: anyUser, at: atLeader, h: n.deleteToken},
		{method: "POST", pattern: "/v1/tokens/used", allow: voter, at: atLeader, h: n.postTokenUses},
		{method: "GET", pattern: "/v1/users", allow: users, h: n.listUsers},
		{method: "GET", pattern: "/v1/users/{name}", allow: users, h: n.getUser},
		{method: "DELETE", pattern: "/v1/users/{name}", allow: users, at: atLeader, h: n.deleteUser},
		{method: "POST", pattern: "/v1/users/{name}/roles", allow: users, at: atLeader, h: n.userRoles},
		{method: "GET", pattern: "/v1/invites", allow: users, h: n.listInvites},
		{method: "POST", pattern: "/v1/invites", allow: users, at: atLeader, h: n.createInvite},
		{method: "GET", pattern: "/v1/events", allow: read, h: n.listEvents},
		{method: "GET", pattern: "/v1/audit", allow: admin, h: n.listAudit},
		{method: "POST", pattern: "/v1/stacks", allow: dev, at: atLeader, h: n.installStack},
		{method: "GET", pattern: "/v1/stacks", allow: read, h: n.listStacks},
		{method: "GET", pattern: "/v1/stacks/{name}", allow: read, stack: "name", h: n.getStack},
		{method: "DELETE", pattern: "/v1/stacks/{name}", allow: dev, stack: "name", at: atLeader, h: n.deleteStack},
		{method: "PUT", pattern: "/v1/stacks/{name}", allow: dev, stack: "name", at: atLeader, h: n.upgradeStack},
		{method: "POST", pattern: "/v1/stacks/{name}/deploy", allow: dev, stack: "name", at: atLeader, h: n.stackAction("deploy")},
		{method: "POST", pattern: "/v1/stacks/{name}/stop", allow: dev, stack: "name", at: atLeader, h: n.stackAction("stop")},
		{method: "POST", pattern: "/v1/stacks/{name}/start", allow: dev, stack: "name", at: atLeader, h: n.stackAction("start")},
		{method: "POST", pattern: "/v1/stacks/{name}/restart", allow: dev, stack: "name", at: atLeader, h: n.stackAction("restart")},
		{method: "GET", pattern: "/v1/stacks/{name}/logs", allow: dev, stack: "name", h: n.stackLogs},
		{method: "GET", pattern: "/v1/services", allow: read, h: n.listServices},
		{method: "GET", pattern: "/v1/services/{stack}/{service}", allow: read, stack: "stack", h: n.getService},
		{method: "DELETE", pattern: "/v1/services/{stack}/{service}", allow: dev, stack: "stack", at: atLeader, h: n.deleteService},
		{method: "POST", pattern: "/v1/services/{stack}/{service}/scale", allow: dev, stack: "stack", at: atLeader, h: n.scaleService},
		{method: "GET", pattern: "/v1/services/{stack}/{service}/logs", allow: dev, stack: "stack", h: n.serviceLogs},
		{method: "GET", pattern: "/v1/services/{stack}/{service}/events", allow: read, stack: "stack", h: n.serviceEvents},
		{method: "POST", pattern: "/v1/services/{stack}/{service}/deploy", allow: dev, stack: "stack", at: atLeader, h: n.serviceAction("deploy")},
		{method: "POST", pattern: "/v1/services/{stack}/{service}/stop", allow: dev, stack: "stack", at: atLeader, h: n.serviceAction("stop")},
		{method: "POST", pattern: "/v1/services/{stack}/{service}/start", allow: dev, stack: "stack", at: atLeader, h: n.serviceAction("start")},
		{method: "POST", pattern: "/v1/services/{stack}/{service}/restart", allow: dev, stack: "stack", at: atLeader, h: n.serviceAction("restart")},
		{method: "GET", pattern: "/v1/containers", allow: read, h: n.listContainers},
		{method: "GET", pattern: "/v1/containers/{name}", allow: dev, stack: "container", h: n.inspectContainer},
		{method: "GET", pattern: "/v1/containers/{name}/logs", allow: dev, stack: "container", h: n.containerLogs},
		// On the leader, which puts every exec on the record first.
		{method: "POST", pattern: "/v1/containers/{name}/exec", allow: dev, stack: "container", at: atLeader, upgrade: true, h: n.serveExec},
		{method: "GET", pattern: "/v1/stats", allow: read, h: n.containerStats},
		{method: "GET", pattern: "/v1/vault", allow: read, h: n.listSecrets},
		{method: "GET", pattern: "/v1/vault/{name...}", allow: admin, at: atLeader, h: n.readSecret},
		{method: "PUT", pattern: "/v1/vault/{name...}", allow: dev, at: atLeader, h: n.writeSecret},
		{method: "DELETE", pattern: "/v1/vault/{name...}", allow: dev, at: atLeader, h: n.removeSecret},
		{method: "GET", pattern: "/v1/certificates", allow: read, h: n.listCertificates},
		{method: "POST", pattern: "/v1/certificates", allow: admin, at: atLeader, h: n.importCertificate},
		{method: "POST", pattern: "/v1/certificates/register", allow: admin, at: atLeader, h: n.registerACME},
		{method: "POST", pattern: "/v1/certificates/request", allow: admin, at: atLeader, h: n.requestCertificate},
		{method: "GET", pattern: "/v1/certificates/{subject}", allow: read, h: n.getCertificate},
		{method: "GET", pattern: "/v1/certificates/{subject}/export", allow: admin, at: atLeader, h: n.exportCertificate},
		{method: "DELETE", pattern: "/v1/certificates/{subject}", allow: admin, at: atLeader, h: n.removeCertificate},
		// A load balancer's routing: its own token, or a grid admin.
		{method: "GET", pattern: "/v1/lb/{stack}/{service}/routing", allow: allowLB | admin, stack: "service", h: n.getLBRouting},
		{method: "GET", pattern: "/v1/vpn", allow: admin, h: n.listVPN},
		{method: "POST", pattern: "/v1/vpn", allow: admin, at: atLeader, h: n.createVPN},
		{method: "DELETE", pattern: "/v1/vpn/{name}", allow: admin, at: atLeader, h: n.deleteVPN},

		// The node protocol: a node reads and writes its own resources only.
		{method: "GET", pattern: "/v1/nodes/{name}/assignments", allow: adminNode, h: n.getAssignments},
		{method: "POST", pattern: "/v1/nodes/{name}/instances", allow: nodeSelf, at: atLeader, h: n.reportInstances},
		{method: "GET", pattern: "/v1/nodes/{name}/netmap", allow: adminNode, h: n.getNetMap},
		{method: "GET", pattern: "/v1/nodes/{name}/overlay", allow: read, h: n.getOverlayStatus},
		{method: "PUT", pattern: "/v1/nodes/{name}/overlay", allow: nodeSelf, at: atLeader, h: n.setOverlay},
		{method: "PUT", pattern: "/v1/nodes/{name}/resources", allow: nodeSelf, at: atLeader, h: n.setResources},

		// Join: authenticated by the join token in the body, on the leader.
		{method: "POST", pattern: "/v1/join", allow: public, at: atLeader, h: n.serveJoin},
		// Login: authenticated by the invite code, refresh token or single
		// sign-on credential in the body, on the leader.
		{method: "POST", pattern: "/v1/login", allow: public, at: atLeader, h: n.serveLogin},
		{method: "GET", pattern: "/v1/login/oidc", allow: public, h: n.getOIDCInfo},
		{method: "POST", pattern: "/v1/login/device", allow: public, at: atLeader, h: n.startDeviceLogin},
		// The way back in: root of a voter machine, with its certificate.
		{method: "POST", pattern: "/v1/login/recover", allow: voter, at: atLeader, h: n.recoverAdmin},

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
