package promapi

import (
	"fmt"
	"time"

	"github.com/prometheus/common/model"
)

// Config configures the PromQL engine behind the query API. Its YAML keys
// live under `query`.
type Config struct {
	// Timeout is the longest a query may run before it is aborted with a
	// timeout error (Prometheus's --query.timeout).
	Timeout model.Duration `yaml:"timeout"`
	// MaxSamples is the most samples one query may hold in memory at once
	// (Prometheus's --query.max-samples).
	MaxSamples int `yaml:"max_samples"`
	// LookbackDelta is how far back an instant selector looks for the last
	// sample of a series (Prometheus's --query.lookback-delta).
	LookbackDelta model.Duration `yaml:"lookback_delta"`
	// MaxConcurrency is how many queries run at once; further queries wait
	// for a slot, and the wait counts against their timeout
	// (Prometheus's --query.max-concurrency).
	MaxConcurrency int `yaml:"max_concurrency"`
	// MaxConcurrencyPerPrincipal is how many of those one principal (API
	// token, JWT subject) runs at once, so that one client's heavy queries
	// leave slots for the others. A Grafana data source is one principal
	// for all its users.
	MaxConcurrencyPerPrincipal int `yaml:"max_concurrency_per_principal"`
	// RulesMaxConcurrency is how many rule expressions `aiops serve`
	// evaluates at once, in an engine of their own: rule evaluation never
	// waits for the query API's slots, nor queries for the rules'.
	RulesMaxConcurrency int `yaml:"rules_max_concurrency"`
	// MaxHeapMiB refuses new queries (query, query_range, series, labels,
	// label values, exemplars, remote read) with 503 while the process's
	// Go heap holds more than this many MiB, so that queries cannot pile
	// up until the process runs out of memory. 0 takes 80% of GOMEMLIMIT
	// when that is set, otherwise half of the memory of the machine or
	// container.
	MaxHeapMiB int `yaml:"max_heap_mib"`
	// SubqueryStep is the resolution of a subquery that names none,
	// e.g. `max_over_time(rate(x[5m])[1h:])`. Prometheus takes it from
	// global.evaluation_interval.
	SubqueryStep model.Duration `yaml:"subquery_step"`
	// ExperimentalPromQL turns on what Prometheus keeps behind feature
	// flags and its own PromQL test suite exercises: experimental
	// functions and aggregations (limitk, mad_over_time, ...), fill
	// modifiers on binary operators, unquoted UTF-8 metric names and
	// delayed __name__ removal.
	ExperimentalPromQL bool `yaml:"experimental_promql"`
	// MaxLength is the longest PromQL expression or series selector
	// accepted, in bytes; longer ones are refused with 400 bad_data before
	// they are parsed.
	MaxLength int `yaml:"max_length"`
	// MaxDepth is the deepest PromQL expression accepted: the most
	// operators, function calls, aggregations, parentheses and subqueries
	// nested in one another (`a + b + c` nests two binary operators).
	// Prometheus's parser and evaluator recurse over the expression, some
	// parts with a cost quadratic in its depth, so very deep ones are
	// refused with 400 bad_data.
	MaxDepth int `yaml:"max_depth"`
	// MaxSubquerySteps is the most steps a subquery may be evaluated at,
	// over the whole range of the query it is in: Prometheus's evaluator
	// allocates 16 bytes per step of a subquery before it reads anything
	// (16 MB for the default), so `x[100y:1ms]` asked for 25 TB and
	// killed the process. Larger subqueries are refused with 400
	// bad_data.
	MaxSubquerySteps int64 `yaml:"max_subquery_steps"`
	// UseStartTimestamps lets rate(), increase() and friends use the start
	// timestamps OTLP cumulative points carry, where the store keeps them.
	UseStartTimestamps bool `yaml:"use_start_timestamps"`
}

// DefaultConfig returns Prometheus's defaults for the engine, with the
// features Grafana users and the PromQL test suite expect turned on.
func DefaultConfig() Config {
	return Config{
		Timeout:                    model.Duration(2 * time.Minute),
		MaxSamples:                 50_000_000,
		LookbackDelta:              model.Duration(5 * time.Minute),
		MaxConcurrency:             20,
		MaxConcurrencyPerPrincipal: 8,
		RulesMaxConcurrency:        4,
		SubqueryStep:               model.Duration(time.Minute),
		MaxLength:                  128 << 10,
		MaxDepth:                   200,
		MaxSubquerySteps:           1_000_000,
		ExperimentalPromQL:         true,
		UseStartTimestamps:         true,
	}
}

// Validate reports the first invalid key.
func (c Config) Validate() error {
	switch {
	case c.Timeout <= 0:
		return fmt.Errorf("query.timeout: must be > 0, got %s", c.Timeout)
	case c.MaxSamples <= 0:
		return fmt.Errorf("query.max_samples: must be > 0, got %d", c.MaxSamples)
	case c.LookbackDelta <= 0:
		return fmt.Errorf("query.lookback_delta: must be > 0, got %s", c.LookbackDelta)
	case c.MaxConcurrency <= 0:
		return fmt.Errorf("query.max_concurrency: must be > 0, got %d", c.MaxConcurrency)
	case c.MaxConcurrencyPerPrincipal <= 0:
		return fmt.Errorf("query.max_concurrency_per_principal: must be > 0, got %d", c.MaxConcurrencyPerPrincipal)
	case c.RulesMaxConcurrency <= 0:
		return fmt.Errorf("query.rules_max_concurrency: must be > 0, got %d", c.RulesMaxConcurrency)
	case c.MaxHeapMiB < 0:
		return fmt.Errorf("query.max_heap_mib: must be >= 0 (0 derives it from the memory available), got %d", c.MaxHeapMiB)
	case c.SubqueryStep <= 0:
		return fmt.Errorf("query.subquery_step: must be > 0, got %s", c.SubqueryStep)
	case c.MaxLength <= 0:
		return fmt.Errorf("query.max_length: must be > 0, got %d", c.MaxLength)
	case c.MaxDepth <= 0:
		return fmt.Errorf("query.max_depth: must be > 0, got %d", c.MaxDepth)
	case c.MaxSubquerySteps <= 0:
		return fmt.Errorf("query.max_subquery_steps: must be > 0, got %d", c.MaxSubquerySteps)
	}
	return nil
}

// ForRules returns the configuration of the engine that evaluates rules:
// this one with rules_max_concurrency slots, all of them open to the one
// principal rules run as.
func (c Config) ForRules() Config {
	c.MaxConcurrency = c.RulesMaxConcurrency
	c.MaxConcurrencyPerPrincipal = c.RulesMaxConcurrency
	return c
}
