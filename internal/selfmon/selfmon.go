// Package selfmon writes a process's own metrics into its store at an
// interval, so that aiops can be watched with aiops: the registry that
// /metrics serves becomes series with job="aiops" and the node as
// instance, as if a Prometheus scraped it.
//
// The samples go straight to the store's appender, not through the
// collector: the ingest metrics count what clients send and nothing
// else, and self-monitoring neither takes a place in the collector's
// queue nor waits behind it.
package selfmon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
)

// Job is the job label of the series written.
const Job = "aiops"

// Config configures self-monitoring (self_monitoring: in the file).
type Config struct {
	// Interval between two writes of the registry; 0 turns
	// self-monitoring off.
	Interval model.Duration `yaml:"interval"`
}

// DefaultConfig writes every 15 seconds, Prometheus's usual scrape
// interval, which the dashboards' rate windows assume.
func DefaultConfig() Config {
	return Config{Interval: model.Duration(15 * time.Second)}
}

// minInterval keeps a typo (1ms) from turning self-monitoring into most
// of the store's work.
const minInterval = time.Second

// Validate checks the interval.
func (c Config) Validate() error {
	if d := time.Duration(c.Interval); d != 0 && d < minInterval {
		return fmt.Errorf("self_monitoring.interval: must be 0 (off) or at least %s, got %s", minInterval, d)
	}
	return nil
}

// Enabled reports whether the config writes anything.
func (c Config) Enabled() bool { return c.Interval > 0 }

// Deps are what a Recorder reads and writes.
type Deps struct {
	Gatherer   prometheus.Gatherer
	Appendable promstorage.Appendable
	// Instance is the instance label: the node, as a scrape would name it.
	Instance string
	Logger   *slog.Logger
	// Registerer takes the recorder's own metrics; may be nil.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Recorder writes the gathered metrics at every interval.
type Recorder struct {
	cfg  Config
	deps Deps

	written, failed prometheus.Counter
}

// New returns a Recorder; Run starts it.
func New(cfg Config, deps Deps) (*Recorder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Gatherer == nil || deps.Appendable == nil {
		return nil, errors.New("selfmon: a gatherer and an appendable are needed")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	r := &Recorder{cfg: cfg, deps: deps,
		written: prometheus.NewCounter(prometheus.CounterOpts{Name: "aiops_selfmon_samples_written_total",
			Help: "Samples of aiops's own metrics written into its store."}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "aiops_selfmon_writes_failed_total",
			Help: "Writes of aiops's own metrics that the store refused or that timed out."}),
	}
	if deps.Registerer != nil {
		for _, c := range []prometheus.Collector{r.written, r.failed} {
			if err := deps.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("selfmon: register metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Run writes the registry at once and then at every interval until ctx
// is done. Writes never overlap: a write that takes longer than the
// interval is cut off at the interval and the next one starts on the
// next tick.
func (r *Recorder) Run(ctx context.Context) error {
	if !r.cfg.Enabled() {
		return nil
	}
	interval := time.Duration(r.cfg.Interval)
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		wctx, cancel := context.WithTimeout(ctx, interval)
		_, err := r.Record(wctx)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			r.failed.Inc()
			// Once per outage: a full disk would otherwise log every
			// interval what /readyz already says.
			if !failing {
				r.deps.Logger.Warn("Writing aiops's own metrics failed; retrying every interval", "err", err)
			}
			failing = true
		case err == nil && failing:
			r.deps.Logger.Info("Writing aiops's own metrics again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Record gathers the registry once and writes it as one commit at the
// clock's time. It returns the samples written. Samples the store
// refuses one by one (out of order after a clock step back) are
// skipped; the rest is written.
func (r *Recorder) Record(ctx context.Context) (int, error) {
	families, err := r.deps.Gatherer.Gather()
	if err != nil && len(families) == 0 {
		return 0, fmt.Errorf("gather: %w", err)
	}
	// A partial gather (one collector failing) still writes the rest.
	now := r.deps.Now().UnixMilli()
	app := r.deps.Appendable.Appender(ctx)
	n := 0
	var refused error
	Samples(families, r.deps.Instance, func(ls labels.Labels, ts int64, v float64) {
		if ts == 0 {
			ts = now
		}
		if _, err := app.Append(0, ls, ts, v); err != nil {
			if refused == nil {
				refused = fmt.Errorf("append %s: %w", ls, err)
			}
			return
		}
		n++
	})
	if err := app.Commit(); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	r.written.Add(float64(n))
	if refused != nil {
		r.deps.Logger.Debug("Some of aiops's own samples were refused", "err", refused)
	}
	return n, nil
}

// Samples calls emit for every sample of the families, named and
// labelled as Prometheus's text format and a scrape name them:
// histograms as _bucket (with le, +Inf included), _sum and _count,
// summaries as quantiles, _sum and _count. job and instance are added;
// a metric's own job or instance label becomes exported_job or
// exported_instance, as a scrape without honor_labels does. ts is the
// metric's own timestamp in milliseconds, or 0.
func Samples(families []*dto.MetricFamily, instance string, emit func(ls labels.Labels, ts int64, v float64)) {
	b := labels.NewBuilder(labels.EmptyLabels())
	for _, mf := range families {
		name := mf.GetName()
		for _, m := range mf.GetMetric() {
			base := func(metric string, extra ...string) labels.Labels {
				b.Reset(labels.EmptyLabels())
				for _, lp := range m.GetLabel() {
					k := lp.GetName()
					if k == model.JobLabel || k == model.InstanceLabel {
						k = model.ExportedLabelPrefix + k
					}
					b.Set(k, lp.GetValue())
				}
				for i := 0; i+1 < len(extra); i += 2 {
					b.Set(extra[i], extra[i+1])
				}
				b.Set(model.MetricNameLabel, metric)
				b.Set(model.JobLabel, Job)
				b.Set(model.InstanceLabel, instance)
				return b.Labels()
			}
			ts := m.GetTimestampMs()
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				emit(base(name), ts, m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				emit(base(name), ts, m.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				emit(base(name), ts, m.GetUntyped().GetValue())
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				for _, q := range s.GetQuantile() {
					emit(base(name, model.QuantileLabel, formatFloat(q.GetQuantile())), ts, q.GetValue())
				}
				emit(base(name+"_sum"), ts, s.GetSampleSum())
				emit(base(name+"_count"), ts, float64(s.GetSampleCount()))
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				h := m.GetHistogram()
				inf := false
				for _, bk := range h.GetBucket() {
					if math.IsInf(bk.GetUpperBound(), +1) {
						inf = true
					}
					emit(base(name+"_bucket", model.BucketLabel, formatFloat(bk.GetUpperBound())), ts, float64(bk.GetCumulativeCount()))
				}
				if !inf {
					emit(base(name+"_bucket", model.BucketLabel, "+Inf"), ts, float64(h.GetSampleCount()))
				}
				emit(base(name+"_sum"), ts, h.GetSampleSum())
				emit(base(name+"_count"), ts, float64(h.GetSampleCount()))
			}
		}
	}
}

// formatFloat renders le and quantile values as Prometheus's text format
// does, so that the series match a scrape's.
func formatFloat(f float64) string {
	if math.IsInf(f, +1) {
		return "+Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
