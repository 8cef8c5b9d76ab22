package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/aiops-dev/aiops/collector/internal/obs"
	"github.com/aiops-dev/aiops/collector/internal/outcome"
	"github.com/aiops-dev/aiops/collector/limits"
)

// ingressType is the processor that opens every OTLP pipeline. It counts
// what arrives, rejects data that breaks the OTLP data model with
// InvalidArgument (HTTP 400) before anything is accepted, removes the
// metric data points the limits refuse (collector/limits: too far in the
// future, labels, UTF-8) and reports them to the receiver as a partial
// success, or as InvalidArgument when nothing is left, and turns
// "try later" errors from further down (queue full, memory limiter) into
// Unavailable with a RetryInfo detail, which the OTLP receiver sends as
// gRPC status details and as HTTP 503 with Retry-After.
const ingressType = "aiops_ingress"

type ingressConfig struct {
	RetryAfter time.Duration `mapstructure:"retry_after"`
	Limits     limits.Config `mapstructure:"limits"`
}

func (c *ingressConfig) Validate() error {
	if c.RetryAfter < time.Second {
		return fmt.Errorf("retry_after: must be >= 1s, got %s", c.RetryAfter)
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("limits::%w", err)
	}
	return nil
}

// ingressDeps are what the ingress takes from the collector.
type ingressDeps struct {
	metrics *obs.Metrics
	logger  *slog.Logger
	now     func() time.Time
	health  *health
}

func newIngressFactory(d ingressDeps) processor.Factory {
	return processor.NewFactory(component.MustNewType(ingressType),
		func() component.Config {
			return &ingressConfig{RetryAfter: 5 * time.Second, Limits: limits.DefaultConfig()}
		},
		processor.WithMetrics(func(_ context.Context, _ processor.Settings, cfg component.Config, next consumer.Metrics) (processor.Metrics, error) {
			c := cfg.(*ingressConfig)
			return &metricsIngress{
				ingress: newIngress(c, d, obs.SignalMetrics),
				limits:  c.Limits,
				log:     limits.NewLog(d.logger, "refused metric data points", time.Minute, d.now, "component", ingressType),
				next:    next,
			}, nil
		}, component.StabilityLevelBeta),
		processor.WithLogs(func(_ context.Context, _ processor.Settings, cfg component.Config, next consumer.Logs) (processor.Logs, error) {
			c := cfg.(*ingressConfig)
			return &logsIngress{
				ingress: newIngress(c, d, obs.SignalLogs),
				limits:  c.Limits,
				log:     limits.NewLog(d.logger, "refused log records", time.Minute, d.now, "component", ingressType),
				next:    next,
			}, nil
		}, component.StabilityLevelBeta),
		processor.WithTraces(func(_ context.Context, _ processor.Settings, cfg component.Config, next consumer.Traces) (processor.Traces, error) {
			c := cfg.(*ingressConfig)
			return &tracesIngress{
				ingress: newIngress(c, d, obs.SignalSpans),
				limits:  c.Limits,
				log:     limits.NewLog(d.logger, "refused spans", time.Minute, d.now, "component", ingressType),
				next:    next,
			}, nil
		}, component.StabilityLevelBeta),
	)
}

type ingress struct {
	component.StartFunc
	component.ShutdownFunc
	retryAfter time.Duration
	metrics    *obs.Metrics
	now        func() time.Time
	health     *health
	signal     string
}

func newIngress(cfg *ingressConfig, d ingressDeps, signal string) ingress {
	return ingress{retryAfter: cfg.RetryAfter, metrics: d.metrics, now: d.now, health: d.health, signal: signal}
}

// memoryLimiterRefusal is the text of the memory limiter's error; its
// error value lives in an internal package we cannot import.
const memoryLimiterRefusal = "data refused due to high memory usage"

func (in *ingress) invalid(n int, err error) error {
	in.metrics.Refused.WithLabelValues(in.signal, obs.ReasonInvalid).Add(float64(n))
	return status.Error(codes.InvalidArgument, err.Error())
}

// outcome counts the result of handing n items on, and shapes the error
// the receiver turns into the client's answer.
func (in *ingress) outcome(n int, err error) error {
	if err == nil {
		return nil
	}
	var reason string
	switch {
	case errors.Is(err, exporterhelper.ErrQueueIsFull):
		reason = obs.ReasonQueueFull
	case strings.Contains(err.Error(), memoryLimiterRefusal):
		reason = obs.ReasonMemoryLimit
		in.health.memoryRefused(in.now())
	case consumererror.IsPermanent(err):
		return in.invalid(n, err)
	default:
		if s, ok := status.FromError(err); ok && s.Code() != codes.Unavailable && s.Code() != codes.ResourceExhausted {
			in.metrics.Refused.WithLabelValues(in.signal, obs.ReasonUnavailable).Add(float64(n))
			return err
		}
		reason = obs.ReasonUnavailable
	}
	in.metrics.Refused.WithLabelValues(in.signal, reason).Add(float64(n))
	st := status.New(codes.Unavailable, fmt.Sprintf("%s: retry after %s", err, in.retryAfter))
	if detailed, derr := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(in.retryAfter)}); derr == nil {
		st = detailed
	}
	return st.Err()
}

type metricsIngress struct {
	ingress
	limits limits.Config
	log    *limits.Log
	next   consumer.Metrics
}

// Capabilities says the processor mutates: it removes refused points.
func (*metricsIngress) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: true}
}

func (p *metricsIngress) ConsumeMetrics(ctx context.Context, md pmetric.Metrics) error {
	n := md.DataPointCount()
	p.metrics.Received.WithLabelValues(obs.SignalMetrics).Add(float64(n))
	if err := validateMetrics(md); err != nil {
		return p.invalid(n, err)
	}
	if r := p.limits.Admit(md, p.now()); r.Points > 0 {
		for reason, k := range r.ByReason() {
			p.metrics.Refused.WithLabelValues(obs.SignalMetrics, string(reason)).Add(float64(k))
		}
		p.log.Note(r)
		if r.Points == n {
			return status.Error(codes.InvalidArgument, fmt.Sprintf("all %d data points refused: %s", n, r))
		}
		outcome.From(ctx).Refuse(r)
		n -= r.Points
	}
	return p.outcome(n, p.next.ConsumeMetrics(ctx, md))
}

type logsIngress struct {
	ingress
	limits limits.Config
	log    *limits.Log
	next   consumer.Logs
}

// Capabilities says the processor mutates: it stamps observed timestamps
// and removes refused records.
func (*logsIngress) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: true}
}

func (p *logsIngress) ConsumeLogs(ctx context.Context, ld plog.Logs) error {
	n := ld.LogRecordCount()
	p.metrics.Received.WithLabelValues(obs.SignalLogs).Add(float64(n))
	// The OTLP data model has the collector set the observed time when the
	// source did not. Doing it here, before the queue, keeps the stored
	// record (and its identity) the same however often it is replayed.
	clock := p.now()
	now := pcommon.NewTimestampFromTime(clock)
	rls := ld.ResourceLogs()
	for i := range rls.Len() {
		sls := rls.At(i).ScopeLogs()
		for j := range sls.Len() {
			lrs := sls.At(j).LogRecords()
			for k := range lrs.Len() {
				if lr := lrs.At(k); lr.ObservedTimestamp() == 0 {
					lr.SetObservedTimestamp(now)
				}
			}
		}
	}
	if r := p.limits.AdmitLogs(ld, clock); r.Points > 0 {
		p.log.Note(r)
		var ok bool
		if n, ok = p.refuse(ctx, r, n); !ok {
			return status.Error(codes.InvalidArgument, fmt.Sprintf("all %d log records refused: %s", n, r))
		}
	}
	return p.outcome(n, p.next.ConsumeLogs(ctx, ld))
}

// refuse counts and logs what the limits refused of a request of n
// items and tells the client in the partial success; it returns the
// items left, and false when none is.
func (in *ingress) refuse(ctx context.Context, r limits.Refusals, n int) (int, bool) {
	for reason, k := range r.ByReason() {
		in.metrics.Refused.WithLabelValues(in.signal, string(reason)).Add(float64(k))
	}
	if r.Points == n {
		return n, false
	}
	outcome.From(ctx).Refuse(r)
	return n - r.Points, true
}

type tracesIngress struct {
	ingress
	limits limits.Config
	log    *limits.Log
	next   consumer.Traces
}

// Capabilities says the processor mutates: it removes refused spans.
func (*tracesIngress) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: true}
}

func (p *tracesIngress) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	n := td.SpanCount()
	p.metrics.Received.WithLabelValues(obs.SignalSpans).Add(float64(n))
	if err := validateTraces(td); err != nil {
		return p.invalid(n, err)
	}
	if r := p.limits.AdmitSpans(td, p.now()); r.Points > 0 {
		p.log.Note(r)
		var ok bool
		if n, ok = p.refuse(ctx, r, n); !ok {
			return status.Error(codes.InvalidArgument, fmt.Sprintf("all %d spans refused: %s", n, r))
		}
	}
	return p.outcome(n, p.next.ConsumeTraces(ctx, td))
}

// health is what the collector's readiness reports about its pipelines.
type health struct {
	// memoryRefusedAt is when the memory limiter last refused data (unix
	// nanoseconds; 0 never).
	memoryRefusedAt atomic.Int64
}

func (h *health) memoryRefused(t time.Time) {
	if h != nil {
		h.memoryRefusedAt.Store(t.UnixNano())
	}
}
