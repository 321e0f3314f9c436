package lb

import "net/netip"

// Routing is what the grid hands a load balancer (GET
// /v1/lb/<stack>/<service>/routing): the services linked to it with their
// environment and the overlay addresses of their instances that can get
// traffic. ConfigOf reads it.
type Routing struct {
	LB       string          `json:"lb"`
	Services []RoutedService `json:"services"`
	// Challenges are pending ACME http-01 answers: token -> key
	// authorization.
	Challenges map[string]string `json:"challenges,omitempty"`
	// Certs are the load balancer's certificates from the grid's store
	// (PEM bundles), besides those of its environment.
	Certs []string `json:"certs,omitempty"`
}

// RoutedService is one service linked to the load balancer.
type RoutedService struct {
	ID         string            `json:"id"`
	Env        map[string]string `json:"env"`
	HealthPath string            `json:"health_path,omitempty"`
	Instances  []RoutedInstance  `json:"instances"`
}

// RoutedInstance is one instance of a routed service.
type RoutedInstance struct {
	ID string `json:"id"`
	IP string `json:"ip"`
}

// ConfigOf turns a routing into what the load balancer serves (without
// its own options and certificates, which come from its environment).
// Warnings name the settings it ignores; a service whose settings cannot
// be served is left out, its error among the warnings.
func ConfigOf(r Routing) (Config, []string) {
	cfg := Config{Challenges: r.Challenges, Certs: r.Certs}
	var warnings []string
	for _, rs := range r.Services {
		svc, w, err := ServiceFromEnv(rs.ID, rs.Env)
		warnings = append(warnings, w...)
		if err != nil {
			warnings = append(warnings, err.Error()+" (not routed)")
			continue
		}
		svc.HealthPath = rs.HealthPath
		for _, in := range rs.Instances {
			if ip, err := netip.ParseAddr(in.IP); err == nil {
				svc.Backends = append(svc.Backends, Backend{ID: in.ID, Addr: netip.AddrPortFrom(ip, uint16(svc.InternalPort)).String()})
			}
		}
		cfg.Services = append(cfg.Services, svc)
	}
	return cfg, warnings
}
