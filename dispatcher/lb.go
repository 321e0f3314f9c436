package dispatcher

import (
	"fmt"
	"strings"

	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/stack"
)

// LBTables are the tables a load balancer's routing is built from.
func LBTables() []string {
	return []string{fsm.TableServices, fsm.TableInstances, fsm.TableSecrets, fsm.TableACMEChallenges, fsm.TableCertificates}
}

// LBRouting is what a load balancer serves, as the state has it: every
// service linked to it, with its environment (KONTENA_LB_*, secrets
// included once WithLBSecrets opened them) and the overlay addresses of
// its instances that run and are not unhealthy. What the environment
// means is the load balancer's business (package lb).
type LBRouting struct {
	LB       string      `json:"lb"` // "<stack>/<service>"
	Services []LBService `json:"services"`
	// Challenges are the pending ACME http-01 answers (token -> key
	// authorization): every load balancer answers them.
	Challenges map[string]string `json:"challenges,omitempty"`
	// Certs are the load balancer's own `certificates:` as PEM bundles
	// (chain and key), once WithLBSecrets opened them: a replaced
	// certificate is swapped in place, without a redeploy.
	Certs    []string `json:"certs,omitempty"`
	certRefs []string
}

// LBService is one service linked to a load balancer.
type LBService struct {
	ID  string            `json:"id"`
	Env map[string]string `json:"env"`
	// HealthPath is the service's http health check URI ("" for none).
	HealthPath string      `json:"health_path,omitempty"`
	Instances  []LBBackend `json:"instances"`
	secrets    []stack.Secret
}

// LBBackend is one instance that can get traffic.
type LBBackend struct {
	ID string `json:"id"` // the container name
	IP string `json:"ip"` // on the overlay
}

// LBRoutingOf builds the routing of load balancer lbID from one view.
func LBRoutingOf(v *fsm.View, lbID string) (LBRouting, error) {
	lbSvc, err := v.Service(lbID)
	if err != nil {
		return LBRouting{}, err
	}
	if !stack.IsLB(&lbSvc.Spec) {
		return LBRouting{}, fmt.Errorf("service %s is not a load balancer (image kontena/lb or KONTENA_SERVICE_ROLE=lb): %w", lbID, fsm.ErrInvalid)
	}
	all, err := v.Services("")
	if err != nil {
		return LBRouting{}, err
	}
	out := LBRouting{LB: lbID, Services: []LBService{}}
	for _, c := range lbSvc.Spec.Certificates {
		out.certRefs = append(out.certRefs, c.Subject)
	}
	chals, err := v.ACMEChallenges()
	if err != nil {
		return LBRouting{}, err
	}
	for _, c := range chals {
		if out.Challenges == nil {
			out.Challenges = map[string]string{}
		}
		out.Challenges[c.Token] = c.KeyAuth
	}
	for _, svc := range all {
		if svc.ID == lbID || !stack.LinksTo(&svc.Spec, svc.Stack, lbID) {
			continue
		}
		ls := LBService{ID: svc.ID, Env: map[string]string{}, Instances: []LBBackend{}}
		for _, e := range svc.Spec.Environment {
			if _, ok := ls.Env[e.Name]; !ok {
				ls.Env[e.Name] = e.Value
			}
		}
		if hc := svc.Spec.HealthCheck; hc != nil && hc.Protocol == "http" {
			ls.HealthPath = hc.URI
			if ls.HealthPath == "" {
				ls.HealthPath = "/"
			}
		}
		for _, ref := range svc.Spec.Secrets {
			if ref.Type == "" || ref.Type == "env" {
				ls.secrets = append(ls.secrets, ref)
			}
		}
		insts, err := v.Instances(svc.ID)
		if err != nil {
			return LBRouting{}, err
		}
		for _, in := range insts {
			a := in.Actual
			if !routable(in) {
				continue
			}
			ls.Instances = append(ls.Instances, LBBackend{ID: fsm.ContainerName(svc.Stack, svc.Name, in.Number), IP: a.IP})
		}
		out.Services = append(out.Services, ls)
	}
	return out, nil
}

// routable: the instance runs, is not unhealthy and is not about to be
// replaced. An instance whose placement moved to a newer revision or
// restart generation than its container runs is next in a rolling deploy:
// its node drains it (lbDrain) and then stops it, so the load balancers
// must stop sending it requests now, not when it is gone.
func routable(in *fsm.Instance) bool {
	a := in.Actual
	return a.State == fsm.StateRunning && a.IP != "" && a.Health != fsm.HealthUnhealthy && !in.Stopped &&
		a.Revision >= in.Revision && a.Restart >= in.Restart
}

// WithLBSecrets puts the linked services' env secrets (basic auth users,
// mostly) into their environment. Only a load balancer's own credential
// reads its routing.
func WithLBSecrets(v *fsm.View, r *LBRouting, open Opener) error {
	for _, subject := range r.certRefs {
		cert, err := v.Certificate(subject)
		if err != nil {
			continue // removed (forced): served without it
		}
		key, err := open(CertificateKeyName(subject), cert.KeySealed)
		if err != nil {
			return fmt.Errorf("open the key of certificate %s: %w", subject, err)
		}
		r.Certs = append(r.Certs, strings.TrimRight(cert.CertPEM, "\n")+"\n"+string(key))
	}
	for i := range r.Services {
		s := &r.Services[i]
		fromVault := map[string]bool{}
		for _, ref := range s.secrets {
			sec, err := v.Secret(ref.Secret)
			if err != nil {
				return fmt.Errorf("service %s: secret %s: %w", s.ID, ref.Secret, err)
			}
			value, err := open(ref.Secret, sec.Sealed)
			if err != nil {
				return fmt.Errorf("open secret %s: %w", ref.Secret, err)
			}
			if !fromVault[ref.Name] {
				delete(s.Env, ref.Name) // a vault secret wins over a plain value of the same name
				fromVault[ref.Name] = true
			}
			s.Env = joinSecret(s.Env, ref.Name, value)
		}
	}
	return nil
}
