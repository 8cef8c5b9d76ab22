package storeexporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	prw "github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"
	"github.com/prometheus/prometheus/util/annotations"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/aiops-dev/aiops/collector/internal/obs"
	"github.com/aiops-dev/aiops/collector/internal/outcome"
	"github.com/aiops-dev/aiops/collector/limits"
)

// MetricsWriter writes OTLP metrics into a Prometheus AppendableV2 through
// Prometheus's own OTLP translator, so names, labels, target_info and
// native histograms come out exactly as Prometheus's OTLP endpoint makes
// them. It is safe for concurrent use.
type MetricsWriter struct {
	dst      promstorage.AppendableV2
	settings prw.Settings
	// partSettings convert parts of a request: target_info is made for
	// whole resources only (see memo.go).
	partSettings prw.Settings
	metrics      *obs.Metrics
	logger       *slog.Logger
	exporter     string

	// Converters keep label caches between requests; pooling them is what
	// Prometheus's own OTLP handler does.
	converters sync.Pool
	// cache remembers the translator's output per series; nil when
	// translation.cache_series is negative.
	cache *seriesCache

	// limits, when guarded, refuse samples and series (WithLimits).
	limits  limits.Config
	guarded bool
	series  *limits.Series
	now     func() time.Time
	log     *limits.Log
}

// WriterOption configures a MetricsWriter.
type WriterOption func(*MetricsWriter)

// WithLimits makes the writer refuse, sample by sample, what l refuses:
// samples more than MaxFuture ahead of now, series whose labels break
// the label limits (checked once per new series, on the translator's
// output) and new series beyond the series limits. The OTLP ingress
// refuses most of it earlier, point by point; this is where the data of
// the ingester role (Kafka) and of replayed queues is checked.
func WithLimits(l limits.Config, now func() time.Time) WriterOption {
	return func(w *MetricsWriter) {
		w.limits, w.guarded, w.now = l, true, now
		w.series = l.NewSeries()
	}
}

// NewMetricsWriter returns a writer appending to dst with the given
// translation configuration. exporter names the writer in self-metrics.
func NewMetricsWriter(dst promstorage.AppendableV2, cfg TranslationConfig, m *obs.Metrics, logger *slog.Logger, exporter string, opts ...WriterOption) *MetricsWriter {
	settings := cfg.Settings()
	w := &MetricsWriter{dst: dst, settings: settings, partSettings: settings, metrics: m, logger: logger, exporter: exporter, now: time.Now}
	for _, o := range opts {
		o(w)
	}
	w.log = limits.NewLog(logger, "refused metric data points", refusalLogInterval, w.now, "exporter", exporter)
	w.partSettings.DisableTargetInfo = true
	w.converters.New = func() any { return prw.NewPrometheusConverter(nil) }
	switch {
	case cfg.CacheSeries == 0:
		w.cache = newSeriesCache(DefaultCacheSeries)
	case cfg.CacheSeries > 0:
		w.cache = newSeriesCache(cfg.CacheSeries)
	}
	return w
}

// refusalLogInterval spaces the log lines about refused data.
const refusalLogInterval = time.Minute

// WriteMetrics appends mds in one appender transaction. It returns nil
// when everything that can ever be written was committed; data that can
// never be written (translator errors, samples the store or the limits
// refuse for good) is counted, logged at most once a minute and, when
// ctx carries an outcome.Outcome, reported to it, not retried. Any other
// error means nothing was committed and the caller should retry the
// whole batch.
func (w *MetricsWriter) WriteMetrics(ctx context.Context, mds ...pmetric.Metrics) error {
	// The translator checks its context every 128 points; cancelling it on
	// the first transient append error stops a doomed conversion early.
	outer := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	now := w.now()
	app := &appender{AppenderV2: w.dst.AppenderV2(ctx), cancel: cancel, w: w, now: now, maxT: math.MaxInt64}
	if w.guarded {
		app.maxT = now.Add(w.limits.MaxFuture).UnixMilli()
		if w.series != nil {
			app.epoch = w.series.Epoch(now)
		}
	}
	var annots annotations.Annotations
	var convErr error
	for _, md := range mds {
		var a annotations.Annotations
		var err error
		if w.cache != nil {
			a, err = w.translateMemo(ctx, app, md)
		} else {
			conv := w.converters.Get().(*prw.PrometheusConverter)
			conv.Reset(app)
			a, err = conv.FromMetrics(ctx, md, w.settings)
			conv.Reset(nil)
			w.converters.Put(conv)
		}
		annots.Merge(a)
		convErr = errors.Join(convErr, err)
		if app.err != nil || ctx.Err() != nil {
			break
		}
	}

	if app.err != nil {
		_ = app.Rollback()
		return fmt.Errorf("append metrics: %w", app.err)
	}
	if err := ctx.Err(); err != nil {
		_ = app.Rollback()
		return fmt.Errorf("append metrics: %w", err)
	}
	if err := app.Commit(); err != nil {
		if reason := sampleErrorReason(err); reason != "" {
			// The store refused the batch for a reason that a retry
			// cannot change.
			w.metrics.RejectedSamples.WithLabelValues(reason).Add(float64(app.samples))
			points := 0
			for _, md := range mds {
				points += md.DataPointCount()
			}
			var r limits.Refusals
			r.Add(limits.Violation{Reason: limits.Reason(reason), Err: err, At: now}, points)
			w.refused(outer, r)
			return consumererror.NewPermanent(fmt.Errorf("commit metrics: %w", err))
		}
		return fmt.Errorf("commit metrics: %w", err)
	}

	w.metrics.StoredSamples.Add(float64(app.samples))
	for reason, n := range app.rejected {
		w.metrics.RejectedSamples.WithLabelValues(reason).Add(float64(n))
	}
	w.refused(outer, app.refused)
	if w.series != nil {
		w.metrics.ActiveSeries.WithLabelValues(w.exporter).Set(float64(w.series.Active()))
	}
	if len(annots) > 0 {
		for category, n := range prw.CountWarningsByCategory(annots) {
			w.metrics.TranslationWarnings.WithLabelValues(string(category)).Add(float64(n))
		}
		ws, _ := annots.AsStrings("", 10, 0)
		w.logger.Warn("OTLP translation warnings", "exporter", w.exporter, "warnings", ws)
	}
	if convErr != nil {
		// The translator skips what it cannot convert and goes on with
		// the rest; what it converted is committed above. What it
		// skipped is reported here: ingress validation rejects most such
		// data with InvalidArgument before it is accepted, so this is
		// rare and worth a log line each time.
		n := countErrors(convErr)
		w.metrics.Refused.WithLabelValues(obs.SignalMetrics, obs.ReasonTranslation).Add(float64(n))
		w.logger.Error("OTLP translator rejected metrics", "exporter", w.exporter, "metrics", n, "err", convErr)
	}
	return nil
}

// refused counts, logs and reports to ctx's outcome the data points the
// store or the limits refused.
func (w *MetricsWriter) refused(ctx context.Context, r limits.Refusals) {
	if r.Points == 0 {
		return
	}
	for reason, n := range r.ByReason() {
		w.metrics.Refused.WithLabelValues(obs.SignalMetrics, string(reason)).Add(float64(n))
	}
	outcome.From(ctx).Refuse(r)
	w.log.Note(r)
}

func countErrors(err error) int {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		n := 0
		for _, e := range j.Unwrap() {
			n += countErrors(e)
		}
		return n
	}
	return 1
}

// appender sits between the translator and the store: it applies the
// limits, counts samples, turns per-sample refusals into counts so the
// translator goes on with the rest of the batch, and remembers the first
// transient error.
type appender struct {
	promstorage.AppenderV2
	cancel context.CancelFunc
	w      *MetricsWriter
	now    time.Time
	// maxT is the latest timestamp (ms) accepted; epoch the series
	// limiter's generation.
	maxT  int64
	epoch uint64

	samples  int
	rejected map[string]int // samples, by reason
	refused  limits.Refusals
	last     pointKey
	hashBuf  []byte
	err      error
}

// pointKey identifies the data point a sample belongs to: the samples of
// one point (a histogram's buckets, sum and count) share a timestamp, a
// metric family and all labels but le and quantile, and are appended one
// after the other.
type pointKey struct {
	t      int64
	family string
	hash   uint64
}

func (a *appender) Append(ref promstorage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts promstorage.AOptions) (promstorage.SeriesRef, error) {
	if a.err != nil {
		return 0, a.err
	}
	if t > a.maxT {
		return 0, a.reject(limits.Violation{Reason: limits.TooFarInFuture, Ahead: time.UnixMilli(t).Sub(a.now), Limit: int(a.w.limits.MaxFuture)}, ls, t, opts)
	}
	if ref == 0 && a.w.guarded {
		// A series the store has not handed us a reference for: new,
		// or the translator's (which never keeps references).
		if vi := a.w.limits.CheckLabels(ls); vi.Reason != "" {
			return 0, a.reject(vi, ls, t, opts)
		}
		if s := a.w.series; s != nil {
			if vi := s.Admit(ls.Hash(), ls.Get(limits.TenantLabel), a.epoch); vi.Reason != "" {
				return 0, a.reject(vi, ls, t, opts)
			}
		}
	}
	ref, err := a.AppenderV2.Append(ref, ls, st, t, v, h, fh, opts)
	if err == nil {
		a.samples++
		return ref, nil
	}
	var partial *promstorage.AppendPartialError
	if errors.As(err, &partial) {
		// The sample was written; only exemplars were not.
		a.samples++
		return ref, nil
	}
	if reason := sampleErrorReason(err); reason != "" {
		return 0, a.reject(limits.Violation{Reason: limits.Reason(reason), Err: err, At: time.UnixMilli(t)}, ls, t, opts)
	}
	a.err = err
	a.cancel()
	return 0, err
}

// reject counts a refused sample, and its data point once. It returns
// nil: the translator goes on with the rest.
func (a *appender) reject(v limits.Violation, ls labels.Labels, t int64, opts promstorage.AOptions) error {
	if a.rejected == nil {
		a.rejected = map[string]int{}
	}
	a.rejected[string(v.Reason)]++
	name := ls.Get(labels.MetricName)
	if name == "target_info" {
		// Made by the translator per resource, not a point of its own.
		return nil
	}
	var k pointKey
	k.hash, a.hashBuf = ls.HashWithoutLabels(a.hashBuf[:0], labels.BucketLabel, "quantile")
	k.t, k.family = t, opts.MetricFamilyName
	if k == a.last {
		return nil
	}
	a.last = k
	if v.Metric == "" {
		v.Metric = name
	}
	a.refused.Add(v, 1)
	return nil
}

// sampleErrorReason names errors that say a sample can never be stored,
// so retrying it is pointless; "" for anything else.
func sampleErrorReason(err error) string {
	switch {
	case errors.Is(err, promstorage.ErrOutOfOrderSample):
		return "out_of_order"
	case errors.Is(err, promstorage.ErrOutOfBounds):
		return "out_of_bounds"
	case errors.Is(err, promstorage.ErrTooOldSample):
		return "too_old"
	case errors.Is(err, promstorage.ErrDuplicateSampleForTimestamp):
		return "duplicate_timestamp"
	case errors.Is(err, promstorage.ErrNativeHistogramsDisabled):
		return "native_histograms_disabled"
	}
	var herr histogram.Error
	if errors.As(err, &herr) {
		return "invalid_histogram"
	}
	return ""
}
