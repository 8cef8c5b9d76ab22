package storeexporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	prw "github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"
	"github.com/prometheus/prometheus/util/annotations"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/aiops-dev/aiops/collector/internal/obs"
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
}

// NewMetricsWriter returns a writer appending to dst with the given
// translation configuration. exporter names the writer in self-metrics.
func NewMetricsWriter(dst promstorage.AppendableV2, cfg TranslationConfig, m *obs.Metrics, logger *slog.Logger, exporter string) *MetricsWriter {
	settings := cfg.Settings()
	w := &MetricsWriter{dst: dst, settings: settings, partSettings: settings, metrics: m, logger: logger, exporter: exporter}
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

// WriteMetrics appends mds in one appender transaction. It returns nil
// when everything that can ever be written was committed; data that can
// never be written (translator errors, samples the store refuses for good)
// is counted and logged, not retried. Any other error means nothing was
// committed and the caller should retry the whole batch.
func (w *MetricsWriter) WriteMetrics(ctx context.Context, mds ...pmetric.Metrics) error {
	// The translator checks its context every 128 points; cancelling it on
	// the first transient append error stops a doomed conversion early.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	app := &appender{AppenderV2: w.dst.AppenderV2(ctx), cancel: cancel}
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
			w.logger.Warn("store refused metrics batch", "exporter", w.exporter, "samples", app.samples, "err", err)
			return consumererror.NewPermanent(fmt.Errorf("commit metrics: %w", err))
		}
		return fmt.Errorf("commit metrics: %w", err)
	}

	w.metrics.StoredSamples.Add(float64(app.samples))
	for reason, n := range app.rejected {
		w.metrics.RejectedSamples.WithLabelValues(reason).Add(float64(n))
	}
	if len(app.rejected) > 0 {
		w.logger.Warn("store refused samples", "exporter", w.exporter, "refused", app.rejected, "first_err", app.firstRejectErr)
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

// appender sits between the translator and the store: it counts samples,
// turns per-sample refusals into counts so the translator goes on with the
// rest of the batch, and remembers the first transient error.
type appender struct {
	promstorage.AppenderV2
	cancel context.CancelFunc

	samples        int
	rejected       map[string]int
	firstRejectErr error
	err            error
}

func (a *appender) Append(ref promstorage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts promstorage.AOptions) (promstorage.SeriesRef, error) {
	if a.err != nil {
		return 0, a.err
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
		if a.rejected == nil {
			a.rejected = map[string]int{}
			a.firstRejectErr = fmt.Errorf("%s: %w", ls.Get(labels.MetricName), err)
		}
		a.rejected[reason]++
		return 0, nil
	}
	a.err = err
	a.cancel()
	return 0, err
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
