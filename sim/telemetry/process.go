package telemetry

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otellog "go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/metric"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/aiops-dev/aiops/sim/model"
)

const scope = "github.com/aiops-dev/aiops/sim"

// process is the SDK side of one process of one instance.
type process struct {
	inst   *model.Instance
	proc   int
	start  time.Time
	res    *resource.Resource
	mp     *sdkmetric.MeterProvider
	reader *sdkmetric.ManualReader
	tracer trace.Tracer
	logger otellog.Logger

	httpDur, genAIDur, genAITokens, jobDur metric.Float64Histogram
	sent, consumed                         metric.Int64Counter
	reqAttrs                               map[reqKey]metric.MeasurementOption
	llmAttrs                               map[llmKey]metric.MeasurementOption
	jobAttrs                               map[jobKey]metric.MeasurementOption
	tokenIn, tokenOut                      map[llmKey]metric.MeasurementOption
	baseTimeouts                           float64
	cache                                  *model.Cache
	reg                                    metric.Registration
}

type reqKey struct {
	route  *model.Route
	status int
	err    string
}

type llmKey struct {
	provider *model.Provider
	err      string
}

type jobKey struct {
	queue string
	err   string
}

func (t *Telemetry) newProcess(i *model.Instance) (*process, error) {
	res, err := newResource(
		semconv.ServiceName(i.Service.Name),
		semconv.ServiceInstanceID(i.ID),
		semconv.ServiceVersion(i.Version),
		semconv.HostName(i.Node.Name),
		semconv.K8SPodName(fmt.Sprintf("%s-p%d", i.ID, i.Process)),
		envAttr(t.opts.Environment),
	)
	if err != nil {
		return nil, fmt.Errorf("resource of %s: %w", i.ID, err)
	}
	p := &process{inst: i, proc: i.Process, start: i.ProcessStart, res: res,
		reqAttrs: map[reqKey]metric.MeasurementOption{}, llmAttrs: map[llmKey]metric.MeasurementOption{},
		jobAttrs: map[jobKey]metric.MeasurementOption{}, tokenIn: map[llmKey]metric.MeasurementOption{},
		tokenOut: map[llmKey]metric.MeasurementOption{}, baseTimeouts: i.PoolTimeouts, cache: t.sys.Cache}
	p.reader = sdkmetric.NewManualReader()
	p.mp = sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(p.reader))
	if err := p.instruments(); err != nil {
		return nil, fmt.Errorf("instruments of %s: %w", i.ID, err)
	}
	if t.tracing() {
		tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithSpanProcessor(t.spanProc),
			sdktrace.WithIDGenerator(t.ids), sdktrace.WithSampler(sdktrace.AlwaysSample()))
		p.tracer = tp.Tracer(scope)
	}
	if t.logging() {
		lp := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(t.logProc))
		p.logger = lp.Logger(scope)
		sev, text := otellog.SeverityInfo, fmt.Sprintf("started %s %s on %s", i.Service.Name, i.Version, i.Node.Name)
		if i.Process > 1 && i.LastCrash != "" && i.Restarts > 0 {
			sev = otellog.SeverityWarn
			text += fmt.Sprintf(" after the previous process ended (%s, restart %d)", i.LastCrash, i.Restarts)
		}
		t.emitLog(context.Background(), p, i.ProcessStart, sev, text, attribute.String("event.name", "process.start"))
	}
	return p, nil
}

// retire queues a process's metrics for a last collection.
func (p *process) retire(t *Telemetry) {
	t.retiredReaders = append(t.retiredReaders, retiredReader{p.reader, p.start, p.mp})
	if p.reg != nil {
		_ = p.reg.Unregister()
	}
}

func (p *process) instruments() error {
	m := p.mp.Meter(scope)
	var err error
	spec := p.inst.Service.Spec
	if len(spec.Routes) > 0 {
		if p.httpDur, err = m.Float64Histogram(httpServerDuration.Name(), metric.WithUnit(httpServerDuration.Unit()),
			metric.WithDescription(httpServerDuration.Description()), metric.WithExplicitBucketBoundaries(httpBuckets...)); err != nil {
			return err
		}
	}
	if p.genAIDur, err = m.Float64Histogram(genAIOperationDuration, metric.WithUnit("s"),
		metric.WithDescription("GenAI operation duration."), metric.WithExplicitBucketBoundaries(genAIBuckets...)); err != nil {
		return err
	}
	if p.genAITokens, err = m.Float64Histogram(genAITokenUsage, metric.WithUnit("{token}"),
		metric.WithDescription("Number of input and output tokens used."), metric.WithExplicitBucketBoundaries(tokenBuckets...)); err != nil {
		return err
	}
	switch p.inst.Service.Name {
	case model.API:
		if p.sent, err = m.Int64Counter(msgSent.Name(), metric.WithUnit(msgSent.Unit()), metric.WithDescription(msgSent.Description())); err != nil {
			return err
		}
	case model.Worker:
		if p.jobDur, err = m.Float64Histogram(msgProcessDuration.Name(), metric.WithUnit(msgProcessDuration.Unit()),
			metric.WithDescription(msgProcessDuration.Description()), metric.WithExplicitBucketBoundaries(messageBuckets...)); err != nil {
			return err
		}
		if p.consumed, err = m.Int64Counter(msgConsumed.Name(), metric.WithUnit(msgConsumed.Unit()), metric.WithDescription(msgConsumed.Description())); err != nil {
			return err
		}
	}
	cpu, err := m.Float64ObservableGauge(procCPUUtilization.Name(), metric.WithUnit(procCPUUtilization.Unit()), metric.WithDescription(procCPUUtilization.Description()))
	if err != nil {
		return err
	}
	mem, err := m.Int64ObservableUpDownCounter(procMemoryUsage.Name(), metric.WithUnit(procMemoryUsage.Unit()), metric.WithDescription(procMemoryUsage.Description()))
	if err != nil {
		return err
	}
	limit, err := m.Int64ObservableUpDownCounter(k8sMemoryLimit.Name(), metric.WithUnit(k8sMemoryLimit.Unit()), metric.WithDescription(k8sMemoryLimit.Description()))
	if err != nil {
		return err
	}
	restarts, err := m.Int64ObservableUpDownCounter(k8sRestartCount.Name(), metric.WithUnit(k8sRestartCount.Unit()), metric.WithDescription(k8sRestartCount.Description()))
	if err != nil {
		return err
	}
	conns, err := m.Int64ObservableUpDownCounter(dbConnCount.Name(), metric.WithUnit(dbConnCount.Unit()), metric.WithDescription(dbConnCount.Description()))
	if err != nil {
		return err
	}
	connMax, err := m.Int64ObservableUpDownCounter(dbConnMax.Name(), metric.WithUnit(dbConnMax.Unit()), metric.WithDescription(dbConnMax.Description()))
	if err != nil {
		return err
	}
	pending, err := m.Int64ObservableUpDownCounter(dbConnPending.Name(), metric.WithUnit(dbConnPending.Unit()), metric.WithDescription(dbConnPending.Description()))
	if err != nil {
		return err
	}
	timeouts, err := m.Int64ObservableCounter(dbConnTimeouts.Name(), metric.WithUnit(dbConnTimeouts.Unit()), metric.WithDescription(dbConnTimeouts.Description()))
	if err != nil {
		return err
	}
	user := metric.WithAttributeSet(attribute.NewSet(semconv.CPUModeUser))
	system := metric.WithAttributeSet(attribute.NewSet(semconv.CPUModeSystem))
	pgPool := attribute.String(string(semconv.DBClientConnectionPoolNameKey), "postgres")
	pgUsed := metric.WithAttributeSet(attribute.NewSet(pgPool, semconv.DBClientConnectionStateUsed))
	pgIdle := metric.WithAttributeSet(attribute.NewSet(pgPool, semconv.DBClientConnectionStateIdle))
	pgOnly := metric.WithAttributeSet(attribute.NewSet(pgPool))
	redisPool := attribute.String(string(semconv.DBClientConnectionPoolNameKey), "redis")
	redisUsed := metric.WithAttributeSet(attribute.NewSet(redisPool, semconv.DBClientConnectionStateUsed))
	redisIdle := metric.WithAttributeSet(attribute.NewSet(redisPool, semconv.DBClientConnectionStateIdle))
	redisOnly := metric.WithAttributeSet(attribute.NewSet(redisPool))
	const redisPoolMax = 50
	p.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		i := p.inst
		util := min(1, i.CPU/i.Service.Spec.CPULimit)
		o.ObserveFloat64(cpu, util*0.85, user)
		o.ObserveFloat64(cpu, util*0.15, system)
		o.ObserveInt64(mem, int64(i.Memory))
		o.ObserveInt64(limit, int64(i.Service.Spec.MemLimit))
		o.ObserveInt64(restarts, int64(i.Restarts))
		used := min(int64(i.PoolMax()), int64(i.PoolUsed+0.5))
		o.ObserveInt64(conns, used, pgUsed)
		o.ObserveInt64(conns, int64(i.PoolMax())-used, pgIdle)
		o.ObserveInt64(connMax, int64(i.PoolMax()), pgOnly)
		o.ObserveInt64(pending, int64(i.PoolPending+0.5), pgOnly)
		o.ObserveInt64(timeouts, int64(i.PoolTimeouts-p.baseTimeouts), pgOnly)
		if i.Service.Name == model.API {
			ru := int64(0)
			if !p.cache.Unreachable {
				ru = min(redisPoolMax, int64(i.InFlight*0.05+0.5))
			}
			o.ObserveInt64(conns, ru, redisUsed)
			o.ObserveInt64(conns, redisPoolMax-ru, redisIdle)
			o.ObserveInt64(connMax, redisPoolMax, redisOnly)
		}
		return nil
	}, cpu, mem, limit, restarts, conns, connMax, pending, timeouts)
	return err
}

func (p *process) recordRequest(r *model.Request) {
	ctx := context.Background()
	k := reqKey{route: r.Route, status: r.Status, err: r.ErrorType}
	opt := p.reqAttrs[k]
	if opt == nil {
		attrs := []attribute.KeyValue{
			semconv.HTTPRequestMethodKey.String(r.Route.Method),
			semconv.HTTPRoute(r.Route.Path),
			semconv.HTTPResponseStatusCode(r.Status),
			semconv.URLScheme("https"),
		}
		if r.Status >= 500 {
			attrs = append(attrs, semconv.ErrorTypeKey.String(strconv.Itoa(r.Status)))
		}
		opt = metric.WithAttributeSet(attribute.NewSet(attrs...))
		p.reqAttrs[k] = opt
	}
	p.httpDur.Record(ctx, r.Duration, opt)
	if r.LLM != nil {
		p.recordLLM(r.LLM)
	}
	if r.Route.Enqueue != "" && r.Status == r.Route.Status && p.sent != nil {
		p.sent.Add(ctx, 1, p.queueOpt(r.Route.Enqueue, ""))
	}
}

func (p *process) recordLLM(c *model.LLMCall) {
	ctx := context.Background()
	k := llmKey{provider: c.Provider, err: c.ErrorType}
	opt := p.llmAttrs[k]
	if opt == nil {
		attrs := []attribute.KeyValue{
			genAIOperationName.String(c.Operation),
			genAIProviderName.String(c.Provider.Name),
			genAIRequestModel.String(c.Provider.Model),
			semconv.ServerAddress(providerHost(c.Provider.Name)),
		}
		if c.ErrorType != "" {
			attrs = append(attrs, semconv.ErrorTypeKey.String(c.ErrorType))
		} else {
			attrs = append(attrs, genAIResponseModel.String(c.Provider.Model))
		}
		opt = metric.WithAttributeSet(attribute.NewSet(attrs...))
		p.llmAttrs[k] = opt
		base := []attribute.KeyValue{genAIOperationName.String(c.Operation), genAIProviderName.String(c.Provider.Name),
			genAIRequestModel.String(c.Provider.Model), genAIResponseModel.String(c.Provider.Model)}
		p.tokenIn[k] = metric.WithAttributeSet(attribute.NewSet(append(base, genAITokenType.String("input"))...))
		p.tokenOut[k] = metric.WithAttributeSet(attribute.NewSet(append(base, genAITokenType.String("output"))...))
	}
	p.genAIDur.Record(ctx, c.Duration, opt)
	if c.ErrorType == "" {
		p.genAITokens.Record(ctx, float64(c.InputTokens), p.tokenIn[k])
		p.genAITokens.Record(ctx, float64(c.OutputTokens), p.tokenOut[k])
	}
}

func (p *process) queueOpt(queue, errType string) metric.MeasurementOption {
	k := jobKey{queue: queue, err: errType}
	opt := p.jobAttrs[k]
	if opt == nil {
		attrs := []attribute.KeyValue{
			semconv.MessagingSystemKey.String("redis"),
			semconv.MessagingDestinationName(queue),
		}
		if errType != "" {
			attrs = append(attrs, semconv.ErrorTypeKey.String(errType))
		}
		opt = metric.WithAttributeSet(attribute.NewSet(attrs...))
		p.jobAttrs[k] = opt
	}
	return opt
}

func (p *process) recordJob(j *model.Job) {
	if p.jobDur == nil {
		return
	}
	ctx := context.Background()
	p.jobDur.Record(ctx, j.Duration, p.queueOpt(j.Queue.Name, j.ErrorType))
	p.consumed.Add(ctx, 1, p.queueOpt(j.Queue.Name, ""))
	if j.LLM != nil {
		p.recordLLM(j.LLM)
	}
}

func providerHost(name string) string {
	switch name {
	case model.OpenAI:
		return "api.openai.com"
	case model.Anthropic:
		return "api.anthropic.com"
	}
	return name
}
