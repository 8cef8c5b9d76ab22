package engine_test

import (
	"context"
	"net"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	"github.com/aiops-dev/aiops/sim/engine"
	"github.com/aiops-dev/aiops/sim/model"
	"github.com/aiops-dev/aiops/sim/telemetry"
	"github.com/aiops-dev/aiops/sim/truth"
)

// metricSink, traceSink and logSink are an OTLP/gRPC receiver that
// discards what it receives.
type metricSink struct {
	colmetrics.UnimplementedMetricsServiceServer
}

func (metricSink) Export(context.Context, *colmetrics.ExportMetricsServiceRequest) (*colmetrics.ExportMetricsServiceResponse, error) {
	return &colmetrics.ExportMetricsServiceResponse{}, nil
}

type traceSink struct {
	coltrace.UnimplementedTraceServiceServer
}

func (traceSink) Export(context.Context, *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	return &coltrace.ExportTraceServiceResponse{}, nil
}

type logSink struct {
	collogs.UnimplementedLogsServiceServer
}

func (logSink) Export(context.Context, *collogs.ExportLogsServiceRequest) (*collogs.ExportLogsServiceResponse, error) {
	return &collogs.ExportLogsServiceResponse{}, nil
}

func startSink(b *testing.B) string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	colmetrics.RegisterMetricsServiceServer(srv, metricSink{})
	coltrace.RegisterTraceServiceServer(srv, traceSink{})
	collogs.RegisterLogsServiceServer(srv, logSink{})
	go srv.Serve(l)
	b.Cleanup(srv.Stop)
	return l.Addr().String()
}

// BenchmarkEngine runs an hour of the default engine at its daily peak,
// in 5 s steps, with its telemetry exported over OTLP/gRPC by the SDK's
// exporters to a receiver that discards it. It reports CPU-independent
// wall time per simulated request (the receiver's work included) and the
// telemetry per simulated second; run with -cpuprofile to see where the
// simulator spends its time. docs/BENCHMARKS.md measures the binary.
func BenchmarkEngine(b *testing.B) {
	addr := startSink(b)
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		opts := telemetry.DefaultOptions()
		var err error
		if opts.Metrics, err = otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(addr), otlpmetricgrpc.WithInsecure()); err != nil {
			b.Fatal(err)
		}
		if opts.Spans, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(addr), otlptracegrpc.WithInsecure()); err != nil {
			b.Fatal(err)
		}
		if opts.Logs, err = otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(addr), otlploggrpc.WithInsecure()); err != nil {
			b.Fatal(err)
		}
		mc := model.DefaultConfig()
		mc.Start = time.Date(2026, time.March, 10, 14, 0, 0, 0, time.UTC)
		e, err := engine.New(engine.Config{Model: mc, Levels: truth.DefaultLevels(), Step: 5 * time.Second, Telemetry: &opts})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := e.RunFor(ctx, time.Hour); err != nil {
			b.Fatal(err)
		}
		if err := e.Shutdown(ctx); err != nil {
			b.Fatal(err)
		}
		st := e.Stats()
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(st.Requests+st.Jobs), "ns/simulated-request")
		b.ReportMetric(float64(st.Points)/3600, "points/s")
		b.ReportMetric(float64(st.Spans)/3600, "spans/s")
		b.ReportMetric(float64(st.Logs)/3600, "logs/s")
	}
}
