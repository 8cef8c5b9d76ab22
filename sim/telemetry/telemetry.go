// Package telemetry makes the simulated engine's telemetry with the real
// OpenTelemetry Go SDK: every process of every instance has its own
// meter, tracer and logger providers with its own resource
// (service.name, service.instance.id, service.version, host.name), as a
// real process would, and nodes, the database host and the job queue
// report as resources of their own. Metrics are collected once per step
// and stamped with simulated time; spans and logs carry simulated times
// too, so a run in compressed time is consistent across signals.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/aiops-dev/aiops/sim/model"
)

// Options configure the telemetry.
type Options struct {
	// Exporters; a nil one turns its signal off. Metrics are collected
	// even without an exporter, for Collect's callers.
	Metrics sdkmetric.Exporter
	Spans   sdktrace.SpanExporter
	Logs    sdklog.Exporter
	// TraceRatio is the share of successful requests and jobs traced;
	// failed ones are always traced, up to MaxTracesPerSecond in all.
	TraceRatio         float64
	MaxTracesPerSecond float64
	// Seed fixes sampling and trace ids.
	Seed uint64
	// Environment is deployment.environment.name.
	Environment string
	Logger      *slog.Logger
}

// DefaultOptions traces 5 % of requests and at most 50 traces/s.
func DefaultOptions() Options {
	return Options{TraceRatio: 0.05, MaxTracesPerSecond: 50, Environment: "sim"}
}

// Stats count what the telemetry produced.
type Stats struct {
	Requests, Jobs int64 // simulated
	Points         int64 // metric data points exported
	Spans, Logs    int64
	Exports        int64 // metric export requests
}

// Telemetry turns the model's activity into OTLP.
type Telemetry struct {
	opts     Options
	sys      *model.System
	spanProc sdktrace.SpanProcessor
	logProc  sdklog.Processor
	ids      *idGenerator
	rng      *rand.Rand
	procs    map[*model.Instance]*process
	nodes    map[*model.Node]*infra
	queue    *infra
	// Requests and jobs are sampled apart, each within half the cap.
	reqSampler, jobSampler sampler
	pending                map[string][]tracedJob
	stats                  Stats
	calls                  []model.Call
	// retiredReaders are collected one last time, then shut down.
	retiredReaders []retiredReader
	now            time.Time
	dt             float64
	turn           int
}

// New sets up telemetry for sys.
func New(sys *model.System, opts Options) (*Telemetry, error) {
	if opts.TraceRatio < 0 || opts.TraceRatio > 1 {
		return nil, fmt.Errorf("trace ratio: must be in [0, 1], got %v", opts.TraceRatio)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	t := &Telemetry{
		opts:    opts,
		sys:     sys,
		ids:     newIDGenerator(opts.Seed),
		rng:     rand.New(rand.NewPCG(opts.Seed, 0x7e1e)),
		procs:   map[*model.Instance]*process{},
		nodes:   map[*model.Node]*infra{},
		pending: map[string][]tracedJob{},
		now:     sys.Now(),
	}
	if opts.Spans != nil {
		t.spanProc = sdktrace.NewBatchSpanProcessor(opts.Spans, sdktrace.WithMaxQueueSize(65536), sdktrace.WithMaxExportBatchSize(2048))
	}
	if opts.Logs != nil {
		t.logProc = sdklog.NewBatchProcessor(opts.Logs, sdklog.WithMaxQueueSize(65536), sdklog.WithExportMaxBatchSize(2048))
	}
	q, err := t.newQueueInfra()
	if err != nil {
		return nil, err
	}
	t.queue = q
	if err := t.sync(); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Telemetry) tracing() bool { return t.spanProc != nil }
func (t *Telemetry) logging() bool { return t.logProc != nil }

// newResource builds a resource with the SDK's own attributes.
func newResource(attrs ...attribute.KeyValue) (*resource.Resource, error) {
	return resource.New(context.Background(), resource.WithTelemetrySDK(), resource.WithSchemaURL(schemaURL), resource.WithAttributes(attrs...))
}

// Begin prepares a step of length dt: providers for processes that
// started, and the trace budget.
func (t *Telemetry) Begin(dt time.Duration) error {
	t.dt = dt.Seconds()
	t.reqSampler.begin(t.opts, t.dt)
	t.jobSampler.begin(t.opts, t.dt)
	t.now = t.sys.Now()
	return t.sync()
}

// sync gives every running process and every node its providers, and
// retires those of processes and nodes that are gone. A retired process
// is collected one last time by the next Collect.
func (t *Telemetry) sync() error {
	live := map[*model.Instance]bool{}
	for _, svc := range t.sys.Services {
		for _, i := range svc.Instances {
			live[i] = true
			p := t.procs[i]
			if p != nil && (p.proc != i.Process || !i.Up()) {
				p.retire(t)
				p = nil
				delete(t.procs, i)
			}
			if p == nil && i.Up() {
				np, err := t.newProcess(i)
				if err != nil {
					return err
				}
				t.procs[i] = np
			}
		}
	}
	for i, p := range t.procs {
		if !live[i] {
			p.retire(t)
			delete(t.procs, i)
		}
	}
	nodes := map[*model.Node]bool{}
	for _, n := range t.sys.Nodes() {
		nodes[n] = true
		if t.nodes[n] == nil {
			in, err := t.newNodeInfra(n)
			if err != nil {
				return err
			}
			t.nodes[n] = in
		}
	}
	for n, in := range t.nodes {
		if !nodes[n] {
			t.retiredReaders = append(t.retiredReaders, retiredReader{in.reader, in.start, in.mp})
			delete(t.nodes, n)
		}
	}
	return nil
}

type retiredReader struct {
	reader *sdkmetric.ManualReader
	start  time.Time
	mp     *sdkmetric.MeterProvider
}

// Request is part of model.Sink. Only the api's requests start traces:
// the other services' requests come from callers, whose traces hold them.
func (t *Telemetry) Request(r *model.Request) {
	t.stats.Requests++
	if r.Instance == nil {
		return
	}
	p := t.procs[r.Instance]
	if p == nil {
		return
	}
	p.recordRequest(r)
	if r.Service.Name != model.API {
		if r.Status >= 500 && t.logging() && t.reqSampler.sample(t.rng, true) {
			t.emitLog(context.Background(), p, at(r.Start, r.Duration), otellog.SeverityError,
				fmt.Sprintf("%s failed with %d: %s", r.Route.Name, r.Status, r.ErrorType), semconv.HTTPRoute(r.Route.Path))
		}
		return
	}
	if t.tracing() && t.reqSampler.sample(t.rng, r.Status >= 500) {
		t.traceRequest(p, r)
	}
}

// Job is part of model.Sink.
func (t *Telemetry) Job(j *model.Job) {
	t.stats.Jobs++
	p := t.procs[j.Instance]
	if p == nil {
		return
	}
	p.recordJob(j)
	if t.tracing() {
		t.traceJob(p, j)
	}
}

// sampler picks what to trace: failures always and successes at the
// configured ratio, as long as that stays within half the trace cap;
// beyond it both are thinned, judging the rates by the last step so that
// the traces spread over the step instead of taking its first requests.
type sampler struct {
	pOK, pFailed float64
	ok, failed   float64 // seen this step
	budget       float64
	dt           float64 // length of this step
}

func (s *sampler) begin(o Options, dt float64) {
	limit := o.MaxTracesPerSecond / 2
	s.pOK, s.pFailed = o.TraceRatio, 1
	if s.dt > 0 {
		if r := s.failed / s.dt; r > limit {
			s.pFailed = limit / r
		}
		if r := s.ok / s.dt; r*s.pOK > limit {
			s.pOK = limit / r
		}
	}
	s.ok, s.failed = 0, 0
	s.dt = dt
	s.budget = 2 * o.MaxTracesPerSecond * dt
}

func (s *sampler) sample(g *rand.Rand, failed bool) bool {
	p := s.pOK
	if failed {
		s.failed++
		p = s.pFailed
	} else {
		s.ok++
	}
	if s.budget < 1 || g.Float64() >= p {
		return false
	}
	s.budget--
	return true
}

// Collect gathers one step's metrics from every provider, stamped with
// the model's time. It must be called while the model is not stepping
// (the callbacks read its state).
func (t *Telemetry) Collect(ctx context.Context) ([]*metricdata.ResourceMetrics, error) {
	now := t.sys.Now()
	var out []*metricdata.ResourceMetrics
	var errs []error
	collect := func(r *sdkmetric.ManualReader, start time.Time) {
		rm := &metricdata.ResourceMetrics{}
		if err := r.Collect(ctx, rm); err != nil {
			errs = append(errs, err)
			return
		}
		t.stats.Points += int64(restamp(rm, now, start))
		out = append(out, rm)
	}
	retired := t.retiredReaders
	t.retiredReaders = nil
	for _, r := range retired {
		collect(r.reader, r.start)
	}
	for _, svc := range t.sys.Services {
		for _, i := range svc.Instances {
			if p := t.procs[i]; p != nil {
				collect(p.reader, p.start)
			}
		}
	}
	for _, n := range t.sys.Nodes() {
		if in := t.nodes[n]; in != nil {
			collect(in.reader, in.start)
		}
	}
	collect(t.queue.reader, t.queue.start)
	for _, r := range retired {
		_ = r.mp.Shutdown(ctx)
	}
	return out, errors.Join(errs...)
}

// Export sends collected metrics to the metric exporter, one request per
// resource. Without an exporter it does nothing.
func (t *Telemetry) Export(ctx context.Context, batch []*metricdata.ResourceMetrics) error {
	if t.opts.Metrics == nil {
		return nil
	}
	var errs []error
	for _, rm := range batch {
		if len(rm.ScopeMetrics) == 0 {
			continue
		}
		if err := t.opts.Metrics.Export(ctx, rm); err != nil {
			errs = append(errs, err)
			continue
		}
		t.stats.Exports++
	}
	return errors.Join(errs...)
}

// Flush exports the spans and logs made so far.
func (t *Telemetry) Flush(ctx context.Context) error {
	var errs []error
	if t.spanProc != nil {
		errs = append(errs, t.spanProc.ForceFlush(ctx))
	}
	if t.logProc != nil {
		errs = append(errs, t.logProc.ForceFlush(ctx))
	}
	return errors.Join(errs...)
}

// Shutdown flushes and stops the exporters.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	if t.spanProc != nil {
		errs = append(errs, t.spanProc.Shutdown(ctx))
	}
	if t.logProc != nil {
		errs = append(errs, t.logProc.Shutdown(ctx))
	}
	if t.opts.Metrics != nil {
		errs = append(errs, t.opts.Metrics.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// Stats returns the counts so far.
func (t *Telemetry) Stats() Stats { return t.stats }

func envAttr(env string) attribute.KeyValue { return semconv.DeploymentEnvironmentNameKey.String(env) }
