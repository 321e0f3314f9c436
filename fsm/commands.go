package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// MsgType names one kind of change. Values are persisted in the Raft log:
// never renumber, only append.
type MsgType uint8

const (
	MsgGridInit MsgType = iota + 1
	MsgNodeRegister
	MsgNodeUpdate
	MsgNodeStatus
	MsgNodeRole
	MsgNodeRemove
	MsgTokenCreate
	MsgTokenRemove
	MsgJoinTokenSet
	MsgStackInstall
	MsgStackRemove
	MsgServiceScale
	MsgInstancesPlace
	MsgInstancesReport
	MsgServicePlacementError
	MsgStackUpgrade
	MsgNodeOverlay
	MsgVPNCreate
	MsgVPNRemove
	MsgServiceStop
	MsgServiceStart
	MsgServiceRestart
	MsgServiceRedeploy
	MsgServiceRemove
	MsgServiceDeployState
	MsgNodeResources
	MsgGridUpdate
)

func (t MsgType) String() string {
	switch t {
	case MsgGridInit:
		return "grid.init"
	case MsgNodeRegister:
		return "node.register"
	case MsgNodeUpdate:
		return "node.update"
	case MsgNodeStatus:
		return "node.status"
	case MsgNodeRole:
		return "node.role"
	case MsgNodeRemove:
		return "node.remove"
	case MsgTokenCreate:
		return "token.create"
	case MsgTokenRemove:
		return "token.remove"
	case MsgJoinTokenSet:
		return "grid.join_token"
	case MsgStackInstall:
		return "stack.install"
	case MsgStackRemove:
		return "stack.remove"
	case MsgServiceScale:
		return "service.scale"
	case MsgInstancesPlace:
		return "service.place"
	case MsgInstancesReport:
		return "instance.report"
	case MsgServicePlacementError:
		return "service.placement_error"
	case MsgStackUpgrade:
		return "stack.upgrade"
	case MsgNodeOverlay:
		return "node.overlay"
	case MsgVPNCreate:
		return "vpn.create"
	case MsgVPNRemove:
		return "vpn.remove"
	case MsgNodeResources:
		return "node.resources"
	case MsgGridUpdate:
		return "grid.update"
	case MsgServiceStop:
		return "service.stop"
	case MsgServiceStart:
		return "service.start"
	case MsgServiceRestart:
		return "service.restart"
	case MsgServiceRedeploy:
		return "service.deploy"
	case MsgServiceRemove:
		return "service.remove"
	case MsgServiceDeployState:
		return "service.deploy_state"
	}
	return fmt.Sprintf("msg(%d)", uint8(t))
}

// Command is one typed change to the grid state.
type Command interface {
	MsgType() MsgType
}

// Errors returned by Apply; the API maps them to status codes.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrInvalid  = errors.New("invalid")
)

// AuditInfo says who asked for a change; it is stored with the change.
type AuditInfo struct {
	User      string    `json:"user"`
	SourceIP  string    `json:"source_ip,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
	Time      time.Time `json:"time"`
}

// envelope is the Raft log entry format.
type envelope struct {
	Type  MsgType         `json:"t"`
	Audit *AuditInfo      `json:"a,omitempty"`
	Body  json.RawMessage `json:"b"`
}

// Encode turns a command into a Raft log entry.
func Encode(cmd Command, audit *AuditInfo) ([]byte, error) {
	body, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", cmd.MsgType(), err)
	}
	return json.Marshal(envelope{Type: cmd.MsgType(), Audit: audit, Body: body})
}

// Decode is the inverse of Encode.
func Decode(data []byte) (Command, *AuditInfo, error) {
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, nil, fmt.Errorf("decode log entry: %w", err)
	}
	cmd := newCommand(env.Type)
	if cmd == nil {
		return nil, nil, fmt.Errorf("decode log entry: unknown message type %d (written by a newer version?)", env.Type)
	}
	if err := json.Unmarshal(env.Body, cmd); err != nil {
		return nil, nil, fmt.Errorf("decode %s: %w", env.Type, err)
	}
	return cmd, env.Audit, nil
}

func newCommand(t MsgType) Command {
	switch t {
	case MsgGridInit:
		return &GridInit{}
	case MsgNodeRegister:
		return &NodeRegister{}
	case MsgNodeUpdate:
		return &NodeUpdate{}
	case MsgNodeStatus:
		return &NodeStatus{}
	case MsgNodeRole:
		return &NodeRole{}
	case MsgNodeRemove:
		return &NodeRemove{}
	case MsgTokenCreate:
		return &TokenCreate{}
	case MsgTokenRemove:
		return &TokenRemove{}
	case MsgJoinTokenSet:
		return &JoinTokenSet{}
	case MsgStackInstall:
		return &StackInstall{}
	case MsgStackRemove:
		return &StackRemove{}
	case MsgServiceScale:
		return &ServiceScale{}
	case MsgInstancesPlace:
		return &InstancesPlace{}
	case MsgInstancesReport:
		return &InstancesReport{}
	case MsgServicePlacementError:
		return &ServicePlacementError{}
	case MsgStackUpgrade:
		return &StackUpgrade{}
	case MsgNodeOverlay:
		return &NodeOverlaySet{}
	case MsgVPNCreate:
		return &VPNCreate{}
	case MsgVPNRemove:
		return &VPNRemove{}
	case MsgNodeResources:
		return &NodeResourcesSet{}
	case MsgGridUpdate:
		return &GridUpdate{}
	case MsgServiceStop:
		return &ServiceStop{}
	case MsgServiceStart:
		return &ServiceStart{}
	case MsgServiceRestart:
		return &ServiceRestart{}
	case MsgServiceRedeploy:
		return &ServiceRedeploy{}
	case MsgServiceRemove:
		return &ServiceRemove{}
	case MsgServiceDeployState:
		return &ServiceDeployState{}
	}
	return nil
}

// GridInit is the first entry of every grid: settings, the bootstrap node
// and the bootstrap admin with its token.
type GridInit struct {
	Grid       Grid  `json:"grid"`
	Node       Node  `json:"node"`
	Admin      User  `json:"admin"`
	AdminToken Token `json:"admin_token"`
}

// NodeRegister adds a node that presented a valid join token.
type NodeRegister struct {
	Node Node `json:"node"`
}

// NodeUpdate changes what an operator may change on a node.
type NodeUpdate struct {
	ID           string    `json:"id"`
	Availability string    `json:"availability,omitempty"`
	SetLabels    *[]string `json:"set_labels,omitempty"`
	AddLabels    []string  `json:"add_labels,omitempty"`
	RemoveLabels []string  `json:"remove_labels,omitempty"` // keys, or whole key=value
}

// NodeStatusUpdate is the leader's view of one node through gossip.
type NodeStatusUpdate struct {
	ID         string    `json:"id"`
	Status     string    `json:"status"`
	At         time.Time `json:"at"`
	LastSeen   time.Time `json:"last_seen"`
	Addr       string    `json:"addr,omitempty"`
	APIPort    int       `json:"api_port,omitempty"`
	RaftPort   int       `json:"raft_port,omitempty"`
	GossipPort int       `json:"gossip_port,omitempty"`
	Version    string    `json:"version,omitempty"`
	// PublicAddr, when SetPublicAddr, is the node's --public-address now
	// ("" = none): it may change across restarts.
	PublicAddr    string `json:"public_addr,omitempty"`
	SetPublicAddr bool   `json:"set_public_addr,omitempty"`
}

// NodeStatus carries a batch of status changes found in one membership pass.
type NodeStatus struct {
	Updates []NodeStatusUpdate `json:"updates"`
}

// NodeRole promotes a worker to voter or demotes a voter.
type NodeRole struct {
	ID   string `json:"id"`
	Role string `json:"role"`
}

// NodeRemove forgets a node; only offline nodes may be removed.
type NodeRemove struct {
	ID string `json:"id"`
}

// TokenCreate stores a new API token (hash only).
type TokenCreate struct {
	Token Token `json:"token"`
}

// TokenRemove revokes an API token.
type TokenRemove struct {
	ID string `json:"id"`
}

// JoinTokenSet replaces the grid join token (rotation).
type JoinTokenSet struct {
	Sealed []byte `json:"sealed"`
}

// StackInstall stores a validated stack and creates its services.
type StackInstall struct {
	Stack Stack `json:"stack"`
	// NoDeploy stores the stack without placing anything until a deploy.
	NoDeploy bool `json:"no_deploy,omitempty"`
}

// StackRemove deletes a stack with its services and instances.
type StackRemove struct {
	Name string `json:"name"`
}

// ServiceScale sets the desired instance count of a service.
type ServiceScale struct {
	ID        string `json:"id"`
	Instances int    `json:"instances"`
}

// Placement puts instance Number of a service on a node, at Revision (0:
// the command's revision). A rolling deploy keeps some instances at their
// old revision while others move on.
type Placement struct {
	Number   int    `json:"number"`
	NodeID   string `json:"node_id"`
	Revision uint64 `json:"revision,omitempty"`
	// Restart is the restart generation the instance must reach (rolling
	// `service restart`); 0 keeps the instance's current one.
	Restart uint64 `json:"restart,omitempty"`
}

// InstancesPlace is the leader's placement of a service's instances at a
// revision; Remove lists instance numbers that are no longer wanted.
type InstancesPlace struct {
	ServiceID string      `json:"service_id"`
	Revision  uint64      `json:"revision"`
	Place     []Placement `json:"place"`
	Remove    []int       `json:"remove,omitempty"`
}

// InstanceReport is what a node says about one of its instances.
type InstanceReport struct {
	ID     string         `json:"id"`
	Actual InstanceActual `json:"actual"`
}

// InstancesReport carries a node's reports; only instances placed on that
// node are updated.
type InstancesReport struct {
	NodeID  string           `json:"node_id"`
	Reports []InstanceReport `json:"reports"`
}

// StackUpgrade replaces an installed stack's definition: changed services
// get a new revision (their instances are then replaced, rolling), new ones
// are created, dropped ones removed with their instances.
type StackUpgrade struct {
	Stack Stack `json:"stack"`
}

func (*StackUpgrade) MsgType() MsgType { return MsgStackUpgrade }

// ServicePlacementError records why a service could not be fully placed.
type ServicePlacementError struct {
	ID    string `json:"id"`
	Error string `json:"error"`
}

func (*ServicePlacementError) MsgType() MsgType { return MsgServicePlacementError }
func (*StackInstall) MsgType() MsgType          { return MsgStackInstall }
func (*StackRemove) MsgType() MsgType           { return MsgStackRemove }
func (*ServiceScale) MsgType() MsgType          { return MsgServiceScale }
func (*InstancesPlace) MsgType() MsgType        { return MsgInstancesPlace }
func (*InstancesReport) MsgType() MsgType       { return MsgInstancesReport }

// GridUpdate changes the grid settings operators may change after
// bootstrap; nil fields are left as they are.
type GridUpdate struct {
	DefaultAffinity *[]string      `json:"default_affinity,omitempty"`
	OfflineGrace    *time.Duration `json:"offline_grace,omitempty"`
}

func (*GridUpdate) MsgType() MsgType { return MsgGridUpdate }

func (*GridInit) MsgType() MsgType     { return MsgGridInit }
func (*NodeRegister) MsgType() MsgType { return MsgNodeRegister }
func (*NodeUpdate) MsgType() MsgType   { return MsgNodeUpdate }
func (*NodeStatus) MsgType() MsgType   { return MsgNodeStatus }
func (*NodeRole) MsgType() MsgType     { return MsgNodeRole }
func (*NodeRemove) MsgType() MsgType   { return MsgNodeRemove }
func (*TokenCreate) MsgType() MsgType  { return MsgTokenCreate }
func (*TokenRemove) MsgType() MsgType  { return MsgTokenRemove }
func (*JoinTokenSet) MsgType() MsgType { return MsgJoinTokenSet }
