// Package collector runs the OpenTelemetry Collector inside the aiops
// binary. New builds a collector configuration for the role (all-in-one,
// collector, ingester) from our simplified Config, with the collector
// framework's own components (OTLP receiver, memory limiter, exporterhelper
// queues with the file_storage persistent queue, delta-to-cumulative) and
// ours (the aiops_store and clickhouse exporters, the Kafka exporter and
// receiver, the aiops_ingress processor). See docs/COLLECTOR.md.
package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage"
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/deltatocumulativeprocessor"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/batchprocessor"
	"go.opentelemetry.io/collector/processor/memorylimiterprocessor"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/aiops-dev/aiops/collector/internal/obs"
	"github.com/aiops-dev/aiops/collector/internal/queuestorage"
	"github.com/aiops-dev/aiops/collector/kafkaexporter"
	"github.com/aiops-dev/aiops/collector/kafkareceiver"
	"github.com/aiops-dev/aiops/collector/otlpserver"
	"github.com/aiops-dev/aiops/collector/storeexporter"
	"github.com/aiops-dev/aiops/collector/tokenauth"
	"github.com/aiops-dev/aiops/storage"
)

// Deps are what the collector takes from the process.
type Deps struct {
	// Store is the process's store, written by the all-in-one role (and
	// by any role whose exporter is "store"). The collector never closes it.
	Store  storage.Store
	Logger *slog.Logger
	// Registerer receives the aiops_collector_* self-metrics and the
	// collector framework's otelcol_* metrics. One collector per
	// registerer.
	Registerer prometheus.Registerer
	// OpenClickHouse opens the store of the clickhouse exporter. Nil uses
	// storage/clickhouse.
	OpenClickHouse storeexporter.OpenFunc
	// Authenticator checks the bearer tokens of OTLP clients when
	// collector.otlp.auth is token.
	Authenticator tokenauth.Authenticator
	// Now is the clock the limits and readiness go by; nil is time.Now.
	Now func() time.Time
}

// Collector is a configured collector, ready to Run.
type Collector struct {
	cfg     Config
	deps    Deps
	metrics *obs.Metrics
	reader  *sdkmetric.ManualReader
	col     *otelcol.Collector
	started chan struct{}
	health  health
}

// New validates cfg and prepares a collector; nothing listens until Run.
func New(cfg Config, deps Deps) (*Collector, error) {
	if cfg.Role == "" {
		cfg.Role = RoleAllInOne
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Registerer == nil {
		deps.Registerer = prometheus.NewRegistry()
	}
	if deps.OpenClickHouse == nil {
		deps.OpenClickHouse = openClickHouse(deps.Logger, deps.Registerer)
	}
	if cfg.ConfigFile == "" && cfg.exporter() == ExporterStore && deps.Store == nil {
		return nil, errors.New("collector.exporter: \"store\" needs the process's store, and there is none")
	}
	if cfg.ConfigFile == "" && cfg.Role != RoleIngester && cfg.OTLP.Auth == AuthToken && deps.Authenticator == nil {
		return nil, errors.New("collector.otlp.auth: \"token\" needs the process's credentials, and there are none")
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	c := &Collector{cfg: cfg, deps: deps, reader: sdkmetric.NewManualReader(), started: make(chan struct{})}

	uris := []string{"file:" + cfg.ConfigFile}
	providers := []confmap.ProviderFactory{fileprovider.NewFactory(), envprovider.NewFactory(), yamlprovider.NewFactory()}
	defaultScheme := "env"
	if cfg.ConfigFile == "" {
		conf, err := c.otelConfig()
		if err != nil {
			return nil, err
		}
		uris = []string{mapScheme + ":generated"}
		providers = []confmap.ProviderFactory{newMapProvider(conf)}
		defaultScheme = ""
	}
	col, err := otelcol.NewCollector(otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{Command: "aiops", Description: "aiops collector", Version: "aiops"},
		Factories: c.factories,
		// The process handles signals; the collector stops when Run's
		// context ends.
		DisableGracefulShutdown: true,
		// grpclog's logger is process-global; leave it alone.
		SkipSettingGRPCLogger: true,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{ResolverSettings: confmap.ResolverSettings{
			URIs:              uris,
			ProviderFactories: providers,
			DefaultScheme:     defaultScheme,
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("collector: %w", err)
	}
	c.col = col
	// Registered last, so that a failed New leaves the registerer as it
	// was; the factories that use the metrics run only in Run.
	if c.metrics, err = obs.New(deps.Registerer); err != nil {
		return nil, fmt.Errorf("collector: register metrics: %w", err)
	}
	if err := deps.Registerer.Register(newQueueCollector(c.reader, c.metrics)); err != nil {
		return nil, fmt.Errorf("collector: register metrics: %w", err)
	}
	return c, nil
}

// Run starts the receivers and pipelines and blocks until ctx is done,
// then shuts down gracefully: receivers stop taking data, what is in
// flight is written, and what remains queued stays in the persistent
// queue for the next start. It returns an error if the collector cannot
// start (a port in use, an invalid raw configuration, ...).
func (c *Collector) Run(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- c.col.Run(ctx) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("collector: %w", err)
			}
			return nil
		case <-tick.C:
			if c.col.GetState() == otelcol.StateRunning {
				select {
				case <-c.started:
				default:
					close(c.started)
					c.deps.Logger.Info("collector running", "role", c.cfg.Role, "exporter", c.cfg.exporter())
				}
				tick.Stop()
			}
		}
	}
}

// Started is closed once the collector's receivers are listening.
func (c *Collector) Started() <-chan struct{} { return c.started }

// Ready reports whether the collector takes data: it has started, and
// the memory limiter has not refused data lately. (While the memory
// limiter refuses, every client is refused, whatever it sends; see
// docs/COLLECTOR.md.)
func (c *Collector) Ready(context.Context) error {
	select {
	case <-c.started:
	default:
		return errors.New("collector not started")
	}
	if t := c.health.memoryRefusedAt.Load(); t != 0 {
		// The limiter decides every check_interval; a refusal within
		// the last few intervals means it is still refusing.
		window := max(3*c.cfg.MemoryLimiter.CheckInterval, 3*time.Second)
		if ago := c.deps.Now().Sub(time.Unix(0, t)); ago < window {
			return fmt.Errorf("collector: the memory limiter is refusing data (last refusal %s ago): memory use is above collector.memory_limiter's limit", ago.Round(time.Millisecond))
		}
	}
	return nil
}

func (c *Collector) factories() (otelcol.Factories, error) {
	logger := c.deps.Logger.With("component", "collector")
	receivers, err := otelcol.MakeFactoryMap[receiver.Factory](
		otlpserver.NewFactory(otlpserver.Deps{Metrics: c.metrics, Logger: logger}),
		// The framework's OTLP receiver, for raw configurations; it
		// reports no partial success and has no connection bound.
		otlpreceiver.NewFactory(),
		kafkareceiver.NewFactory(kafkareceiver.Deps{Metrics: c.metrics, Logger: logger}),
	)
	if err != nil {
		return otelcol.Factories{}, err
	}
	processors, err := otelcol.MakeFactoryMap[processor.Factory](
		memorylimiterprocessor.NewFactory(),
		// Not in the generated pipelines (see docs/COLLECTOR.md), but raw
		// configurations may use it.
		batchprocessor.NewFactory(),
		deltatocumulativeprocessor.NewFactory(),
		newIngressFactory(ingressDeps{metrics: c.metrics, logger: logger, now: c.deps.Now, health: &c.health}),
	)
	if err != nil {
		return otelcol.Factories{}, err
	}
	storeDeps := storeexporter.Deps{Store: c.deps.Store, OpenClickHouse: c.deps.OpenClickHouse, Metrics: c.metrics, Logger: logger, Now: c.deps.Now}
	exporters, err := otelcol.MakeFactoryMap[exporter.Factory](
		storeexporter.NewFactory(storeDeps),
		storeexporter.NewClickHouseFactory(storeDeps),
		kafkaexporter.NewFactory(kafkaexporter.Deps{Metrics: c.metrics, Logger: logger}),
	)
	if err != nil {
		return otelcol.Factories{}, err
	}
	extensions, err := otelcol.MakeFactoryMap[extension.Factory](
		// The queues' storage (file_storage with a fix, see queuestorage);
		// file_storage itself stays for configurations that name it.
		queuestorage.NewFactory(logger),
		filestorage.NewFactory(),
		tokenauth.NewFactory(tokenauth.Deps{Auth: c.deps.Authenticator, Metrics: c.metrics, Logger: logger, Now: c.deps.Now}),
	)
	if err != nil {
		return otelcol.Factories{}, err
	}
	return otelcol.Factories{
		Receivers:  receivers,
		Processors: processors,
		Exporters:  exporters,
		Extensions: extensions,
		Telemetry:  newTelemetryFactory(logger, c.deps.Registerer, c.reader),
	}, nil
}

// writeThroughConfig is the exporter's write_through section (see
// QueueConfig.WriteThrough). A store whose every commit is an insert
// (ClickHouse without its write-ahead log) gets group commit, in batches
// the size the queue would have made.
func (c *Collector) writeThroughConfig(group bool) storeexporter.WriteThroughConfig {
	q, b := c.cfg.Queue, c.cfg.Batch
	return storeexporter.WriteThroughConfig{
		Enabled:       c.cfg.Role != RoleIngester && q.WriteThrough != WriteThroughOff,
		SlowWrite:     q.SlowWrite,
		Group:         group,
		GroupMinItems: int(b.MinSize),
		GroupInterval: b.FlushTimeout,
	}
}

// largeCommitter is a store whose every commit is an insert of its own
// (ClickHouse without its write-ahead log), and which therefore wants
// many small writes gathered into one commit.
type largeCommitter interface {
	WantsLargeCommits() bool
}

func wantsLargeCommits(s storage.Store) bool {
	lc, ok := s.(largeCommitter)
	return ok && lc.WantsLargeCommits()
}

// clickHouseWALDir is where the clickhouse exporter's store keeps its
// write-ahead log: beside the queue, which holds the rest of what the
// collector has acknowledged. Without a persistent queue there is none,
// and writes are grouped instead.
func (c *Collector) clickHouseWALDir() string {
	if c.cfg.Queue.Dir == "" {
		return ""
	}
	return filepath.Join(c.cfg.Queue.Dir, "clickhouse-wal")
}

// mapScheme is the confmap scheme of the generated configuration.
const mapScheme = "aiops"

// mapProvider hands the generated configuration to the collector's
// config resolver.
type mapProvider struct{ conf map[string]any }

func newMapProvider(conf map[string]any) confmap.ProviderFactory {
	return confmap.NewProviderFactory(func(confmap.ProviderSettings) confmap.Provider {
		return &mapProvider{conf: conf}
	})
}

func (p *mapProvider) Retrieve(context.Context, string, confmap.WatcherFunc) (*confmap.Retrieved, error) {
	return confmap.NewRetrieved(p.conf)
}

func (*mapProvider) Scheme() string                 { return mapScheme }
func (*mapProvider) Shutdown(context.Context) error { return nil }
