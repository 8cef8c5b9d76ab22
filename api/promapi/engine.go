package promapi

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
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
		ActiveQueryTracker: newQueryGate(cfg.MaxConcurrency),
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
func NewEngine(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*promql.Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return promql.NewEngine(EngineOpts(cfg, logger, reg)), nil
}

// queryGate limits how many queries the engine runs at once. Prometheus's
// own promql.ActiveQueryTracker does the same but also keeps a file of the
// running queries in a data directory, which aiops has no use for.
type queryGate struct {
	slots chan struct{}
}

var _ promql.QueryTracker = (*queryGate)(nil)

func newQueryGate(maxConcurrent int) *queryGate {
	return &queryGate{slots: make(chan struct{}, maxConcurrent)}
}

func (g *queryGate) GetMaxConcurrent() int { return cap(g.slots) }

// Insert waits for a free slot. Like Prometheus's tracker it returns the
// context's error when the query's deadline passes or it is canceled while
// waiting.
func (g *queryGate) Insert(ctx context.Context, _ string) (int, error) {
	select {
	case g.slots <- struct{}{}:
		return 0, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (g *queryGate) Delete(int) { <-g.slots }

func (g *queryGate) Close() error { return nil }
