package telemetry

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	otellog "go.opentelemetry.io/otel/log"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/aiops-dev/aiops/sim/model"
)

// tracedJob is a traced request's job waiting in its queue: the worker
// that processes it continues the trace.
type tracedJob struct {
	parent   trace.SpanContext
	enqueued time.Time
}

// maxPendingTraced bounds the traced jobs remembered per queue.
const maxPendingTraced = 1000

func at(start time.Time, secs float64) time.Time {
	return start.Add(time.Duration(secs * float64(time.Second)))
}

// traceRequest emits the spans of one request and its access log.
func (t *Telemetry) traceRequest(p *process, r *model.Request) {
	t.stats.Spans++
	ctx, span := p.tracer.Start(context.Background(), r.Route.Name, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(r.Start), trace.WithAttributes(
			semconv.HTTPRequestMethodKey.String(r.Route.Method),
			semconv.HTTPRoute(r.Route.Path),
			semconv.HTTPResponseStatusCode(r.Status),
			semconv.URLScheme("https"),
		))
	if r.Status >= 500 {
		span.SetStatus(codes.Error, r.ErrorType)
		span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(r.Status)))
	}
	if r.Attack {
		span.SetAttributes(semconv.ClientAddress("203.0.113.7"))
	}
	t.calls = t.sys.Calls(r, t.calls[:0])
	for _, c := range t.calls {
		t.callSpan(ctx, p, c, r.Start)
	}
	end := at(r.Start, r.Duration)
	sev, text := otellog.SeverityInfo, fmt.Sprintf("%s %d %.3fs", r.Route.Name, r.Status, r.Duration)
	switch {
	case r.Status >= 500:
		sev, text = otellog.SeverityError, fmt.Sprintf("%s failed with %d: %s", r.Route.Name, r.Status, r.ErrorType)
	case r.Status == 401:
		sev, text = otellog.SeverityWarn, "login failed: invalid credentials"
	case r.Status == 429:
		sev, text = otellog.SeverityWarn, "rate limit exceeded"
	}
	t.emitLog(ctx, p, end, sev, text, semconv.HTTPRoute(r.Route.Path), semconv.HTTPResponseStatusCode(r.Status),
		attribute.Float64("duration_s", r.Duration))
	span.End(trace.WithTimestamp(end))
}

// callSpan emits the client span of one call, and the server span of the
// callee when it is one of the engine's services.
func (t *Telemetry) callSpan(ctx context.Context, p *process, c model.Call, origin time.Time) {
	t.stats.Spans++
	start := at(origin, c.Offset)
	end := at(start, c.Duration)
	var name string
	kind := trace.SpanKindClient
	attrs := []attribute.KeyValue{peerService.String(c.Peer)}
	switch c.Kind {
	case model.CallAuth:
		name = c.Route.Method
		attrs = append(attrs, semconv.HTTPRequestMethodKey.String(c.Route.Method), semconv.ServerAddress(model.Auth),
			semconv.URLTemplate(c.Route.Path), semconv.HTTPResponseStatusCode(c.Status))
	case model.CallCache:
		name = "GET"
		attrs = append(attrs, semconv.DBSystemNameRedis, semconv.DBOperationName("GET"), semconv.ServerAddress("redis"))
	case model.CallDB:
		name = c.Query.Operation + " " + c.Query.Table
		attrs = append(attrs, semconv.DBSystemNamePostgreSQL, semconv.DBNamespace("workflow"),
			semconv.DBOperationName(c.Query.Operation), semconv.DBCollectionName(c.Query.Table), semconv.ServerAddress("db-0"))
		if c.PoolWait > 0 {
			attrs = append(attrs, attribute.Float64("db.client.connection.wait_time", c.PoolWait))
		}
	case model.CallLLM:
		prov := t.sys.Provider(c.Peer)
		name = "chat " + prov.Model
		attrs = append(attrs, genAIOperationName.String("chat"), genAIProviderName.String(prov.Name),
			genAIRequestModel.String(prov.Model), semconv.ServerAddress(providerHost(prov.Name)))
	case model.CallEnqueue:
		kind = trace.SpanKindProducer
		name = "send " + c.Queue
		attrs = append(attrs, semconv.MessagingSystemKey.String("redis"), semconv.MessagingDestinationName(c.Queue),
			semconv.MessagingOperationTypeSend, semconv.MessagingOperationName("send"))
	case model.CallExternal:
		name = "POST"
		attrs = append(attrs, semconv.HTTPRequestMethodKey.String("POST"), semconv.ServerAddress("www.googleapis.com"))
	}
	if c.ErrorType != "" {
		attrs = append(attrs, semconv.ErrorTypeKey.String(c.ErrorType))
	}
	cctx, span := p.tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	if c.ErrorType != "" {
		span.SetStatus(codes.Error, c.ErrorType)
	}
	switch c.Kind {
	case model.CallAuth:
		if callee := t.pickInstance(model.Auth); callee != nil && c.Status != 503 {
			t.serverSpan(cctx, callee, c, start, end)
		}
	case model.CallEnqueue:
		q := t.pending[c.Queue]
		if len(q) < maxPendingTraced {
			t.pending[c.Queue] = append(q, tracedJob{parent: span.SpanContext(), enqueued: end})
		}
	}
	span.End(trace.WithTimestamp(end))
}

// serverSpan is the auth service's side of a call, inside the caller's
// trace, with the queries it ran.
func (t *Telemetry) serverSpan(ctx context.Context, callee *process, c model.Call, start, end time.Time) {
	t.stats.Spans++
	s := start.Add(netHalf)
	e := end.Add(-netHalf)
	if e.Before(s) {
		e = s
	}
	sctx, span := callee.tracer.Start(ctx, c.Route.Name, trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(s),
		trace.WithAttributes(semconv.HTTPRequestMethodKey.String(c.Route.Method), semconv.HTTPRoute(c.Route.Path),
			semconv.HTTPResponseStatusCode(c.Status)))
	origin := s
	if n := len(c.Route.Queries); n > 0 {
		// The queries come last, after the handler's own work.
		total := 0.0
		for k := range c.Route.Queries {
			total += t.sys.QueryLatency(&c.Route.Queries[k])
		}
		origin = e.Add(-time.Duration(math.Min(total, e.Sub(s).Seconds()) * float64(time.Second)))
		off := 0.0
		for k := range c.Route.Queries {
			q := &c.Route.Queries[k]
			d := t.sys.QueryLatency(q)
			t.callSpan(sctx, callee, model.Call{Kind: model.CallDB, Peer: model.Postgres, Query: q, Offset: off, Duration: d}, origin)
			off += d
		}
	}
	span.End(trace.WithTimestamp(e))
}

const netHalf = 250 * time.Microsecond

// pickInstance returns the process of a ready instance of the service, in
// turn.
func (t *Telemetry) pickInstance(service string) *process {
	svc := t.sys.Service(service)
	n := len(svc.Instances)
	for k := range n {
		t.turn++
		i := svc.Instances[(t.turn+k)%n]
		if p := t.procs[i]; p != nil && i.Ready() {
			return p
		}
	}
	return nil
}

// traceJob continues the trace of a traced job, or starts one for a job
// sampled on its own.
func (t *Telemetry) traceJob(p *process, j *model.Job) {
	var parent trace.SpanContext
	q := t.pending[j.Queue.Name]
	if len(q) > 0 && !q[0].enqueued.After(j.Start) {
		parent = q[0].parent
		t.pending[j.Queue.Name] = q[1:]
	} else if !t.jobSampler.sample(t.rng, j.ErrorType != "") {
		return
	}
	ctx := context.Background()
	if parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	}
	t.stats.Spans++
	ctx, span := p.tracer.Start(ctx, "process "+j.Queue.Name, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithTimestamp(j.Start),
		trace.WithAttributes(semconv.MessagingSystemKey.String("redis"), semconv.MessagingDestinationName(j.Queue.Name),
			semconv.MessagingOperationTypeProcess, semconv.MessagingOperationName("process"),
			attribute.Float64("messaging.queue.wait_time", j.Wait)))
	if j.ErrorType != "" {
		span.SetStatus(codes.Error, j.ErrorType)
		span.SetAttributes(semconv.ErrorTypeKey.String(j.ErrorType))
	}
	t.calls = t.sys.JobCalls(j, t.calls[:0])
	for _, c := range t.calls {
		t.callSpan(ctx, p, c, j.Start)
	}
	end := at(j.Start, j.Duration)
	if j.ErrorType != "" {
		t.emitLog(ctx, p, end, otellog.SeverityError, fmt.Sprintf("job on %s failed: %s; it will be retried", j.Queue.Name, j.ErrorType),
			semconv.MessagingDestinationName(j.Queue.Name))
	} else {
		t.emitLog(ctx, p, end, otellog.SeverityInfo, fmt.Sprintf("job on %s done in %.3fs", j.Queue.Name, j.Duration),
			semconv.MessagingDestinationName(j.Queue.Name))
	}
	span.End(trace.WithTimestamp(end))
}

// emitLog writes one structured log record of a process; ctx carries the
// span whose ids the record takes.
func (t *Telemetry) emitLog(ctx context.Context, p *process, ts time.Time, sev otellog.Severity, body string, attrs ...attribute.KeyValue) {
	if p.logger == nil {
		return
	}
	t.stats.Logs++
	var rec otellog.Record
	rec.SetTimestamp(ts)
	rec.SetObservedTimestamp(ts)
	rec.SetSeverity(sev)
	rec.SetSeverityText(sev.String())
	rec.SetBody(attribute.StringValue(body))
	rec.AddAttributes(attrs...)
	p.logger.Emit(ctx, rec)
}
