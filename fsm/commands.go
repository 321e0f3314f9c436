package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"
)

// MsgType names one kind of change. Values are persisted in the Raft log:
// never renumber, never reuse. Each domain file (grid.go, nodes.go,
// tokens.go, stacks.go, services.go, instances.go, overlay.go) declares the
// numbers of its commands; TestMsgTypesArePersisted pins them all.
type MsgType uint8

// String is the command's name in the audit log ("node.register").
func (t MsgType) String() string {
	if p := prototype(t); p != nil {
		return p.name()
	}
	return fmt.Sprintf("msg(%d)", uint8(t))
}

// Command is one typed change to the grid state. Every command lives in its
// domain file with everything it needs:
//
//	const MsgThingDo MsgType = N                   // the next free number
//	type ThingDo struct{ ... }                     // the wire format (JSON)
//	func (*ThingDo) MsgType() MsgType              { return MsgThingDo }
//	func (*ThingDo) name() string                  { return "thing.do" }
//	func (c *ThingDo) resource() string            { return "thing/" + c.ID }
//	func (c *ThingDo) apply(a *applier) (any, error) { ... }
//
// and a prototype, (*ThingDo)(nil), in its domain's list of commands
// (gridCommands, nodeCommands...), which Decode reads.
type Command interface {
	MsgType() MsgType
	// name is the command's name in the audit log (MsgType.String).
	name() string
	// resource names what the command touches for the audit log ("" for
	// none), without any secret in it.
	resource() string
	// apply changes the state in a's transaction; it returns the result
	// the leader hands back to the caller.
	apply(a *applier) (any, error)
}

// commands are the prototypes of every command, by domain. A new domain
// file adds its list here; a new command of a domain goes in its list.
var commands = [...][]Command{gridCommands, nodeCommands, tokenCommands, stackCommands, secretCommands,
	serviceCommands, instanceCommands, overlayCommands, auditCommands, certificateCommands}

// prototype is the (nil) prototype of message type t, or nil.
func prototype(t MsgType) Command {
	for _, set := range commands {
		for _, p := range set {
			if p.MsgType() == t {
				return p
			}
		}
	}
	return nil
}

// newCommand returns a new, empty command of type t (nil if unknown).
func newCommand(t MsgType) Command {
	p := prototype(t)
	if p == nil {
		return nil
	}
	return reflect.New(reflect.TypeOf(p).Elem()).Interface().(Command)
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
	Roles     []string  `json:"roles,omitempty"`
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
