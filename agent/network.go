package agent

import (
	"context"
	"net/netip"
	"strings"
)

// Network attaches the node's containers to the grid overlay. It is
// optional: without one, containers use the engine's default bridge and get
// no grid DNS.
type Network interface {
	// Attach returns where container s joins the network, allocating its
	// address. The same instance name gets the same address back while it
	// is allocated, so a replaced container keeps its address.
	Attach(s ContainerSpec) (Attachment, error)
	// Hook returns the attachment of a throw-away hook container of s: the
	// same network and DNS, an address the engine picks from its own range.
	Hook(s ContainerSpec) Attachment
	// Sync releases the addresses of instances not in live.
	Sync(live []string) error
}

// Attachment is one container's place on the network.
type Attachment struct {
	Network   string     // engine network name
	IP        netip.Addr // zero: the engine picks
	DNS       []string   // resolvers for the container
	DNSSearch []string   // search domains: <stack>.<grid>.kontena.local, <grid>.kontena.local
}

// attach resolves the attachment of s, or nil when s stays off the overlay.
func (a *Agent) attach(s ContainerSpec) (*Attachment, error) {
	if a.net == nil || s.ownNetwork() {
		return nil, nil
	}
	at, err := a.net.Attach(s)
	if err != nil {
		return nil, err
	}
	return &at, nil
}

func (a *Agent) hookAttach(s ContainerSpec) *Attachment {
	if a.net == nil || s.ownNetwork() {
		return nil
	}
	at := a.net.Hook(s)
	return &at
}

// ownNetwork tells whether the container brings its own network (the
// host's, or another container's) instead of joining the overlay.
func (s ContainerSpec) ownNetwork() bool {
	return s.NetworkMode == "host" || strings.HasPrefix(s.NetworkMode, "container:")
}

// syncNetwork releases addresses of instances that are neither desired nor
// still have a container; a container removed in this pass is released on
// the next one.
func (a *Agent) syncNetwork(ctx context.Context, specs []ContainerSpec, containers []Container) {
	if a.net == nil {
		return
	}
	live := make([]string, 0, len(specs)+len(containers))
	for _, s := range specs {
		live = append(live, s.Name)
	}
	for _, c := range containers {
		live = append(live, instanceName(c))
	}
	if err := a.net.Sync(live); err != nil {
		a.log.WarnContext(ctx, "release container addresses", "err", err)
	}
}

// ipOf is the address to report for instance name: the allocated one when
// the node has an overlay, else the engine's.
func (a *Agent) ipOf(name string, c *Container) string {
	if a.net != nil {
		if l, ok := a.net.(interface {
			Lookup(string) (netip.Addr, bool)
		}); ok {
			if ip, ok := l.Lookup(name); ok {
				return ip.String()
			}
		}
	}
	if c != nil {
		return c.IP
	}
	return ""
}
