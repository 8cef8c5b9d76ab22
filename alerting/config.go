package alerting

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"time"

	"github.com/prometheus/common/model"

	"github.com/aiops-dev/aiops/alerting/alertmanager"
)

// Config configures rule evaluation and the embedded Alertmanager. Its YAML
// keys live under `alerting`.
type Config struct {
	// RuleFiles are Prometheus rule files or globs, e.g. "rules/*.yml".
	RuleFiles []string `yaml:"rule_files"`
	// EvaluationInterval is how often rule groups that set no interval of
	// their own are evaluated (Prometheus's global.evaluation_interval).
	EvaluationInterval model.Duration `yaml:"evaluation_interval"`
	// ResendDelay is how often a still-firing alert is handed to the
	// Alertmanager again (--rules.alert.resend-delay).
	ResendDelay model.Duration `yaml:"resend_delay"`
	// ForOutageTolerance is how long aiops may have been down for `for`
	// state to be restored (--rules.alert.for-outage-tolerance).
	ForOutageTolerance model.Duration `yaml:"for_outage_tolerance"`
	// ForGracePeriod is the least time a restored pending alert waits
	// before firing (--rules.alert.for-grace-period).
	ForGracePeriod model.Duration `yaml:"for_grace_period"`
	// ExternalURL is where users reach aiops. It links alerts back to their
	// expression (generatorURL) and notifications to the silence page.
	// Empty means http://<hostname>:9090.
	ExternalURL string `yaml:"external_url"`
	// ExternalLabels are added to every alert sent (unless the alert has
	// the label already) and are $externalLabels in templates.
	ExternalLabels map[string]string `yaml:"external_labels"`

	// AlertmanagerConfigFile is an ordinary Alertmanager configuration
	// file (route, receivers, inhibit_rules, time_intervals, templates).
	// Empty groups alerts by alertname into a receiver that notifies
	// nobody (the incident manager still sees every group).
	AlertmanagerConfigFile string `yaml:"alertmanager_config_file"`
	// DataDir keeps silences and the notification log (Alertmanager's
	// snapshot files "silences" and "nflog") and the keep_firing_for
	// state of the rules ("rules-state.json").
	DataDir string `yaml:"data_dir"`
	// Retention is how long expired silences and notification log
	// entries are kept (Alertmanager's --data.retention).
	Retention model.Duration `yaml:"retention"`
	// MaintenanceInterval is how often expired silences and notification
	// log entries past Retention are dropped. (Every change is saved to
	// DataDir as it is made.)
	MaintenanceInterval model.Duration `yaml:"maintenance_interval"`
	// MaxSilences bounds the silences kept, expired ones included
	// (Alertmanager's --silences.max-silences); 0 means no limit.
	MaxSilences int `yaml:"max_silences"`
	// MaxSilenceSizeBytes bounds one silence as stored (matchers,
	// comment, author), on every API (Alertmanager's
	// --silences.max-silence-size-bytes).
	MaxSilenceSizeBytes int `yaml:"max_silence_size_bytes"`
	// Cluster makes the alerting of several replicas notify once
	// between them (Alertmanager's gossip cluster): every replica
	// evaluates the rules, and they share notification logs and
	// silences. Empty listen_address runs alone.
	Cluster ClusterConfig `yaml:"cluster"`
}

// ClusterConfig is Alertmanager's --cluster.* flags.
type ClusterConfig struct {
	// ListenAddress is host:port of the gossip, TCP and UDP.
	ListenAddress string `yaml:"listen_address"`
	// AdvertiseAddress is where peers reach this replica, when not
	// listen_address (e.g. behind NAT, or listening on 0.0.0.0).
	AdvertiseAddress string `yaml:"advertise_address"`
	// Peers are host:port of the other replicas' listen addresses.
	Peers []string `yaml:"peers"`
	// PeerTimeout is how long each replica waits for the one before it
	// to notify; 0 means 15s.
	PeerTimeout model.Duration `yaml:"peer_timeout"`
}

// DefaultConfig returns Prometheus's and Alertmanager's defaults.
func DefaultConfig() Config {
	return Config{
		EvaluationInterval:  model.Duration(time.Minute),
		ResendDelay:         model.Duration(time.Minute),
		ForOutageTolerance:  model.Duration(time.Hour),
		ForGracePeriod:      model.Duration(10 * time.Minute),
		DataDir:             "data/alerting",
		Retention:           model.Duration(120 * time.Hour),
		MaintenanceInterval: model.Duration(15 * time.Minute),
		MaxSilences:         alertmanager.DefaultMaxSilences,
		MaxSilenceSizeBytes: alertmanager.DefaultMaxSilenceSizeBytes,
	}
}

// Validate reports the first invalid key.
func (c Config) Validate() error {
	for i, p := range c.RuleFiles {
		if p == "" {
			return fmt.Errorf("alerting.rule_files[%d]: must not be empty", i)
		}
		if _, err := filepath.Match(p, ""); err != nil {
			return fmt.Errorf("alerting.rule_files[%d]: %q: %w", i, p, err)
		}
	}
	switch {
	case c.EvaluationInterval <= 0:
		return fmt.Errorf("alerting.evaluation_interval: must be > 0, got %s", c.EvaluationInterval)
	case c.ResendDelay <= 0:
		return fmt.Errorf("alerting.resend_delay: must be > 0, got %s", c.ResendDelay)
	case c.ForOutageTolerance <= 0:
		return fmt.Errorf("alerting.for_outage_tolerance: must be > 0, got %s", c.ForOutageTolerance)
	case c.ForGracePeriod < 0:
		return fmt.Errorf("alerting.for_grace_period: must be >= 0, got %s", c.ForGracePeriod)
	case c.DataDir == "":
		return errors.New("alerting.data_dir: must not be empty")
	case c.Retention <= 0:
		return fmt.Errorf("alerting.retention: must be > 0, got %s", c.Retention)
	case c.MaintenanceInterval <= 0:
		return fmt.Errorf("alerting.maintenance_interval: must be > 0, got %s", c.MaintenanceInterval)
	case c.MaxSilences < 0:
		return fmt.Errorf("alerting.max_silences: must be >= 0, got %d", c.MaxSilences)
	case c.MaxSilenceSizeBytes <= 0 || c.MaxSilenceSizeBytes > alertmanager.MaxSilenceSizeBytes:
		return fmt.Errorf("alerting.max_silence_size_bytes: must be in 1..%d (a larger silence could not be read back), got %d",
			alertmanager.MaxSilenceSizeBytes, c.MaxSilenceSizeBytes)
	}
	if c.ExternalURL != "" {
		u, err := url.Parse(c.ExternalURL)
		if err != nil {
			return fmt.Errorf("alerting.external_url: %w", err)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("alerting.external_url: must be an absolute http(s) URL, got %q", c.ExternalURL)
		}
	}
	if err := c.Cluster.validate(); err != nil {
		return err
	}
	for name, value := range c.ExternalLabels {
		if !model.LabelName(name).IsValid() {
			return fmt.Errorf("alerting.external_labels: invalid label name %q", name)
		}
		if value == "" {
			return fmt.Errorf("alerting.external_labels.%s: must not be empty", name)
		}
	}
	return nil
}

// ResolvePaths makes relative rule_files and alertmanager_config_file
// relative to dir, the directory of the configuration file that names
// them, as Prometheus does for rule_files.
func (c *Config) ResolvePaths(dir string) {
	for i, p := range c.RuleFiles {
		if p != "" && !filepath.IsAbs(p) {
			c.RuleFiles[i] = filepath.Join(dir, p)
		}
	}
	if p := c.AlertmanagerConfigFile; p != "" && !filepath.IsAbs(p) {
		c.AlertmanagerConfigFile = filepath.Join(dir, p)
	}
}

func (c ClusterConfig) validate() error {
	if c.ListenAddress == "" {
		if len(c.Peers) > 0 || c.AdvertiseAddress != "" {
			return errors.New("alerting.cluster.listen_address: must be set when peers or advertise_address are")
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(c.ListenAddress); err != nil {
		return fmt.Errorf("alerting.cluster.listen_address: %q is not host:port", c.ListenAddress)
	}
	if c.AdvertiseAddress != "" {
		if _, _, err := net.SplitHostPort(c.AdvertiseAddress); err != nil {
			return fmt.Errorf("alerting.cluster.advertise_address: %q is not host:port", c.AdvertiseAddress)
		}
	}
	for i, p := range c.Peers {
		if _, _, err := net.SplitHostPort(p); err != nil {
			return fmt.Errorf("alerting.cluster.peers[%d]: %q is not host:port", i, p)
		}
	}
	if c.PeerTimeout < 0 {
		return fmt.Errorf("alerting.cluster.peer_timeout: must be >= 0, got %s", c.PeerTimeout)
	}
	return nil
}
