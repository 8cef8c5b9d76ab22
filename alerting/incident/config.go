package incident

import (
	"fmt"
	"time"

	"github.com/prometheus/common/model"
)

// Config configures the incident manager. Its YAML keys live under
// `incidents`.
type Config struct {
	// AutoResolveAfter is the quiet period: an incident whose alerts have
	// all resolved is resolved once no alert of it has fired for this
	// long. 0 resolves it as soon as its last alert resolves.
	AutoResolveAfter model.Duration `yaml:"auto_resolve_after"`
	// ReopenWindow is how long after an incident resolved a new firing
	// alert of its group reopens it; later ones open a new incident. 0
	// never reopens.
	ReopenWindow model.Duration `yaml:"reopen_window"`
	// EscalateAfter escalates an incident nobody has acknowledged after
	// this long (an "escalated" event, level 1). 0 turns it off.
	EscalateAfter model.Duration `yaml:"escalate_after"`
	// CheckInterval is how often auto-resolve and escalation deadlines
	// are checked.
	CheckInterval model.Duration `yaml:"check_interval"`
	// Receivers restricts incidents to alert groups routed to these
	// Alertmanager receivers. Empty takes the groups of every receiver;
	// with `continue: true` routes each matching route's group is then an
	// incident of its own.
	Receivers []string `yaml:"receivers"`
	// ServiceLabels are the alert labels that name the service, in order
	// of preference.
	ServiceLabels []string `yaml:"service_labels"`
	// RootCauseLookback is how far before the incident's first alert
	// anomalies and spans are read to rank root causes.
	RootCauseLookback model.Duration `yaml:"root_cause_lookback"`
	// RootCauseTimeout bounds one root-cause ranking; an incident opens
	// without a ranking (and says why) rather than wait longer.
	RootCauseTimeout model.Duration `yaml:"root_cause_timeout"`
	// MaxRootCauses is how many ranked causes an incident keeps.
	MaxRootCauses int `yaml:"max_root_causes"`
	// MaxAlerts is how many alerts (firing or resolved) an incident
	// records, the earliest started first; the group's other firing
	// alerts are counted (alerts_over_limit) and logged, not recorded,
	// and the incident does not resolve by itself while any fires. 0
	// records every alert, however many a storm brings.
	MaxAlerts int `yaml:"max_alerts"`
}

// DefaultConfig returns the defaults for every key.
func DefaultConfig() Config {
	return Config{
		AutoResolveAfter:  model.Duration(5 * time.Minute),
		ReopenWindow:      model.Duration(time.Hour),
		CheckInterval:     model.Duration(10 * time.Second),
		ServiceLabels:     []string{"service", "service_name", "job"},
		RootCauseLookback: model.Duration(15 * time.Minute),
		RootCauseTimeout:  model.Duration(10 * time.Second),
		MaxRootCauses:     5,
		MaxAlerts:         1000,
	}
}

// Validate reports the first invalid key.
func (c Config) Validate() error {
	switch {
	case c.AutoResolveAfter < 0:
		return fmt.Errorf("incidents.auto_resolve_after: must be >= 0, got %s", c.AutoResolveAfter)
	case c.ReopenWindow < 0:
		return fmt.Errorf("incidents.reopen_window: must be >= 0, got %s", c.ReopenWindow)
	case c.EscalateAfter < 0:
		return fmt.Errorf("incidents.escalate_after: must be >= 0, got %s", c.EscalateAfter)
	case c.CheckInterval <= 0:
		return fmt.Errorf("incidents.check_interval: must be > 0, got %s", c.CheckInterval)
	case c.RootCauseLookback < 0:
		return fmt.Errorf("incidents.root_cause_lookback: must be >= 0, got %s", c.RootCauseLookback)
	case c.RootCauseTimeout <= 0:
		return fmt.Errorf("incidents.root_cause_timeout: must be > 0, got %s", c.RootCauseTimeout)
	case c.MaxRootCauses < 0:
		return fmt.Errorf("incidents.max_root_causes: must be >= 0, got %d", c.MaxRootCauses)
	case c.MaxAlerts < 0:
		return fmt.Errorf("incidents.max_alerts: must be >= 0, got %d", c.MaxAlerts)
	case len(c.ServiceLabels) == 0:
		return fmt.Errorf("incidents.service_labels: must name at least one label")
	}
	for i, l := range c.ServiceLabels {
		if !model.LabelName(l).IsValid() {
			return fmt.Errorf("incidents.service_labels[%d]: invalid label name %q", i, l)
		}
	}
	for i, r := range c.Receivers {
		if r == "" {
			return fmt.Errorf("incidents.receivers[%d]: must not be empty", i)
		}
	}
	return nil
}
