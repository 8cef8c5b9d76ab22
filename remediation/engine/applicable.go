package engine

import (
	"context"
	"maps"

	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/remediation/match"
	"github.com/aiops-dev/aiops/remediation/runbook"
)

// Applicable is a runbook whose trigger matches an incident, with the
// target it would act on.
type Applicable struct {
	Runbook string
	// Trigger is what it matches: an alert's name, or "incident" for a
	// runbook triggered by incidents.
	Trigger string
	// Target is what a run would act on; nil when it does not render,
	// and Problem says why.
	Target  map[string]string
	Problem string
}

// Applicable returns the runbooks that match inc — those whose alert
// trigger matches one of its firing alerts, and those whose incident
// trigger matches the incident itself — each with the target rendered
// from what it matched, once per runbook and target, the better record
// first. It only reads: nothing is decided, recorded or started, and the
// safety rails are not consulted; they apply when a run is started
// (RunManual), as to any other.
func (e *Engine) Applicable(ctx context.Context, inc incident.Incident) []Applicable {
	var out []Applicable
	seen := map[string]bool{}
	add := func(sig match.Signal, name string, data runbook.Data) {
		for _, rb := range match.Rank(e.set.Match(sig), name, e.stats) {
			data.Runbook = rb.Name
			qctx, cancel := context.WithTimeout(ctx, guardTimeout)
			t, err := e.render.RenderTarget(qctx, rb, data, e.clock.Now())
			cancel()
			a := Applicable{Runbook: rb.Name, Trigger: name, Target: t}
			key := rb.Name + "\x00" + runbook.TargetKey(t)
			if err != nil {
				a.Target, a.Problem = nil, err.Error()
				key = rb.Name + "\x00!" + a.Problem
			}
			if seen[key] {
				continue
			}
			seen[key] = true
			out = append(out, a)
		}
	}
	for _, al := range inc.Alerts {
		if al.Status != incident.AlertFiring {
			continue
		}
		name := al.Labels["alertname"]
		add(match.Signal{Kind: runbook.TriggerAlert, Name: name, Labels: al.Labels}, name,
			runbook.Data{Labels: maps.Clone(al.Labels), Annotations: maps.Clone(al.Annotations), IncidentID: inc.ID})
	}
	// As an opening incident is matched (handle).
	labels := incidentLabels(inc)
	add(match.Signal{Kind: runbook.TriggerIncident, Labels: labels, Severity: inc.Severity}, runbook.TriggerIncident,
		runbook.Data{Labels: labels, IncidentID: inc.ID})
	return out
}
