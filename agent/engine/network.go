package engine

import (
	"context"
	"fmt"
	"net/netip"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/network"
)

// NetworkSpec is the engine network a node's overlay containers join.
type NetworkSpec struct {
	Name    string       // engine network name
	Bridge  string       // Linux bridge name (<= 15 characters)
	Subnet  netip.Prefix // the node's container subnet
	Gateway netip.Addr   // the node's overlay address, on the bridge
	// Dynamic is the part of Subnet the engine may pick from itself (hook
	// containers); the node allocates every other address.
	Dynamic netip.Prefix
}

// EnsureNetwork creates the node's overlay bridge network, or checks the
// existing one. Docker must not masquerade it (traffic between containers
// across nodes keeps its source address; the overlay adds NAT only for
// traffic leaving the grid) and must not drop packets routed to container
// addresses from the WireGuard interface ("nat-unprotected"). A network
// left with another subnet (the node's data dir was reset) is recreated if
// no container uses it.
func (e *Engine) EnsureNetwork(ctx context.Context, spec NetworkSpec) error {
	if cur, err := e.cli.NetworkInspect(ctx, spec.Name, network.InspectOptions{}); err == nil {
		if sameNetwork(cur, spec) {
			return nil
		}
		if len(cur.Containers) > 0 {
			return fmt.Errorf("engine network %q has another subnet than this node's %s and %d containers still use it; remove them (docker rm -f) and restart the node",
				spec.Name, spec.Subnet, len(cur.Containers))
		}
		if err := e.cli.NetworkRemove(ctx, spec.Name); err != nil {
			return fmt.Errorf("remove stale engine network %q: %w", spec.Name, err)
		}
	}
	_, err := e.cli.NetworkCreate(ctx, spec.Name, network.CreateOptions{
		Driver: "bridge",
		IPAM: &network.IPAM{Config: []network.IPAMConfig{{
			Subnet: spec.Subnet.String(), Gateway: spec.Gateway.String(), IPRange: spec.Dynamic.String(),
		}}},
		Options: map[string]string{
			"com.docker.network.bridge.name":                 spec.Bridge,
			"com.docker.network.bridge.enable_ip_masquerade": "false",
			"com.docker.network.bridge.gateway_mode_ipv4":    "nat-unprotected",
		},
		Labels: map[string]string{LabelManaged: "true"},
	})
	if err != nil {
		return fmt.Errorf("create engine network %q (%s): %w", spec.Name, spec.Subnet, err)
	}
	return nil
}

func sameNetwork(cur network.Inspect, spec NetworkSpec) bool {
	if len(cur.IPAM.Config) != 1 {
		return false
	}
	c := cur.IPAM.Config[0]
	return c.Subnet == spec.Subnet.String() && c.Gateway == spec.Gateway.String() && c.IPRange == spec.Dynamic.String() &&
		cur.Options["com.docker.network.bridge.name"] == spec.Bridge &&
		cur.Options["com.docker.network.bridge.gateway_mode_ipv4"] == "nat-unprotected"
}

// RemoveNetwork removes the engine network name if it exists and no
// container uses it any more.
func (e *Engine) RemoveNetwork(ctx context.Context, name string) error {
	err := e.cli.NetworkRemove(ctx, name)
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove engine network %q: %w", name, err)
	}
	return nil
}

// Resources is what the engine offers to containers.
type Resources struct {
	CPUs          float64
	MemoryTotal   int64
	VolumeDrivers []string
	Engine        string
}

// Resources asks the engine for its CPUs, memory and volume drivers.
func (e *Engine) Resources(ctx context.Context) (Resources, error) {
	info, err := e.cli.Info(ctx)
	if err != nil {
		return Resources{}, fmt.Errorf("docker info: %w", err)
	}
	return Resources{CPUs: float64(info.NCPU), MemoryTotal: info.MemTotal,
		VolumeDrivers: append([]string(nil), info.Plugins.Volume...), Engine: "docker " + info.ServerVersion}, nil
}
