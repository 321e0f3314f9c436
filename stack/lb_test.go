package stack

import "testing"

func TestIsLB(t *testing.T) {
	for _, tc := range []struct {
		svc  Service
		want bool
	}{
		{Service{Image: "kontena/lb:latest"}, true},
		{Service{Image: "kontena/lb"}, true},
		{Service{Image: "docker.io/kontena/lb:2.1@sha256:abc"}, true},
		{Service{Image: "registry.local:5000/kontena/lb:1"}, false},
		{Service{Image: "kontena/lbx"}, false},
		{Service{Image: "my/haproxy", Environment: []EnvVar{{Name: "KONTENA_SERVICE_ROLE", Value: "LB"}}}, true},
		{Service{Image: "nginx"}, false},
	} {
		if got := IsLB(&tc.svc); got != tc.want {
			t.Errorf("IsLB(%q %v) = %v", tc.svc.Image, tc.svc.Environment, got)
		}
	}
	s := &Service{Links: []Link{{Service: "lb"}, {Stack: "infra", Service: "edge"}}}
	if !LinksTo(s, "shop", "shop/lb") || !LinksTo(s, "shop", "infra/edge") || LinksTo(s, "shop", "infra/lb") {
		t.Error("LinksTo")
	}
}
