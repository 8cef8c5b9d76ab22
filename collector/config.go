package collector

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/aiops-dev/aiops/collector/internal/kafkaotlp"
	"github.com/aiops-dev/aiops/collector/limits"
	"github.com/aiops-dev/aiops/collector/storeexporter"
)

// Roles: which pipelines the collector runs.
const (
	// RoleAllInOne receives OTLP and writes into the process's store (or
	// a ClickHouse of its own with exporter: clickhouse).
	RoleAllInOne = "all-in-one"
	// RoleCollector receives OTLP and writes it to Kafka.
	RoleCollector = "collector"
	// RoleIngester reads Kafka and writes into ClickHouse (or the
	// process's store with exporter: store).
	RoleIngester = "ingester"
)

// Exporters a role can write through.
const (
	ExporterStore      = "store"
	ExporterClickHouse = "clickhouse"
	ExporterKafka      = "kafka"
)

// Config is the collector section of the aiops configuration. It is a
// simplified view of an OpenTelemetry Collector configuration: New builds
// the full one from it for the role. ConfigFile replaces it with a raw
// collector configuration for power users.
type Config struct {
	// Role is all-in-one (default), collector or ingester.
	Role string `yaml:"role"`
	// Exporter is where the role writes: store (default for all-in-one
	// and ingester: the process's own store, embedded or ClickHouse),
	// clickhouse (a ClickHouse of the collector's own, configured in the
	// clickhouse section) or kafka (the only choice, and default, for
	// collector).
	Exporter string `yaml:"exporter"`

	OTLP          OTLPConfig          `yaml:"otlp"`
	MemoryLimiter MemoryLimiterConfig `yaml:"memory_limiter"`
	Batch         BatchConfig         `yaml:"batch"`
	Queue         QueueConfig         `yaml:"queue"`
	Kafka         KafkaConfig         `yaml:"kafka"`
	ClickHouse    ClickHouseConfig    `yaml:"clickhouse"`
	// Translation selects how OTLP metrics are named as Prometheus series;
	// the defaults are Prometheus's OTLP defaults.
	Translation       storeexporter.TranslationConfig `yaml:"translation"`
	DeltaToCumulative DeltaToCumulativeConfig         `yaml:"delta_to_cumulative"`
	// Limits bound what metric data is accepted (see collector/limits).
	Limits limits.Config `yaml:"limits"`
	// RetryAfter is what refused clients are told to wait (gRPC RetryInfo,
	// HTTP Retry-After) when the queue is full or memory is short.
	RetryAfter time.Duration `yaml:"retry_after"`

	// ConfigFile, when set, is the path of a raw OpenTelemetry Collector
	// YAML configuration that replaces everything above. Its components
	// may be any of the factories this binary has (otlp, kafka receivers;
	// memory_limiter, batch, deltatocumulative, aiops_ingress processors;
	// aiops_store, clickhouse, kafka exporters; file_storage).
	ConfigFile string `yaml:"config_file"`
}

// OTLPConfig configures the OTLP receivers.
type OTLPConfig struct {
	// GRPCEndpoint is host:port for OTLP/gRPC; "off" disables it.
	GRPCEndpoint string `yaml:"grpc_endpoint"`
	// HTTPEndpoint is host:port for OTLP/HTTP; "off" disables it.
	HTTPEndpoint string `yaml:"http_endpoint"`
	// MaxRequestMiB bounds one request (gRPC message or HTTP body).
	MaxRequestMiB int `yaml:"max_request_mib"`
	// Auth is how OTLP clients authenticate: "token" (Authorization:
	// Bearer with a credential holding the ingest or admin scope) or
	// "none". Left empty it is none, which is allowed only while both
	// endpoints listen on loopback addresses: anyone who can reach the
	// ports can otherwise write any series and fire any alert.
	Auth string `yaml:"auth"`
	// TLS serves both endpoints over TLS, and with a client CA over
	// mutual TLS.
	TLS OTLPTLSConfig `yaml:"tls"`
	// MaxConnections bounds the open connections of each endpoint; more
	// are closed at once. 0 means no bound.
	MaxConnections int `yaml:"max_connections"`
	// IdleTimeout closes connections that carried no request for this
	// long. 0 keeps them open.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// OTLP authentication settings.
const (
	AuthNone  = "none"
	AuthToken = "token"
)

// OTLPTLSConfig configures TLS for the OTLP endpoints.
type OTLPTLSConfig struct {
	// CertFile and KeyFile are the server's certificate and key (PEM).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile, when set, makes clients present a certificate
	// signed by one of its CAs (mutual TLS).
	ClientCAFile string `yaml:"client_ca_file"`
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
}

// Enabled reports whether TLS is configured.
func (c OTLPTLSConfig) Enabled() bool { return c.CertFile != "" }

// MemoryLimiterConfig configures the memory_limiter processor: above
// limit minus spike, data is refused (clients get 503/Unavailable and
// retry) and a GC is forced. The MiB pair is used when limit_mib is set,
// the percentage pair (of the machine's or cgroup's memory) otherwise.
type MemoryLimiterConfig struct {
	CheckInterval        time.Duration `yaml:"check_interval"`
	LimitMiB             uint32        `yaml:"limit_mib"`
	SpikeLimitMiB        uint32        `yaml:"spike_limit_mib"`
	LimitPercentage      uint32        `yaml:"limit_percentage"`
	SpikeLimitPercentage uint32        `yaml:"spike_limit_percentage"`
}

// BatchConfig configures batching in front of the writer. Batches are
// formed as data leaves the queue (exporterhelper's queue batching), so a
// write failure keeps the data queued instead of losing it, as the batch
// processor would.
type BatchConfig struct {
	FlushTimeout time.Duration `yaml:"flush_timeout"`
	// MinSize and MaxSize are in items: data points, log records, spans.
	MinSize int64 `yaml:"min_size"`
	MaxSize int64 `yaml:"max_size"`
}

// QueueConfig configures the queue between receivers and the writer.
type QueueConfig struct {
	// Dir holds the persistent queue (one bbolt file per signal). Empty
	// keeps the queue in memory: still bounded, but lost on a crash.
	Dir string `yaml:"dir"`
	// MaxItems bounds each signal's queue in items; when full, receivers
	// answer Unavailable / 503 with Retry-After.
	MaxItems int64 `yaml:"max_items"`
	// Consumers is the number of concurrent writers per signal.
	Consumers int `yaml:"consumers"`
	// FSync makes every queue write durable against power loss, at a
	// large cost in throughput; without it a process crash loses nothing
	// but a machine crash may.
	FSync bool `yaml:"fsync"`
	// WriteThrough is auto (default), on or off. On, metrics are written
	// to the store in the receiver's call while the store takes them, and
	// only what it cannot take (down, or slower than SlowWrite) goes
	// through the queue. Into ClickHouse, which wants few large inserts,
	// requests arriving together are written in one insert (group
	// commit) of up to batch.min_size points, at most one per
	// batch.flush_timeout unless full. Auto and on are the same; off
	// sends every request through the queue. Logs and spans always go
	// through the queue.
	WriteThrough string `yaml:"write_through"`
	// SlowWrite is the latency budget of a write-through write: after a
	// slower one, requests go through the queue until it has caught up.
	SlowWrite time.Duration `yaml:"slow_write"`
}

// Write-through settings.
const (
	WriteThroughAuto = "auto"
	WriteThroughOn   = "on"
	WriteThroughOff  = "off"
)

// KafkaConfig configures the Kafka exporter (collector role) and receiver
// (ingester role).
type KafkaConfig struct {
	Brokers []string         `yaml:"brokers"`
	Topics  kafkaotlp.Topics `yaml:"topics"`
	// GroupID is the ingesters' consumer group.
	GroupID string `yaml:"group_id"`
	// SessionTimeout is how long the group waits for an ingester that
	// stopped heartbeating (it crashed) before its partitions go to the
	// others.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// MaxMessageBytes bounds one message; keep it <= the brokers'
	// message.max.bytes.
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// Compression is none, gzip, snappy, lz4 or zstd.
	Compression string `yaml:"compression"`
}

// ClickHouseConfig says where the clickhouse exporter writes; the keys
// mean what they mean in the storage.clickhouse section.
type ClickHouseConfig struct {
	// Addresses are host:port of ClickHouse's native protocol.
	Addresses []string `yaml:"addresses"`
	Database  string   `yaml:"database"`
	Username  string   `yaml:"username"`
	Password  Secret   `yaml:"password"`
}

// DeltaToCumulativeConfig configures the conversion of delta sums and
// histograms to cumulative ones, which Prometheus's data model needs.
type DeltaToCumulativeConfig struct {
	// MaxStale forgets a stream not seen for this long.
	MaxStale time.Duration `yaml:"max_stale"`
	// MaxStreams bounds the tracked streams; 0 means no bound.
	MaxStreams int `yaml:"max_streams"`
}

// Secret is a string that never shows in logs, errors or marshalled
// configuration.
type Secret string

func (Secret) String() string { return "<secret>" }

// GoString masks the value in %#v.
func (Secret) GoString() string { return "<secret>" }

// LogValue masks the value in slog records.
func (Secret) LogValue() slog.Value { return slog.StringValue("<secret>") }

// MarshalYAML masks the value.
func (s Secret) MarshalYAML() (any, error) {
	if s == "" {
		return "", nil
	}
	return "<secret>", nil
}

// DefaultConfig returns the defaults: all-in-one, OTLP on
// 127.0.0.1:4317/4318 without authentication. Listening on other
// interfaces takes a configuration that says how clients authenticate.
func DefaultConfig() Config {
	return Config{
		Role: RoleAllInOne,
		OTLP: OTLPConfig{
			GRPCEndpoint: "127.0.0.1:4317", HTTPEndpoint: "127.0.0.1:4318", MaxRequestMiB: 16,
			MaxConnections: 2048, IdleTimeout: 2 * time.Minute,
		},
		MemoryLimiter: MemoryLimiterConfig{
			CheckInterval:        time.Second,
			LimitPercentage:      80,
			SpikeLimitPercentage: 20,
		},
		Batch: BatchConfig{FlushTimeout: 200 * time.Millisecond, MinSize: 10_000, MaxSize: 20_000},
		Queue: QueueConfig{MaxItems: 5_000_000, Consumers: 2, WriteThrough: WriteThroughAuto, SlowWrite: time.Second},
		Kafka: KafkaConfig{
			Topics:          kafkaotlp.DefaultTopics(),
			GroupID:         "aiops-ingester",
			SessionTimeout:  30 * time.Second,
			MaxMessageBytes: 1_000_000,
			Compression:     "snappy",
		},
		ClickHouse:        ClickHouseConfig{Database: "aiops"},
		DeltaToCumulative: DeltaToCumulativeConfig{MaxStale: 5 * time.Minute},
		RetryAfter:        5 * time.Second,
		Limits:            limits.DefaultConfig(),
	}
}

// UnmarshalYAML fills unset fields with defaults, so a config file only
// names what it changes. It works with yaml.v2 and yaml.v3 decoders.
func (c *Config) UnmarshalYAML(unmarshal func(any) error) error {
	*c = DefaultConfig()
	type plain Config
	return unmarshal((*plain)(c))
}

// exporter returns the exporter the role uses.
func (c *Config) exporter() string {
	if c.Exporter != "" {
		return c.Exporter
	}
	switch c.Role {
	case RoleCollector:
		return ExporterKafka
	}
	return ExporterStore
}

// Validate checks the configuration. Errors name the full key, e.g.
// "collector.queue.max_items: must be > 0, got 0".
func (c *Config) Validate() error {
	if err := c.validate(); err != nil {
		return fmt.Errorf("collector.%w", err)
	}
	return nil
}

func (c *Config) validate() error {
	if c.ConfigFile != "" {
		if _, err := os.Stat(c.ConfigFile); err != nil {
			return fmt.Errorf("config_file: %w", err)
		}
		return nil
	}
	role := c.Role
	if role == "" {
		role = RoleAllInOne
	}
	switch role {
	case RoleAllInOne, RoleCollector, RoleIngester:
	default:
		return fmt.Errorf("role: unknown role %q, want %s, %s or %s", c.Role, RoleAllInOne, RoleCollector, RoleIngester)
	}
	exp := c.exporter()
	switch {
	case role == RoleCollector && exp != ExporterKafka:
		return fmt.Errorf("exporter: the collector role writes to kafka, got %q", c.Exporter)
	case role != RoleCollector && exp != ExporterStore && exp != ExporterClickHouse:
		return fmt.Errorf("exporter: want %s or %s for role %s, got %q", ExporterStore, ExporterClickHouse, role, c.Exporter)
	}

	if role != RoleIngester {
		if err := c.OTLP.validate(); err != nil {
			return fmt.Errorf("otlp.%w", err)
		}
		if err := c.MemoryLimiter.validate(); err != nil {
			return fmt.Errorf("memory_limiter.%w", err)
		}
		if err := c.Batch.validate(); err != nil {
			return fmt.Errorf("batch.%w", err)
		}
		if err := c.Queue.validate(); err != nil {
			return fmt.Errorf("queue.%w", err)
		}
		if c.Batch.MinSize > c.Queue.MaxItems {
			return fmt.Errorf("batch.min_size: must be <= queue.max_items (%d), got %d", c.Queue.MaxItems, c.Batch.MinSize)
		}
		if c.RetryAfter < time.Second {
			return fmt.Errorf("retry_after: must be >= 1s (Retry-After counts whole seconds), got %s", c.RetryAfter)
		}
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("limits.%w", err)
	}
	if role != RoleAllInOne {
		if err := c.Kafka.validate(role); err != nil {
			return fmt.Errorf("kafka.%w", err)
		}
	}
	if exp == ExporterClickHouse {
		if err := c.ClickHouse.validate(); err != nil {
			return fmt.Errorf("clickhouse.%w", err)
		}
	}
	if exp != ExporterKafka {
		if err := c.Translation.Validate(); err != nil {
			return fmt.Errorf("translation.%w", err)
		}
		if c.DeltaToCumulative.MaxStale <= 0 {
			return fmt.Errorf("delta_to_cumulative.max_stale: must be > 0, got %s", c.DeltaToCumulative.MaxStale)
		}
		if c.DeltaToCumulative.MaxStreams < 0 {
			return fmt.Errorf("delta_to_cumulative.max_streams: must be >= 0, got %d", c.DeltaToCumulative.MaxStreams)
		}
	}
	return nil
}

func validEndpoint(key, ep string) error {
	if ep == "off" {
		return nil
	}
	if _, port, err := net.SplitHostPort(ep); err != nil || port == "" {
		return fmt.Errorf("%s: want host:port or \"off\", got %q", key, ep)
	}
	return nil
}

func (c OTLPConfig) validate() error {
	if err := validEndpoint("grpc_endpoint", c.GRPCEndpoint); err != nil {
		return err
	}
	if err := validEndpoint("http_endpoint", c.HTTPEndpoint); err != nil {
		return err
	}
	if c.GRPCEndpoint == "off" && c.HTTPEndpoint == "off" {
		return errors.New("grpc_endpoint: OTLP/gRPC and OTLP/HTTP cannot both be off")
	}
	if c.GRPCEndpoint == c.HTTPEndpoint {
		return fmt.Errorf("http_endpoint: same address as grpc_endpoint (%s)", c.GRPCEndpoint)
	}
	if c.MaxRequestMiB <= 0 {
		return fmt.Errorf("max_request_mib: must be > 0, got %d", c.MaxRequestMiB)
	}
	if c.MaxConnections < 0 {
		return fmt.Errorf("max_connections: must be >= 0 (0 means no bound), got %d", c.MaxConnections)
	}
	if c.IdleTimeout < 0 {
		return fmt.Errorf("idle_timeout: must be >= 0, got %s", c.IdleTimeout)
	}
	if err := c.TLS.validate(); err != nil {
		return fmt.Errorf("tls.%w", err)
	}
	switch c.Auth {
	case AuthNone, AuthToken:
	case "":
		for _, ep := range []struct{ key, addr string }{{"grpc_endpoint", c.GRPCEndpoint}, {"http_endpoint", c.HTTPEndpoint}} {
			if ep.addr != "off" && !loopback(ep.addr) {
				return fmt.Errorf("auth: %s %q is reachable from other machines, and OTLP has no authentication: "+
					"set collector.otlp.auth: token (clients send a token with the ingest scope) "+
					"or auth: none to accept data from anyone who can reach it", ep.key, ep.addr)
			}
		}
	default:
		return fmt.Errorf("auth: want %s or %s, got %q", AuthToken, AuthNone, c.Auth)
	}
	return nil
}

// loopback reports whether host:port listens on a loopback address only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c OTLPTLSConfig) validate() error {
	if c.CertFile == "" && c.KeyFile == "" && c.ClientCAFile == "" {
		return nil
	}
	if c.CertFile == "" || c.KeyFile == "" {
		return errors.New("cert_file: cert_file and key_file are both needed for TLS")
	}
	for _, f := range []struct{ key, path string }{{"cert_file", c.CertFile}, {"key_file", c.KeyFile}, {"client_ca_file", c.ClientCAFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%s: %w", f.key, err)
		}
	}
	switch c.MinVersion {
	case "", "1.2", "1.3":
	default:
		return fmt.Errorf("min_version: want 1.2 or 1.3, got %q", c.MinVersion)
	}
	return nil
}

func (c MemoryLimiterConfig) validate() error {
	if c.CheckInterval <= 0 {
		return fmt.Errorf("check_interval: must be > 0, got %s", c.CheckInterval)
	}
	switch {
	case c.LimitMiB > 0:
		// A MiB limit wins over the (default) percentage.
		if c.SpikeLimitMiB >= c.LimitMiB {
			return fmt.Errorf("spike_limit_mib: must be < limit_mib (%d), got %d", c.LimitMiB, c.SpikeLimitMiB)
		}
	case c.LimitPercentage > 0:
		if c.LimitPercentage > 100 {
			return fmt.Errorf("limit_percentage: must be <= 100, got %d", c.LimitPercentage)
		}
		if c.SpikeLimitPercentage >= c.LimitPercentage {
			return fmt.Errorf("spike_limit_percentage: must be < limit_percentage (%d), got %d", c.LimitPercentage, c.SpikeLimitPercentage)
		}
	default:
		return errors.New("limit_mib: set limit_mib or limit_percentage")
	}
	return nil
}

func (c BatchConfig) validate() error {
	switch {
	case c.FlushTimeout <= 0:
		return fmt.Errorf("flush_timeout: must be > 0, got %s", c.FlushTimeout)
	case c.MinSize < 0:
		return fmt.Errorf("min_size: must be >= 0, got %d", c.MinSize)
	case c.MaxSize < 0:
		return fmt.Errorf("max_size: must be >= 0, got %d", c.MaxSize)
	case c.MaxSize > 0 && c.MaxSize < c.MinSize:
		return fmt.Errorf("max_size: must be 0 (no limit) or >= min_size (%d), got %d", c.MinSize, c.MaxSize)
	}
	return nil
}

func (c QueueConfig) validate() error {
	if c.MaxItems <= 0 {
		return fmt.Errorf("max_items: must be > 0, got %d", c.MaxItems)
	}
	if c.Consumers <= 0 {
		return fmt.Errorf("consumers: must be > 0, got %d", c.Consumers)
	}
	switch c.WriteThrough {
	case "", WriteThroughAuto, WriteThroughOn, WriteThroughOff:
	default:
		return fmt.Errorf("write_through: want auto, on or off, got %q", c.WriteThrough)
	}
	if c.SlowWrite < 0 {
		return fmt.Errorf("slow_write: must be >= 0, got %s", c.SlowWrite)
	}
	if c.Dir != "" {
		if fi, err := os.Stat(c.Dir); err == nil && !fi.IsDir() {
			return fmt.Errorf("dir: %s is not a directory", c.Dir)
		}
	}
	return nil
}

func (c KafkaConfig) validate(role string) error {
	if len(c.Brokers) == 0 {
		return fmt.Errorf("brokers: at least one broker is required for role %s", role)
	}
	for i, b := range c.Brokers {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			return fmt.Errorf("brokers[%d]: want host:port, got %q", i, b)
		}
	}
	if err := c.Topics.Validate(); err != nil {
		return fmt.Errorf("topics.%w", err)
	}
	if role == RoleIngester && c.GroupID == "" {
		return errors.New("group_id: must be set for role ingester")
	}
	if role == RoleIngester && c.SessionTimeout < time.Second {
		return fmt.Errorf("session_timeout: must be >= 1s, got %s", c.SessionTimeout)
	}
	if c.MaxMessageBytes < 1024 {
		return fmt.Errorf("max_message_bytes: must be >= 1024, got %d", c.MaxMessageBytes)
	}
	switch c.Compression {
	case "", "none", "gzip", "snappy", "lz4", "zstd":
	default:
		return fmt.Errorf("compression: want none, gzip, snappy, lz4 or zstd, got %q", c.Compression)
	}
	return nil
}

func (c ClickHouseConfig) validate() error {
	if len(c.Addresses) == 0 {
		return errors.New("addresses: name at least one host:port of the native protocol")
	}
	for i, a := range c.Addresses {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return fmt.Errorf("addresses[%d]: want host:port of the native protocol, got %q", i, a)
		}
	}
	if c.Database == "" || strings.ContainsAny(c.Database, "`\" .;") {
		return fmt.Errorf("database: want a plain database name, got %q", c.Database)
	}
	return nil
}
