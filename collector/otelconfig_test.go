package collector

import (
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/aiops-dev/aiops/collector/storeexporter"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/storage"
	"github.com/aiops-dev/aiops/storage/clickhouse"
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
	out["all-in-one on ClickHouse, gRPC only, in-memory queue"] = variant{cfg: c, store: (*clickhouse.Store)(nil)}

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

// TestGeneratedConfigEquivalent: the configuration built from typed
// component configurations gives every component the configuration the
// hand-written maps gave it.
func TestGeneratedConfigEquivalent(t *testing.T) {
	for name, v := range generatedVariants() {
		t.Run(name, func(t *testing.T) {
			c := &Collector{cfg: v.cfg, deps: Deps{Store: v.store, Logger: testutil.Discard(), Registerer: prometheus.NewRegistry()}, reader: sdkmetric.NewManualReader()}
			factories, err := c.factories()
			if err != nil {
				t.Fatal(err)
			}
			old := c.legacyOtelConfig()
			got, err := c.otelConfig()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(old["service"], got["service"]) {
				t.Errorf("service:\nold %v\nnew %v", old["service"], got["service"])
			}
			kinds := []struct {
				key     string
				factory func(id string) (component.Factory, bool)
			}{
				{"receivers", func(id string) (component.Factory, bool) {
					f, ok := factories.Receivers[component.MustNewType(id)]
					return f, ok
				}},
				{"processors", func(id string) (component.Factory, bool) {
					f, ok := factories.Processors[component.MustNewType(id)]
					return f, ok
				}},
				{"exporters", func(id string) (component.Factory, bool) {
					f, ok := factories.Exporters[component.MustNewType(id)]
					return f, ok
				}},
				{"extensions", func(id string) (component.Factory, bool) {
					f, ok := factories.Extensions[component.MustNewType(id)]
					return f, ok
				}},
			}
			for _, k := range kinds {
				oldS, _ := old[k.key].(map[string]any)
				newS, _ := got[k.key].(map[string]any)
				if len(oldS) != len(newS) {
					t.Errorf("%s: old has %v, new has %v", k.key, keys(oldS), keys(newS))
				}
				for id, oldSec := range oldS {
					f, ok := k.factory(id)
					if !ok {
						t.Fatalf("%s: no factory for %s", k.key, id)
					}
					want, err := unmarshalSection(f, oldSec)
					if err != nil {
						t.Fatalf("%s %s, old map: %v", k.key, id, err)
					}
					have, err := unmarshalSection(f, newS[id])
					if err != nil {
						t.Fatalf("%s %s, new map: %v\n%v", k.key, id, err, newS[id])
					}
					if !reflect.DeepEqual(want, have) {
						t.Errorf("%s %s differ:\nold %+v\nnew %+v", k.key, id, want, have)
					}
				}
			}
		})
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

