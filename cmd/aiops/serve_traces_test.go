package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
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
)

// TestServeTracesAndLogs sends a trace and a log line of it with the OTel
// SDK to `aiops serve` and reads them back through the Jaeger-compatible
// API and the logs API, which refuse callers without a token.
func TestServeTracesAndLogs(t *testing.T) {
	ts := startServe(t, t.TempDir())
	ctx := context.Background()
	res := resource.NewSchemaless(attribute.String("service.name", "checkout"))

	texp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(ts.grpc), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithSyncer(texp))
	defer tp.Shutdown(ctx)
	lexp, err := otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(ts.grpc), otlploggrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	lp := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(sdklog.NewSimpleProcessor(lexp)))
	defer lp.Shutdown(ctx)

	before := time.Now().Add(-time.Minute)
	sctx, root := tp.Tracer("shop").Start(ctx, "POST /orders", trace.WithSpanKind(trace.SpanKindServer))
	var rec otellog.Record
	rec.SetTimestamp(time.Now())
	rec.SetSeverity(otellog.SeverityError)
	rec.SetBody(attribute.StringValue("payment declined"))
	lp.Logger("shop").Emit(sctx, rec)
	root.End()
	traceID := root.SpanContext().TraceID().String()
	after := time.Now().Add(time.Minute)

	var traces struct {
		Data []struct {
			TraceID string `json:"traceID"`
			Spans   []struct {
				OperationName string `json:"operationName"`
			} `json:"spans"`
		} `json:"data"`
	}
	testutil.Eventually(t, 30*time.Second, "the trace is served", func() (bool, string) {
		code, body := ts.get(t, "/api/traces/"+traceID, ts.token)
		if code != http.StatusOK {
			return false, fmt.Sprintf("%d %s", code, body)
		}
		if err := json.Unmarshal(body, &traces); err != nil {
			return false, err.Error()
		}
		return len(traces.Data) == 1 && len(traces.Data[0].Spans) == 1, string(body)
	})
	if traces.Data[0].TraceID != traceID || traces.Data[0].Spans[0].OperationName != "POST /orders" {
		t.Errorf("trace %+v", traces.Data[0])
	}
	if code, body := ts.get(t, "/api/services", ts.token); code != http.StatusOK || string(body) == "" {
		t.Errorf("services: %d %s", code, body)
	}

	q := url.Values{"service": {"checkout"}, "min_severity": {"error"}, "contains": {"declined"},
		"start": {before.Format(time.RFC3339Nano)}, "end": {after.Format(time.RFC3339Nano)}}
	var page struct {
		Logs []struct {
			Body, TraceID, Trace string
		} `json:"logs"`
	}
	testutil.Eventually(t, 30*time.Second, "the log line is served", func() (bool, string) {
		code, body := ts.get(t, "/api/v1/logs?"+q.Encode(), ts.token)
		if code != http.StatusOK {
			return false, fmt.Sprintf("%d %s", code, body)
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return false, err.Error()
		}
		return len(page.Logs) == 1, string(body)
	})
	if l := page.Logs[0]; l.Body != "payment declined" || l.Trace != "/api/traces/"+traceID {
		t.Errorf("log line %+v, want a link to trace %s", l, traceID)
	}

	for _, path := range []string{"/api/traces/" + traceID, "/api/services", "/api/v1/logs", "/api/dependencies"} {
		if code, body := ts.get(t, path, ""); code != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d %s, want 401", path, code, body)
		}
	}
}
