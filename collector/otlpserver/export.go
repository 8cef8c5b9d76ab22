package otlpserver

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.opentelemetry.io/collector/receiver/receiverhelper"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/aiops-dev/aiops/collector/internal/outcome"
	"github.com/aiops-dev/aiops/collector/limits"
	"github.com/aiops-dev/aiops/collector/tokenauth"
)

// signalOps are the receiver self-observability calls of one signal.
type signalOps struct {
	start func(*receiverhelper.ObsReport, context.Context) context.Context
	end   func(*receiverhelper.ObsReport, context.Context, string, int, error)
}

var (
	metricsOps = signalOps{(*receiverhelper.ObsReport).StartMetricsOp, (*receiverhelper.ObsReport).EndMetricsOp}
	logsOps    = signalOps{(*receiverhelper.ObsReport).StartLogsOp, (*receiverhelper.ObsReport).EndLogsOp}
	tracesOps  = signalOps{(*receiverhelper.ObsReport).StartTracesOp, (*receiverhelper.ObsReport).EndTracesOp}
)

// errPartiallyRefused marks, in the receiver's refused counters, the
// items of a request that succeeded in part.
var errPartiallyRefused = errors.New("refused in part")

// export hands n items to consume, with an outcome.Outcome in its
// context, and returns what the pipeline refused of them or the error to
// answer with. A request whose items were all refused is an
// InvalidArgument: there is nothing in it a retry could change.
func (s *server) export(ctx context.Context, rep *receiverhelper.ObsReport, ops signalOps, format string, n int, consume func(context.Context) error) (limits.Refusals, error) {
	if n == 0 {
		return limits.Refusals{}, nil
	}
	ctx, out := outcome.NewContext(ctx)
	opCtx := ops.start(rep, ctx)
	err := consume(opCtx)
	refused := out.Refused()
	if err == nil && refused.Points >= n {
		err = status.Error(codes.InvalidArgument, fmt.Sprintf("all %d data points refused: %s", n, refused))
	}
	if err != nil {
		ops.end(rep, opCtx, format, n, err)
		return limits.Refusals{}, asStatus(err)
	}
	ops.end(rep, opCtx, format, n-refused.Points, nil)
	if refused.Points > 0 {
		ops.end(rep, ops.start(rep, ctx), format, refused.Points, errPartiallyRefused)
	}
	return refused, nil
}

// asStatus gives a pipeline error the gRPC status the client sees: the
// status it carries, or Unavailable (retry) unless it is permanent.
func asStatus(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	if consumererror.IsPermanent(err) {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return status.Error(codes.Unavailable, err.Error())
}

// partialMessage is the error_message of a partial success.
func partialMessage(r limits.Refusals) string {
	return fmt.Sprintf("%d data points refused: %s", r.Points, r)
}

// stampMetrics sets the tenant of the request's credential on every
// resource and every data point, replacing what the client sent: a
// client must not write into another tenant. Without a tenant the data
// is left as it is.
func stampMetrics(ctx context.Context, md pmetric.Metrics) {
	tenant := tokenauth.TenantFrom(ctx)
	if tenant == "" {
		return
	}
	for _, rm := range md.ResourceMetrics().All() {
		rm.Resource().Attributes().PutStr(limits.TenantLabel, tenant)
		for _, sm := range rm.ScopeMetrics().All() {
			for _, m := range sm.Metrics().All() {
				switch m.Type() {
				case pmetric.MetricTypeGauge:
					for _, p := range m.Gauge().DataPoints().All() {
						p.Attributes().PutStr(limits.TenantLabel, tenant)
					}
				case pmetric.MetricTypeSum:
					for _, p := range m.Sum().DataPoints().All() {
						p.Attributes().PutStr(limits.TenantLabel, tenant)
					}
				case pmetric.MetricTypeHistogram:
					for _, p := range m.Histogram().DataPoints().All() {
						p.Attributes().PutStr(limits.TenantLabel, tenant)
					}
				case pmetric.MetricTypeExponentialHistogram:
					for _, p := range m.ExponentialHistogram().DataPoints().All() {
						p.Attributes().PutStr(limits.TenantLabel, tenant)
					}
				case pmetric.MetricTypeSummary:
					for _, p := range m.Summary().DataPoints().All() {
						p.Attributes().PutStr(limits.TenantLabel, tenant)
					}
				}
			}
		}
	}
}

func stampLogs(ctx context.Context, ld plog.Logs) {
	if tenant := tokenauth.TenantFrom(ctx); tenant != "" {
		for _, rl := range ld.ResourceLogs().All() {
			rl.Resource().Attributes().PutStr(limits.TenantLabel, tenant)
		}
	}
}

func stampTraces(ctx context.Context, td ptrace.Traces) {
	if tenant := tokenauth.TenantFrom(ctx); tenant != "" {
		for _, rs := range td.ResourceSpans().All() {
			rs.Resource().Attributes().PutStr(limits.TenantLabel, tenant)
		}
	}
}

func (s *server) exportMetrics(ctx context.Context, rep *receiverhelper.ObsReport, format string, md pmetric.Metrics) (pmetricotlp.ExportResponse, error) {
	stampMetrics(ctx, md)
	resp := pmetricotlp.NewExportResponse()
	refused, err := s.export(ctx, rep, metricsOps, format, md.DataPointCount(), func(ctx context.Context) error { return s.metrics.ConsumeMetrics(ctx, md) })
	if err != nil {
		return resp, err
	}
	if refused.Points > 0 {
		ps := resp.PartialSuccess()
		ps.SetRejectedDataPoints(int64(refused.Points))
		ps.SetErrorMessage(partialMessage(refused))
	}
	return resp, nil
}

func (s *server) exportLogs(ctx context.Context, rep *receiverhelper.ObsReport, format string, ld plog.Logs) (plogotlp.ExportResponse, error) {
	stampLogs(ctx, ld)
	resp := plogotlp.NewExportResponse()
	refused, err := s.export(ctx, rep, logsOps, format, ld.LogRecordCount(), func(ctx context.Context) error { return s.logs.ConsumeLogs(ctx, ld) })
	if err != nil {
		return resp, err
	}
	if refused.Points > 0 {
		ps := resp.PartialSuccess()
		ps.SetRejectedLogRecords(int64(refused.Points))
		ps.SetErrorMessage(partialMessage(refused))
	}
	return resp, nil
}

func (s *server) exportTraces(ctx context.Context, rep *receiverhelper.ObsReport, format string, td ptrace.Traces) (ptraceotlp.ExportResponse, error) {
	stampTraces(ctx, td)
	resp := ptraceotlp.NewExportResponse()
	refused, err := s.export(ctx, rep, tracesOps, format, td.SpanCount(), func(ctx context.Context) error { return s.traces.ConsumeTraces(ctx, td) })
	if err != nil {
		return resp, err
	}
	if refused.Points > 0 {
		ps := resp.PartialSuccess()
		ps.SetRejectedSpans(int64(refused.Points))
		ps.SetErrorMessage(partialMessage(refused))
	}
	return resp, nil
}

// The gRPC services.

type metricsService struct {
	pmetricotlp.UnimplementedGRPCServer
	s *server
}

func (m *metricsService) Export(ctx context.Context, req pmetricotlp.ExportRequest) (pmetricotlp.ExportResponse, error) {
	return m.s.exportMetrics(ctx, m.s.obsGRPC, "protobuf", req.Metrics())
}

type logsService struct {
	plogotlp.UnimplementedGRPCServer
	s *server
}

func (l *logsService) Export(ctx context.Context, req plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	return l.s.exportLogs(ctx, l.s.obsGRPC, "protobuf", req.Logs())
}

type tracesService struct {
	ptraceotlp.UnimplementedGRPCServer
	s *server
}

func (t *tracesService) Export(ctx context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	return t.s.exportTraces(ctx, t.s.obsGRPC, "protobuf", req.Traces())
}
