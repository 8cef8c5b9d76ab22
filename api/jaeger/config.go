package jaeger

import (
	"fmt"
	"time"

	"github.com/prometheus/common/model"
)

// Config bounds the trace reads. Its YAML keys live under `traces`.
type Config struct {
	// MaxRange is the longest time range a search or a dependency query
	// may cover (Jaeger's UI asks for two days by default).
	MaxRange model.Duration `yaml:"max_range"`
	// MaxTraces is the largest `limit` a search may ask for.
	MaxTraces int `yaml:"max_traces"`
	// MaxSpans is the most spans one answer carries; a trace cut short
	// says so in its warnings.
	MaxSpans int `yaml:"max_spans"`
	// Timeout is the longest a request may take, its wait for a slot
	// included.
	Timeout model.Duration `yaml:"timeout"`
	// MaxConcurrency is how many requests read the store at once; others
	// wait for a slot.
	MaxConcurrency int `yaml:"max_concurrency"`
}

// DefaultConfig returns the defaults for every key.
func DefaultConfig() Config {
	return Config{
		MaxRange:       model.Duration(7 * 24 * time.Hour),
		MaxTraces:      1500,
		MaxSpans:       100_000,
		Timeout:        model.Duration(30 * time.Second),
		MaxConcurrency: 10,
	}
}

// Validate reports the first invalid key.
func (c Config) Validate() error {
	switch {
	case c.MaxRange <= 0:
		return fmt.Errorf("traces.max_range: must be > 0, got %s", c.MaxRange)
	case c.MaxTraces <= 0:
		return fmt.Errorf("traces.max_traces: must be > 0, got %d", c.MaxTraces)
	case c.MaxSpans <= 0:
		return fmt.Errorf("traces.max_spans: must be > 0, got %d", c.MaxSpans)
	case c.Timeout <= 0:
		return fmt.Errorf("traces.timeout: must be > 0, got %s", c.Timeout)
	case c.MaxConcurrency <= 0:
		return fmt.Errorf("traces.max_concurrency: must be > 0, got %d", c.MaxConcurrency)
	}
	return nil
}
