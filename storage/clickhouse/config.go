package clickhouse

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// Config configures the ClickHouse store. YAML keys live under
// `clickhouse`; Validate names them that way.
type Config struct {
	// Addresses are host:port of ClickHouse's native protocol (9000 by
	// default). With several, connections are spread over them and a dead
	// one is skipped.
	Addresses []string `yaml:"addresses"`
	// Database holds every table of the store; Open creates it.
	Database string `yaml:"database"`
	// Cluster is the name of a cluster in the servers' remote_servers
	// to shard the data over (Distributed tables over a local table on
	// each server, sharded by series); empty keeps everything on the
	// server at Addresses. See docs/SCALING.md.
	Cluster  string `yaml:"cluster"`
	Username string `yaml:"username"`
	Password Secret `yaml:"password"`
	// PasswordFile holds the password instead (a mounted Kubernetes
	// Secret, a compose secret), read when the store opens; one trailing
	// newline is ignored.
	PasswordFile string `yaml:"password_file"`

	DialTimeout model.Duration `yaml:"dial_timeout"`
	// ReadTimeout bounds the wait for each answer from the server, so a
	// server that stops answering surfaces as storage.ErrUnavailable
	// rather than a hang.
	ReadTimeout  model.Duration `yaml:"read_timeout"`
	MaxOpenConns int            `yaml:"max_open_conns"`
	// Compression of the native protocol's blocks: auto, none, lz4 or
	// zstd. On a local server none costs the least CPU; across a network
	// lz4 pays. auto is none when every address is a loopback one
	// (localhost, 127.0.0.0/8, ::1) and lz4 otherwise.
	Compression string `yaml:"compression"`

	// Retention is how long samples, series, logs and spans are kept;
	// older daily partitions are dropped. 0 keeps everything.
	Retention model.Duration `yaml:"retention"`
	// EventRetention is how long events are kept (30-day partitions);
	// 0 keeps them forever.
	EventRetention model.Duration `yaml:"event_retention"`

	// BatchSize is the most rows sent in one INSERT; a commit with more is
	// split. ClickHouse prefers few large inserts to many small ones (its
	// own max_insert_block_size is 1,048,576); with the write-ahead log it
	// is also the size of a drain round that starts before
	// wal.flush_interval is up, so it sets the inserts per second under
	// heavy load.
	BatchSize int `yaml:"batch_size"`
	// MaxSeries and MaxSamples bound what one Select may load, so that a
	// too broad query fails with a clear error instead of exhausting
	// memory. 0 means no limit.
	MaxSeries  int `yaml:"max_series"`
	MaxSamples int `yaml:"max_samples"`

	// SeriesIndex keeps a copy of the series table (labels and active
	// days, not samples) in memory to select series without a query, as
	// Prometheus's TSDB does; it costs about the size of the label sets.
	// Turn it off for very many series on a small query node.
	SeriesIndex bool `yaml:"series_index"`
	// SeriesIndexRefresh is how often, at most, the index looks for series
	// written by other processes. 0 looks before every query, so every
	// query sees every series committed before it started.
	SeriesIndexRefresh model.Duration `yaml:"series_index_refresh"`
	// SampleCacheMiB bounds the memory that keeps the float samples of
	// closed hours (about 1.4 bytes per sample), and separately that of
	// the head, which keeps the open hour (16 bytes per sample), so that
	// dashboards and alert rules read what is new from ClickHouse, not
	// what they read before. series_index_refresh also sets how often, at
	// most, they look for samples written by other processes. 0 turns
	// both off.
	SampleCacheMiB int `yaml:"sample_cache_mib"`

	// SpanHeadMiB bounds the memory that keeps recent spans (the span
	// head), so that trace reads (the Jaeger API) whose spans all lie in
	// it are answered without a query; past it, the oldest hours leave.
	// About 215 bytes a span with a handful of attributes (aiops-bench
	// traces). 0 turns it off. Loaded in the background after the first
	// trace read: a process that only writes keeps nothing.
	SpanHeadMiB int `yaml:"span_head_mib"`
	// SpanHeadRefresh is how often, at most, the span head looks for spans
	// written by other processes (this process's own enter as they
	// commit): a trace read may see them that much later, and costs no
	// round trip. 0 looks before every read (one round trip each).
	SpanHeadRefresh model.Duration `yaml:"span_head_refresh"`

	// WAL is the local write-ahead log that makes a commit durable
	// before ClickHouse has it.
	WAL WALConfig `yaml:"wal"`
}

// WALConfig configures the write-ahead log. With it, a commit returns
// once its samples are in the log on local disk, and the log is drained
// into ClickHouse in large inserts, at most one round of them per
// FlushInterval unless batch_size rows wait; without it, every commit is
// its own insert and waits for it. Samples are queryable once drained.
type WALConfig struct {
	// Mode is auto (default), on or off. auto is on where the process
	// takes data from clients (aiops serve's all-in-one role) and off
	// where a durable log is upstream already (the ingester role, which
	// reads Kafka).
	Mode string `yaml:"mode"`
	// Dir holds the log. aiops serve sets <data dir>/clickhouse-wal when
	// it is empty; the store itself runs without a log then.
	Dir string `yaml:"dir"`
	// FlushInterval is the most often a drain round starts while less
	// than batch_size rows wait.
	FlushInterval model.Duration `yaml:"flush_interval"`
	// MaxSizeMiB bounds what waits in the log: past it, commits fail
	// with a retryable error until the drain has caught up, so that a
	// ClickHouse outage pushes back on clients instead of filling the
	// disk.
	MaxSizeMiB int `yaml:"max_size_mib"`
	// FSync makes each commit wait for an fsync of the log (commits
	// waiting together share one), so that it also survives a machine
	// crash; without it a commit survives a crash of the process.
	FSync bool `yaml:"fsync"`
}

// WAL modes.
const (
	WALAuto = "auto"
	WALOn   = "on"
	WALOff  = "off"
)

// DefaultConfig returns the defaults for every key.
func DefaultConfig() Config {
	return Config{
		Addresses:    []string{"127.0.0.1:9000"},
		Database:     "aiops",
		Username:     "default",
		DialTimeout:  model.Duration(5 * time.Second),
		ReadTimeout:  model.Duration(2 * time.Minute),
		MaxOpenConns: 16,
		Compression:  "auto",
		Retention:    model.Duration(15 * 24 * time.Hour),
		BatchSize:    500_000,
		MaxSeries:    500_000,
		MaxSamples:   50_000_000,
		SeriesIndex:  true,

		SampleCacheMiB:  256,
		SpanHeadMiB:     512,
		SpanHeadRefresh: model.Duration(time.Second),
		WAL: WALConfig{
			Mode:          WALAuto,
			FlushInterval: model.Duration(time.Second),
			MaxSizeMiB:    4096,
		},
	}
}

// Validate reports the first invalid key.
func (c Config) Validate() error {
	if len(c.Addresses) == 0 {
		return fmt.Errorf("clickhouse.addresses: must name at least one host:port")
	}
	for i, a := range c.Addresses {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return fmt.Errorf("clickhouse.addresses[%d]: %q is not host:port", i, a)
		}
	}
	if c.Cluster != "" && !validIdentifier(c.Cluster) {
		return fmt.Errorf("clickhouse.cluster: %q must be letters, digits and underscores, not starting with a digit", c.Cluster)
	}
	if c.Password != "" && c.PasswordFile != "" {
		return errors.New("clickhouse.password_file: set either password or password_file, not both")
	}
	if !validIdentifier(c.Database) {
		return fmt.Errorf("clickhouse.database: %q must be letters, digits and underscores, not starting with a digit", c.Database)
	}
	switch {
	case c.DialTimeout <= 0:
		return fmt.Errorf("clickhouse.dial_timeout: must be > 0, got %s", c.DialTimeout)
	case c.ReadTimeout <= 0:
		return fmt.Errorf("clickhouse.read_timeout: must be > 0, got %s", c.ReadTimeout)
	case c.MaxOpenConns <= 0:
		return fmt.Errorf("clickhouse.max_open_conns: must be > 0, got %d", c.MaxOpenConns)
	case c.Retention < 0:
		return fmt.Errorf("clickhouse.retention: must be >= 0, got %s", c.Retention)
	case c.EventRetention < 0:
		return fmt.Errorf("clickhouse.event_retention: must be >= 0, got %s", c.EventRetention)
	case c.BatchSize <= 0:
		return fmt.Errorf("clickhouse.batch_size: must be > 0, got %d", c.BatchSize)
	case c.MaxSeries < 0:
		return fmt.Errorf("clickhouse.max_series: must be >= 0, got %d", c.MaxSeries)
	case c.MaxSamples < 0:
		return fmt.Errorf("clickhouse.max_samples: must be >= 0, got %d", c.MaxSamples)
	case c.SampleCacheMiB < 0:
		return fmt.Errorf("clickhouse.sample_cache_mib: must be >= 0, got %d", c.SampleCacheMiB)
	case c.SeriesIndexRefresh < 0:
		return fmt.Errorf("clickhouse.series_index_refresh: must be >= 0, got %s", c.SeriesIndexRefresh)
	case c.SpanHeadMiB < 0:
		return fmt.Errorf("clickhouse.span_head_mib: must be >= 0, got %d", c.SpanHeadMiB)
	case c.SpanHeadMiB > 1<<20:
		return fmt.Errorf("clickhouse.span_head_mib: %d MiB is more than 1 TiB; set 0 to turn the span head off", c.SpanHeadMiB)
	case c.SpanHeadRefresh < 0:
		return fmt.Errorf("clickhouse.span_head_refresh: must be >= 0, got %s", c.SpanHeadRefresh)
	}
	switch c.WAL.Mode {
	case WALAuto, WALOn, WALOff:
	default:
		return fmt.Errorf("clickhouse.wal.mode: must be auto, on or off, got %q", c.WAL.Mode)
	}
	switch {
	case c.WAL.FlushInterval <= 0:
		return fmt.Errorf("clickhouse.wal.flush_interval: must be > 0, got %s", c.WAL.FlushInterval)
	case c.WAL.MaxSizeMiB <= 0:
		return fmt.Errorf("clickhouse.wal.max_size_mib: must be > 0, got %d", c.WAL.MaxSizeMiB)
	}
	switch strings.ToLower(c.Compression) {
	case "", "auto", "none", "lz4", "zstd":
	default:
		return fmt.Errorf("clickhouse.compression: must be auto, none, lz4 or zstd, got %q", c.Compression)
	}
	return nil
}

func validIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// Secret is a string that never shows itself: printing, logging or
// marshalling it yields a mask, so a config dump cannot leak it.
type Secret string

const secretMask = "<secret>"

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return secretMask
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return s.String() }

// MarshalYAML masks the value in config dumps.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalText masks the value in JSON and other text encodings.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// LogValue masks the value in slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// wireCompression resolves Compression to none, lz4 or zstd.
func (c Config) wireCompression() string {
	switch m := strings.ToLower(c.Compression); m {
	case "none", "lz4", "zstd":
		return m
	case "":
		return "none"
	}
	for _, a := range c.Addresses {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			return "lz4"
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return "lz4"
		}
	}
	return "none"
}
