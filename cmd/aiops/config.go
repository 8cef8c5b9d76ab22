package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/aiops-dev/aiops/alerting"
	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/analyzer"
	"github.com/aiops-dev/aiops/api/auth"
	"github.com/aiops-dev/aiops/api/jaeger"
	"github.com/aiops-dev/aiops/api/logs"
	"github.com/aiops-dev/aiops/api/promapi"
	"github.com/aiops-dev/aiops/collector"
	"github.com/aiops-dev/aiops/storage/clickhouse"
	"github.com/aiops-dev/aiops/storage/embedded"
)

// Role is what one aiops process does. Every role runs the same binary.
type Role string

const (
	// RoleAllInOne runs everything in one process: OTLP in, store, APIs.
	RoleAllInOne Role = "all-in-one"
	// RoleCollector takes OTLP in and writes it to Kafka.
	RoleCollector Role = "collector"
	// RoleIngester reads Kafka and writes to ClickHouse.
	RoleIngester Role = "ingester"
)

// Config is the aiops configuration file. Each section belongs to one
// component and is validated by it; flags override the file.
type Config struct {
	Role      Role             `yaml:"role"`
	Server    ServerConfig     `yaml:"server"`
	Storage   StorageConfig    `yaml:"storage"`
	Collector collector.Config `yaml:"collector"`
	Query     promapi.Config   `yaml:"query"`
	Analyzer  analyzer.Config  `yaml:"analyzer"`
	Alerting  alerting.Config  `yaml:"alerting"`
	Incidents incident.Config  `yaml:"incidents"`
	Traces    jaeger.Config    `yaml:"traces"`
	Logs      logs.Config      `yaml:"logs"`
}

// ServerConfig configures the main HTTP listener.
type ServerConfig struct {
	// HTTPAddr serves the APIs, /metrics, /healthz and /readyz.
	HTTPAddr string `yaml:"http_addr"`
	// ShutdownTimeout bounds a graceful shutdown: in-flight requests
	// finish and queued data is flushed within it.
	ShutdownTimeout model.Duration `yaml:"shutdown_timeout"`
	// AdminTokenFile holds the bootstrap admin token. When empty, aiops
	// creates one in <data dir>/admin.token on first start (mode 0600).
	AdminTokenFile string `yaml:"admin_token_file"`
	// createAdminToken is set when AdminTokenFile was derived from the
	// data dir, where aiops may create the token on first start.
	createAdminToken bool
	// Auth configures optional ways to authenticate besides API tokens.
	Auth AuthConfig `yaml:"auth"`
}

// AuthConfig configures authentication beyond API tokens.
type AuthConfig struct {
	JWT auth.JWTConfig `yaml:"jwt"`
}

// Validate reports the first invalid key.
func (c ServerConfig) Validate() error {
	if c.HTTPAddr == "" {
		return errors.New("server.http_addr: must not be empty")
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("server.shutdown_timeout: must be > 0, got %s", c.ShutdownTimeout)
	}
	return c.Auth.JWT.Validate("server.auth.jwt")
}

// Storage backends.
const (
	BackendEmbedded   = "embedded"
	BackendClickHouse = "clickhouse"
)

// StorageConfig picks and configures the backend.
type StorageConfig struct {
	// Backend is "embedded" (default, no server needed) or "clickhouse".
	Backend    string            `yaml:"backend"`
	Embedded   embedded.Config   `yaml:"embedded"`
	ClickHouse clickhouse.Config `yaml:"clickhouse"`
}

// Validate reports the first invalid key of the selected backend.
func (c StorageConfig) Validate() error {
	switch c.Backend {
	case BackendEmbedded:
		return c.Embedded.Validate()
	case BackendClickHouse:
		return c.ClickHouse.Validate()
	default:
		return fmt.Errorf("storage.backend: must be %q or %q, got %q", BackendEmbedded, BackendClickHouse, c.Backend)
	}
}

// DefaultConfig is what aiops runs with when no file says otherwise.
func DefaultConfig() Config {
	return Config{
		Role: RoleAllInOne,
		Server: ServerConfig{
			HTTPAddr:        ":9090",
			ShutdownTimeout: model.Duration(30 * time.Second),
		},
		Storage: StorageConfig{
			Backend:    BackendEmbedded,
			Embedded:   embedded.DefaultConfig(),
			ClickHouse: clickhouse.DefaultConfig(),
		},
		Collector: collector.DefaultConfig(),
		Query:     promapi.DefaultConfig(),
		Analyzer:  analyzer.DefaultConfig(),
		Alerting:  alerting.DefaultConfig(),
		Incidents: incident.DefaultConfig(),
		Traces:    jaeger.DefaultConfig(),
		Logs:      logs.DefaultConfig(),
	}
}

// Validate checks every section the role uses.
func (c Config) Validate() error {
	switch c.Role {
	case RoleAllInOne, RoleCollector, RoleIngester:
	default:
		return fmt.Errorf("role: must be one of %q, %q, %q, got %q", RoleAllInOne, RoleCollector, RoleIngester, c.Role)
	}
	if err := c.Server.Validate(); err != nil {
		return err
	}
	if c.Role == RoleIngester && c.Storage.Backend != BackendClickHouse {
		return fmt.Errorf("storage.backend: the ingester role writes to ClickHouse, got %q", c.Storage.Backend)
	}
	if err := c.Storage.Validate(); err != nil {
		return err
	}
	if err := c.Collector.Validate(); err != nil {
		return err
	}
	if c.Role != RoleAllInOne {
		return nil
	}
	if err := c.Query.Validate(); err != nil {
		return err
	}
	if c.analyzerEnabled() {
		if err := c.Analyzer.Validate(); err != nil {
			return err
		}
	}
	if err := c.Alerting.Validate(); err != nil {
		return err
	}
	if err := c.Traces.Validate(); err != nil {
		return err
	}
	if err := c.Logs.Validate(); err != nil {
		return err
	}
	return c.Incidents.Validate()
}

// analyzerEnabled reports whether the file selects anything to analyse;
// without selectors the analyzer does not run.
func (c *Config) analyzerEnabled() bool {
	return len(c.Analyzer.Selectors)+len(c.Analyzer.Capacities) > 0
}

// resolvePaths puts every directory a component keeps state in under the
// data dir, unless the file placed it elsewhere, so that one --data-dir
// holds a server's whole state.
func (c *Config) resolvePaths() {
	dir := c.Storage.Embedded.DataDir
	if c.Collector.Queue.Dir == "" {
		c.Collector.Queue.Dir = filepath.Join(dir, "queue")
	}
	if c.Analyzer.StateDir == "" {
		c.Analyzer.StateDir = filepath.Join(dir, "analyzer")
	}
	if c.Alerting.DataDir == "" || c.Alerting.DataDir == alerting.DefaultConfig().DataDir {
		c.Alerting.DataDir = filepath.Join(dir, "alerting")
	}
	if w := &c.Storage.ClickHouse.WAL; w.Dir == "" &&
		(w.Mode == clickhouse.WALOn || w.Mode == clickhouse.WALAuto && c.Role == RoleAllInOne) {
		w.Dir = filepath.Join(dir, "clickhouse-wal")
	}
	if c.Server.AdminTokenFile == "" {
		c.Server.AdminTokenFile = filepath.Join(dir, "admin.token")
		c.Server.createAdminToken = true
	}
}

// LoadConfig reads a YAML file over the defaults. Unknown keys are errors:
// a misspelt key silently ignored is a misconfiguration found in an outage.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("read config: %w", err)
	}
	if err := decodeConfig(bytes.NewReader(b), &cfg); err != nil {
		return cfg, fmt.Errorf("config %s: %w", filepath.Clean(path), err)
	}
	// Rule and Alertmanager files are found next to the configuration
	// file, as Prometheus finds rule_files.
	cfg.Alerting.ResolvePaths(filepath.Dir(path))
	return cfg, nil
}

func decodeConfig(r io.Reader, cfg *Config) error {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
