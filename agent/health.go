package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Prober runs one health probe against addr ("host:port").
type Prober interface {
	Probe(ctx context.Context, hc HealthCheck, addr string) error
}

// Kontena v1 defaults for fields left zero. InitialDelay has no default here:
// zero means "probe at once"; the stack layer fills Kontena's 10s.
const (
	defaultHealthTimeout  = 10 * time.Second
	defaultHealthInterval = 60 * time.Second
)

type healthState struct {
	lastCheck time.Time
	failures  int
	health    Health
}

func (a *Agent) initialHealth(s ContainerSpec) Health {
	if s.HealthCheck == nil {
		return HealthNone
	}
	return HealthUnknown
}

// checkHealth probes c when a probe is due and returns its health. The
// error is non-nil only when the instance just became unhealthy, i.e. the
// caller must restart it.
func (a *Agent) checkHealth(ctx context.Context, s ContainerSpec, c Container) (Health, error) {
	hc := s.HealthCheck
	if hc == nil {
		return HealthNone, nil
	}
	hs := a.healthOf(c.ID)
	now := a.now()
	if now.Before(c.StartedAt.Add(hc.InitialDelay)) {
		return hs.health, nil
	}
	interval := hc.Interval
	if interval <= 0 {
		interval = defaultHealthInterval
	}
	if !hs.lastCheck.IsZero() && now.Sub(hs.lastCheck) < interval {
		return hs.health, nil
	}
	hs.lastCheck = now
	addr, err := probeAddr(s, c)
	if err == nil {
		timeout := hc.Timeout
		if timeout <= 0 {
			timeout = defaultHealthTimeout
		}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err = a.prober.Probe(pctx, *hc, addr)
		cancel()
	}
	if err == nil {
		hs.failures, hs.health = 0, HealthHealthy
		return hs.health, nil
	}
	hs.failures++
	retries := max(hc.Retries, 1)
	if hs.failures < retries {
		return hs.health, nil
	}
	a.dropHealth(c.ID) // the restart starts a fresh history
	return HealthUnhealthy, fmt.Errorf("agent: %s health check (%s %s) failed %d time(s): %w",
		s.Name, hc.Protocol, addr, hs.failures, err)
}

// probeAddr is where to probe: the container's address on its Docker network
// (the host reaches it directly), 127.0.0.1 with network_mode host, or the
// published host port as a last resort.
func probeAddr(s ContainerSpec, c Container) (string, error) {
	port := s.HealthCheck.Port
	switch {
	case s.NetworkMode == "host":
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
	case c.IP != "":
		return net.JoinHostPort(c.IP, strconv.Itoa(port)), nil
	}
	if hp, ok := c.HostPorts[strconv.Itoa(port)+"/tcp"]; ok {
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(hp)), nil
	}
	return "", fmt.Errorf("container has no IP address and port %d is not published", port)
}

// forgetHealth drops the history of containers no longer reported.
func (a *Agent) forgetHealth(statuses []InstanceStatus) {
	live := make(map[string]bool, len(statuses))
	for _, st := range statuses {
		live[st.ContainerID] = true
	}
	a.hmu.Lock()
	defer a.hmu.Unlock()
	for id := range a.health {
		if !live[id] {
			delete(a.health, id)
		}
	}
}

// healthOf returns the health history of a container, creating it. Each
// container is worked on by one goroutine at a time, so only the map needs
// the lock.
func (a *Agent) healthOf(id string) *healthState {
	a.hmu.Lock()
	defer a.hmu.Unlock()
	hs := a.health[id]
	if hs == nil {
		hs = &healthState{health: HealthUnknown}
		a.health[id] = hs
	}
	return hs
}

func (a *Agent) dropHealth(id string) {
	a.hmu.Lock()
	delete(a.health, id)
	a.hmu.Unlock()
}

// nextHealthDue is how soon a health probe may become due, to shorten Run's
// tick; 0 when no spec has a health check.
func nextHealthDue(specs []ContainerSpec) time.Duration {
	var d time.Duration
	for _, s := range specs {
		if s.HealthCheck == nil {
			continue
		}
		iv := s.HealthCheck.Interval
		if iv <= 0 {
			iv = defaultHealthInterval
		}
		if s.HealthCheck.InitialDelay > 0 && s.HealthCheck.InitialDelay < iv {
			iv = s.HealthCheck.InitialDelay
		}
		if d == 0 || iv < d {
			d = iv
		}
	}
	return d
}

// netProber probes with a TCP connect or an HTTP GET (2xx/3xx is healthy,
// redirects are not followed).
type netProber struct{}

func (netProber) Probe(ctx context.Context, hc HealthCheck, addr string) error {
	switch hc.Protocol {
	case "tcp":
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	case "http", "":
		uri := hc.URI
		if uri == "" {
			uri = "/"
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+uri, nil)
		if err != nil {
			return err
		}
		client := http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 399 {
			return fmt.Errorf("GET %s: status %d", uri, resp.StatusCode)
		}
		return nil
	default:
		return fmt.Errorf("unknown health check protocol %q (want http or tcp)", hc.Protocol)
	}
}
