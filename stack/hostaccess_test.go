package stack

import (
	"strings"
	"testing"
)

func TestHostAccesses(t *testing.T) {
	s := &Stack{Name: "shop", Services: []*Service{
		{Name: "web", Image: "nginx", Volumes: []Mount{{Volume: "data", Path: "/data"}}},
		{Name: "agent", Privileged: true, CapAdd: []string{"NET_ADMIN"}, Pid: "host", NetworkMode: "host",
			Volumes: []Mount{{HostPath: "/var/run/docker.sock", Path: "/var/run/docker.sock"}}},
		{Name: "spy", Pid: "container:other.db-1"},
		nil,
	}, Volumes: []*Volume{{Name: "data", Driver: "local"}, {Name: "root", Driver: "local", DriverOpts: map[string]string{"type": "none", "o": "bind", "device": "/"}}}}
	var got []string
	for _, h := range HostAccesses(s) {
		got = append(got, h.String())
	}
	want := []string{
		"service agent: privileged (true)", "service agent: cap_add (NET_ADMIN)", "service agent: pid (host)",
		"service agent: network_mode (host)", "service agent: volumes (host path /var/run/docker.sock:/var/run/docker.sock)",
		"service spy: pid (container:other.db-1)",
		"volume root: driver_opts device=/ mounts a host path", "volume root: driver_opts o=bind mounts a host path",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("host accesses:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if h := HostAccesses(&Stack{Services: []*Service{{Name: "web", Image: "nginx", NetworkMode: "container:proxy-%s"}}}); len(h) != 0 {
		t.Fatalf("a plain service: %v", h)
	}
}
