package agent

import (
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Config configures an Agent.
type Config struct {
	Runtime  Runtime
	Reporter Reporter // nil = no reports
	Node     NodeInfo
	Logger   *slog.Logger // nil = slog.Default()
	// Interval is how often Run reconciles without news; 0 = 10s. Health
	// checks due sooner shorten it.
	Interval time.Duration
	// Prober probes health checks; nil = TCP connect / HTTP GET.
	Prober Prober
	// Now is the clock; nil = time.Now.
	Now func() time.Time
	// Network attaches containers to the overlay; nil = engine default.
	Network Network
	// SecretFiles keeps secrets of type file for containers to mount; nil
	// = this node runs no instance that has one (it fails, saying why).
	SecretFiles SecretFiles
}

// Agent reconciles the node's containers. Reconcile and Run may be called
// from several goroutines; passes are serialized.
type Agent struct {
	rt       Runtime
	reporter Reporter
	node     NodeInfo
	log      *slog.Logger
	interval time.Duration
	prober   Prober
	now      func() time.Time
	net      Network
	secrets  SecretFiles

	mu     sync.Mutex              // serializes passes
	hmu    sync.Mutex              // guards health: a pass works on instances in parallel
	health map[string]*healthState // by container ID
	life   lifecycle               // restarts, ports and events; guarded by hmu
}

// New returns an Agent; only Runtime is required.
func New(cfg Config) (*Agent, error) {
	if cfg.Runtime == nil {
		return nil, errors.New("agent: Config.Runtime is required (use NewDockerRuntime)")
	}
	a := &Agent{
		rt:       cfg.Runtime,
		reporter: cfg.Reporter,
		node:     cfg.Node,
		log:      cfg.Logger,
		interval: cfg.Interval,
		prober:   cfg.Prober,
		now:      cfg.Now,
		net:      cfg.Network,
		secrets:  cfg.SecretFiles,
		health:   map[string]*healthState{},
		life:     newLifecycle(),
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.interval <= 0 {
		a.interval = 10 * time.Second
	}
	if a.prober == nil {
		a.prober = netProber{}
	}
	if a.now == nil {
		a.now = time.Now
	}
	return a, nil
}
