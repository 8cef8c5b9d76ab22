package promapi

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/aiops-dev/aiops/api/auth"
)

// ParserOptions returns the PromQL parser options cfg asks for. Prometheus
// v0.316 takes them per parser instance (parser.NewParser), not from
// package-level switches, so engines with different options can coexist.
func ParserOptions(cfg Config) parser.Options {
	return parser.Options{
		EnableExperimentalFunctions: cfg.ExperimentalPromQL,
		EnableBinopFillModifiers:    cfg.ExperimentalPromQL,
		EnableUnquotedUTF8Names:     cfg.ExperimentalPromQL,
	}
}

// EngineOpts returns the promql.EngineOpts for cfg: the options the query
// API runs with, so that rule evaluation and benchmarks can build an engine
// that behaves the same. logger and reg may be nil.
func EngineOpts(cfg Config, logger *slog.Logger, reg prometheus.Registerer) promql.EngineOpts {
	step := time.Duration(cfg.SubqueryStep).Milliseconds()
	return promql.EngineOpts{
		Logger:             logger,
		Reg:                reg,
		MaxSamples:         cfg.MaxSamples,
		Timeout:            time.Duration(cfg.Timeout),
		ActiveQueryTracker: newQueryGate(cfg.MaxConcurrency, cfg.MaxConcurrencyPerPrincipal),
		LookbackDelta:      time.Duration(cfg.LookbackDelta),
		NoStepSubqueryIntervalFn: func(int64) int64 {
			return step
		},
		// Both have been on by default in Prometheus since v2.33; Grafana
		// sends `@ end()` and negative offsets in ordinary dashboards.
		EnableAtModifier:         true,
		EnableNegativeOffset:     true,
		EnableDelayedNameRemoval: cfg.ExperimentalPromQL,
		UseStartTimestamps:       cfg.UseStartTimestamps,
		Parser:                   NewParser(cfg),
	}
}

// NewEngine returns a PromQL engine configured by cfg. Close it when done.
// reg receives Prometheus's engine metrics (prometheus_engine_*); it may
// be nil.
func NewEngine(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return newEngine(cfg, EngineOpts(cfg, logger, reg)), nil
}

func newEngine(cfg Config, opts promql.EngineOpts) *Engine {
	return &Engine{
		Engine:      promql.NewEngine(opts),
		parser:      opts.Parser,
		maxSteps:    cfg.MaxSubquerySteps,
		defaultStep: time.Duration(cfg.SubqueryStep).Milliseconds(),
	}
}

// queryGate limits how many queries the engine runs at once, and how many
// of them one principal (the token or user of api/auth) runs, so that one
// client's heavy queries leave slots for everyone else. Prometheus's own
// promql.ActiveQueryTracker limits the total only, and keeps a file of the
// running queries in a data directory, which aiops has no use for.
//
// A query first takes one of its principal's slots, then one of the
// engine's; while it waits for its principal's, it holds none of the
// engine's. Waiting counts against the query's timeout, as in Prometheus.
type queryGate struct {
	global chan struct{}
	perKey int

	mu      sync.Mutex
	keys    map[string]*keySlots
	next    int
	running map[int]*keySlots // by the index Insert returned
}

// keySlots are one principal's slots; refs counts its queries running or
// waiting, so that it is forgotten when there are none.
type keySlots struct {
	key   string
	slots chan struct{}
	refs  int
}

var _ promql.QueryTracker = (*queryGate)(nil)

func newQueryGate(maxConcurrent, perPrincipal int) *queryGate {
	return &queryGate{
		global:  make(chan struct{}, maxConcurrent),
		perKey:  min(perPrincipal, maxConcurrent),
		keys:    map[string]*keySlots{},
		running: map[int]*keySlots{},
	}
}

func (g *queryGate) GetMaxConcurrent() int { return cap(g.global) }

// Insert waits for a free slot. Like Prometheus's tracker it returns the
// context's error when the query's deadline passes or it is canceled while
// waiting.
func (g *queryGate) Insert(ctx context.Context, _ string) (int, error) {
	ks := g.join(principalOf(ctx))
	select {
	case ks.slots <- struct{}{}:
	case <-ctx.Done():
		g.leave(ks)
		return 0, ctx.Err()
	}
	select {
	case g.global <- struct{}{}:
	case <-ctx.Done():
		<-ks.slots
		g.leave(ks)
		return 0, ctx.Err()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	i := g.next
	g.next++
	g.running[i] = ks
	return i, nil
}

func (g *queryGate) Delete(i int) {
	g.mu.Lock()
	ks := g.running[i]
	delete(g.running, i)
	g.mu.Unlock()
	if ks == nil {
		return
	}
	<-g.global
	<-ks.slots
	g.leave(ks)
}

func (g *queryGate) Close() error { return nil }

func (g *queryGate) join(key string) *keySlots {
	g.mu.Lock()
	defer g.mu.Unlock()
	ks := g.keys[key]
	if ks == nil {
		ks = &keySlots{key: key, slots: make(chan struct{}, g.perKey)}
		g.keys[key] = ks
	}
	ks.refs++
	return ks
}

func (g *queryGate) leave(ks *keySlots) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ks.refs--; ks.refs == 0 {
		delete(g.keys, ks.key)
	}
}

// principalOf is who runs the query: the authenticated principal the
// server's middleware put in the request context, or "" for queries
// without one (rule evaluation, tests).
func principalOf(ctx context.Context) string {
	if p, ok := auth.PrincipalFrom(ctx); ok {
		return p.ID
	}
	return ""
}
