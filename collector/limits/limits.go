// Package limits decides which metric data the collector refuses before
// it reaches a store, and why: points too far in the future, series with
// too many or too long labels, names that are not UTF-8, and series
// beyond the active-series limits.
//
// The checks come in two places. Admit runs on the OTLP request as it
// arrives, before Prometheus's translator sees it: it is linear in the
// size of the request (the translator is quadratic in the number of
// attributes of one point) and removes points one by one, so that the
// client can be told which were refused. CheckLabels runs on the label
// set the translator made, once per new series, and has the exact
// semantics of Prometheus's scrape limits (label_limit,
// label_name_length_limit, label_value_length_limit).
package limits

import (
	"errors"
	"fmt"
	"time"
)

// Reason names why data was refused. Each is a value of the reason label
// of aiops_collector_refused_items_total and
// aiops_collector_rejected_samples_total.
type Reason string

// Reasons for refusing data.
const (
	// TooFarInFuture: the point's timestamp is more than MaxFuture ahead
	// of the collector's clock.
	TooFarInFuture Reason = "too_far_in_future"
	// TooFarInPast: the point's timestamp is more than MaxAge behind the
	// collector's clock.
	TooFarInPast Reason = "too_far_in_past"
	// LabelLimit: the series has more labels than LabelLimit (or the
	// point, resource or scope more attributes).
	LabelLimit Reason = "label_limit"
	// LabelNameLength: a label (attribute) name is longer than
	// LabelNameLengthLimit bytes.
	LabelNameLength Reason = "label_name_length"
	// LabelValueLength: a label (attribute) value is longer than
	// LabelValueLengthLimit bytes.
	LabelValueLength Reason = "label_value_length"
	// MetricNameLength: the metric name is longer than
	// MetricNameLengthLimit bytes.
	MetricNameLength Reason = "metric_name_length"
	// InvalidUTF8: a metric name, unit, attribute name or string value is
	// not valid UTF-8.
	InvalidUTF8 Reason = "invalid_utf8"
	// SeriesLimit: the series is new and the active series limit (global
	// or the tenant's) is reached.
	SeriesLimit Reason = "series_limit"
	// BucketLimit: a histogram point has more buckets than BucketLimit.
	BucketLimit Reason = "bucket_limit"
)

// TenantLabel is the label (and OTLP attribute) that names the tenant a
// series belongs to: the collector sets it from the client's credential,
// and the per-tenant series limit counts by it.
const TenantLabel = "tenant"

// Config holds the limits. A zero length or count limit means no limit,
// as in Prometheus.
type Config struct {
	// MaxFuture is how far ahead of the collector's clock a point's
	// timestamp may be. One point far in the future would move the
	// embedded TSDB's head past every later point of every series.
	MaxFuture time.Duration `mapstructure:"max_future" yaml:"max_future"`
	// MaxAge is how far behind the collector's clock a point's
	// timestamp may be when it arrives. Stores have bounds of their own
	// (the embedded TSDB takes samples down to its out-of-order window
	// behind its newest one); this one also bounds the target_info
	// samples the translator makes for a resource, one per half lookback
	// delta from its oldest point to its newest: a point from 1970 and
	// one from now made 11.8 million of them.
	MaxAge time.Duration `mapstructure:"max_age" yaml:"max_age"`
	// LabelLimit bounds the labels of one series, __name__ included.
	LabelLimit int `mapstructure:"label_limit" yaml:"label_limit"`
	// LabelNameLengthLimit bounds the length of a label name in bytes.
	LabelNameLengthLimit int `mapstructure:"label_name_length_limit" yaml:"label_name_length_limit"`
	// LabelValueLengthLimit bounds the length of a label value (other
	// than the metric name) in bytes.
	LabelValueLengthLimit int `mapstructure:"label_value_length_limit" yaml:"label_value_length_limit"`
	// MetricNameLengthLimit bounds the length of a metric name, as sent
	// and as stored (with unit and type suffixes), in bytes.
	MetricNameLengthLimit int `mapstructure:"metric_name_length_limit" yaml:"metric_name_length_limit"`
	// MaxSeries bounds the active series written through the collector;
	// a series is active from its first sample until it has not been
	// written for between SeriesIdle and twice that.
	MaxSeries int `mapstructure:"max_series" yaml:"max_series"`
	// MaxSeriesPerTenant bounds the active series of one value of the
	// tenant label (series without one count as tenant "").
	MaxSeriesPerTenant int `mapstructure:"max_series_per_tenant" yaml:"max_series_per_tenant"`
	// SeriesIdle is how long a series stays active without samples.
	SeriesIdle time.Duration `mapstructure:"series_idle" yaml:"series_idle"`
	// BucketLimit bounds the buckets of one histogram point: an explicit
	// histogram's bounds plus one, an exponential one's positive and
	// negative buckets. Every bucket of an explicit histogram is a series
	// of its own (_bucket{le=...}), so without it one point of a few
	// megabytes made a million series: the whole max_series budget, and
	// gigabytes of heap, from one request.
	BucketLimit int `mapstructure:"bucket_limit" yaml:"bucket_limit"`
}

// DefaultConfig returns the defaults. The label limits are far above what
// OpenTelemetry instrumentation sends and far below what costs memory or
// CPU; 10 minutes of future covers clock skew without letting one point
// push the TSDB's head ahead of everyone else's data.
func DefaultConfig() Config {
	return Config{
		MaxFuture:             10 * time.Minute,
		MaxAge:                24 * time.Hour,
		LabelLimit:            128,
		LabelNameLengthLimit:  1024,
		LabelValueLengthLimit: 4096,
		MetricNameLengthLimit: 1024,
		MaxSeries:             1_000_000,
		SeriesIdle:            time.Hour,
		// Well above what instrumentation makes: OpenTelemetry SDKs'
		// explicit histograms have 16 buckets by default, their
		// exponential ones at most 160 a side.
		BucketLimit: 1024,
	}
}

// Validate checks the limits; errors name the key relative to the limits
// section, e.g. "max_future: must be > 0, got 0s".
func (c Config) Validate() error {
	if c.MaxFuture <= 0 {
		return fmt.Errorf("max_future: must be > 0, got %s", c.MaxFuture)
	}
	if c.MaxAge <= 0 {
		return fmt.Errorf("max_age: must be > 0, got %s", c.MaxAge)
	}
	for _, l := range []struct {
		key string
		v   int
	}{
		{"label_limit", c.LabelLimit},
		{"label_name_length_limit", c.LabelNameLengthLimit},
		{"label_value_length_limit", c.LabelValueLengthLimit},
		{"metric_name_length_limit", c.MetricNameLengthLimit},
		{"max_series", c.MaxSeries},
		{"max_series_per_tenant", c.MaxSeriesPerTenant},
		{"bucket_limit", c.BucketLimit},
	} {
		if l.v < 0 {
			return fmt.Errorf("%s: must be >= 0 (0 means no limit), got %d", l.key, l.v)
		}
	}
	if c.LabelLimit > 0 && c.LabelLimit < 4 {
		// __name__, job, instance and at least one label of its own.
		return fmt.Errorf("label_limit: must be 0 (no limit) or >= 4, got %d", c.LabelLimit)
	}
	if (c.MaxSeries > 0 || c.MaxSeriesPerTenant > 0) && c.SeriesIdle <= 0 {
		return errors.New("series_idle: must be > 0 when max_series or max_series_per_tenant is set")
	}
	return nil
}
