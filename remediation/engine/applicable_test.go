package engine_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aiops-dev/aiops/remediation/engine"
)

// TestApplicableListsMatchingRunbooksWithTargets: the runbooks that
// match an incident's firing alerts and the incident itself are listed
// with the targets they would act on, once per target; a runbook whose
// target does not render says why; nothing is started.
func TestApplicableListsMatchingRunbooksWithTargets(t *testing.T) {
	h := newHarness(t, restartInstance+`
  - name: page-db
    trigger:
      alert: HighErrorRate
      matchers: ['job="db"']
    target: {service: db}
    steps:
      - action: workflow.restart_service
        params: {service: x}
        verify: {expr: 'fixed == 1', for: 30s, within: 5m, interval: 10s}
    safety: {cooldown: 10m, max_runs: {count: 5, window: 1h}}
  - name: snapshot-incident
    trigger:
      incident: {severities: [critical]}
    target: {alert: '{{ $labels.alertname }}'}
    steps:
      - action: workflow.restart_service
        params: {service: x}
        verify: {expr: 'fixed == 1', for: 30s, within: 5m, interval: 10s}
    safety: {cooldown: 10m, max_runs: {count: 5, window: 1h}}
  - name: broken-target
    trigger:
      alert: HighErrorRate
    target: {host: '{{ $labels.host }}'}
    steps:
      - action: workflow.restart_service
        params: {service: x}
        verify: {expr: 'fixed == 1', for: 30s, within: 5m, interval: 10s}
    safety: {cooldown: 10m, max_runs: {count: 5, window: 1h}}
`)
	ctx := context.Background()
	// The kill switch keeps the engine from starting anything itself.
	if _, err := h.eng.Engage(ctx, engine.Principal{ID: "alice"}, "looking only"); err != nil {
		t.Fatal(err)
	}
	h.notify("g1", errorAlert("api-1"), mkAlert(errorAlert("api-1"), t0, time.Time{}), mkAlert(errorAlert("api-2"), t0, time.Time{}))
	inc := h.incident()
	got := map[string]engine.Applicable{}
	for _, a := range h.eng.Applicable(ctx, inc) {
		key := a.Runbook + " " + a.Trigger + " " + a.Target["instance"] + a.Target["alert"]
		if _, dup := got[key]; dup {
			t.Errorf("%s listed twice", key)
		}
		got[key] = a
	}
	for _, want := range []string{
		"restart-api-instance HighErrorRate api-1", "restart-api-instance HighErrorRate api-2",
		"snapshot-incident incident HighErrorRate", "broken-target HighErrorRate ",
	} {
		if _, ok := got[want]; !ok {
			t.Errorf("missing %q in %v", want, got)
		}
	}
	if len(got) != 4 {
		t.Errorf("%d applicable, want 4 (page-db matches no alert): %v", len(got), got)
	}
	if b := got["broken-target HighErrorRate "]; b.Target != nil || !strings.Contains(b.Problem, "target.host") {
		t.Errorf("broken target: %+v", b)
	}
	if r := got["restart-api-instance HighErrorRate api-1"]; r.Target["service"] != "api" {
		t.Errorf("target %v", r.Target)
	}
	if xs := h.executions(engine.Filter{}); len(xs) != 0 {
		t.Fatalf("Applicable started %d executions", len(xs))
	}
}
