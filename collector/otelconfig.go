package collector

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage"
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/deltatocumulativeprocessor"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configauth"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/config/configtls"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/xconfmap"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/processor/memorylimiterprocessor"

	"github.com/aiops-dev/aiops/collector/internal/queuestorage"
	"github.com/aiops-dev/aiops/collector/kafkaexporter"
	"github.com/aiops-dev/aiops/collector/kafkareceiver"
	"github.com/aiops-dev/aiops/collector/otlpserver"
	"github.com/aiops-dev/aiops/collector/storeexporter"
	"github.com/aiops-dev/aiops/collector/tokenauth"
)

// otelConfig builds the collector configuration for the role. Each
// component's section is its typed configuration, starting from its
// factory's defaults, marshalled by confmap: a renamed or retyped field
// is a compile error here rather than a key the collector refuses, or a
// default it silently keeps, at start.
func (c *Collector) otelConfig() (map[string]any, error) {
	cfg := c.cfg
	g := generated{
		receivers:  map[string]any{},
		processors: map[string]any{},
		exporters:  map[string]any{},
		extensions: map[string]any{},
	}
	var (
		recv  string
		procs []string
	)

	switch cfg.Role {
	case RoleIngester:
		recv = kafkareceiver.Type
		r := kafkareceiver.DefaultConfig()
		r.Brokers = cfg.Kafka.Brokers
		r.Topics = cfg.Kafka.Topics
		r.GroupID = cfg.Kafka.GroupID
		r.SessionTimeout = cfg.Kafka.SessionTimeout
		// The writer's batch size is the ingester's batch size.
		r.MaxBatchItems = int(cfg.Batch.MaxSize)
		r.MaxBatchWait = cfg.Batch.FlushTimeout
		r.MaxFetchBytes = 4*cfg.Kafka.MaxMessageBytes + (1 << 20)
		g.add(g.receivers, recv, r)
	default:
		f := otlpserver.NewFactory(otlpserver.Deps{})
		recv = f.Type().String()
		r := f.CreateDefaultConfig().(*otlpserver.Config)
		if cfg.OTLP.GRPCEndpoint != "off" {
			r.GRPC.NetAddr.Endpoint = cfg.OTLP.GRPCEndpoint
		}
		if cfg.OTLP.HTTPEndpoint != "off" {
			r.HTTP.NetAddr.Endpoint = cfg.OTLP.HTTPEndpoint
		}
		r.GRPC.MaxRecvMsgSizeMiB = cfg.OTLP.MaxRequestMiB
		r.HTTP.MaxRequestBodySize = int64(cfg.OTLP.MaxRequestMiB) << 20
		r.MaxConnections, r.IdleTimeout = cfg.OTLP.MaxConnections, cfg.OTLP.IdleTimeout
		if t := cfg.OTLP.TLS; t.Enabled() {
			tls := configtls.NewDefaultServerConfig()
			tls.CertFile, tls.KeyFile, tls.ClientCAFile = t.CertFile, t.KeyFile, t.ClientCAFile
			tls.MinVersion = t.MinVersion
			if tls.MinVersion == "" {
				tls.MinVersion = "1.2"
			}
			r.GRPC.TLS, r.HTTP.TLS = configoptional.Some(tls), configoptional.Some(tls)
		}
		if cfg.OTLP.Auth == AuthToken {
			id := component.MustNewID(tokenauth.Type)
			r.GRPC.Auth = configoptional.Some(configauth.Config{AuthenticatorID: id})
			r.HTTP.Auth = configoptional.Some(confighttp.AuthConfig{Config: configauth.Config{AuthenticatorID: id}})
			g.add(g.extensions, id.String(), &tokenauth.Config{})
		}
		g.add(g.receivers, recv, r)

		in := &ingressConfig{RetryAfter: cfg.RetryAfter, Limits: cfg.Limits}
		g.add(g.processors, ingressType, in)

		mlf := memorylimiterprocessor.NewFactory()
		ml := mlf.CreateDefaultConfig().(*memorylimiterprocessor.Config)
		ml.CheckInterval = cfg.MemoryLimiter.CheckInterval
		if cfg.MemoryLimiter.LimitMiB > 0 {
			ml.MemoryLimitMiB = cfg.MemoryLimiter.LimitMiB
			ml.MemorySpikeLimitMiB = cfg.MemoryLimiter.SpikeLimitMiB
		} else {
			ml.MemoryLimitPercentage = cfg.MemoryLimiter.LimitPercentage
			ml.MemorySpikePercentage = cfg.MemoryLimiter.SpikeLimitPercentage
		}
		g.add(g.processors, mlf.Type().String(), ml)
		procs = []string{ingressType, mlf.Type().String()}
	}

	// Writers. Behind OTLP receivers the data waits in a queue (persistent
	// when queue.dir is set) and is batched as it leaves it; behind Kafka
	// there is no queue: the write is synchronous and Kafka is the buffer.
	queue := configoptional.None[exporterhelper.QueueBatchConfig]()
	if cfg.Role != RoleIngester {
		q := exporterhelper.NewDefaultQueueConfig()
		q.Sizer = exporterhelper.RequestSizerTypeItems
		q.QueueSize = cfg.Queue.MaxItems
		q.NumConsumers = cfg.Queue.Consumers
		q.BlockOnOverflow = false
		b := exporterhelper.NewDefaultBatchConfig()
		b.Sizer = exporterhelper.RequestSizerTypeItems
		b.FlushTimeout = cfg.Batch.FlushTimeout
		b.MinSize = cfg.Batch.MinSize
		b.MaxSize = cfg.Batch.MaxSize
		q.Batch = configoptional.Some(b)
		if cfg.Queue.Dir != "" {
			sf := queuestorage.NewFactory(nil)
			id := component.NewID(sf.Type())
			q.StorageID = &id
			fs := sf.CreateDefaultConfig().(*filestorage.Config)
			fs.Directory = cfg.Queue.Dir
			fs.CreateDirectory = true
			fs.FSync = cfg.Queue.FSync
			fs.Timeout = 10 * time.Second
			fs.Compaction.Directory = filepath.Join(cfg.Queue.Dir, "compaction")
			fs.Compaction.OnStart = true
			fs.Compaction.OnRebound = true
			g.add(g.extensions, id.String(), fs)
		}
		queue = configoptional.Some(q)
	}
	retry := configretry.NewDefaultBackOffConfig()
	retry.Enabled = true
	retry.InitialInterval = 500 * time.Millisecond
	retry.MaxInterval = 10 * time.Second
	// Never give up: stores and brokers come back, data waits.
	retry.MaxElapsedTime = 0

	var exp string
	switch cfg.exporter() {
	case ExporterKafka:
		exp = kafkaexporter.Type
		e := kafkaexporter.DefaultConfig()
		e.Brokers = cfg.Kafka.Brokers
		e.Topics = cfg.Kafka.Topics
		e.MaxMessageBytes = cfg.Kafka.MaxMessageBytes
		e.Compression = cfg.Kafka.Compression
		e.Queue, e.Retry = queue, retry
		g.add(g.exporters, exp, e)
	case ExporterClickHouse:
		exp = storeexporter.TypeClickHouse
		e := storeexporter.NewClickHouseFactory(storeexporter.Deps{}).CreateDefaultConfig().(*storeexporter.ClickHouseConfig)
		e.Addresses = cfg.ClickHouse.Addresses
		e.Database = cfg.ClickHouse.Database
		e.Username = cfg.ClickHouse.Username
		e.Password = configopaque.String(cfg.ClickHouse.Password)
		e.Translation, e.Limits = cfg.Translation, cfg.Limits
		e.WALDir = c.clickHouseWALDir()
		e.WriteThrough = c.writeThroughConfig(e.WALDir == "")
		e.Queue, e.Retry = queue, retry
		g.add(g.exporters, exp, e)
	default:
		exp = storeexporter.TypeStore
		e := storeexporter.NewFactory(storeexporter.Deps{}).CreateDefaultConfig().(*storeexporter.Config)
		e.Translation, e.Limits = cfg.Translation, cfg.Limits
		e.WriteThrough = c.writeThroughConfig(wantsLargeCommits(c.deps.Store))
		e.Queue, e.Retry = queue, retry
		g.add(g.exporters, exp, e)
	}
	// What confmap cannot marshal: a queue that is switched off (None
	// marshals as nothing, which the exporter reads as its default, on),
	// and sizers (their MarshalText has a pointer receiver, so they
	// marshal as nothing and read back as the default).
	if q := queue.Get(); q == nil {
		g.set(g.exporters, exp, "sending_queue", map[string]any{"enabled": false})
	} else {
		g.set(g.exporters, exp, "sending_queue::sizer", q.Sizer.String())
		if b := q.Batch.Get(); b != nil {
			g.set(g.exporters, exp, "sending_queue::batch::sizer", b.Sizer.String())
		}
	}

	metricsProcs := procs
	if exp != kafkaexporter.Type {
		// Prometheus stores cumulative series; deltas are summed up
		// where the series ends up. Collectors pass deltas through to
		// Kafka, where the partition key keeps each stream on one
		// ingester, which converts them.
		df := deltatocumulativeprocessor.NewFactory()
		d := df.CreateDefaultConfig().(*deltatocumulativeprocessor.Config)
		d.MaxStale = cfg.DeltaToCumulative.MaxStale
		if cfg.DeltaToCumulative.MaxStreams > 0 {
			d.MaxStreams = cfg.DeltaToCumulative.MaxStreams
		}
		g.add(g.processors, df.Type().String(), d)
		metricsProcs = append(append([]string{}, procs...), df.Type().String())
	}
	if g.err != nil {
		return nil, fmt.Errorf("collector: generate configuration: %w", g.err)
	}

	pipeline := func(ps []string) map[string]any {
		return map[string]any{"receivers": []string{recv}, "processors": ps, "exporters": []string{exp}}
	}
	service := map[string]any{
		"pipelines": map[string]any{
			"metrics": pipeline(metricsProcs),
			"logs":    pipeline(procs),
			"traces":  pipeline(procs),
		},
	}
	conf := map[string]any{
		"receivers":  g.receivers,
		"processors": g.processors,
		"exporters":  g.exporters,
		"service":    service,
	}
	if len(g.extensions) > 0 {
		var ids []string
		for id := range g.extensions {
			ids = append(ids, id)
		}
		service["extensions"] = ids
		conf["extensions"] = g.extensions
	}
	return conf, nil
}

// generated collects the sections of a generated configuration and the
// first error marshalling one.
type generated struct {
	receivers, processors, exporters, extensions map[string]any
	err                                          error
}

// add marshals cfg into kind[id], leaving out the keys drop names
// (confmap paths, "a::b").
func (g *generated) add(kind map[string]any, id string, cfg component.Config, drop ...string) {
	conf := confmap.New()
	// Unredacted: opaque strings (the ClickHouse password) must reach the
	// component, not "[REDACTED]".
	if err := conf.Marshal(cfg, xconfmap.WithUnredacted()); err != nil {
		if g.err == nil {
			g.err = fmt.Errorf("%s: %w", id, err)
		}
		return
	}
	for _, k := range drop {
		conf.Delete(k)
	}
	kind[id] = conf.ToStringMap()
}

// set sets path ("a::b") of the section kind[id] to v, for what confmap
// cannot marshal from a typed configuration.
func (g *generated) set(kind map[string]any, id, path string, v any) {
	m, ok := kind[id].(map[string]any)
	if !ok {
		return
	}
	keys := strings.Split(path, confmap.KeyDelimiter)
	for _, k := range keys[:len(keys)-1] {
		sub, ok := m[k].(map[string]any)
		if !ok {
			sub = map[string]any{}
			m[k] = sub
		}
		m = sub
	}
	m[keys[len(keys)-1]] = v
}
