// Package dispatcher is the node protocol as a Go API: what each node
// reads (its assignments, its network map) and writes (its instance
// reports, its WireGuard key, its engine's resources), built from and
// turned into the state. It decides nothing about who may call it: the
// API's admission path lets a node reach only its own node here. It
// imports neither HTTP nor Raft; its answers are the wire types of the
// node protocol (the api package serves them as they are).
package dispatcher

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/stack"
)

// AssignmentTables are the tables a node's assignments are built from: a
// blocking query on them wakes for nothing else. The nodes table is one of
// them: draining a node changes only its row, and the stateful instances
// on it stop.
func AssignmentTables() []string {
	return []string{fsm.TableInstances, fsm.TableServices, fsm.TableStacks, fsm.TableNodes}
}

// NetMapTables are the tables a network map is built from.
func NetMapTables() []string {
	return []string{fsm.TableNodes, fsm.TableGrid, fsm.TableStacks, fsm.TableServices, fsm.TableInstances}
}

// NodeAssignments is what node nodeID runs, from one view of the state:
// its instances with their service specs and the stack's declarations of
// the volumes they mount.
func NodeAssignments(v *fsm.View, nodeID string) (Assignments, error) {
	node, err := v.Node(nodeID)
	if err != nil {
		return Assignments{}, err
	}
	insts, err := v.InstancesOnNode(node.ID)
	if err != nil {
		return Assignments{}, err
	}
	out := Assignments{Items: []Assignment{}}
	if g, err := v.Grid(); err == nil {
		out.Grid = g.Name
	}
	for _, in := range insts {
		svc, err := v.Service(in.ServiceID)
		if err != nil {
			continue
		}
		a := Assignment{Instance: *in, Stack: svc.Stack, Service: svc.Spec}
		if st, err := v.Stack(svc.Stack); err == nil {
			for _, m := range svc.Spec.Volumes {
				if vol := st.Spec.Volume(m.Volume); m.Volume != "" && vol != nil && !slices.Contains(a.Volumes, vol) {
					a.Volumes = append(a.Volumes, vol)
				}
			}
		}
		a.Drained = node.Availability == fsm.AvailabilityDrain && svc.Spec.Stateful
		a.Routed = linksToLB(v, svc)
		out.Items = append(out.Items, a)
	}
	sort.Slice(out.Items, func(i, j int) bool { return out.Items[i].Instance.ID < out.Items[j].Instance.ID })
	return out, nil
}

// NodeNetMap is node nodeID's view of the data plane, from one view of the
// state.
func NodeNetMap(v *fsm.View, nodeID string) (*NetMap, error) {
	g, err := v.Grid()
	if err != nil {
		return nil, err
	}
	nodes, err := v.Nodes()
	if err != nil {
		return nil, err
	}
	stacks, err := v.Stacks()
	if err != nil {
		return nil, err
	}
	svcs, err := v.Services("")
	if err != nil {
		return nil, err
	}
	insts, err := v.Instances("")
	if err != nil {
		return nil, err
	}
	return buildNetMap(g, nodes, stacks, svcs, insts, nodeID), nil
}

// MaxReports bounds one report of a node: far above the instances a node
// runs, low enough that one request cannot make a huge Raft entry.
const MaxReports = 10000

// Report is the command that records what node nodeID's agent found. Only
// instances placed on that node are updated (the state machine checks it
// again when it applies the command).
func Report(nodeID string, reports []fsm.InstanceReport) (*fsm.InstancesReport, error) {
	if len(reports) > MaxReports {
		return nil, fmt.Errorf("%d instance reports: at most %d per request: %w", len(reports), MaxReports, fsm.ErrInvalid)
	}
	for i, r := range reports {
		if r.ID == "" {
			return nil, fmt.Errorf("report %d names no instance: %w", i, fsm.ErrInvalid)
		}
	}
	return &fsm.InstancesReport{NodeID: nodeID, Reports: reports}, nil
}

// Overlay is the command that records node nodeID's WireGuard key and port
// (both empty: the node runs no overlay).
func Overlay(nodeID, publicKey string, port int, iface string) (*fsm.NodeOverlaySet, error) {
	if (publicKey == "") != (port == 0) || port < 0 || port > 65535 || len(publicKey) > 64 {
		return nil, fmt.Errorf("overlay of node %s: need a public key and a port 1-65535, got %q and %d: %w", nodeID, publicKey, port, fsm.ErrInvalid)
	}
	return &fsm.NodeOverlaySet{ID: nodeID, PublicKey: publicKey, Port: port, Interface: iface}, nil
}

// Resources is the command that records what node nodeID's engine offers.
func Resources(nodeID string, res fsm.NodeResources) (*fsm.NodeResourcesSet, error) {
	if res.CPUs < 0 || res.MemoryTotal < 0 || len(res.VolumeDrivers) > 64 {
		return nil, fmt.Errorf("resources of node %s: negative or unbounded values: %w", nodeID, fsm.ErrInvalid)
	}
	return &fsm.NodeResourcesSet{ID: nodeID, Resources: res}, nil
}

// Opener opens a sealed vault value (the voter's sealer).
type Opener func(name string, sealed []byte) ([]byte, error)

// WithSecrets fills in the vault secrets of every assignment, from the
// same view: type env into SecretEnv, type file into SecretFiles (several
// secrets on one name are joined by a newline). A secret that is gone
// (removed after the install) is left out: the instance runs without it,
// and says so in err.
func WithSecrets(v *fsm.View, as *Assignments, open Opener) error {
	var missing []string
	for i := range as.Items {
		a := &as.Items[i]
		for _, ref := range a.Service.Secrets {
			sec, err := v.Secret(ref.Secret)
			if err != nil {
				missing = append(missing, ref.Secret)
				continue
			}
			value, err := open(ref.Secret, sec.Sealed)
			if err != nil {
				return fmt.Errorf("open secret %s: %w", ref.Secret, err)
			}
			switch ref.Type {
			case "", "env":
				a.SecretEnv = joinSecret(a.SecretEnv, ref.Name, value)
			case "file":
				a.SecretFiles = joinSecret(a.SecretFiles, ref.Name, value)
			}
		}
	}
	for i := range as.Items {
		a := &as.Items[i]
		if stack.IsLB(&a.Service) {
			continue // a load balancer takes its certificates from its routing, swapped in place
		}
		for _, ref := range a.Service.Certificates {
			cert, err := v.Certificate(ref.Subject)
			if err != nil {
				missing = append(missing, "certificate "+ref.Subject)
				continue
			}
			key, err := open(CertificateKeyName(ref.Subject), cert.KeySealed)
			if err != nil {
				return fmt.Errorf("open the key of certificate %s: %w", ref.Subject, err)
			}
			a.SecretEnv = joinSecret(a.SecretEnv, ref.Name, []byte(strings.TrimRight(cert.CertPEM, "\n")+"\n"+string(key)))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("secrets not in the vault: %v: %w", missing, fsm.ErrNotFound)
	}
	return nil
}

// CertificateKeyName is the name a certificate's private key is sealed
// under (no vault secret can have it: it starts with a NUL).
func CertificateKeyName(subject string) string { return "\x00certificate/" + subject }

// joinSecret adds value under name, after a newline if name has one
// already (how Kontena bundled certificates into SSL_CERTS).
func joinSecret(m map[string]string, name string, value []byte) map[string]string {
	if m == nil {
		m = map[string]string{}
	}
	if prev, ok := m[name]; ok {
		m[name] = prev + "\n" + string(value)
	} else {
		m[name] = string(value)
	}
	return m
}

// linksToLB tells whether a service is linked to a load balancer.
func linksToLB(v *fsm.View, svc *fsm.Service) bool {
	for _, l := range svc.Spec.Links {
		if target, err := v.Service(l.Target(svc.Stack)); err == nil && stack.IsLB(&target.Spec) {
			return true
		}
	}
	return false
}
