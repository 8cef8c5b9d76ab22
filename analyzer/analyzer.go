// Package analyzer runs the streaming anomaly detectors and the capacity
// forecasters over stored series and writes their results back as series
// and events.
//
// Every Interval it reads the samples of the selected series that it has
// not seen yet (one watermark per series), scores each with that series'
// detector (package detect), and appends
//
//	aiops_anomaly_score{<original labels>, aiops_metric="<original name>"}
//
// at the sample's own timestamp. Points scoring at least EventThreshold
// also become storage events of Kind "anomaly", with an ID derived from
// the series and timestamp so a re-run never duplicates one. For capacity
// series it appends aiops_capacity_exhaustion_seconds and its _lower and
// _upper bounds at the evaluation time. Those names and the anomaly
// event's codec are package results, the contract its readers use; the
// analyzer writes through it too.
//
// Detector state is snapshotted to StateDir and loaded on start, so a
// restart resumes without learning every series again. Deps.Shard lets
// several replicas split the series between them (docs/ANALYZER.md).
package analyzer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/aiops-dev/aiops/analyzer/detect"
	"github.com/aiops-dev/aiops/analyzer/results"
	"github.com/aiops-dev/aiops/storage"
)

// ownPrefix marks series the analyzer never analyses: its own output
// (every results name starts with it), which would otherwise feed back
// into itself.
const ownPrefix = "aiops_"

// Deps are what the analyzer reads from and writes to.
type Deps struct {
	Queryable  promstorage.Queryable
	Appendable promstorage.Appendable
	Events     storage.EventStore
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Shard reports whether this replica owns a series. Nil owns all.
	// With Kafka ingestion, a replica owns the series whose partition
	// (the hash the producer uses to pick it) is assigned to it.
	Shard func(labels.Labels) bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Analyzer is the running component.
type Analyzer struct {
	cfg    Config
	deps   Deps
	logger *slog.Logger
	engine *promql.Engine
	m      metrics

	mu     sync.Mutex
	series map[uint64][]*seriesState
	count  int

	lastForecast time.Time
}

type seriesState struct {
	lset      labels.Labels
	det       *detect.Detector
	watermark int64 // ms of the last sample scored
	selector  int
	// resumed is set once the scores stored by other replicas have been
	// looked at (Deps.Shard).
	resumed bool
}

type metrics struct {
	samples, anomalies, appendErrors, skipped, forecasts prometheus.Counter
	series                                               prometheus.Gauge
	stepSeconds                                          prometheus.Histogram
}

// New checks cfg and deps and returns an analyzer ready to Run.
func New(cfg Config, deps Deps) (*Analyzer, error) {
	// Validate fills in parsed selectors; work on our own copies so the
	// caller's Config is left as it was.
	cfg.Selectors = append([]SelectorConfig(nil), cfg.Selectors...)
	cfg.Capacities = append([]CapacityConfig(nil), cfg.Capacities...)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case deps.Queryable == nil:
		return nil, errors.New("analyzer: Deps.Queryable is required")
	case deps.Appendable == nil:
		return nil, errors.New("analyzer: Deps.Appendable is required")
	case deps.Events == nil:
		return nil, errors.New("analyzer: Deps.Events is required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	a := &Analyzer{
		cfg: cfg, deps: deps, logger: deps.Logger,
		series: map[uint64][]*seriesState{},
		engine: promql.NewEngine(promql.EngineOpts{
			Logger: deps.Logger.With("component", "analyzer-promql"), MaxSamples: 10_000_000,
			Timeout: time.Minute, LookbackDelta: 5 * time.Minute, EnableAtModifier: true,
		}),
	}
	a.m = metrics{
		samples:      prometheus.NewCounter(prometheus.CounterOpts{Name: "aiops_analyzer_samples_scored_total", Help: "Samples scored by the anomaly detectors."}),
		anomalies:    prometheus.NewCounter(prometheus.CounterOpts{Name: "aiops_analyzer_anomaly_events_total", Help: "Anomaly events recorded."}),
		appendErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "aiops_analyzer_append_errors_total", Help: "Result samples the storage refused."}),
		skipped:      prometheus.NewCounter(prometheus.CounterOpts{Name: "aiops_analyzer_series_skipped_total", Help: "Series not analysed because analyzer.max_series was reached."}),
		forecasts:    prometheus.NewCounter(prometheus.CounterOpts{Name: "aiops_analyzer_forecasts_total", Help: "Capacity forecasts written."}),
		series:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "aiops_analyzer_series", Help: "Series with detector state."}),
		stepSeconds:  prometheus.NewHistogram(prometheus.HistogramOpts{Name: "aiops_analyzer_step_duration_seconds", Help: "Duration of one evaluation.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}),
	}
	if deps.Registerer != nil {
		for _, c := range []prometheus.Collector{a.m.samples, a.m.anomalies, a.m.appendErrors, a.m.skipped, a.m.forecasts, a.m.series, a.m.stepSeconds} {
			if err := deps.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("analyzer: register metrics: %w", err)
			}
		}
	}
	return a, nil
}

// Run evaluates every Interval until ctx ends, loading the state first
// and saving it every SnapshotInterval and on the way out.
func (a *Analyzer) Run(ctx context.Context) error {
	if err := a.LoadState(); err != nil {
		// A bad snapshot must not keep the analyzer down: it relearns.
		a.logger.Warn("analyzer state not loaded; starting cold", "err", err)
	}
	tick := time.NewTicker(time.Duration(a.cfg.Interval))
	defer tick.Stop()
	snap := time.NewTicker(time.Duration(a.cfg.SnapshotInterval))
	defer snap.Stop()
	for {
		if err := a.Step(ctx, a.deps.Now()); err != nil && ctx.Err() == nil {
			a.logger.Error("analyzer step failed", "err", err)
		}
		select {
		case <-ctx.Done():
			if err := a.SaveState(); err != nil {
				return fmt.Errorf("analyzer: save state on shutdown: %w", err)
			}
			return nil
		case <-snap.C:
			if err := a.SaveState(); err != nil {
				a.logger.Error("analyzer state not saved", "err", err)
			}
		case <-tick.C:
		}
	}
}

// Step runs one evaluation as of now: anomaly scoring of new samples,
// then capacity forecasts when ForecastInterval has passed. Run calls it;
// it must not run concurrently with itself.
func (a *Analyzer) Step(ctx context.Context, now time.Time) error {
	start := time.Now()
	defer func() { a.m.stepSeconds.Observe(time.Since(start).Seconds()) }()
	var errs []error
	if err := a.scoreNew(ctx, now); err != nil {
		errs = append(errs, err)
	}
	if now.Sub(a.lastForecast) >= time.Duration(a.cfg.ForecastInterval) || now.Before(a.lastForecast) {
		if err := a.forecastAll(ctx, now); err != nil {
			errs = append(errs, err)
		}
		a.lastForecast = now
	}
	return errors.Join(errs...)
}

func (a *Analyzer) owns(lset labels.Labels) bool {
	if strings.HasPrefix(lset.Get(labels.MetricName), ownPrefix) {
		return false
	}
	return a.deps.Shard == nil || a.deps.Shard(lset)
}

func (a *Analyzer) scoreNew(ctx context.Context, now time.Time) error {
	if len(a.cfg.Selectors) == 0 {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	mint := now.Add(-time.Duration(a.cfg.Lookback)).UnixMilli()
	maxt := now.UnixMilli()
	q, err := a.deps.Queryable.Querier(mint, maxt)
	if err != nil {
		return fmt.Errorf("analyzer: querier: %w", err)
	}
	defer q.Close()
	app := a.deps.Appendable.Appender(ctx)
	committed := false
	defer func() {
		if !committed {
			// The store holds an appender's resources until it ends.
			_ = app.Rollback()
		}
	}()
	var events []storage.Event
	var appendErr error // the first refusal, logged once per step
	for si, sel := range a.cfg.Selectors {
		ss := q.Select(ctx, false, &promstorage.SelectHints{Start: mint, End: maxt}, sel.matchers...)
		for ss.Next() {
			s := ss.At()
			lset := s.Labels()
			if !a.owns(lset) {
				// Another replica scores it now; if it comes back here,
				// it resumes from what that one stored, not from an old
				// watermark.
				a.forget(lset)
				continue
			}
			st := a.state(lset, si)
			if st == nil {
				continue
			}
			out := results.SeriesLabels(results.ScoreMetric, lset)
			var resumeAt int64 = math.MinInt64
			if !st.resumed && a.deps.Shard != nil {
				// New here (or restored from a snapshot), and series move
				// between replicas: samples another replica scored
				// meanwhile (it stored their scores) only train the
				// detector.
				resumeAt = lastScored(ctx, q, out, mint, maxt)
				st.resumed = true
			}
			var ref promstorage.SeriesRef
			it := s.Iterator(nil)
			for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
				if vt != chunkenc.ValFloat {
					continue // histograms are not analysed
				}
				t, v := it.At()
				if t <= st.watermark {
					continue
				}
				st.watermark = t
				r := st.det.Observe(time.UnixMilli(t), v)
				if t <= resumeAt {
					continue
				}
				a.m.samples.Inc()
				if r.Status == detect.OutOfOrder || r.Status == detect.Duplicate || r.Status == detect.Missing {
					continue
				}
				ref, err = app.Append(ref, out, t, r.Score)
				if err != nil {
					// Typically a sample older than the TSDB accepts
					// (catching up after downtime): the score is lost
					// as a series, the event below is still recorded.
					a.m.appendErrors.Inc()
					if appendErr == nil && !isBenignAppendError(err) {
						appendErr = fmt.Errorf("%s at %d: %w", out, t, err)
					}
					ref = 0
				}
				if r.Score >= a.cfg.EventThreshold {
					ev, err := results.EncodeAnomaly(newAnomaly(lset, t, v, r))
					if err != nil {
						return fmt.Errorf("analyzer: %w", err)
					}
					events = append(events, ev)
				}
			}
			if err := it.Err(); err != nil {
				a.logger.Warn("analyzer: reading series", "series", lset.String(), "err", err)
			}
		}
		if err := ss.Err(); err != nil {
			return fmt.Errorf("analyzer: select %s: %w", sel.Selector, err)
		}
	}
	committed = true
	if err := app.Commit(); err != nil {
		return fmt.Errorf("analyzer: commit scores: %w", err)
	}
	if appendErr != nil {
		a.logger.Warn("analyzer: some scores not stored", "first", appendErr)
	}
	if len(events) > 0 {
		if err := a.deps.Events.AppendEvents(ctx, events); err != nil {
			return fmt.Errorf("analyzer: append anomaly events: %w", err)
		}
		a.m.anomalies.Add(float64(len(events)))
	}
	a.evict(now)
	return nil
}

// isBenignAppendError is true for refusals that a re-run after a cold
// start produces for results already stored.
func isBenignAppendError(err error) bool {
	return errors.Is(err, promstorage.ErrOutOfOrderSample) || errors.Is(err, promstorage.ErrDuplicateSampleForTimestamp) || errors.Is(err, promstorage.ErrTooOldSample)
}

// state returns the series' state, creating it; nil when MaxSeries is hit.
func (a *Analyzer) state(lset labels.Labels, selector int) *seriesState {
	h := lset.Hash()
	for _, st := range a.series[h] {
		if labels.Equal(st.lset, lset) {
			return st
		}
	}
	if a.count >= a.cfg.MaxSeries {
		a.m.skipped.Inc()
		return nil
	}
	st := &seriesState{lset: lset.Copy(), det: detect.New(a.cfg.Selectors[selector].detectorConfig()), watermark: math.MinInt64, selector: selector}
	a.series[h] = append(a.series[h], st)
	a.count++
	a.m.series.Set(float64(a.count))
	return st
}

// forget drops the state of a series this replica no longer owns.
func (a *Analyzer) forget(lset labels.Labels) {
	h := lset.Hash()
	sts := a.series[h]
	for i, st := range sts {
		if labels.Equal(st.lset, lset) {
			sts = append(sts[:i], sts[i+1:]...)
			a.count--
			a.m.series.Set(float64(a.count))
			break
		}
	}
	if len(sts) == 0 {
		delete(a.series, h)
	} else {
		a.series[h] = sts
	}
}

// lastScored returns the time of the latest score stored for the score
// series out, or MinInt64.
func lastScored(ctx context.Context, q promstorage.Querier, out labels.Labels, mint, maxt int64) int64 {
	var ms []*labels.Matcher
	out.Range(func(l labels.Label) { ms = append(ms, labels.MustNewMatcher(labels.MatchEqual, l.Name, l.Value)) })
	last := int64(math.MinInt64)
	ss := q.Select(ctx, false, &promstorage.SelectHints{Start: mint, End: maxt}, ms...)
	for ss.Next() {
		it := ss.At().Iterator(nil)
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			if t := it.AtT(); t > last {
				last = t
			}
		}
	}
	return last
}

// evict drops series without samples for SeriesTTL.
func (a *Analyzer) evict(now time.Time) {
	limit := now.Add(-time.Duration(a.cfg.SeriesTTL)).UnixMilli()
	for h, sts := range a.series {
		kept := sts[:0]
		for _, st := range sts {
			if st.watermark != math.MinInt64 && st.watermark < limit {
				a.count--
				continue
			}
			kept = append(kept, st)
		}
		if len(kept) == 0 {
			delete(a.series, h)
		} else {
			a.series[h] = kept
		}
	}
	a.m.series.Set(float64(a.count))
}

func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func newAnomaly(lset labels.Labels, t int64, v float64, r detect.Result) results.Anomaly {
	return results.Anomaly{
		Series: lset.Map(), Time: time.UnixMilli(t).UTC(), Score: r.Score, Value: v,
		Expected: finite(r.Expected), Lower: finite(r.Lower), Upper: finite(r.Upper),
		Surprise: math.Min(r.Surprise, 1e6),
	}
}
