// Package storeexporter holds the collector exporters that write into an
// aiops storage.Store: "aiops_store" writes to the store of the running
// process (embedded or ClickHouse), "clickhouse" opens a ClickHouse store
// of its own from its configuration (the ingester role).
//
// Metrics go through Prometheus's OTLP translator into the store's
// AppenderV2; logs and spans are converted to storage.LogRecord and
// storage.Span. Queueing and retries come from exporterhelper.
package storeexporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/otlptranslator"
	promconfig "github.com/prometheus/prometheus/config"
	prw "github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/aiops-dev/aiops/collector/internal/obs"
	"github.com/aiops-dev/aiops/collector/internal/queuecount"
	"github.com/aiops-dev/aiops/collector/limits"
	"github.com/aiops-dev/aiops/storage"
)

// Component type names.
const (
	TypeStore      = "aiops_store"
	TypeClickHouse = "clickhouse"
)

// TranslationConfig selects how OTLP metrics become Prometheus series. The
// defaults are Prometheus's own defaults for its OTLP endpoint.
type TranslationConfig struct {
	// Strategy is one of UnderscoreEscapingWithSuffixes (default),
	// UnderscoreEscapingWithoutSuffixes, NoUTF8EscapingWithSuffixes,
	// NoTranslation.
	Strategy string `mapstructure:"strategy" yaml:"strategy"`
	// PromoteResourceAttributes become labels on every series of the
	// resource; the rest stay on target_info.
	PromoteResourceAttributes    []string `mapstructure:"promote_resource_attributes" yaml:"promote_resource_attributes"`
	PromoteAllResourceAttributes bool     `mapstructure:"promote_all_resource_attributes" yaml:"promote_all_resource_attributes"`
	// IgnoreResourceAttributes are not promoted when all others are.
	IgnoreResourceAttributes          []string `mapstructure:"ignore_resource_attributes" yaml:"ignore_resource_attributes"`
	KeepIdentifyingResourceAttributes bool     `mapstructure:"keep_identifying_resource_attributes" yaml:"keep_identifying_resource_attributes"`
	// ConvertHistogramsToNHCB stores classic histograms as native
	// histograms with custom buckets instead of _bucket series.
	ConvertHistogramsToNHCB bool `mapstructure:"convert_histograms_to_nhcb" yaml:"convert_histograms_to_nhcb"`
	PromoteScopeMetadata    bool `mapstructure:"promote_scope_metadata" yaml:"promote_scope_metadata"`
	DisableTargetInfo       bool `mapstructure:"disable_target_info" yaml:"disable_target_info"`
	// LookbackDelta spaces target_info samples (half of it apart); it
	// should match the query engine's lookback delta. Default 5m.
	LookbackDelta time.Duration `mapstructure:"lookback_delta" yaml:"lookback_delta"`
	// CacheSeries bounds the translation cache, in Prometheus series per
	// generation (at most twice as many are held): the translator's
	// output is remembered per OTLP series identity and reused for its
	// later points. 0 means DefaultCacheSeries; negative turns the cache
	// off, so that every point goes through the translator.
	CacheSeries int `mapstructure:"cache_series" yaml:"cache_series"`
}

var strategies = []otlptranslator.TranslationStrategyOption{
	otlptranslator.UnderscoreEscapingWithSuffixes,
	otlptranslator.UnderscoreEscapingWithoutSuffixes,
	otlptranslator.NoUTF8EscapingWithSuffixes,
	otlptranslator.NoTranslation,
}

// Validate checks the configuration; errors name the key relative to the
// translation section, e.g. "strategy: ...".
func (c TranslationConfig) Validate() error {
	if c.Strategy != "" {
		ok := false
		for _, s := range strategies {
			ok = ok || string(s) == c.Strategy
		}
		if !ok {
			return fmt.Errorf("strategy: unknown translation strategy %q, want one of %v", c.Strategy, strategies)
		}
	}
	if c.PromoteAllResourceAttributes && len(c.PromoteResourceAttributes) > 0 {
		return errors.New("promote_resource_attributes: cannot be set together with promote_all_resource_attributes")
	}
	if !c.PromoteAllResourceAttributes && len(c.IgnoreResourceAttributes) > 0 {
		return errors.New("ignore_resource_attributes: only allowed with promote_all_resource_attributes")
	}
	if c.LookbackDelta < 0 {
		return fmt.Errorf("lookback_delta: must be >= 0, got %s", c.LookbackDelta)
	}
	return nil
}

// Settings returns the translator settings.
func (c TranslationConfig) Settings() prw.Settings {
	strategy := otlptranslator.TranslationStrategyOption(c.Strategy)
	if strategy == "" {
		strategy = otlptranslator.UnderscoreEscapingWithSuffixes
	}
	lookback := c.LookbackDelta
	if lookback == 0 {
		lookback = 5 * time.Minute
	}
	return prw.Settings{
		AddMetricSuffixes: strategy.ShouldAddSuffixes(),
		AllowUTF8:         !strategy.ShouldEscape(),
		PromoteResourceAttributes: prw.NewPromoteResourceAttributes(promconfig.OTLPConfig{
			PromoteAllResourceAttributes: c.PromoteAllResourceAttributes,
			PromoteResourceAttributes:    c.PromoteResourceAttributes,
			IgnoreResourceAttributes:     c.IgnoreResourceAttributes,
		}),
		KeepIdentifyingResourceAttributes: c.KeepIdentifyingResourceAttributes,
		ConvertHistogramsToNHCB:           c.ConvertHistogramsToNHCB,
		PromoteScopeMetadata:              c.PromoteScopeMetadata,
		DisableTargetInfo:                 c.DisableTargetInfo,
		LookbackDelta:                     lookback,
		// Prometheus's defaults, kept for the same label names.
		LabelNameUnderscoreSanitization:      true,
		LabelNamePreserveMultipleUnderscores: true,
	}
}

// Config configures the aiops_store exporter.
type Config struct {
	exporterhelper.TimeoutConfig `mapstructure:",squash"`
	Queue                        configoptional.Optional[exporterhelper.QueueBatchConfig] `mapstructure:"sending_queue"`
	Retry                        configretry.BackOffConfig                                `mapstructure:"retry_on_failure"`
	Translation                  TranslationConfig                                        `mapstructure:"translation"`
	// WriteThrough applies to metrics with a sending queue.
	WriteThrough WriteThroughConfig `mapstructure:"write_through"`
	// Limits are applied to every sample written (see
	// MetricsWriter.WithLimits).
	Limits limits.Config `mapstructure:"limits"`
}

// Validate is called by the collector when it loads the configuration.
func (c *Config) Validate() error {
	if err := c.Translation.Validate(); err != nil {
		return fmt.Errorf("translation::%w", err)
	}
	if err := c.WriteThrough.Validate(); err != nil {
		return fmt.Errorf("write_through::%w", err)
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("limits::%w", err)
	}
	return nil
}

// ClickHouseConfig configures the clickhouse exporter: where the store is
// plus everything the aiops_store exporter takes.
type ClickHouseConfig struct {
	Config `mapstructure:",squash"`
	// Addresses are host:port of the native protocol (9000 by default).
	Addresses []string            `mapstructure:"addresses"`
	Database  string              `mapstructure:"database"`
	Username  string              `mapstructure:"username"`
	Password  configopaque.String `mapstructure:"password"`
	// WALDir holds the store's write-ahead log (clickhouse.wal.dir);
	// empty runs the store without one.
	WALDir string `mapstructure:"wal_dir"`
}

// Validate is called by the collector when it loads the configuration.
func (c *ClickHouseConfig) Validate() error {
	if len(c.Addresses) == 0 {
		return errors.New("addresses: must name at least one host:port")
	}
	if c.Database == "" {
		return errors.New("database: must be set")
	}
	return c.Config.Validate()
}

// OpenFunc opens the ClickHouse store a clickhouse exporter writes to.
type OpenFunc func(ctx context.Context, cfg ClickHouseConfig) (storage.Store, error)

// Deps are what the exporters need from the process.
type Deps struct {
	// Store is the process's store, written by aiops_store. It is owned by
	// the caller: exporters never close it.
	Store storage.Store
	// OpenClickHouse opens the store of a clickhouse exporter; nil makes
	// the clickhouse type fail at creation.
	OpenClickHouse OpenFunc
	Metrics        *obs.Metrics
	Logger         *slog.Logger
	// Now is the clock the limits are applied by; nil is time.Now.
	Now func() time.Time
}

func defaultConfig() Config {
	queue := exporterhelper.NewDefaultQueueConfig()
	retry := configretry.NewDefaultBackOffConfig()
	// Stores come back; data waits for them instead of being dropped.
	retry.MaxElapsedTime = 0
	retry.InitialInterval = 500 * time.Millisecond
	retry.MaxInterval = 10 * time.Second
	timeout := exporterhelper.NewDefaultTimeoutConfig()
	timeout.Timeout = 30 * time.Second
	return Config{
		TimeoutConfig: timeout,
		Queue:         configoptional.Default(queue),
		Retry:         retry,
		WriteThrough:  WriteThroughConfig{SlowWrite: time.Second},
		Limits:        limits.DefaultConfig(),
	}
}

// NewFactory returns the factory of the aiops_store exporter.
func NewFactory(deps Deps) exporter.Factory {
	f := &factory{deps: deps}
	return exporter.NewFactory(component.MustNewType(TypeStore),
		func() component.Config { c := defaultConfig(); return &c },
		exporter.WithMetrics(f.createMetrics, component.StabilityLevelBeta),
		exporter.WithLogs(f.createLogs, component.StabilityLevelBeta),
		exporter.WithTraces(f.createTraces, component.StabilityLevelBeta),
	)
}

// NewClickHouseFactory returns the factory of the clickhouse exporter.
func NewClickHouseFactory(deps Deps) exporter.Factory {
	f := &factory{deps: deps, clickhouse: true, shared: map[component.ID]*sharedStore{}}
	return exporter.NewFactory(component.MustNewType(TypeClickHouse),
		func() component.Config { return &ClickHouseConfig{Config: defaultConfig(), Database: "aiops"} },
		exporter.WithMetrics(f.createMetrics, component.StabilityLevelBeta),
		exporter.WithLogs(f.createLogs, component.StabilityLevelBeta),
		exporter.WithTraces(f.createTraces, component.StabilityLevelBeta),
	)
}

type factory struct {
	deps       Deps
	clickhouse bool

	// One ClickHouse connection per exporter id, shared by its metrics,
	// logs and traces instances.
	mu     sync.Mutex
	shared map[component.ID]*sharedStore
}

// sharedStore opens a store on first use and closes it when the last
// user shuts down. Opening lazily keeps the ingester running (and Kafka
// uncommitted) while ClickHouse is down at start.
type sharedStore struct {
	open  OpenFunc
	cfg   ClickHouseConfig
	refs  int
	mu    sync.Mutex
	store storage.Store
}

func (s *sharedStore) get(ctx context.Context) (storage.Store, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store != nil {
		return s.store, nil
	}
	st, err := s.open(ctx, s.cfg)
	if err != nil {
		return nil, errors.Join(storage.ErrUnavailable, fmt.Errorf("open clickhouse store at %v: %w", s.cfg.Addresses, err))
	}
	s.store = st
	return st, nil
}

func (f *factory) release(id component.ID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.shared[id]
	if s == nil {
		return nil
	}
	s.refs--
	if s.refs > 0 {
		return nil
	}
	delete(f.shared, id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store != nil {
		return s.store.Close()
	}
	return nil
}

func (f *factory) newExporter(set exporter.Settings, cfg component.Config) (*storeExporter, *Config, error) {
	if f.deps.Metrics == nil {
		f.deps.Metrics = obs.NewUnregistered()
	}
	logger := f.deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	now := f.deps.Now
	if now == nil {
		now = time.Now
	}
	e := &storeExporter{metrics: f.deps.Metrics, logger: logger, name: set.ID.String(), now: now}
	var common *Config
	if f.clickhouse {
		c := cfg.(*ClickHouseConfig)
		common = &c.Config
		if f.deps.OpenClickHouse == nil {
			return nil, nil, errors.New("clickhouse exporter: this build cannot open ClickHouse stores")
		}
		f.mu.Lock()
		s := f.shared[set.ID]
		if s == nil {
			s = &sharedStore{open: f.deps.OpenClickHouse, cfg: *c}
			f.shared[set.ID] = s
		}
		s.refs++
		f.mu.Unlock()
		e.getStore = s.get
		e.release = func() error { return f.release(set.ID) }
	} else {
		common = cfg.(*Config)
		if f.deps.Store == nil {
			return nil, nil, errors.New("aiops_store exporter: the process has no store")
		}
		st := f.deps.Store
		e.getStore = func(context.Context) (storage.Store, error) { return st, nil }
		e.release = func() error { return nil }
	}
	e.translation, e.limits = common.Translation, common.Limits
	return e, common, nil
}

func (f *factory) options(e *storeExporter, c *Config) []exporterhelper.Option {
	return []exporterhelper.Option{
		exporterhelper.WithTimeout(c.TimeoutConfig),
		exporterhelper.WithQueue(c.Queue),
		exporterhelper.WithRetry(c.Retry),
		exporterhelper.WithCapabilities(consumer.Capabilities{MutatesData: false}),
		exporterhelper.WithShutdown(func(context.Context) error { return e.release() }),
	}
}

func (f *factory) createMetrics(ctx context.Context, set exporter.Settings, cfg component.Config) (exporter.Metrics, error) {
	e, c, err := f.newExporter(set, cfg)
	if err != nil {
		return nil, err
	}
	if !c.WriteThrough.Enabled || !c.Queue.HasValue() {
		exp, err := exporterhelper.NewMetrics(ctx, set, cfg, e.pushMetrics, f.options(e, c)...)
		if err != nil || !c.Queue.HasValue() {
			return exp, err
		}
		return queuecount.Metrics(exp, e.metrics), nil
	}
	wt := newWriteThroughMetrics(e, c.WriteThrough, c.TimeoutConfig.Timeout)
	queued, err := exporterhelper.NewMetrics(ctx, set, cfg, func(ctx context.Context, md pmetric.Metrics) error {
		err := e.pushMetrics(ctx, md)
		if err == nil || consumererror.IsPermanent(err) {
			wt.written(int64(md.DataPointCount()))
		}
		return err
	}, f.options(e, c)...)
	if err != nil {
		return nil, err
	}
	wt.Metrics = queued
	return wt, nil
}

func (f *factory) createLogs(ctx context.Context, set exporter.Settings, cfg component.Config) (exporter.Logs, error) {
	e, c, err := f.newExporter(set, cfg)
	if err != nil {
		return nil, err
	}
	exp, err := exporterhelper.NewLogs(ctx, set, cfg, e.pushLogs, f.options(e, c)...)
	if err != nil || !c.Queue.HasValue() {
		return exp, err
	}
	return queuecount.Logs(exp, e.metrics), nil
}

func (f *factory) createTraces(ctx context.Context, set exporter.Settings, cfg component.Config) (exporter.Traces, error) {
	e, c, err := f.newExporter(set, cfg)
	if err != nil {
		return nil, err
	}
	exp, err := exporterhelper.NewTraces(ctx, set, cfg, e.pushTraces, f.options(e, c)...)
	if err != nil || !c.Queue.HasValue() {
		return exp, err
	}
	return queuecount.Traces(exp, e.metrics), nil
}

type storeExporter struct {
	getStore    func(context.Context) (storage.Store, error)
	release     func() error
	translation TranslationConfig
	limits      limits.Config
	now         func() time.Time
	metrics     *obs.Metrics
	logger      *slog.Logger
	name        string

	writerOnce sync.Once
	writer     *MetricsWriter
}

func (e *storeExporter) pushMetrics(ctx context.Context, md pmetric.Metrics) error {
	return e.writeMetrics(ctx, md)
}

// writeMetrics writes mds in one store transaction.
func (e *storeExporter) writeMetrics(ctx context.Context, mds ...pmetric.Metrics) error {
	st, err := e.getStore(ctx)
	if err != nil {
		return e.failed(obs.SignalMetrics, err)
	}
	e.writerOnce.Do(func() {
		e.writer = NewMetricsWriter(st, e.translation, e.metrics, e.logger, e.name, WithLimits(e.limits, e.now))
	})
	start := time.Now()
	n := 0
	for _, md := range mds {
		n += md.DataPointCount()
	}
	if err := e.writer.WriteMetrics(ctx, mds...); err != nil {
		return e.failed(obs.SignalMetrics, err)
	}
	e.done(obs.SignalMetrics, n, start)
	return nil
}

func (e *storeExporter) pushLogs(ctx context.Context, ld plog.Logs) error {
	st, err := e.getStore(ctx)
	if err != nil {
		return e.failed(obs.SignalLogs, err)
	}
	start := time.Now()
	records := LogRecords(ld)
	if err := st.AppendLogs(ctx, records); err != nil {
		return e.failed(obs.SignalLogs, fmt.Errorf("append %d log records: %w", len(records), err))
	}
	e.done(obs.SignalLogs, len(records), start)
	return nil
}

func (e *storeExporter) pushTraces(ctx context.Context, td ptrace.Traces) error {
	st, err := e.getStore(ctx)
	if err != nil {
		return e.failed(obs.SignalSpans, err)
	}
	start := time.Now()
	spans := Spans(td)
	if err := st.AppendSpans(ctx, spans); err != nil {
		return e.failed(obs.SignalSpans, fmt.Errorf("append %d spans: %w", len(spans), err))
	}
	e.done(obs.SignalSpans, len(spans), start)
	return nil
}

func (e *storeExporter) done(signal string, n int, start time.Time) {
	e.metrics.Stored.WithLabelValues(signal).Add(float64(n))
	e.metrics.ExportDuration.WithLabelValues(signal, e.name).Observe(time.Since(start).Seconds())
}

// failed counts a failed attempt. Errors stay retryable unless they are
// permanent already: a store that is down or slow must make data wait in
// the queue, not vanish.
func (e *storeExporter) failed(signal string, err error) error {
	e.metrics.ExportFailures.WithLabelValues(signal, e.name).Inc()
	if consumererror.IsPermanent(err) {
		e.logger.Error("store refused data for good", "exporter", e.name, "signal", signal, "err", err)
	}
	return err
}
