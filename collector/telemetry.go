package collector

import (
	"context"
	"log/slog"
	"sync"
	"time"

	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/service/telemetry"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/aiops-dev/aiops/collector/internal/loglimit"
	"github.com/aiops-dev/aiops/collector/internal/obs"
)

// The collector's own telemetry stays inside the process: its logs go to
// our slog logger, its metrics to our Prometheus registerer (no :8888, no
// OTLP export of its own), and it does not trace.

// telemetryConfig accepts and ignores whatever a raw collector
// configuration puts under service::telemetry: our telemetry is fixed.
type telemetryConfig struct{}

func (*telemetryConfig) Unmarshal(*confmap.Conf) error { return nil }

// newTelemetryFactory returns the service telemetry factory. The
// collector's internal metrics (otelcol_*) are registered on reg; reader
// additionally receives them so that queue sizes can be re-exported under
// our own names.
func newTelemetryFactory(logger *slog.Logger, reg prometheus.Registerer, reader sdkmetric.Reader) telemetry.Factory {
	return telemetry.NewFactory(
		func() component.Config { return &telemetryConfig{} },
		telemetry.WithCreateLogger(func(context.Context, telemetry.LoggerSettings, component.Config) (*zap.Logger, component.ShutdownFunc, error) {
			return zap.New(&slogCore{h: logger.Handler(), lim: loglimit.New(time.Now)}), nil, nil
		}),
		telemetry.WithCreateMeterProvider(func(context.Context, telemetry.MeterSettings, component.Config) (telemetry.MeterProvider, error) {
			exp, err := otelprom.New(
				otelprom.WithRegisterer(reg),
				otelprom.WithoutTargetInfo(),
				otelprom.WithoutScopeInfo(),
			)
			if err != nil {
				return nil, err
			}
			return sdkmetric.NewMeterProvider(
				sdkmetric.WithReader(exp),
				sdkmetric.WithReader(reader),
				sdkmetric.WithView(droppedViews()...),
			), nil
		}),
	)
}

// droppedViews drops the per-request instrumentation the collector itself
// drops below its "detailed" level: gRPC/HTTP server histograms with high
// cardinality, and batch size histograms.
func droppedViews() []sdkmetric.View {
	drop := sdkmetric.Stream{Aggregation: sdkmetric.AggregationDrop{}}
	var views []sdkmetric.View
	for _, scope := range []string{
		"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc",
		"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp",
	} {
		views = append(views, sdkmetric.NewView(sdkmetric.Instrument{Name: "*", Scope: instrumentation.Scope{Name: scope}}, drop))
	}
	for _, name := range []string{
		"otelcol_exporter_queue_batch_send_size_bytes",
		"otelcol_exporter_queue_batch_send_size",
		"otelcol_exporter_enqueue_size_bytes",
		"otelcol_exporter_enqueue_size",
		"otelcol_processor_internal_duration",
	} {
		views = append(views, sdkmetric.NewView(sdkmetric.Instrument{Name: name}, drop))
	}
	return views
}

// queueCollector exports the exporters' queue sizes as
// aiops_collector_queue_items{signal} (and the capacity), read from the
// collector's own otelcol_exporter_queue_size instrument at scrape time,
// less the items whose enqueueing failed after the upstream queue
// counted them (see collector/internal/queuecount).
type queueCollector struct {
	reader   *sdkmetric.ManualReader
	metrics  *obs.Metrics
	items    *prometheus.Desc
	capacity *prometheus.Desc

	mu sync.Mutex
	// forgotten is, per signal, the count of failed writes that the
	// upstream size no longer holds: it drops what it counted when it
	// reads itself empty, which shows as a size below the failures
	// counted since.
	forgotten map[string]int64
}

func newQueueCollector(reader *sdkmetric.ManualReader, m *obs.Metrics) *queueCollector {
	return &queueCollector{
		reader:    reader,
		metrics:   m,
		forgotten: map[string]int64{},
		items: prometheus.NewDesc("aiops_collector_queue_items",
			"Items (data points, log records, spans) waiting in the collector's queue, persisted ones included.",
			[]string{"signal"}, nil),
		capacity: prometheus.NewDesc("aiops_collector_queue_capacity_items",
			"Capacity of the collector's queue in items; at capacity receivers answer Unavailable / 503.",
			[]string{"signal"}, nil),
	}
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.items
	ch <- c.capacity
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	var rm metricdata.ResourceMetrics
	if err := c.reader.Collect(context.Background(), &rm); err != nil {
		return
	}
	items := map[string]float64{}
	capacity := map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			var into map[string]float64
			switch m.Name {
			case "otelcol_exporter_queue_size":
				into = items
			case "otelcol_exporter_queue_capacity":
				into = capacity
			default:
				continue
			}
			g, ok := m.Data.(metricdata.Gauge[int64])
			if !ok {
				continue
			}
			for _, dp := range g.DataPoints {
				dataType, _ := dp.Attributes.Value("data_type")
				into[signalOf(dataType.AsString())] += float64(dp.Value)
			}
		}
	}
	c.mu.Lock()
	for _, s := range []string{"metrics", "logs", "spans"} {
		phantom := c.metrics.QueueWriteFailureCount(s) - c.forgotten[s]
		if float64(phantom) > items[s] {
			// The upstream size was reset since: it holds no failed
			// write from before.
			c.forgotten[s] += phantom
			phantom = 0
		}
		items[s] -= float64(phantom)
	}
	c.mu.Unlock()
	for _, s := range []string{"metrics", "logs", "spans"} {
		ch <- prometheus.MustNewConstMetric(c.items, prometheus.GaugeValue, items[s], s)
		if v, ok := capacity[s]; ok {
			ch <- prometheus.MustNewConstMetric(c.capacity, prometheus.GaugeValue, v, s)
		}
	}
}

func signalOf(dataType string) string {
	if dataType == "traces" {
		return "spans"
	}
	return dataType
}

// slogCore is a zapcore.Core writing to an slog.Handler, so the
// collector's components log through the process's logger.
//
// Warnings and errors are limited to one line per component and message
// a minute (loglimit.Every), the next line saying how many were left out: the
// framework logs one per refused request or queue item ("Exporting
// failed. Rejecting data.", "Failed retrieving item"), and on a full disk
// that was 6,000 error lines in 90 s from eight clients, written to the
// disk that is full when logs go to the data disk.
type slogCore struct {
	h   slog.Handler
	lim *loglimit.Limiter
	// scope identifies the component: the fields the core was made With.
	scope string
}

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l < zapcore.InfoLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	}
	return slog.LevelError
}

func (c *slogCore) Enabled(l zapcore.Level) bool {
	return c.h.Enabled(context.Background(), slogLevel(l))
}

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	a := attrs(fields)
	scope := c.scope
	for _, at := range a {
		scope += at.String() + " "
	}
	return &slogCore{h: c.h.WithAttrs(a), lim: c.lim, scope: scope}
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	var unlogged int
	if e.Level >= zapcore.WarnLevel && c.lim != nil {
		var ok bool
		if unlogged, ok = c.lim.Allow(c.scope + e.LoggerName + "\x00" + e.Message); !ok {
			return nil
		}
	}
	r := slog.NewRecord(e.Time, slogLevel(e.Level), e.Message, 0)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	r.AddAttrs(attrs(fields)...)
	if unlogged > 0 {
		r.AddAttrs(slog.Int("repeats_unlogged", unlogged))
	}
	return c.h.Handle(context.Background(), r)
}

func (*slogCore) Sync() error { return nil }

func attrs(fields []zapcore.Field) []slog.Attr {
	if len(fields) == 0 {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	out := make([]slog.Attr, 0, len(enc.Fields))
	for k, v := range enc.Fields {
		out = append(out, slog.Any(k, v))
	}
	return out
}
