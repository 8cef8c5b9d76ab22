package remediation

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/alertmanager/matcher/parse"
	"github.com/prometheus/common/model"

	"github.com/aiops-dev/aiops/remediation/runbook"
)

// Config configures remediation. Its YAML keys live under `remediation`.
// Remediation is off when RunbookFiles is empty.
type Config struct {
	// RunbookFiles are runbook files or globs, relative to the
	// configuration file's directory (as alerting.rule_files).
	RunbookFiles []string `yaml:"runbook_files"`
	// Shadow runs every runbook in shadow mode: decide, record, never act.
	Shadow bool `yaml:"shadow"`
	// MaxRuns bounds the runs of all runbooks together.
	MaxRuns runbook.MaxRuns `yaml:"max_runs"`
	// MaintenanceWindows apply to every runbook.
	MaintenanceWindows []runbook.Window `yaml:"maintenance_windows"`
	// ConditionInterval is how often condition, anomaly and forecast
	// triggers are evaluated.
	ConditionInterval model.Duration `yaml:"condition_interval"`
	// History is how far back executions are read at start: cooldowns,
	// run limits and the learning record look no further.
	History model.Duration `yaml:"history"`
	// EscalateUnhandled escalates the incidents of firing alerts that no
	// runbook handles (none matches, none applies, the rails refused).
	EscalateUnhandled UnhandledConfig `yaml:"escalate_unhandled"`
	// Breaker tunes the circuit breakers per driver and target.
	Breaker BreakerConfig `yaml:"breaker"`
	Drivers DriversConfig `yaml:"drivers"`
}

// UnhandledConfig escalates an alert matching one of Alerts (matcher
// groups, `{severity="critical"}`; empty: every alert) that still fires
// After remediation saw it fire, with no run handling it (see
// engine.UnhandledPolicy). After 0 turns it off.
type UnhandledConfig struct {
	After  model.Duration `yaml:"after"`
	Alerts []string       `yaml:"alerts"`
}

// BreakerConfig tunes the circuit breakers.
type BreakerConfig struct {
	// Failures in a row open a breaker.
	Failures int `yaml:"failures"`
	// OpenFor is how long an open breaker refuses calls.
	OpenFor model.Duration `yaml:"open_for"`
}

// DriversConfig configures the drivers actions run on. notify and wait
// always exist; the others are there when configured (webhook too, with
// its defaults).
type DriversConfig struct {
	Workflow   *WorkflowConfig   `yaml:"workflow"`
	Kubernetes *KubernetesConfig `yaml:"kubernetes"`
	Webhook    WebhookConfig     `yaml:"webhook"`
	Exec       ExecConfig        `yaml:"exec"`
	Notify     NotifyConfig      `yaml:"notify"`
}

// WorkflowConfig is the workflow engine's control API.
type WorkflowConfig struct {
	URL     string         `yaml:"url"`
	Token   Secret         `yaml:"token"`
	Timeout model.Duration `yaml:"timeout"`
}

// KubernetesConfig is the cluster actions act on.
type KubernetesConfig struct {
	// Kubeconfig is a kubeconfig file; empty uses the in-cluster
	// service account.
	Kubeconfig string   `yaml:"kubeconfig"`
	Context    string   `yaml:"context"`
	Namespaces []string `yaml:"namespaces"`
}

// WebhookConfig tunes the webhook action.
type WebhookConfig struct {
	AllowedURLPrefixes []string `yaml:"allowed_url_prefixes"`
	MaxAttempts        int      `yaml:"max_attempts"`
}

// ExecConfig allows commands.
type ExecConfig struct {
	// Allowed are absolute paths of the only commands exec may run.
	Allowed []string `yaml:"allowed"`
	// Env is the commands' whole environment (K=V).
	Env []string `yaml:"env"`
}

// NotifyConfig names the channels notify and escalations send to.
type NotifyConfig struct {
	Channels map[string]ChannelConfig `yaml:"channels"`
}

// ChannelConfig is one notification channel: an endpoint that takes
// {"text": "…"} (a Slack incoming webhook, a chat bridge).
type ChannelConfig struct {
	// URL is the endpoint; incoming-webhook URLs are secrets themselves.
	URL   Secret `yaml:"url"`
	Token Secret `yaml:"token"`
}

// Secret is a value given inline, or read from an environment variable
// or a file (trailing newline removed). It never prints its value.
type Secret struct {
	Value string `yaml:"value"`
	Env   string `yaml:"env"`
	File  string `yaml:"file"`
}

// IsSet reports whether any source is given.
func (s Secret) IsSet() bool { return s.Value != "" || s.Env != "" || s.File != "" }

// String masks the value.
func (s Secret) String() string {
	switch {
	case s.Env != "":
		return "<env:" + s.Env + ">"
	case s.File != "":
		return "<file:" + s.File + ">"
	case s.Value != "":
		return "<secret>"
	}
	return ""
}

// MarshalYAML masks the value, so that a configuration dumped for
// debugging keeps it out.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

func (s Secret) validate(key string) error {
	n := 0
	for _, v := range []string{s.Value, s.Env, s.File} {
		if v != "" {
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("%s: set one of value, env or file", key)
	}
	return nil
}

// Resolve reads the secret.
func (s Secret) Resolve(key string) (string, error) {
	switch {
	case s.Value != "":
		return s.Value, nil
	case s.Env != "":
		v, ok := os.LookupEnv(s.Env)
		if !ok || v == "" {
			return "", fmt.Errorf("%s: environment variable %s is not set", key, s.Env)
		}
		return v, nil
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return "", fmt.Errorf("%s: %w", key, errors.Unwrap(err))
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return "", fmt.Errorf("%s: file %s is empty", key, s.File)
		}
		return v, nil
	}
	return "", nil
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		ConditionInterval: model.Duration(30 * time.Second),
		History:           model.Duration(7 * 24 * time.Hour),
		Breaker:           BreakerConfig{Failures: 5, OpenFor: model.Duration(5 * time.Minute)},
		Drivers:           DriversConfig{Webhook: WebhookConfig{MaxAttempts: 3}},
	}
}

// Enabled reports whether remediation runs: some runbook file is named.
func (c Config) Enabled() bool { return len(c.RunbookFiles) > 0 }

// Validate reports the first invalid key.
func (c Config) Validate() error {
	for i, p := range c.RunbookFiles {
		if p == "" {
			return fmt.Errorf("remediation.runbook_files[%d]: must not be empty", i)
		}
		if _, err := filepath.Match(p, ""); err != nil {
			return fmt.Errorf("remediation.runbook_files[%d]: %q: %w", i, p, err)
		}
	}
	switch {
	case c.MaxRuns.Count < 0:
		return fmt.Errorf("remediation.max_runs.count: must be >= 0, got %d", c.MaxRuns.Count)
	case c.MaxRuns.Count > 0 && c.MaxRuns.Window <= 0:
		return errors.New("remediation.max_runs.window: required with count, e.g. 1h")
	case c.ConditionInterval <= 0:
		return fmt.Errorf("remediation.condition_interval: must be > 0, got %s", c.ConditionInterval)
	case c.History <= 0:
		return fmt.Errorf("remediation.history: must be > 0, got %s", c.History)
	case c.MaxRuns.Window > c.History:
		return fmt.Errorf("remediation.max_runs.window: %s is longer than remediation.history (%s)", c.MaxRuns.Window, c.History)
	case c.Breaker.Failures <= 0:
		return fmt.Errorf("remediation.breaker.failures: must be > 0, got %d", c.Breaker.Failures)
	case c.Breaker.OpenFor <= 0:
		return fmt.Errorf("remediation.breaker.open_for: must be > 0, got %s", c.Breaker.OpenFor)
	}
	if c.EscalateUnhandled.After < 0 {
		return fmt.Errorf("remediation.escalate_unhandled.after: must be >= 0, got %s", c.EscalateUnhandled.After)
	}
	for i, m := range c.EscalateUnhandled.Alerts {
		if _, err := parse.Matchers(m); err != nil {
			return fmt.Errorf("remediation.escalate_unhandled.alerts[%d]: %q: %w", i, m, err)
		}
	}
	for i, w := range c.MaintenanceWindows {
		if err := w.Validate(); err != nil {
			return fmt.Errorf("remediation.maintenance_windows[%d].%w", i, err)
		}
	}
	d := c.Drivers
	if w := d.Workflow; w != nil {
		if w.URL == "" {
			return errors.New("remediation.drivers.workflow.url: required: the control API's base URL")
		}
		if !w.Token.IsSet() {
			return errors.New("remediation.drivers.workflow.token: required (value, env or file)")
		}
		if err := w.Token.validate("remediation.drivers.workflow.token"); err != nil {
			return err
		}
		if w.Timeout < 0 {
			return errors.New("remediation.drivers.workflow.timeout: must be >= 0")
		}
	}
	if k := d.Kubernetes; k != nil && len(k.Namespaces) == 0 {
		return errors.New("remediation.drivers.kubernetes.namespaces: name the namespaces runbooks may act in")
	}
	if d.Webhook.MaxAttempts <= 0 {
		return fmt.Errorf("remediation.drivers.webhook.max_attempts: must be > 0, got %d", d.Webhook.MaxAttempts)
	}
	for i, p := range d.Exec.Allowed {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return fmt.Errorf("remediation.drivers.exec.allowed[%d]: must be a clean absolute path, got %q", i, p)
		}
	}
	for name, ch := range d.Notify.Channels {
		key := "remediation.drivers.notify.channels." + name
		if !ch.URL.IsSet() {
			return fmt.Errorf("%s.url: required", key)
		}
		if err := ch.URL.validate(key + ".url"); err != nil {
			return err
		}
		if err := ch.Token.validate(key + ".token"); err != nil {
			return err
		}
	}
	return nil
}

// ResolvePaths makes relative runbook files, kubeconfig and secret files
// relative to dir, the configuration file's directory.
func (c *Config) ResolvePaths(dir string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	for i, p := range c.RunbookFiles {
		c.RunbookFiles[i] = abs(p)
	}
	if w := c.Drivers.Workflow; w != nil {
		w.Token.File = abs(w.Token.File)
	}
	if k := c.Drivers.Kubernetes; k != nil {
		k.Kubeconfig = abs(k.Kubeconfig)
	}
	for name, ch := range c.Drivers.Notify.Channels {
		ch.URL.File, ch.Token.File = abs(ch.URL.File), abs(ch.Token.File)
		c.Drivers.Notify.Channels[name] = ch
	}
}
