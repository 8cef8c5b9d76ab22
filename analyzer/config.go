package analyzer

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/aiops-dev/aiops/analyzer/detect"
)

// Config configures the analyzer. YAML keys live under `analyzer`.
type Config struct {
	// Interval is how often new samples are read and scored.
	Interval model.Duration `yaml:"interval"`
	// Lookback is how far back each evaluation reads. A series' samples
	// are scored once (a watermark per series), so Lookback only bounds
	// how late a sample may arrive, or how long the analyzer may be down,
	// and still be scored.
	Lookback model.Duration `yaml:"lookback"`
	// StateDir holds the detector snapshot (analyzer.state). Empty keeps
	// no state: a restart learns every series again.
	StateDir string `yaml:"state_dir"`
	// SnapshotInterval is how often the state is written (and always on
	// shutdown).
	SnapshotInterval model.Duration `yaml:"snapshot_interval"`
	// SeriesTTL drops the state of a series that has had no sample for
	// this long, so that churned series do not hold memory forever.
	SeriesTTL model.Duration `yaml:"series_ttl"`
	// MaxSeries bounds how many series are analysed at once; new series
	// beyond it are skipped and counted.
	MaxSeries int `yaml:"max_series"`
	// EventThreshold is the anomaly score from which an anomaly event is
	// recorded. 0.6 is a deviation about as unlikely as 1 in 10,000 points
	// of the series' recent behaviour (docs/ANALYZER.md).
	EventThreshold float64 `yaml:"event_threshold"`
	// ForecastInterval is how often capacity forecasts are recomputed;
	// they read a long window, and exhaustion hours away does not need a
	// fresh answer every Interval.
	ForecastInterval model.Duration `yaml:"forecast_interval"`
	// Selectors choose the series to watch for anomalies.
	Selectors []SelectorConfig `yaml:"selectors"`
	// Capacities choose the series to forecast exhaustion for.
	Capacities []CapacityConfig `yaml:"capacities"`
}

// SelectorConfig is one group of series watched for anomalies.
type SelectorConfig struct {
	// Selector is a PromQL series selector, e.g. `http_server_duration_seconds_sum{service_name="api"}`.
	Selector string `yaml:"selector"`
	// Sensitivity scales how surprising deviations look: 2 flags smaller
	// deviations, 0.5 only larger ones. Default 1.
	Sensitivity float64 `yaml:"sensitivity"`
	// Seasonality is "auto" (default: found from the data), "none", or
	// the period as a duration ("24h", "168h").
	Seasonality string `yaml:"seasonality"`
	// Window and History size each series' detector in points (defaults
	// 576 and 4096; about 190 KiB of memory per series). Smaller values
	// save memory; History bounds the longest period found at History/2.
	Window  int `yaml:"window"`
	History int `yaml:"history"`

	matchers []*labels.Matcher
	period   time.Duration // from Seasonality; -1 for none
}

// CapacityConfig is one group of series forecast to reach a capacity.
type CapacityConfig struct {
	// Usage is a PromQL series selector for what fills up.
	Usage string `yaml:"usage"`
	// Capacity is a constant limit in the usage's unit. Either it or
	// CapacityQuery must be set.
	Capacity float64 `yaml:"capacity"`
	// CapacityQuery is a PromQL expression giving the limit per series,
	// e.g. `pg_settings_max_connections` or `node_filesystem_size_bytes`.
	CapacityQuery string `yaml:"capacity_query"`
	// MatchOn names the labels that pair a usage series with its capacity
	// series; empty means all labels but the metric name. A capacity
	// query returning a single series applies to every usage series.
	MatchOn []string `yaml:"match_on"`
	// Window is how much history the forecast looks at. Default 72h.
	Window model.Duration `yaml:"window"`
	// Seasonality is the cycle tested for: "24h" by default, "none", or a
	// duration.
	Seasonality string `yaml:"seasonality"`

	matchers []*labels.Matcher
	period   time.Duration
}

// DefaultConfig returns the defaults for every key.
func DefaultConfig() Config {
	return Config{
		Interval:         model.Duration(30 * time.Second),
		Lookback:         model.Duration(time.Hour),
		SnapshotInterval: model.Duration(5 * time.Minute),
		SeriesTTL:        model.Duration(24 * time.Hour),
		ForecastInterval: model.Duration(5 * time.Minute),
		MaxSeries:        10000,
		EventThreshold:   0.6,
	}
}

// Validate reports the first invalid key and prepares the selectors.
func (c *Config) Validate() error {
	switch {
	case c.Interval <= 0:
		return fmt.Errorf("analyzer.interval: must be > 0, got %s", c.Interval)
	case c.Lookback < c.Interval:
		return fmt.Errorf("analyzer.lookback: must be >= analyzer.interval (%s), got %s", c.Interval, c.Lookback)
	case c.SnapshotInterval <= 0:
		return fmt.Errorf("analyzer.snapshot_interval: must be > 0, got %s", c.SnapshotInterval)
	case c.SeriesTTL <= 0:
		return fmt.Errorf("analyzer.series_ttl: must be > 0, got %s", c.SeriesTTL)
	case c.ForecastInterval <= 0:
		return fmt.Errorf("analyzer.forecast_interval: must be > 0, got %s", c.ForecastInterval)
	case c.MaxSeries <= 0:
		return fmt.Errorf("analyzer.max_series: must be > 0, got %d", c.MaxSeries)
	case !(c.EventThreshold > 0 && c.EventThreshold <= 1):
		return fmt.Errorf("analyzer.event_threshold: must be in (0, 1], got %v", c.EventThreshold)
	case len(c.Selectors) == 0 && len(c.Capacities) == 0:
		return errors.New("analyzer.selectors: at least one selector or capacity is needed")
	}
	p := parser.NewParser(parser.Options{})
	for i := range c.Selectors {
		s := &c.Selectors[i]
		key := fmt.Sprintf("analyzer.selectors[%d]", i)
		ms, err := p.ParseMetricSelector(s.Selector)
		if err != nil {
			return fmt.Errorf("%s.selector: %q is not a PromQL series selector: %w", key, s.Selector, err)
		}
		s.matchers = ms
		if s.Sensitivity == 0 {
			s.Sensitivity = 1
		}
		if !(s.Sensitivity > 0) || math.IsInf(s.Sensitivity, 0) {
			return fmt.Errorf("%s.sensitivity: must be > 0, got %v", key, s.Sensitivity)
		}
		if s.period, err = parseSeasonality(s.Seasonality, 0); err != nil {
			return fmt.Errorf("%s.seasonality: %w", key, err)
		}
		if err := s.detectorConfig().Validate(key + "."); err != nil {
			return err
		}
	}
	for i := range c.Capacities {
		cc := &c.Capacities[i]
		key := fmt.Sprintf("analyzer.capacities[%d]", i)
		ms, err := p.ParseMetricSelector(cc.Usage)
		if err != nil {
			return fmt.Errorf("%s.usage: %q is not a PromQL series selector: %w", key, cc.Usage, err)
		}
		cc.matchers = ms
		switch {
		case cc.CapacityQuery == "" && !(cc.Capacity > 0):
			return fmt.Errorf("%s: set capacity (> 0) or capacity_query", key)
		case cc.CapacityQuery != "" && cc.Capacity != 0:
			return fmt.Errorf("%s: set capacity or capacity_query, not both", key)
		case math.IsInf(cc.Capacity, 0) || math.IsNaN(cc.Capacity):
			return fmt.Errorf("%s.capacity: must be finite, got %v", key, cc.Capacity)
		}
		if cc.CapacityQuery != "" {
			if _, err := p.ParseExpr(cc.CapacityQuery); err != nil {
				return fmt.Errorf("%s.capacity_query: %w", key, err)
			}
		}
		if cc.Window == 0 {
			cc.Window = model.Duration(72 * time.Hour)
		}
		if cc.Window < 0 {
			return fmt.Errorf("%s.window: must be > 0, got %s", key, cc.Window)
		}
		if cc.period, err = parseSeasonality(cc.Seasonality, 24*time.Hour); err != nil {
			return fmt.Errorf("%s.seasonality: %w", key, err)
		}
	}
	return nil
}

// parseSeasonality turns a seasonality hint into a period: def for "" or
// "auto", -1 for "none".
func parseSeasonality(s string, def time.Duration) (time.Duration, error) {
	switch s {
	case "", "auto":
		return def, nil
	case "none":
		return -1, nil
	}
	d, err := model.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf(`want "auto", "none" or a duration such as "24h", got %q`, s)
	}
	return time.Duration(d), nil
}

func (s SelectorConfig) detectorConfig() detect.Config {
	dc := detect.Config{Sensitivity: s.Sensitivity, Window: s.Window, History: s.History}
	switch {
	case s.period < 0:
		dc.Period = -1
	case s.period > 0:
		dc.PeriodHint = s.period
	}
	return dc
}
