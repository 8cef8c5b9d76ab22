package collector

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage"
)

type promMetadata = metadata.Metadata

// meterProvider returns an SDK meter provider exporting to addr only when
// flushed, over OTLP/gRPC or, with useHTTP, OTLP/HTTP.
func meterProvider(t *testing.T, addr string, useHTTP bool, res *resource.Resource, temporality sdkmetric.TemporalitySelector) *sdkmetric.MeterProvider {
	t.Helper()
	ctx := context.Background()
	var exp sdkmetric.Exporter
	var err error
	if useHTTP {
		exp, err = otlpmetrichttp.New(ctx,
			otlpmetrichttp.WithEndpoint(addr),
			otlpmetrichttp.WithInsecure(),
			otlpmetrichttp.WithTemporalitySelector(temporality),
			otlpmetrichttp.WithRetry(otlpmetrichttp.RetryConfig{Enabled: false}),
		)
	} else {
		exp, err = otlpmetricgrpc.New(ctx,
			otlpmetricgrpc.WithEndpoint(addr),
			otlpmetricgrpc.WithInsecure(),
			otlpmetricgrpc.WithTemporalitySelector(temporality),
			otlpmetricgrpc.WithRetry(otlpmetricgrpc.RetryConfig{Enabled: false}),
		)
	}
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(
		sdkmetric.WithResource(res),
		sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(time.Hour))),
		sdkmetric.WithView(
			sdkmetric.NewView(sdkmetric.Instrument{Name: "rpc.latency"},
				sdkmetric.Stream{Aggregation: sdkmetric.AggregationBase2ExponentialHistogram{MaxSize: 160, MaxScale: 20}}),
			sdkmetric.NewView(sdkmetric.Instrument{Name: "http.duration"},
				sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: []float64{0.1, 0.5, 1}}}),
		),
	)
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	return mp
}

// TestSDKMetricsEveryType sends every metric type the SDK makes (and a
// summary, which only older clients make) through the all-in-one
// collector into the embedded store and reads every point back with the
// names and labels of Prometheus's OTLP translator.
func TestSDKMetricsEveryType(t *testing.T) {
	testEveryMetricType(t, storetest.Embedded(t))
}

// metadataStore is what both stores offer for metric metadata.
type metadataStore interface {
	MetricMetadata(ctx context.Context, metric string, limit int) (map[string][]promMetadata, error)
}

func testEveryMetricType(t *testing.T, store storage.Store) {
	ctx := context.Background()
	r := start(t, allInOneConfig(t), Deps{Store: store})

	res := resource.NewSchemaless(
		attribute.String("service.name", "checkout"),
		attribute.String("service.instance.id", "i-1"),
		attribute.String("deployment.environment", "test"),
	)
	mp := meterProvider(t, r.grpc, false, res, sdkmetric.CumulativeTemporalitySelector)
	meter := mp.Meter("shop")
	requests, _ := meter.Int64Counter("http.requests", metric.WithUnit("{request}"), metric.WithDescription("Requests served."))
	depth, _ := meter.Float64UpDownCounter("queue.depth")
	temp, _ := meter.Float64Gauge("cpu.temperature", metric.WithUnit("Cel"))
	dur, _ := meter.Float64Histogram("http.duration", metric.WithUnit("s"))
	lat, _ := meter.Float64Histogram("rpc.latency", metric.WithUnit("ms"))

	// Deltas, over OTLP/HTTP: the collector converts them to cumulative
	// series.
	deltaRes := resource.NewSchemaless(attribute.String("service.name", "worker"), attribute.String("service.instance.id", "w-1"))
	dmp := meterProvider(t, r.http, true, deltaRes, sdkmetric.DeltaTemporalitySelector)
	jobs, _ := dmp.Meter("worker").Int64Counter("jobs.done")

	const flushes = 5
	for i := range flushes {
		for _, route := range []string{"/a", "/b", "/c"} {
			requests.Add(ctx, 1, metric.WithAttributes(attribute.String("http.route", route)))
		}
		depth.Add(ctx, 2)
		temp.Record(ctx, 40+float64(i))
		dur.Record(ctx, 0.3)
		lat.Record(ctx, 12.5)
		jobs.Add(ctx, 3)
		if err := mp.ForceFlush(ctx); err != nil {
			t.Fatalf("flush %d: %v", i, err)
		}
		if err := dmp.ForceFlush(ctx); err != nil {
			t.Fatalf("flush %d (delta): %v", i, err)
		}
		time.Sleep(5 * time.Millisecond) // distinct millisecond timestamps
	}
	sendSummary(t, r.grpc, flushes)

	// 3 counters + gauge + up-down + 4 buckets, sum, count + native
	// histogram + delta counter + 3 quantiles, sum, count, per flush.
	wantSamples := flushes * (3 + 1 + 1 + 6 + 1 + 1 + 5)
	testutil.Eventually(t, 30*time.Second, "all samples stored", func() (bool, string) {
		n := countSamples(t, store, labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, ".+"),
			labels.MustNewMatcher(labels.MatchNotEqual, labels.MetricName, "target_info"))
		return n >= wantSamples, fmt.Sprintf("%d of %d samples", n, wantSamples)
	})

	job := func(s string) string { return s }
	check := func(name string, wantSeries int, want func(series string, i int, s sample) error) {
		t.Helper()
		all := readSeries(t, store, nameIs(name))
		if len(all) != wantSeries {
			t.Errorf("%s: %d series, want %d: %v", name, len(all), wantSeries, seriesNames(all))
		}
		for series, samples := range all {
			if len(samples) != flushes {
				t.Errorf("%s: %d samples, want %d", series, len(samples), flushes)
			}
			for i, s := range samples {
				if err := want(series, i, s); err != nil {
					t.Errorf("%s sample %d: %v", series, i, err)
				}
			}
		}
	}
	floatIs := func(want func(i int) float64) func(string, int, sample) error {
		return func(_ string, i int, s sample) error {
			if s.h != nil || s.fh != nil || s.v != want(i) {
				return fmt.Errorf("got %v (histogram %v), want %v", s.v, s.h != nil || s.fh != nil, want(i))
			}
			return nil
		}
	}

	check("http_requests_total", 3, func(series string, i int, s sample) error {
		for _, l := range []string{`job="checkout"`, `instance="i-1"`, `http_route="/`} {
			if !strings.Contains(series, l) {
				return fmt.Errorf("labels lack %s", l)
			}
		}
		return floatIs(func(i int) float64 { return float64(i + 1) })(series, i, s)
	})
	check("queue_depth", 1, floatIs(func(i int) float64 { return float64(2 * (i + 1)) }))
	check("cpu_temperature_celsius", 1, floatIs(func(i int) float64 { return 40 + float64(i) }))
	check("http_duration_seconds_count", 1, floatIs(func(i int) float64 { return float64(i + 1) }))
	check("http_duration_seconds_sum", 1, func(_ string, i int, s sample) error {
		if want := 0.3 * float64(i+1); s.v < want-1e-9 || s.v > want+1e-9 {
			return fmt.Errorf("sum %v, want %v", s.v, want)
		}
		return nil
	})
	check("http_duration_seconds_bucket", 4, func(series string, i int, s sample) error {
		want := float64(i + 1)
		if strings.Contains(series, `le="0.1"`) {
			want = 0
		}
		if s.v != want {
			return fmt.Errorf("bucket %v, want %v", s.v, want)
		}
		return nil
	})
	check("rpc_latency_milliseconds", 1, func(_ string, i int, s sample) error {
		var count, sum float64
		switch {
		case s.h != nil:
			count, sum = float64(s.h.Count), s.h.Sum
		case s.fh != nil:
			count, sum = s.fh.Count, s.fh.Sum
		default:
			return fmt.Errorf("float sample %v, want a native histogram", s.v)
		}
		if count != float64(i+1) || sum != 12.5*float64(i+1) {
			return fmt.Errorf("count %v sum %v, want %d and %v", count, sum, i+1, 12.5*float64(i+1))
		}
		return nil
	})
	check("jobs_done_total", 1, func(series string, i int, s sample) error {
		if !strings.Contains(series, job(`job="worker"`)) {
			return fmt.Errorf("labels lack job=worker")
		}
		return floatIs(func(i int) float64 { return float64(3 * (i + 1)) })(series, i, s)
	})
	check("legacy_rpc_seconds", 3, func(series string, i int, s sample) error {
		if !strings.Contains(series, `quantile="`) {
			return fmt.Errorf("no quantile label")
		}
		return nil
	})
	check("legacy_rpc_seconds_count", 1, floatIs(func(i int) float64 { return float64(10 * (i + 1)) }))

	// target_info carries the resource attributes that are not job or
	// instance.
	ti := readSeries(t, store, nameIs("target_info"), labels.MustNewMatcher(labels.MatchEqual, "job", "checkout"))
	if len(ti) != 1 {
		t.Fatalf("target_info for checkout: %v", seriesNames(ti))
	}
	for series := range ti {
		if !strings.Contains(series, `deployment_environment="test"`) {
			t.Errorf("target_info %s lacks deployment_environment", series)
		}
	}

	// Metadata flows from the translator through AppendV2Options.
	ms, ok := store.(metadataStore)
	if !ok {
		t.Fatalf("%T offers no metric metadata", store)
	}
	md, err := ms.MetricMetadata(ctx, "http_requests_total", 0)
	if err != nil {
		t.Fatal(err)
	}
	got := md["http_requests_total"]
	if len(got) == 0 || got[0].Type != "counter" || got[0].Help != "Requests served." {
		t.Errorf("metadata of http_requests_total = %+v, want a counter with its help", md)
	}

	// Self-metrics count every data point.
	wantPoints := float64(flushes * (3 + 1 + 1 + 1 + 1 + 1 + 1))
	testutil.Eventually(t, 10*time.Second, "stored count", func() (bool, string) {
		got := metricValue(t, r.reg, "aiops_collector_stored_items_total", map[string]string{"signal": "metrics"})
		return got == wantPoints, fmt.Sprintf("stored %v, want %v", got, wantPoints)
	})
	if got := metricValue(t, r.reg, "aiops_collector_received_items_total", map[string]string{"signal": "metrics"}); got != wantPoints {
		t.Errorf("received %v, want %v", got, wantPoints)
	}
}

// sendSummary sends n points of a summary over raw OTLP/gRPC: the SDK
// cannot make summaries, but older clients (and Prometheus receivers) do.
func sendSummary(t *testing.T, addr string, n int) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pmetricotlp.NewGRPCClient(conn)
	start := time.Now().Add(-time.Minute)
	for i := range n {
		md := pmetric.NewMetrics()
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("service.name", "legacy")
		m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		m.SetName("legacy.rpc")
		m.SetUnit("s")
		dp := m.SetEmptySummary().DataPoints().AppendEmpty()
		dp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
		dp.SetTimestamp(pcommon.NewTimestampFromTime(time.Now().Add(time.Duration(i-n) * time.Second)))
		dp.SetCount(uint64(10 * (i + 1)))
		dp.SetSum(float64(i + 1))
		for _, q := range []float64{0.5, 0.9, 0.99} {
			qv := dp.QuantileValues().AppendEmpty()
			qv.SetQuantile(q)
			qv.SetValue(q)
		}
		if _, err := client.Export(context.Background(), pmetricotlp.NewExportRequestFromMetrics(md)); err != nil {
			t.Fatalf("export summary: %v", err)
		}
	}
}
