// Package runbook is the runbook language: the YAML model SREs write,
// loading it with the position of every value, validating it (lint, with
// errors as file:line:col), rendering its templates with secrets masked
// or not, and the JSON Schema editors use.
//
// A runbook says when it applies (a trigger: an alert and label matchers,
// an anomaly or forecast condition, an incident's severity, or manual
// runs only), what it acts on (a target rendered from the trigger's
// labels), what must hold first (PromQL preconditions), what it does (an
// escalation ladder of steps, each an action with a PromQL verification),
// what undoes it (rollback steps), who is told when it does not work
// (escalation), and how careful it must be (approval, cooldown, runs per
// window, a lease per target, blast radius, shadow mode, maintenance
// windows). docs/RUNBOOKS.md is the reference.
package runbook

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"
)

// File is one runbook file.
type File struct {
	Runbooks []Runbook `yaml:"runbooks" json:"runbooks,omitempty"`
}

// Runbook is one runbook.
type Runbook struct {
	Name        string `yaml:"name" json:"name"`
	Description string `yaml:"description" json:"description,omitempty"`
	// Trigger says when the runbook applies.
	Trigger Trigger `yaml:"trigger" json:"trigger,omitempty"`
	// Target is what the runbook acts on: label names and templates over
	// the trigger's labels. A rendered target with no labels or an empty
	// value is refused.
	Target map[string]string `yaml:"target" json:"target,omitempty"`
	// Preconditions must all hold (a non-empty PromQL result) before the
	// first step; when one does not, the runbook does not apply.
	Preconditions []Guard `yaml:"preconditions" json:"preconditions,omitempty"`
	// Steps are tried in order: a step whose verification holds ends the
	// run as succeeded; a step that fails goes on as its OnFailure says.
	Steps []Step `yaml:"steps" json:"steps,omitempty"`
	// Rollback runs, in order, when a step fails with on_failure:
	// rollback; the run then ends rolled back and escalates.
	Rollback []Step `yaml:"rollback" json:"rollback,omitempty"`
	// Escalate is what people are told when the run does not fix it.
	Escalate Escalation `yaml:"escalate" json:"escalate,omitempty"`
	Safety   Safety     `yaml:"safety" json:"safety,omitempty"`
	// Secrets are named references to secret values (an environment
	// variable or a file) that templates read with {{ secret "name" }}.
	// Values are read when a run starts and never written anywhere.
	Secrets map[string]SecretRef `yaml:"secrets" json:"secrets,omitempty"`

	// Source is where the runbook was loaded from.
	Source Source `yaml:"-" json:"source"`
}

// Source locates a runbook: its file and the position of its name.
type Source struct {
	File   string `json:"file"`
	Line   int    `json:"line"`
	Column int    `json:"column"`
	// positions maps a field's path within the runbook ("steps[0].verify.expr")
	// to where its value starts.
	positions map[string]Position
}

// Position is a place in a file; Line and Column count from 1.
type Position struct {
	Line, Column int
	// quote is 1 when the scalar there is quoted; block is the indent of
	// a literal or folded block scalar's content (which starts on the
	// next line), 0 otherwise. They place errors inside the value.
	quote, block int
}

// Pos returns where the field at path (relative to the runbook) starts,
// or the runbook's own position when the path is unknown.
func (s Source) Pos(path string) Position {
	for p := path; p != ""; {
		if pos, ok := s.positions[p]; ok {
			return pos
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return Position{Line: s.Line, Column: s.Column}
}

// Trigger kinds; a runbook has exactly one.
const (
	TriggerAlert     = "alert"
	TriggerCondition = "condition"
	TriggerIncident  = "incident"
	TriggerManual    = "manual"
)

// Trigger says when a runbook applies. Set exactly one of Alert,
// Condition, Anomaly, Forecast, Incident or Manual.
type Trigger struct {
	// Alert is an alert name: the runbook applies to each firing alert of
	// that name whose labels match Matchers.
	Alert string `yaml:"alert" json:"alert,omitempty"`
	// Matchers are Alertmanager matchers (`job="api"`, `severity=~"crit.*"`)
	// over the alert's labels, the condition's series labels, or the
	// incident's group labels; all must match.
	Matchers []string `yaml:"matchers" json:"matchers,omitempty"`
	// Condition is a PromQL expression evaluated periodically: each series
	// it returns for For is a trigger with that series' labels.
	Condition *Condition `yaml:"condition" json:"condition,omitempty"`
	// Anomaly is a condition on the analyzer's anomaly score of a metric.
	Anomaly *AnomalyTrigger `yaml:"anomaly" json:"anomaly,omitempty"`
	// Forecast is a condition on the analyzer's capacity forecast.
	Forecast *ForecastTrigger `yaml:"forecast" json:"forecast,omitempty"`
	// Incident applies the runbook when an incident of one of these
	// severities opens.
	Incident *IncidentTrigger `yaml:"incident" json:"incident,omitempty"`
	// Manual runbooks run only when someone runs them (API, CLI).
	Manual bool `yaml:"manual" json:"manual,omitempty"`
}

// Condition is a PromQL condition trigger.
type Condition struct {
	Expr string         `yaml:"expr" json:"expr,omitempty"`
	For  model.Duration `yaml:"for" json:"for,omitempty"`
}

// AnomalyTrigger fires on aiops_anomaly_score{aiops_metric=Metric} >= Score.
type AnomalyTrigger struct {
	Metric string         `yaml:"metric" json:"metric,omitempty"`
	Score  float64        `yaml:"score" json:"score,omitempty"`
	For    model.Duration `yaml:"for" json:"for,omitempty"`
}

// ForecastTrigger fires when aiops_capacity_exhaustion_seconds{aiops_metric=Metric}
// says the resource runs out within Within.
type ForecastTrigger struct {
	Metric string         `yaml:"metric" json:"metric,omitempty"`
	Within model.Duration `yaml:"within" json:"within,omitempty"`
	For    model.Duration `yaml:"for" json:"for,omitempty"`
}

// IncidentTrigger applies a runbook to incidents as they open.
type IncidentTrigger struct {
	Severities []string `yaml:"severities" json:"severities,omitempty"`
}

// Kind returns which trigger is set, or "" when none or several are.
func (t Trigger) Kind() string {
	kind, n := "", 0
	for _, k := range []struct {
		set  bool
		kind string
	}{
		{t.Alert != "", TriggerAlert},
		{t.Condition != nil, TriggerCondition},
		{t.Anomaly != nil, TriggerCondition},
		{t.Forecast != nil, TriggerCondition},
		{t.Incident != nil, TriggerIncident},
		{t.Manual, TriggerManual},
	} {
		if k.set {
			kind, n = k.kind, n+1
		}
	}
	if n != 1 {
		return ""
	}
	return kind
}

// ConditionExpr is the PromQL expression of a condition trigger (the
// anomaly and forecast forms spelt out) and how long it must hold.
func (t Trigger) ConditionExpr() (expr string, hold time.Duration) {
	switch {
	case t.Condition != nil:
		return t.Condition.Expr, time.Duration(t.Condition.For)
	case t.Anomaly != nil:
		return fmt.Sprintf("aiops_anomaly_score{aiops_metric=%q} >= %g", t.Anomaly.Metric, t.Anomaly.Score), time.Duration(t.Anomaly.For)
	case t.Forecast != nil:
		return fmt.Sprintf("aiops_capacity_exhaustion_seconds{aiops_metric=%q} < %g", t.Forecast.Metric,
			time.Duration(t.Forecast.Within).Seconds()), time.Duration(t.Forecast.For)
	}
	return "", 0
}

// Guard is a named PromQL condition: it holds when the expression
// returns at least one series (or a scalar other than 0).
type Guard struct {
	Name string `yaml:"name" json:"name,omitempty"`
	Expr string `yaml:"expr" json:"expr,omitempty"`
}

// What a step does when its action or its verification fails.
const (
	OnFailureNext     = "next"
	OnFailureRollback = "rollback"
	OnFailureEscalate = "escalate"
)

// Step is one action of the ladder, and how to tell it worked.
type Step struct {
	Name string `yaml:"name" json:"name,omitempty"`
	// Action names a driver's action ("workflow.restart_instance").
	Action string `yaml:"action" json:"action,omitempty"`
	// Params are the action's parameters: strings (templates), lists of
	// strings or maps of strings.
	Params map[string]Param `yaml:"params" json:"params,omitempty"`
	// Timeout bounds one attempt of the action.
	Timeout model.Duration `yaml:"timeout" json:"timeout,omitempty"`
	// Retries is how many more attempts a failed action gets (with
	// exponential backoff); a refusal (4xx) is not retried.
	Retries int `yaml:"retries" json:"retries,omitempty"`
	// Idempotent declares that running the step twice does no more than
	// running it once: a step interrupted by a crash is run again rather
	// than escalated.
	Idempotent bool `yaml:"idempotent" json:"idempotent,omitempty"`
	// Verify must hold after the action for the step to count as a fix.
	Verify *Verify `yaml:"verify" json:"verify,omitempty"`
	// OnFailure is next (the default but for the last step), rollback or
	// escalate (the default for the last step).
	OnFailure string `yaml:"on_failure" json:"on_failure,omitempty"`
}

// Verify is a PromQL condition that must hold continuously for For,
// reached before Within has passed since the action.
type Verify struct {
	Expr     string         `yaml:"expr" json:"expr,omitempty"`
	For      model.Duration `yaml:"for" json:"for,omitempty"`
	Within   model.Duration `yaml:"within" json:"within,omitempty"`
	Interval model.Duration `yaml:"interval" json:"interval,omitempty"`
}

// Escalation is what a run does when it does not fix the problem: the
// incident is escalated (when there is one), Message is added to its
// timeline and sent to the Notify channels.
type Escalation struct {
	Message string   `yaml:"message" json:"message,omitempty"`
	Notify  []string `yaml:"notify" json:"notify,omitempty"`
}

// Run modes.
const (
	ModeLive   = "live"
	ModeShadow = "shadow"
)

// Safety are a runbook's rails; see docs/RUNBOOKS.md for each.
type Safety struct {
	// Mode is live (the default) or shadow: decide, record, do not act.
	Mode     string   `yaml:"mode" json:"mode,omitempty"`
	Approval Approval `yaml:"approval" json:"approval,omitempty"`
	// Cooldown is the least time between two runs on the same target.
	Cooldown model.Duration `yaml:"cooldown" json:"cooldown,omitempty"`
	MaxRuns  MaxRuns        `yaml:"max_runs" json:"max_runs,omitempty"`
	// LeaseTTL is how long a run holds its target without renewing: a
	// run that stops renewing (a crashed or stuck process) loses the
	// target after it, never holding it for ever.
	LeaseTTL    model.Duration `yaml:"lease_ttl" json:"lease_ttl,omitempty"`
	BlastRadius BlastRadius    `yaml:"blast_radius" json:"blast_radius,omitempty"`
	// MaintenanceWindows are times the runbook does not act in.
	MaintenanceWindows []Window `yaml:"maintenance_windows" json:"maintenance_windows,omitempty"`
}

// Approval makes runs wait for a person.
type Approval struct {
	Required bool `yaml:"required" json:"required,omitempty"`
	// Approvers may approve (principal ids or names); empty means anyone
	// with the approve scope.
	Approvers []string `yaml:"approvers" json:"approvers,omitempty"`
	// Timeout denies a run nobody approved in time, and escalates.
	Timeout model.Duration `yaml:"timeout" json:"timeout,omitempty"`
}

// MaxRuns bounds how many runs of the runbook start within Window, over
// all targets.
type MaxRuns struct {
	Count  int            `yaml:"count" json:"count,omitempty"`
	Window model.Duration `yaml:"window" json:"window,omitempty"`
}

// BlastRadius bounds how much of a fleet the runbook may touch at once.
type BlastRadius struct {
	// MaxTargets bounds the targets with a run in progress at once.
	MaxTargets int `yaml:"max_targets" json:"max_targets,omitempty"`
	// MaxFraction bounds the share of Population those targets may be.
	MaxFraction float64 `yaml:"max_fraction" json:"max_fraction,omitempty"`
	// Population is a PromQL expression (templated with the target)
	// counting the fleet the target belongs to; required with
	// MaxFraction. A run that would touch the whole population is refused.
	Population string `yaml:"population" json:"population,omitempty"`
	// MinHealthy is a PromQL guard (templated with the target) that must
	// hold before every step: enough of the fleet stays healthy.
	MinHealthy string `yaml:"min_healthy" json:"min_healthy,omitempty"`
}

// Window is a maintenance window: either once, from Start to End, or
// every week on Days from the time of day Start for Duration, in TimeZone.
type Window struct {
	Name string `yaml:"name" json:"name,omitempty"`
	// Start and End are RFC 3339 times for a one-off window; for a weekly
	// window Start is a time of day ("02:00").
	Start string `yaml:"start" json:"start,omitempty"`
	End   string `yaml:"end" json:"end,omitempty"`
	// Days are weekdays (mon, tue, …) of a weekly window.
	Days     []string       `yaml:"days" json:"days,omitempty"`
	Duration model.Duration `yaml:"duration" json:"duration,omitempty"`
	TimeZone string         `yaml:"time_zone" json:"time_zone,omitempty"`
}

// SecretRef names where a secret's value is: an environment variable or
// a file (trailing newline removed). Exactly one is set.
type SecretRef struct {
	Env  string `yaml:"env" json:"env,omitempty"`
	File string `yaml:"file" json:"file,omitempty"`
}

// Param is an action parameter: a string, a list of strings or a map of
// strings, each string a template.
type Param struct {
	Str  string
	List []string
	Map  map[string]string
	// Kind is "string", "list" or "map".
	Kind string
}

// Kinds of Param.
const (
	KindString = "string"
	KindList   = "list"
	KindMap    = "map"
)

// UnmarshalYAML takes a scalar, a sequence of scalars or a mapping of
// scalars.
func (p *Param) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		p.Kind, p.Str = KindString, n.Value
		return nil
	case yaml.SequenceNode:
		p.Kind = KindList
		return n.Decode(&p.List)
	case yaml.MappingNode:
		p.Kind = KindMap
		return n.Decode(&p.Map)
	}
	return fmt.Errorf("line %d: a parameter is a string, a list of strings or a map of strings", n.Line)
}

// MarshalJSON writes the parameter in its own shape.
func (p Param) MarshalJSON() ([]byte, error) {
	v, _ := p.MarshalYAML()
	return json.Marshal(v)
}

// MarshalYAML writes the parameter back in its own shape.
func (p Param) MarshalYAML() (any, error) {
	switch p.Kind {
	case KindList:
		return p.List, nil
	case KindMap:
		return p.Map, nil
	}
	return p.Str, nil
}

// Strings returns every template string of the parameter.
func (p Param) Strings() []string {
	switch p.Kind {
	case KindList:
		return p.List
	case KindMap:
		out := make([]string, 0, len(p.Map))
		for _, v := range p.Map {
			out = append(out, v)
		}
		return out
	}
	return []string{p.Str}
}

// Defaults a runbook's unset settings take.
const (
	DefaultStepTimeout    = 30 * time.Second
	DefaultVerifyInterval = 15 * time.Second
	DefaultLeaseTTL       = 10 * time.Minute
	DefaultApprovalWait   = 15 * time.Minute
)

// StepTimeout is s.Timeout or the default.
func (s Step) StepTimeout() time.Duration {
	if s.Timeout > 0 {
		return time.Duration(s.Timeout)
	}
	return DefaultStepTimeout
}

// FailureMode is what the step's failure leads to, defaults applied: the
// last step escalates, the others go on to the next.
func (rb *Runbook) FailureMode(i int) string {
	if m := rb.Steps[i].OnFailure; m != "" {
		return m
	}
	if i == len(rb.Steps)-1 {
		return OnFailureEscalate
	}
	return OnFailureNext
}

// Lease is the runbook's lease TTL, defaults applied.
func (rb *Runbook) Lease() time.Duration {
	if rb.Safety.LeaseTTL > 0 {
		return time.Duration(rb.Safety.LeaseTTL)
	}
	return DefaultLeaseTTL
}

// ApprovalWait is how long a run waits for approval, defaults applied.
func (rb *Runbook) ApprovalWait() time.Duration {
	if rb.Safety.Approval.Timeout > 0 {
		return time.Duration(rb.Safety.Approval.Timeout)
	}
	return DefaultApprovalWait
}

// Shadow reports whether the runbook only decides and records.
func (rb *Runbook) Shadow() bool { return rb.Safety.Mode == ModeShadow }
