package incident

import (
	"maps"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"
)

// Status is where an incident is in its lifecycle:
// open → acknowledged → resolved, and resolved → open when it reopens.
type Status string

// The statuses.
const (
	StatusOpen         Status = "open"
	StatusAcknowledged Status = "acknowledged"
	StatusResolved     Status = "resolved"
)

// ValidStatus reports whether s is one of the statuses.
func ValidStatus(s string) bool {
	switch Status(s) {
	case StatusOpen, StatusAcknowledged, StatusResolved:
		return true
	}
	return false
}

// Alert states within an incident.
const (
	AlertFiring   = "firing"
	AlertResolved = "resolved"
)

// Alert is one alert of an incident as the incident last saw it.
type Alert struct {
	// Fingerprint is Alertmanager's fingerprint of the labels (hex).
	Fingerprint string            `json:"fingerprint"`
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`
	StartsAt    time.Time         `json:"starts_at"`
	// EndsAt is when the alert resolved; unset while it fires.
	EndsAt *time.Time `json:"ends_at,omitempty"`
	// GeneratorURL links to the expression that produced the alert, and
	// Expr is that PromQL expression when the URL carries one
	// (Prometheus's /graph?g0.expr=…).
	GeneratorURL string `json:"generator_url,omitempty"`
	Expr         string `json:"expr,omitempty"`
	// Reason is why a resolved alert counts as resolved: "resolved" when
	// Alertmanager said so, "muted" when it left the group's
	// notifications while still firing (silenced or inhibited).
	Reason string `json:"reason,omitempty"`
}

// Link points at the series involved in an incident.
type Link struct {
	Alertname    string `json:"alertname,omitempty"`
	GeneratorURL string `json:"generator_url"`
	Expr         string `json:"expr,omitempty"`
}

// RunbookRun is the last known state of one runbook run.
type RunbookRun struct {
	RunID      string     `json:"run_id"`
	Runbook    string     `json:"runbook"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	Outcome    string     `json:"outcome,omitempty"`
	Message    string     `json:"message,omitempty"`
}

// Incident is the current state of an incident, folded from its events.
type Incident struct {
	ID string `json:"id"`
	// Version is the Seq of the last event; it is the ETag of the
	// incident in the REST API.
	Version     uint64            `json:"version"`
	Status      Status            `json:"status"`
	Title       string            `json:"title"`
	Summary     string            `json:"summary,omitempty"`
	Severity    string            `json:"severity"`
	Service     string            `json:"service"`
	Services    []string          `json:"services"`
	GroupKey    string            `json:"group_key"`
	Receiver    string            `json:"receiver"`
	GroupLabels map[string]string `json:"group_labels"`

	OpenedAt       time.Time  `json:"opened_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	AcknowledgedAt *time.Time `json:"acknowledged_at,omitempty"`
	AcknowledgedBy string     `json:"acknowledged_by,omitempty"`
	ResolvedAt     *time.Time `json:"resolved_at,omitempty"`
	ResolvedBy     string     `json:"resolved_by,omitempty"`
	// AlertsResolvedAt is when the last firing alert resolved, while none
	// fires; the quiet period of auto-resolve counts from it.
	AlertsResolvedAt *time.Time `json:"alerts_resolved_at,omitempty"`
	Assignee         string     `json:"assignee,omitempty"`
	EscalationLevel  int        `json:"escalation_level"`
	EscalatedAt      *time.Time `json:"escalated_at,omitempty"`
	Reopens          int        `json:"reopens"`
	Notes            int        `json:"notes"`

	FiringAlerts int `json:"firing_alerts"`
	// AlertsOverLimit counts the firing alerts of the group that the
	// incident does not record, as it records at most
	// incidents.max_alerts.
	AlertsOverLimit int          `json:"alerts_over_limit,omitempty"`
	Alerts          []Alert      `json:"alerts"`
	Links           []Link       `json:"links"`
	RootCauses      *RootCauses  `json:"root_causes,omitempty"`
	Runbooks        []RunbookRun `json:"runbooks"`
	// FixedBy names the runbook run whose fix resolved the incident
	// (ResolveByRunbook); nil otherwise, and again once it reopens.
	FixedBy *FixedBy `json:"fixed_by,omitempty"`
}

// FixedBy is the runbook run that fixed an incident.
type FixedBy struct {
	RunID   string `json:"run_id"`
	Runbook string `json:"runbook"`
}

// state is an incident being folded: the exported view plus what makes
// folding cheap.
//
// Folding an alert event is O(1): the firing count and when the last
// alert resolved are kept as events come; what is derived from all the
// alerts (the sorted list, severity, services, title, links) is computed
// once, by materialize, before the state is shown, so that a group of n
// alerts costs O(n log n), not O(n² log n).
type state struct {
	inc           Incident
	alerts        map[string]*Alert
	serviceLabels []string
	// stale says that the fields derived from alerts are out of date.
	stale bool
	// overLimitStart is the latest start of the alerts over the limit
	// (OverLimit.LatestStart): an alert the incident does not record
	// that started no later was one of them, and is not new.
	overLimitStart time.Time
	// steps holds the runbook steps recorded, by run id and step key.
	steps map[string]bool
}

func newState(id string, serviceLabels []string) *state {
	return &state{inc: Incident{ID: id}, alerts: map[string]*Alert{}, serviceLabels: serviceLabels}
}

// apply folds one event into the state. It never refuses: whether an
// event may be written is decided before it is written; the log is the
// truth once it is.
func (s *state) apply(e Event) {
	inc := &s.inc
	inc.Version = e.Seq
	inc.UpdatedAt = e.Time
	switch e.Type {
	case EventOpened:
		inc.Status = StatusOpen
		inc.OpenedAt = e.Time
		if o := e.Opened; o != nil {
			inc.GroupKey, inc.Receiver, inc.GroupLabels = o.GroupKey, o.Receiver, maps.Clone(o.GroupLabels)
		}
		if e.RootCauses != nil {
			inc.RootCauses = e.RootCauses
		}
	case EventAlertFiring, EventAlertResolved:
		if e.Alert == nil {
			return
		}
		a := *e.Alert
		firing := inc.FiringAlerts
		if old := s.alerts[a.Fingerprint]; old != nil && old.Status == AlertFiring {
			firing--
		}
		if a.Status == AlertFiring {
			firing++
		}
		s.alerts[a.Fingerprint] = &a
		switch {
		case firing > 0:
			inc.AlertsResolvedAt = nil
		case inc.FiringAlerts > 0 || inc.AlertsResolvedAt == nil:
			t := e.Time
			inc.AlertsResolvedAt = &t
		}
		inc.FiringAlerts = firing
		s.stale = true
	case EventAlertsOverLimit:
		if o := e.OverLimit; o != nil {
			inc.AlertsOverLimit, s.overLimitStart = o.Alerts, o.LatestStart
		}
	case EventAcknowledged:
		t := e.Time
		inc.Status = StatusAcknowledged
		inc.AcknowledgedAt, inc.AcknowledgedBy = &t, e.Actor
	case EventAssigned:
		if e.Assignee != nil {
			inc.Assignee = *e.Assignee
		}
	case EventNote:
		inc.Notes++
	case EventEscalated:
		t := e.Time
		inc.EscalationLevel, inc.EscalatedAt = e.Level, &t
	case EventRunbookStarted, EventRunbookFinished:
		if e.Runbook != nil {
			s.applyRunbook(e)
		}
	case EventRunbookStep:
		if rb := e.Runbook; rb != nil && rb.Step != nil {
			if s.steps == nil {
				s.steps = map[string]bool{}
			}
			s.steps[rb.RunID+"\x00"+rb.Step.Key] = true
		}
	case EventResolved:
		t := e.Time
		inc.Status = StatusResolved
		inc.ResolvedAt, inc.ResolvedBy = &t, e.Actor
		if rb := e.Runbook; rb != nil {
			inc.FixedBy = &FixedBy{RunID: rb.RunID, Runbook: rb.Runbook}
		}
	case EventReopened:
		inc.Status = StatusOpen
		inc.ResolvedAt, inc.ResolvedBy = nil, ""
		inc.FixedBy = nil
		inc.AcknowledgedAt, inc.AcknowledgedBy = nil, ""
		inc.Reopens++
	case EventRootCauses:
		inc.RootCauses = e.RootCauses
	}
}

func (s *state) applyRunbook(e Event) {
	rb, t := e.Runbook, e.Time
	i := slices.IndexFunc(s.inc.Runbooks, func(r RunbookRun) bool { return r.RunID == rb.RunID })
	if i < 0 {
		s.inc.Runbooks = append(s.inc.Runbooks, RunbookRun{RunID: rb.RunID, Runbook: rb.Runbook})
		i = len(s.inc.Runbooks) - 1
	}
	r := &s.inc.Runbooks[i]
	if rb.Runbook != "" {
		r.Runbook = rb.Runbook
	}
	if rb.Message != "" {
		r.Message = rb.Message
	}
	if e.Type == EventRunbookStarted {
		r.StartedAt = &t
	} else {
		r.FinishedAt, r.Outcome = &t, rb.Outcome
	}
}

// runbookSeen reports whether the run already has an event of this phase
// (of this step, for steps).
func (s *state) runbookSeen(runID string, t EventType, step *RunbookStep) bool {
	if t == EventRunbookStep {
		return step != nil && s.steps[runID+"\x00"+step.Key]
	}
	for _, r := range s.inc.Runbooks {
		if r.RunID == runID {
			return t == EventRunbookStarted && r.StartedAt != nil || t == EventRunbookFinished && r.FinishedAt != nil
		}
	}
	return false
}

// materialize computes what is derived from the alerts, if an event
// changed them since.
func (s *state) materialize() {
	if !s.stale {
		return
	}
	s.stale = false
	inc := &s.inc
	list := make([]Alert, 0, len(s.alerts))
	for _, a := range s.alerts {
		list = append(list, *a)
	}
	sort.Slice(list, func(i, j int) bool {
		if !list[i].StartsAt.Equal(list[j].StartsAt) {
			return list[i].StartsAt.Before(list[j].StartsAt)
		}
		return list[i].Fingerprint < list[j].Fingerprint
	})
	inc.Alerts = list

	sev := ""
	services := map[string]bool{}
	names := map[string]bool{}
	links := map[string]bool{}
	inc.Links = inc.Links[:0]
	inc.Summary = ""
	for _, a := range list {
		if severityRank(a.Labels["severity"]) > severityRank(sev) {
			sev = a.Labels["severity"]
		}
		if svc := serviceOf(a.Labels, s.serviceLabels); svc != "" {
			services[svc] = true
		}
		if n := a.Labels["alertname"]; n != "" {
			names[n] = true
		}
		if a.GeneratorURL != "" && !links[a.GeneratorURL] {
			links[a.GeneratorURL] = true
			inc.Links = append(inc.Links, Link{Alertname: a.Labels["alertname"], GeneratorURL: a.GeneratorURL, Expr: a.Expr})
		}
		if inc.Summary == "" {
			inc.Summary = a.Annotations["summary"]
		}
	}
	inc.Severity = sev
	inc.Services = slices.Sorted(maps.Keys(services))
	inc.Service = serviceOf(inc.GroupLabels, s.serviceLabels)
	if inc.Service == "" && len(list) > 0 {
		inc.Service = serviceOf(list[0].Labels, s.serviceLabels)
	}
	inc.Title = title(slices.Sorted(maps.Keys(names)), inc.Service)
}

func title(names []string, service string) string {
	const max = 3
	t := strings.Join(names[:min(len(names), max)], ", ")
	if len(names) > max {
		t += ", …"
	}
	if t == "" {
		t = "alerts"
	}
	if service != "" {
		t += " on " + service
	}
	return t
}

func serviceOf(ls map[string]string, keys []string) string {
	for _, k := range keys {
		if v := ls[k]; v != "" {
			return v
		}
	}
	return ""
}

// severityRank orders the usual severity label values; an unknown value
// ranks above none and below the known ones.
func severityRank(s string) int {
	switch strings.ToLower(s) {
	case "":
		return 0
	case "none":
		return 1
	case "info":
		return 3
	case "warning":
		return 4
	case "error":
		return 5
	case "critical":
		return 6
	case "page":
		return 7
	}
	return 2
}

// exprOf extracts the PromQL expression from a Prometheus generator URL
// (…/graph?g0.expr=…); empty when the URL carries none.
func exprOf(generatorURL string) string {
	u, err := url.Parse(generatorURL)
	if err != nil {
		return ""
	}
	return u.Query().Get("g0.expr")
}

// clone returns a copy that shares nothing mutable with s. s is
// materialized.
func (s *state) clone() Incident {
	c := s.inc
	c.Services = slices.Clone(c.Services)
	c.GroupLabels = maps.Clone(c.GroupLabels)
	c.Alerts = make([]Alert, len(s.inc.Alerts))
	for i, a := range s.inc.Alerts {
		a.Labels, a.Annotations = maps.Clone(a.Labels), maps.Clone(a.Annotations)
		c.Alerts[i] = a
	}
	c.Links = slices.Clone(c.Links)
	if c.Links == nil {
		c.Links = []Link{}
	}
	c.Runbooks = slices.Clone(c.Runbooks)
	if c.Runbooks == nil {
		c.Runbooks = []RunbookRun{}
	}
	if c.Services == nil {
		c.Services = []string{}
	}
	if c.GroupLabels == nil {
		c.GroupLabels = map[string]string{}
	}
	return c
}
