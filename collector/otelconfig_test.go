package collector

import (
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage"
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/deltatocumulativeprocessor"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/config/configtls"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/processor/memorylimiterprocessor"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/aiops-dev/aiops/collector/internal/queuestorage"
	"github.com/aiops-dev/aiops/collector/kafkaexporter"
	"github.com/aiops-dev/aiops/collector/kafkareceiver"
	"github.com/aiops-dev/aiops/collector/otlpserver"
	"github.com/aiops-dev/aiops/collector/storeexporter"
	"github.com/aiops-dev/aiops/collector/tokenauth"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/storage"
)

// generatedVariants are collector configurations covering every branch of
// otelConfig.
func generatedVariants() map[string]struct {
	cfg   Config
	store storage.Store
} {
	type variant = struct {
		cfg   Config
		store storage.Store
	}
	out := map[string]variant{}

	c := DefaultConfig()
	c.Queue.Dir = "/var/lib/aiops/queue"
	out["all-in-one, persistent queue"] = variant{cfg: c}

	c = DefaultConfig()
	c.OTLP.GRPCEndpoint = "off"
	c.OTLP.MaxRequestMiB = 4
	c.MemoryLimiter = MemoryLimiterConfig{CheckInterval: 2 * time.Second, LimitMiB: 900, SpikeLimitMiB: 100}
	c.Queue.WriteThrough = WriteThroughOff
	c.Queue.FSync = true
	c.Queue.Dir = "/q"
	c.RetryAfter = 7 * time.Second
	out["all-in-one, HTTP only, MiB memory limits, fsync"] = variant{cfg: c}

	c = DefaultConfig()
	c.OTLP.HTTPEndpoint = "off"
	c.DeltaToCumulative = DeltaToCumulativeConfig{MaxStale: time.Minute, MaxStreams: 5000}
	c.Translation = storeexporter.TranslationConfig{
		Strategy:                     "NoUTF8EscapingWithSuffixes",
		PromoteAllResourceAttributes: true,
		IgnoreResourceAttributes:     []string{"host.id"},
		ConvertHistogramsToNHCB:      true,
		LookbackDelta:                3 * time.Minute,
		CacheSeries:                  -1,
	}
	c.Batch = BatchConfig{FlushTimeout: time.Second, MinSize: 100, MaxSize: 500}
	out["all-in-one on ClickHouse without its write-ahead log, gRPC only, in-memory queue"] = variant{cfg: c, store: largeCommitStore{}}

	c = DefaultConfig()
	c.OTLP = OTLPConfig{
		GRPCEndpoint: ":4317", HTTPEndpoint: "[::]:4318", MaxRequestMiB: 8, Auth: AuthToken,
		TLS:            OTLPTLSConfig{CertFile: "/tls/server.crt", KeyFile: "/tls/server.key", ClientCAFile: "/tls/ca.crt", MinVersion: "1.3"},
		MaxConnections: 10, IdleTimeout: time.Minute,
	}
	c.Limits.MaxFuture, c.Limits.LabelLimit, c.Limits.MaxSeriesPerTenant = time.Minute, 30, 5000
	out["all-in-one on every interface, token auth, mutual TLS, own limits"] = variant{cfg: c}

	c = DefaultConfig()
	c.Role = RoleCollector
	c.Kafka.Brokers = []string{"k1:9092", "k2:9092"}
	c.Kafka.Topics.Metrics = "m"
	c.Kafka.Compression = "zstd"
	c.Kafka.MaxMessageBytes = 2_000_000
	c.Queue.Dir = "/q"
	out["collector"] = variant{cfg: c}

	c = DefaultConfig()
	c.Role = RoleIngester
	c.Exporter = ExporterClickHouse
	c.Kafka.Brokers = []string{"k1:9092"}
	c.Kafka.GroupID = "g"
	c.Kafka.SessionTimeout = 12 * time.Second
	c.ClickHouse = ClickHouseConfig{Addresses: []string{"ch1:9000", "ch2:9000"}, Database: "db", Username: "u", Password: "s3cret"}
	c.Translation.PromoteResourceAttributes = []string{"service.namespace"}
	out["ingester into its own ClickHouse"] = variant{cfg: c}

	c = DefaultConfig()
	c.Role = RoleIngester
	c.Kafka.Brokers = []string{"k1:9092"}
	out["ingester into the process's store"] = variant{cfg: c}
	return out
}

// TestGeneratedConfig reads every section of the generated configuration
// into its factory's configuration, as the collector does, and checks
// that each component gets what the aiops configuration says. (The
// generated sections were shown equivalent to the hand-typed maps they
// replaced, variant by variant, in the commit that introduced them.)
func TestGeneratedConfig(t *testing.T) {
	for name, v := range generatedVariants() {
		t.Run(name, func(t *testing.T) {
			c := &Collector{cfg: v.cfg, deps: Deps{Store: v.store, Logger: testutil.Discard(), Registerer: prometheus.NewRegistry()}, reader: sdkmetric.NewManualReader()}
			factories, err := c.factories()
			if err != nil {
				t.Fatal(err)
			}
			conf, err := c.otelConfig()
			if err != nil {
				t.Fatal(err)
			}
			section := func(kind, id string) component.Config {
				t.Helper()
				sections, _ := conf[kind].(map[string]any)
				raw, ok := sections[id]
				if !ok {
					t.Fatalf("no %s %s in %v", kind, id, keys(sections))
				}
				var f component.Factory
				typ := component.MustNewType(id)
				switch kind {
				case "receivers":
					f = factories.Receivers[typ]
				case "processors":
					f = factories.Processors[typ]
				case "exporters":
					f = factories.Exporters[typ]
				case "extensions":
					f = factories.Extensions[typ]
				}
				if f == nil {
					t.Fatalf("no factory for %s %s", kind, id)
				}
				cfg, err := unmarshalSection(f, raw)
				if err != nil {
					t.Fatalf("%s %s: %v", kind, id, err)
				}
				return cfg
			}
			checkGenerated(t, v.cfg, v.store, section)
		})
	}
}

func checkGenerated(t *testing.T, cfg Config, store storage.Store, section func(kind, id string) component.Config) {
	t.Helper()
	ingester := cfg.Role == RoleIngester
	if ingester {
		r := section("receivers", kafkareceiver.Type).(*kafkareceiver.Config)
		if !slices.Equal(r.Brokers, cfg.Kafka.Brokers) || r.Topics != cfg.Kafka.Topics || r.GroupID != cfg.Kafka.GroupID ||
			r.SessionTimeout != cfg.Kafka.SessionTimeout || r.MaxBatchItems != int(cfg.Batch.MaxSize) || r.MaxBatchWait != cfg.Batch.FlushTimeout ||
			r.MaxFetchBytes != 4*cfg.Kafka.MaxMessageBytes+1<<20 || r.RetryInitial != kafkareceiver.DefaultConfig().RetryInitial {
			t.Errorf("kafka receiver: %+v", r)
		}
	} else {
		r := section("receivers", otlpserver.Type).(*otlpserver.Config)
		endpoint := func(ep string) string {
			if ep == "off" {
				return ""
			}
			return ep
		}
		if grpc := r.GRPC; grpc.NetAddr.Endpoint != endpoint(cfg.OTLP.GRPCEndpoint) || grpc.MaxRecvMsgSizeMiB != cfg.OTLP.MaxRequestMiB {
			t.Errorf("otlp grpc: %+v, want endpoint %q", grpc, cfg.OTLP.GRPCEndpoint)
		}
		if http := r.HTTP; http.NetAddr.Endpoint != endpoint(cfg.OTLP.HTTPEndpoint) || http.MaxRequestBodySize != int64(cfg.OTLP.MaxRequestMiB)<<20 ||
			http.ReadHeaderTimeout != 10*time.Second {
			t.Errorf("otlp http: %+v, want endpoint %q", http, cfg.OTLP.HTTPEndpoint)
		}
		if r.MaxConnections != cfg.OTLP.MaxConnections || r.IdleTimeout != cfg.OTLP.IdleTimeout {
			t.Errorf("otlp max_connections %d, idle_timeout %s; want %+v", r.MaxConnections, r.IdleTimeout, cfg.OTLP)
		}
		for name, tls := range map[string]*configtls.ServerConfig{"grpc": r.GRPC.TLS.Get(), "http": r.HTTP.TLS.Get()} {
			want := cfg.OTLP.TLS
			if (tls != nil) != want.Enabled() || tls != nil && (tls.CertFile != want.CertFile || tls.KeyFile != want.KeyFile || tls.ClientCAFile != want.ClientCAFile || tls.MinVersion != want.MinVersion) {
				t.Errorf("otlp %s tls %+v, want %+v", name, tls, want)
			}
		}
		auth := cfg.OTLP.Auth == AuthToken
		if g, h := r.GRPC.Auth.Get(), r.HTTP.Auth.Get(); (g != nil) != auth || (h != nil) != auth ||
			auth && (g.AuthenticatorID.String() != tokenauth.Type || h.Config.AuthenticatorID.String() != tokenauth.Type) {
			t.Errorf("otlp auth: grpc %+v, http %+v; want %s: %v", g, h, tokenauth.Type, auth)
		}
		if auth {
			section("extensions", tokenauth.Type)
		}
		in := section("processors", ingressType).(*ingressConfig)
		if in.RetryAfter != cfg.RetryAfter || in.Limits != cfg.Limits {
			t.Errorf("%s %+v, want retry_after %s, limits %+v", ingressType, in, cfg.RetryAfter, cfg.Limits)
		}
		ml := section("processors", "memory_limiter").(*memorylimiterprocessor.Config)
		want := cfg.MemoryLimiter
		if ml.CheckInterval != want.CheckInterval || ml.MemoryLimitMiB != want.LimitMiB || ml.MemorySpikeLimitMiB != want.SpikeLimitMiB ||
			want.LimitMiB == 0 && (ml.MemoryLimitPercentage != want.LimitPercentage || ml.MemorySpikePercentage != want.SpikeLimitPercentage) ||
			want.LimitMiB > 0 && (ml.MemoryLimitPercentage != 0 || ml.MemorySpikePercentage != 0) {
			t.Errorf("memory_limiter %+v, want %+v", ml, want)
		}
	}

	var (
		queue configoptional.Optional[exporterhelper.QueueBatchConfig]
		retry configretry.BackOffConfig
		trans *storeexporter.TranslationConfig
	)
	switch cfg.exporter() {
	case ExporterKafka:
		e := section("exporters", kafkaexporter.Type).(*kafkaexporter.Config)
		if !slices.Equal(e.Brokers, cfg.Kafka.Brokers) || e.Topics != cfg.Kafka.Topics || e.MaxMessageBytes != cfg.Kafka.MaxMessageBytes || e.Compression != cfg.Kafka.Compression {
			t.Errorf("kafka exporter: %+v", e)
		}
		queue, retry = e.Queue, e.Retry
	case ExporterClickHouse:
		e := section("exporters", storeexporter.TypeClickHouse).(*storeexporter.ClickHouseConfig)
		if !slices.Equal(e.Addresses, cfg.ClickHouse.Addresses) || e.Database != cfg.ClickHouse.Database || e.Username != cfg.ClickHouse.Username ||
			string(e.Password) != string(cfg.ClickHouse.Password) {
			t.Errorf("clickhouse exporter: %+v (password %q, want %q)", e, string(e.Password), string(cfg.ClickHouse.Password))
		}
		queue, retry, trans = e.Queue, e.Retry, &e.Translation
		if e.Limits != cfg.Limits {
			t.Errorf("clickhouse exporter limits %+v, want %+v", e.Limits, cfg.Limits)
		}
		// The exporter's store keeps its write-ahead log beside the
		// persistent queue, and groups writes without one.
		if wantDir := filepath.Join(cfg.Queue.Dir, "clickhouse-wal"); cfg.Queue.Dir == "" && e.WALDir != "" || cfg.Queue.Dir != "" && e.WALDir != wantDir {
			t.Errorf("clickhouse exporter wal_dir %q, queue dir %q", e.WALDir, cfg.Queue.Dir)
		}
		if e.WriteThrough.Group != (e.WALDir == "") {
			t.Errorf("clickhouse exporter write_through.group %v with wal_dir %q", e.WriteThrough.Group, e.WALDir)
		}
	default:
		e := section("exporters", storeexporter.TypeStore).(*storeexporter.Config)
		queue, retry, trans = e.Queue, e.Retry, &e.Translation
		if e.Limits != cfg.Limits {
			t.Errorf("store exporter limits %+v, want %+v", e.Limits, cfg.Limits)
		}
		if e.WriteThrough.Enabled != (!ingester && cfg.Queue.WriteThrough != WriteThroughOff) || e.WriteThrough.SlowWrite != cfg.Queue.SlowWrite {
			t.Errorf("write_through %+v, queue %+v", e.WriteThrough, cfg.Queue)
		}
		// Only a store that asks for it gets group commit.
		if _, large := store.(largeCommitStore); e.WriteThrough.Group != large ||
			large && (e.WriteThrough.GroupMinItems != int(cfg.Batch.MinSize) || e.WriteThrough.GroupInterval != cfg.Batch.FlushTimeout) {
			t.Errorf("write_through %+v for store %T, batch %+v", e.WriteThrough, store, cfg.Batch)
		}
	}
	if trans != nil && !reflect.DeepEqual(*trans, cfg.Translation) {
		t.Errorf("translation %+v, want %+v", *trans, cfg.Translation)
	}
	if !retry.Enabled || retry.InitialInterval != 500*time.Millisecond || retry.MaxInterval != 10*time.Second || retry.MaxElapsedTime != 0 {
		t.Errorf("retry_on_failure %+v: want 500ms to 10s, never giving up", retry)
	}
	q := queue.Get()
	switch {
	case ingester:
		if q != nil {
			t.Errorf("ingester with a sending queue %+v", q)
		}
	case q == nil:
		t.Error("no sending queue")
	default:
		b := q.Batch.Get()
		if q.Sizer.String() != "items" || q.QueueSize != cfg.Queue.MaxItems || q.NumConsumers != cfg.Queue.Consumers || q.BlockOnOverflow ||
			b == nil || b.Sizer.String() != "items" || b.FlushTimeout != cfg.Batch.FlushTimeout || b.MinSize != cfg.Batch.MinSize || b.MaxSize != cfg.Batch.MaxSize {
			t.Errorf("sending_queue %+v (batch %+v), want items-sized, %d items, %d consumers, batches %+v", q, b, cfg.Queue.MaxItems, cfg.Queue.Consumers, cfg.Batch)
		}
		if persistent := cfg.Queue.Dir != ""; (q.StorageID != nil) != persistent {
			t.Errorf("sending_queue storage %v with queue.dir %q", q.StorageID, cfg.Queue.Dir)
		}
		if cfg.Queue.Dir != "" {
			fs := section("extensions", queuestorage.Type).(*filestorage.Config)
			if fs.Directory != cfg.Queue.Dir || !fs.CreateDirectory || fs.FSync != cfg.Queue.FSync || fs.Timeout != 10*time.Second ||
				fs.Compaction.Directory != filepath.Join(cfg.Queue.Dir, "compaction") || !fs.Compaction.OnStart || !fs.Compaction.OnRebound {
				t.Errorf("queue storage %+v (compaction %+v)", fs, fs.Compaction)
			}
		}
	}
	if cfg.exporter() != ExporterKafka {
		d := section("processors", "delta_to_cumulative").(*deltatocumulativeprocessor.Config)
		if d.MaxStale != cfg.DeltaToCumulative.MaxStale || cfg.DeltaToCumulative.MaxStreams > 0 && d.MaxStreams != cfg.DeltaToCumulative.MaxStreams {
			t.Errorf("delta_to_cumulative %+v, want %+v", d, cfg.DeltaToCumulative)
		}
	}
}

// unmarshalSection reads a section into its factory's default
// configuration, as the collector does.
func unmarshalSection(f component.Factory, section any) (component.Config, error) {
	cfg := f.CreateDefaultConfig()
	m, _ := section.(map[string]any)
	if err := confmap.NewFromStringMap(m).Unmarshal(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// largeCommitStore is a store whose every commit is an insert of its own,
// as ClickHouse's is without its write-ahead log.
type largeCommitStore struct{ storage.Store }

func (largeCommitStore) WantsLargeCommits() bool { return true }
