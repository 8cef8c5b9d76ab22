package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
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
	"github.com/aiops-dev/aiops/api/slackapp"
	"github.com/aiops-dev/aiops/collector"
	"github.com/aiops-dev/aiops/internal/selfmon"
	"github.com/aiops-dev/aiops/lease"
	"github.com/aiops-dev/aiops/remediation"
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
	// Slack is the Slack app: incident messages, /aiops, buttons.
	Slack slackapp.Config `yaml:"slack"`
	// Remediation runs runbooks; off without runbook files.
	Remediation remediation.Config `yaml:"remediation"`
	// SelfMonitoring writes aiops's own metrics into its store.
	SelfMonitoring selfmon.Config `yaml:"self_monitoring"`
	// HA makes this node one of several all-in-one replicas on one
	// ClickHouse (docs/SCALING.md).
	HA HAConfig `yaml:"ha"`
}

// HAConfig makes this node one replica of an HA pair (or more) of
// all-in-one nodes on one ClickHouse. Every replica evaluates the rules,
// answers queries and serves the APIs; the holder of a lease alone writes
// incidents, runs remediation and posts to Slack, and every replica
// analyzes its own share of the series (by rendezvous hashing over the
// replicas alive). Empty lease: this node acts alone.
type HAConfig struct {
	// Lease is "" (off), "store" (heartbeats in ClickHouse) or "kafka" (a
	// consumer group; the store's heartbeats then only tell who is
	// alive, for the analyzer).
	Lease string `yaml:"lease"`
	// ID names this replica among the candidates; a process id and a
	// random suffix are added, so that a restarted replica is a new
	// candidate. Default: the host name.
	ID    string            `yaml:"id"`
	Store lease.StoreConfig `yaml:"store"`
	Kafka lease.KafkaConfig `yaml:"kafka"`
}

// Enabled reports whether the node is a replica of an HA pair.
func (c HAConfig) Enabled() bool { return c.Lease != "" }

func (c HAConfig) lease() lease.Config {
	return lease.Config{Backend: c.Lease, Store: c.Store, Kafka: c.Kafka}
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

	// ReadHeaderTimeout bounds reading a request's headers, ReadTimeout
	// the whole request with its body, WriteTimeout writing the answer
	// (from the end of the headers; it must exceed query.timeout), and
	// IdleTimeout how long a keep-alive connection waits for its next
	// request before it is closed.
	ReadHeaderTimeout model.Duration `yaml:"read_header_timeout"`
	ReadTimeout       model.Duration `yaml:"read_timeout"`
	WriteTimeout      model.Duration `yaml:"write_timeout"`
	IdleTimeout       model.Duration `yaml:"idle_timeout"`
	// MaxConnections is how many connections the listener keeps open at
	// once; further ones wait until one closes.
	MaxConnections int `yaml:"max_connections"`
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
	for _, d := range []struct {
		key string
		v   model.Duration
	}{{"read_header_timeout", c.ReadHeaderTimeout}, {"read_timeout", c.ReadTimeout}, {"write_timeout", c.WriteTimeout}, {"idle_timeout", c.IdleTimeout}} {
		if d.v <= 0 {
			return fmt.Errorf("server.%s: must be > 0, got %s", d.key, d.v)
		}
	}
	if c.MaxConnections <= 0 {
		return fmt.Errorf("server.max_connections: must be > 0, got %d", c.MaxConnections)
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
			HTTPAddr:          ":9090",
			ShutdownTimeout:   model.Duration(30 * time.Second),
			ReadHeaderTimeout: model.Duration(10 * time.Second),
			ReadTimeout:       model.Duration(time.Minute),
			WriteTimeout:      model.Duration(3 * time.Minute),
			IdleTimeout:       model.Duration(time.Minute),
			MaxConnections:    1000,
		},
		Storage: StorageConfig{
			Backend:    BackendEmbedded,
			Embedded:   embedded.DefaultConfig(),
			ClickHouse: clickhouse.DefaultConfig(),
		},
		Collector:   collector.DefaultConfig(),
		Query:       promapi.DefaultConfig(),
		Analyzer:    analyzer.DefaultConfig(),
		Alerting:    alerting.DefaultConfig(),
		Incidents:   incident.DefaultConfig(),
		Traces:      jaeger.DefaultConfig(),
		Logs:        logs.DefaultConfig(),
		Slack:       slackapp.DefaultConfig(),
		Remediation: remediation.DefaultConfig(),

		SelfMonitoring: selfmon.DefaultConfig(),
		HA: HAConfig{
			Store: lease.DefaultConfig().Store,
			Kafka: lease.DefaultConfig().Kafka,
		},
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
	if err := c.SelfMonitoring.Validate(); err != nil {
		return err
	}
	if c.Role != RoleAllInOne {
		return nil
	}
	if err := c.Query.Validate(); err != nil {
		return err
	}
	if c.Server.WriteTimeout <= c.Query.Timeout {
		return fmt.Errorf("server.write_timeout: must be longer than query.timeout (%s), or the slowest answers are cut off; got %s", c.Query.Timeout, c.Server.WriteTimeout)
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
	if err := c.Incidents.Validate(); err != nil {
		return err
	}
	if err := c.Slack.Validate(); err != nil {
		return err
	}
	if c.HA.Enabled() {
		if err := c.HA.lease().Validate("ha"); err != nil {
			return err
		}
		if c.Storage.Backend != BackendClickHouse {
			return fmt.Errorf("ha.lease: the replicas of an HA pair share one ClickHouse; storage.backend is %q", c.Storage.Backend)
		}
		if c.Alerting.Cluster.ListenAddress == "" {
			return errors.New("ha.lease: needs alerting.cluster, or every replica sends every notification")
		}
	}
	if c.Remediation.Enabled() {
		return c.Remediation.Validate()
	}
	return nil
}

// finish derives what the file leaves implicit (the collector's role,
// state directories under the data dir) and validates the result, as
// serve does before it starts anything.
func (c *Config) finish() error {
	c.Collector.Role = string(c.Role)
	c.resolvePaths()
	return c.Validate()
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
	if c.Slack.StateDir == "" {
		c.Slack.StateDir = filepath.Join(dir, "slack")
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
	// Rule, Alertmanager and secret files are found next to the
	// configuration file, as Prometheus finds rule_files.
	cfg.Alerting.ResolvePaths(filepath.Dir(path))
	for _, f := range []*string{&cfg.Slack.BotTokenFile, &cfg.Slack.SigningSecretFile, &cfg.Slack.AppTokenFile} {
		if *f != "" && !filepath.IsAbs(*f) {
			*f = filepath.Join(filepath.Dir(path), *f)
		}
	}
	// Runbook files, kubeconfig and secret files too.
	cfg.Remediation.ResolvePaths(filepath.Dir(path))
	return cfg, nil
}

func decodeConfig(r io.Reader, cfg *Config) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		var typeErr *yaml.TypeError
		if errors.As(err, &typeErr) {
			return err // names its lines already
		}
		// A value's own decoder (model.Duration's) fails without saying
		// where: find the key whose value does not decode.
		var root yaml.Node
		if yaml.Unmarshal(b, &root) == nil {
			if key, line := failingKey(&root, reflect.TypeFor[Config](), ""); key != "" {
				return fmt.Errorf("%s (line %d): %w", key, line, err)
			}
		}
		return err
	}
	return nil
}

// failingKey returns the path (alerting.evaluation_interval) and line of
// the deepest value under n that does not decode into a value of type t,
// or "" when every value does.
func failingKey(n *yaml.Node, t reflect.Type, path string) (key string, line int) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		return failingKey(n.Content[0], t, path)
	}
	type child struct {
		n    *yaml.Node
		t    reflect.Type
		path string
	}
	var children []child
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		for i := 0; i+1 < len(n.Content); i += 2 {
			name := n.Content[i].Value
			for f := range t.Fields() {
				if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); tag == name && f.IsExported() {
					children = append(children, child{n.Content[i+1], f.Type, joinKey(path, name)})
				}
			}
		}
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Map:
		for i := 0; i+1 < len(n.Content); i += 2 {
			children = append(children, child{n.Content[i+1], t.Elem(), joinKey(path, n.Content[i].Value)})
		}
	case n.Kind == yaml.SequenceNode && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array):
		for i, c := range n.Content {
			children = append(children, child{c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)})
		}
	}
	for _, c := range children {
		if c.n.Decode(reflect.New(c.t).Interface()) == nil {
			continue
		}
		if key, line := failingKey(c.n, c.t, c.path); key != "" {
			return key, line
		}
		return c.path, c.n.Line
	}
	return "", 0
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
