package collector

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage"
)

// TestSDKLogsAndTraces sends logs and spans with the OTel SDK's gRPC
// exporters and reads every one back from the embedded store.
func TestSDKLogsAndTraces(t *testing.T) {
	ctx := context.Background()
	store := storetest.Embedded(t)
	r := start(t, allInOneConfig(t), Deps{Store: store})
	res := resource.NewSchemaless(attribute.String("service.name", "api"), attribute.String("host.name", "h1"))

	texp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(r.grpc), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithSyncer(texp))
	defer tp.Shutdown(ctx)
	lexp, err := otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(r.grpc), otlploggrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	lp := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(sdklog.NewSimpleProcessor(lexp)))
	defer lp.Shutdown(ctx)
	logger := lp.Logger("api.handlers")
	tracer := tp.Tracer("api.handlers")

	const n = 20
	traceIDs := map[string]bool{}
	for i := range n {
		sctx, root := tracer.Start(ctx, "GET /orders", trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.Int("order", i)))
		_, child := tracer.Start(sctx, "SELECT orders", trace.WithSpanKind(trace.SpanKindClient))
		var rec otellog.Record
		rec.SetTimestamp(time.Now())
		rec.SetSeverity(otellog.SeverityError)
		rec.SetSeverityText("ERROR")
		rec.SetBody(attribute.StringValue(fmt.Sprintf("order %d failed", i)))
		rec.AddAttributes(attribute.Int("order", i))
		logger.Emit(sctx, rec)
		child.End()
		root.End()
		traceIDs[root.SpanContext().TraceID().String()] = true
	}

	testutil.Eventually(t, 30*time.Second, "spans and logs stored", func() (bool, string) {
		spans, err := store.QuerySpans(ctx, storage.SpanQuery{ServiceName: "api", Limit: 1000})
		if err != nil {
			return false, err.Error()
		}
		logs, err := store.QueryLogs(ctx, storage.LogQuery{ServiceName: "api", Limit: 1000})
		if err != nil {
			return false, err.Error()
		}
		return len(spans) == 2*n && len(logs) == n, fmt.Sprintf("%d spans, %d logs", len(spans), len(logs))
	})

	spans, _ := store.QuerySpans(ctx, storage.SpanQuery{ServiceName: "api", Limit: 1000})
	roots := 0
	for _, s := range spans {
		if !traceIDs[s.TraceID] {
			t.Errorf("span %s has unknown trace id %q", s.Name, s.TraceID)
		}
		if len(s.SpanID) != 16 {
			t.Errorf("span id %q is not 16 hex digits", s.SpanID)
		}
		switch s.Name {
		case "GET /orders":
			roots++
			if s.ParentSpanID != "" || s.Kind != "Server" || s.Attributes["order"] == "" {
				t.Errorf("root span %+v", s)
			}
		case "SELECT orders":
			if s.ParentSpanID == "" || s.Kind != "Client" {
				t.Errorf("child span %+v", s)
			}
		}
		if s.ResourceAttributes["host.name"] != "h1" || s.ScopeName != "api.handlers" {
			t.Errorf("span %s: resource %v scope %q", s.Name, s.ResourceAttributes, s.ScopeName)
		}
	}
	if roots != n {
		t.Errorf("%d root spans, want %d", roots, n)
	}

	logs, _ := store.QueryLogs(ctx, storage.LogQuery{ServiceName: "api", MinSeverity: 17, Limit: 1000})
	if len(logs) != n {
		t.Fatalf("%d error logs, want %d", len(logs), n)
	}
	for _, l := range logs {
		if !traceIDs[l.TraceID] || len(l.SpanID) != 16 {
			t.Errorf("log %q: trace %q span %q, want the ids of its span", l.Body, l.TraceID, l.SpanID)
		}
		if l.SeverityText != "ERROR" || l.Attributes["order"] == "" || l.ResourceAttributes["host.name"] != "h1" {
			t.Errorf("log %+v", l)
		}
		if l.ObservedTimestamp.IsZero() || l.Timestamp.IsZero() {
			t.Errorf("log %q without timestamps", l.Body)
		}
	}
	for signal, want := range map[string]float64{"logs": n, "spans": 2 * n} {
		if got := metricValue(t, r.reg, "aiops_collector_stored_items_total", map[string]string{"signal": signal}); got != want {
			t.Errorf("stored_items_total{signal=%s} = %v, want %v", signal, got, want)
		}
	}
}
