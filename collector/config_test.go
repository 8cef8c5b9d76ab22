package collector

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
)

func TestConfigValidateNamesKey(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*Config)
		key    string
	}{
		{func(c *Config) { c.Role = "router" }, "collector.role"},
		{func(c *Config) { c.Role = RoleCollector; c.Exporter = "store" }, "collector.exporter"},
		{func(c *Config) { c.OTLP.GRPCEndpoint = "4317" }, "collector.otlp.grpc_endpoint"},
		{func(c *Config) { c.OTLP.HTTPEndpoint = c.OTLP.GRPCEndpoint }, "collector.otlp.http_endpoint"},
		{func(c *Config) { c.OTLP.MaxRequestMiB = 0 }, "collector.otlp.max_request_mib"},
		{func(c *Config) { c.MemoryLimiter.CheckInterval = 0 }, "collector.memory_limiter.check_interval"},
		{func(c *Config) { c.MemoryLimiter.SpikeLimitPercentage = 90 }, "collector.memory_limiter.spike_limit_percentage"},
		{func(c *Config) { c.MemoryLimiter.LimitPercentage = 101 }, "collector.memory_limiter.limit_percentage"},
		{func(c *Config) { c.MemoryLimiter.LimitMiB = 100; c.MemoryLimiter.SpikeLimitMiB = 100 }, "collector.memory_limiter.spike_limit_mib"},
		{func(c *Config) { c.Batch.FlushTimeout = -1 }, "collector.batch.flush_timeout"},
		{func(c *Config) { c.Batch.MaxSize = 5 }, "collector.batch.max_size"},
		{func(c *Config) { c.Queue.MaxItems = 0 }, "collector.queue.max_items"},
		{func(c *Config) { c.Queue.Consumers = -1 }, "collector.queue.consumers"},
		{func(c *Config) { c.Batch.MinSize = c.Queue.MaxItems + 1; c.Batch.MaxSize = 0 }, "collector.batch.min_size"},
		{func(c *Config) { c.RetryAfter = time.Millisecond }, "collector.retry_after"},
		{func(c *Config) { c.Role = RoleCollector }, "collector.kafka.brokers"},
		{func(c *Config) { c.Role = RoleCollector; c.Kafka.Brokers = []string{"kafka"} }, "collector.kafka.brokers[0]"},
		{func(c *Config) {
			c.Role = RoleCollector
			c.Kafka.Brokers = []string{"k:9092"}
			c.Kafka.Topics.Logs = ""
		}, "collector.kafka.topics.logs"},
		{func(c *Config) {
			c.Role = RoleCollector
			c.Kafka.Brokers = []string{"k:9092"}
			c.Kafka.Compression = "brotli"
		}, "collector.kafka.compression"},
		{func(c *Config) {
			c.Role = RoleIngester
			c.Kafka.Brokers = []string{"k:9092"}
			c.Exporter = "clickhouse"
		}, "collector.clickhouse.addresses"},
		{func(c *Config) {
			c.Role = RoleIngester
			c.Kafka.Brokers = []string{"k:9092"}
			c.Kafka.GroupID = ""
		}, "collector.kafka.group_id"},
		{func(c *Config) {
			c.Exporter = "clickhouse"
			c.ClickHouse.Addresses = []string{"ch:9000"}
			c.ClickHouse.Database = "a;b"
		}, "collector.clickhouse.database"},
		{func(c *Config) { c.Translation.Strategy = "Shout" }, "collector.translation.strategy"},
		{func(c *Config) { c.DeltaToCumulative.MaxStale = 0 }, "collector.delta_to_cumulative.max_stale"},
		{func(c *Config) { c.ConfigFile = "/nonexistent/otelcol.yaml" }, "collector.config_file"},
		{func(c *Config) { c.OTLP.GRPCEndpoint = ":4317" }, "collector.otlp.auth"},
		{func(c *Config) { c.OTLP.HTTPEndpoint = "0.0.0.0:4318" }, "collector.otlp.auth"},
		{func(c *Config) { c.OTLP.Auth = "password" }, "collector.otlp.auth"},
		{func(c *Config) { c.OTLP.TLS.CertFile = "/nonexistent/cert.pem" }, "collector.otlp.tls.cert_file"},
		{func(c *Config) { c.OTLP.TLS.ClientCAFile = "ca.pem" }, "collector.otlp.tls.cert_file"},
		{func(c *Config) { c.OTLP.MaxConnections = -1 }, "collector.otlp.max_connections"},
		{func(c *Config) { c.Limits.MaxFuture = 0 }, "collector.limits.max_future"},
		{func(c *Config) { c.Limits.LabelValueLengthLimit = -1 }, "collector.limits.label_value_length_limit"},
	} {
		cfg := DefaultConfig()
		tc.mutate(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.key+":") {
			t.Errorf("%s: Validate() = %v, want an error naming it", tc.key, err)
		}
		if _, err := New(cfg, Deps{}); err == nil || !strings.HasPrefix(err.Error(), tc.key+":") {
			t.Errorf("%s: New() = %v, want an error naming it", tc.key, err)
		}
	}
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
	// Other interfaces need auth said out loud, either way.
	for _, auth := range []string{AuthToken, AuthNone} {
		cfg.OTLP.GRPCEndpoint, cfg.OTLP.HTTPEndpoint, cfg.OTLP.Auth = ":4317", "[::]:4318", auth
		if err := cfg.Validate(); err != nil {
			t.Errorf("auth %s on all interfaces: %v", auth, err)
		}
	}
	for _, ep := range []string{"localhost:4317", "[::1]:4317", "127.0.0.2:4317"} {
		cfg.OTLP.GRPCEndpoint, cfg.OTLP.HTTPEndpoint, cfg.OTLP.Auth = ep, "off", ""
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s without auth: %v", ep, err)
		}
	}
}

func TestConfigYAMLDefaultsAndSecret(t *testing.T) {
	var cfg Config
	in := "role: collector\nkafka:\n  brokers: [k1:9092]\nclickhouse:\n  password: hunter2\n"
	if err := yaml.Unmarshal([]byte(in), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Role != RoleCollector || cfg.OTLP.GRPCEndpoint != "127.0.0.1:4317" || cfg.Kafka.Topics.Metrics != "otlp_metrics" || cfg.Queue.MaxItems == 0 {
		t.Errorf("unset keys lost their defaults: %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "hunter2") {
		t.Errorf("marshalled config shows the password:\n%s", out)
	}
}

// TestExampleConfigs checks the example files under deploy/examples: each
// collector section parses and validates.
func TestExampleConfigs(t *testing.T) {
	files, _ := filepath.Glob("../deploy/examples/*.yaml")
	if len(files) < 3 {
		t.Fatalf("want the three role examples under deploy/examples, found %v", files)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Role      string  `yaml:"role"`
			Collector *Config `yaml:"collector"`
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if doc.Collector == nil {
			t.Errorf("%s: no collector section", f)
			continue
		}
		// The serve command hands the top-level role to the collector.
		if doc.Role != "" {
			doc.Collector.Role = doc.Role
		}
		if err := doc.Collector.Validate(); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestRawConfigFile runs the collector from a raw OpenTelemetry Collector
// YAML file using this binary's components.
func TestRawConfigFile(t *testing.T) {
	store := storetest.Embedded(t)
	grpcAddr := freeAddr(t)
	path := filepath.Join(t.TempDir(), "otelcol.yaml")
	raw := `
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: ` + grpcAddr + `
processors:
  batch:
exporters:
  aiops_store:
    sending_queue:
      enabled: false
service:
  telemetry:
    metrics:
      level: basic
  pipelines:
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [aiops_store]
`
	if err := os.WriteFile(path, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.ConfigFile = path
	r := start(t, cfg, Deps{Store: store})
	sendSummary(t, grpcAddr, 2)
	testutil.Eventually(t, 20*time.Second, "summary stored", func() (bool, string) {
		n := countSamples(t, store, nameIs("legacy_rpc_seconds_count"))
		return n == 2, "samples: " + string(rune('0'+n))
	})
	r.stop(t)

	// An invalid raw file fails at start with the component named.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 1.2.3\nexporters:\n  nosuch:\nservice:\n  pipelines:\n    metrics:\n      receivers: [otlp]\n      exporters: [nosuch]\n"), 0o600)
	cfg.ConfigFile = bad
	c, err := New(cfg, Deps{Store: store})
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err = c.Run(ctx)
	}
	if err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("invalid raw config: %v, want an error naming the unknown exporter", err)
	}
}
