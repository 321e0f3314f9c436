package nodeagent

import (
	"strings"
	"testing"

	"github.com/kontena-ng/kontena/agent"
	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/stack"
)

func TestContainerSpecMapsTheStackFile(t *testing.T) {
	decls := []*stack.Volume{
		{Name: "data", Scope: "instance"},
		{Name: "cache", Scope: "stack", Driver: "local"},
		{Name: "certs", External: "grid-certs", Driver: "rexray"},
		{Name: "shared", Scope: "grid"},
	}
	a := api.Assignment{Stack: "shop", Instance: fsm.Instance{ServiceID: "shop/db", Number: 2, Revision: 3},
		Volumes: decls,
		Service: stack.Service{Name: "db", Image: "db:1", Stateful: true, CPUShares: 256, MemLimit: 1 << 30,
			MemswapLimit: 2 << 30, ShmSize: 64 << 20, VolumesFrom: []string{"seed-%s", "other/files-1"},
			NetworkMode: "container:proxy-%s",
			Volumes: []stack.Mount{
				{Volume: "data", Path: "/var/lib/db"},
				{Volume: "cache", Path: "/cache"},
				{Volume: "certs", Path: "/certs", Flags: "ro"},
				{Volume: "shared", Path: "/shared"},
				{HostPath: "/etc/ssl", Path: "/ssl", Flags: "ro"},
				{Path: "/var/lib/mysql"},
			}}}
	s := containerSpec(a)
	if s.Name != "shop.db-2" || s.CPUShares != 256 || s.MemoryBytes != 1<<30 || s.MemorySwapBytes != 2<<30 || s.ShmBytes != 64<<20 {
		t.Errorf("resources: %+v", s)
	}
	if s.NetworkMode != "container:shop.proxy-2" {
		t.Errorf("network mode %q", s.NetworkMode)
	}
	if len(s.VolumesFrom) != 2 || s.VolumesFrom[0] != "shop.seed-2" || s.VolumesFrom[1] != "other.files-1" {
		t.Errorf("volumes_from %v", s.VolumesFrom)
	}
	want := []agent.Volume{
		{Kind: agent.VolumeNamed, Name: "data", Path: "/var/lib/db"},
		{Kind: agent.VolumeNamed, Name: "cache", Scope: agent.ScopeStack, Driver: "local", Path: "/cache"},
		{Kind: agent.VolumeNamed, Name: "grid-certs", Scope: agent.ScopeGrid, Driver: "rexray", Path: "/certs", ReadOnly: true},
		{Kind: agent.VolumeNamed, Name: "shared", Scope: agent.ScopeGrid, Path: "/shared"},
		{Kind: agent.VolumeBind, HostPath: "/etc/ssl", Path: "/ssl", ReadOnly: true},
		// A stateful service's anonymous volume is kept per instance.
		{Kind: agent.VolumeNamed, Name: "data-var-lib-mysql", Path: "/var/lib/mysql"},
	}
	if len(s.Volumes) != len(want) {
		t.Fatalf("volumes %+v", s.Volumes)
	}
	for i := range want {
		if s.Volumes[i] != want[i] {
			t.Errorf("volume %d: got %+v, want %+v", i, s.Volumes[i], want[i])
		}
	}
	// Stateless: an anonymous volume stays anonymous (it goes with the container).
	a.Service.Stateful = false
	if v := containerSpec(a).Volumes[5]; v.Kind != agent.VolumeAnonymous {
		t.Errorf("stateless anonymous volume: %+v", v)
	}
	// A drained node stops the stateful instance and keeps it.
	a.Service.Stateful, a.Drained = true, true
	if !containerSpec(a).Stopped {
		t.Error("a drained stateful instance must be stopped")
	}
}

func TestLoadBalancerRunsFromTheNodesImage(t *testing.T) {
	as := api.Assignments{Items: []api.Assignment{
		{Stack: "infra", Service: stack.Service{Name: "lb", Image: "kontena/lb:latest", Command: []string{"haproxy"}}, Instance: fsm.Instance{ServiceID: "infra/lb", Number: 1}},
		{Stack: "shop", Service: stack.Service{Name: "web", Image: "nginx"}, Instance: fsm.Instance{ServiceID: "shop/web", Number: 1}},
	}}
	specs := containerSpecs(as, LBRuntime{Image: "kontena/lb-self:abc", API: "https://10.0.0.1:9700"})
	if s := specs[0]; s.Image != "kontena/lb-self:abc" || s.Entrypoint[0] != "/kontena" || strings.Join(s.Cmd, " ") != "lb --api https://10.0.0.1:9700 --cache /tmp/routing.json" {
		t.Fatalf("load balancer spec: %+v", s)
	}
	if s := specs[1]; s.Image != "nginx" || len(s.Entrypoint) != 0 {
		t.Fatalf("plain spec: %+v", s)
	}
}
