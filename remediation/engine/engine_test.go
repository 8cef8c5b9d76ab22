package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/aiops-dev/aiops/alerting/incident"
	tu "github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/remediation/action"
	"github.com/aiops-dev/aiops/remediation/engine"
	"github.com/aiops-dev/aiops/remediation/runbook"
	"github.com/aiops-dev/aiops/storage"
)

// restartInstance restarts the instance an api alert names and verifies
// that the instance answers again (fixed{instance=…} == 1 for 30s).
const restartInstance = `runbooks:
  - name: restart-api-instance
    trigger:
      alert: HighErrorRate
      matchers: ['job="api"']
    target:
      service: '{{ $labels.job }}'
      instance: '{{ $labels.instance }}'
    steps:
      - name: restart
        action: workflow.restart_instance
        params: {service: '{{ $target.service }}', instance: '{{ $target.instance }}'}
        verify:
          expr: 'fixed{instance="{{ $target.instance }}"} == 1'
          for: 30s
          within: 5m
          interval: 10s
    escalate:
      message: 'restarting {{ $target.instance }} did not fix {{ $labels.alertname }}'
    safety:
      cooldown: 10m
      max_runs: {count: 5, window: 1h}
`

func errorAlert(instance string) model.LabelSet {
	return model.LabelSet{"alertname": "HighErrorRate", "job": "api", "instance": model.LabelValue(instance), "severity": "critical"}
}

// TestAlertToResolvedIncident: an alert opens an incident; the engine
// runs the matching runbook with its parameters rendered, the verify
// holds, the run succeeds and every step is on the incident's timeline;
// once the alert resolves the incident resolves itself, fixed by the run.
func TestAlertToResolvedIncident(t *testing.T) {
	h := newHarness(t, restartInstance)
	h.fire("g1", errorAlert("api-1"), t0)
	x := h.waitExecutions(1)[0]
	h.waitState(x.ID, engine.StateVerifying, 0)
	calls := h.drv.actions()
	if len(calls) != 1 || calls[0].Action != "workflow.restart_instance" || calls[0].Params.String("instance") != "api-1" ||
		calls[0].Params.String("service") != "api" || calls[0].Key == "" {
		t.Fatalf("calls %+v", calls)
	}
	h.series(map[string]float64{`fixed{instance="api-1"}`: 1})
	x = h.waitState(x.ID, engine.StateSucceeded, 5*time.Second)
	if x.RecoverSeconds < 30 || x.Trigger.Alertname != "HighErrorRate" || x.Target["instance"] != "api-1" {
		t.Fatalf("execution %+v", x)
	}
	inc := h.incident()
	if inc.Status == incident.StatusResolved {
		t.Fatal("resolved while its alert still fires")
	}
	h.resolve("g1", errorAlert("api-1"), t0)
	tu.Eventually(t, 10*time.Second, "incident auto-resolved", func() (bool, string) {
		inc, _ = h.inc.Get(inc.ID)
		return inc.Status == incident.StatusResolved, string(inc.Status)
	})
	if inc.FixedBy == nil || inc.FixedBy.Runbook != "restart-api-instance" || inc.FixedBy.RunID != x.ID || len(inc.Runbooks) != 1 || inc.Runbooks[0].Outcome != "succeeded" {
		t.Fatalf("incident fixed_by %+v runbooks %+v", inc.FixedBy, inc.Runbooks)
	}
	types := h.timelineTypes(inc.ID)
	want := []incident.EventType{incident.EventRunbookStep, incident.EventRunbookFinished, incident.EventResolved}
	for _, w := range want {
		if !slices.Contains(types, w) {
			t.Fatalf("timeline %v lacks %s", types, w)
		}
	}
	evs, _ := h.inc.Timeline(context.Background(), inc.ID)
	for _, e := range evs {
		if e.Type == incident.EventRunbookStep && (e.Runbook.Step.Params["instance"] != "api-1" || e.Runbook.Step.Action != "workflow.restart_instance" || e.Actor == "") {
			t.Errorf("step event %+v", e.Runbook.Step)
		}
	}
	// The learning record: one attempt, one success, exported.
	if got := gauge(t, h, "aiops_runbook_success_ratio").v; got != 1 {
		t.Errorf("success ratio %g", got)
	}
}

// gauge collects one series of the engine's state metrics.
func gauge(t *testing.T, h *harness, name string) *singleMetric {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			m := mf.GetMetric()[0]
			switch {
			case m.Gauge != nil:
				return &singleMetric{v: m.GetGauge().GetValue()}
			case m.Counter != nil:
				return &singleMetric{v: m.GetCounter().GetValue()}
			case m.Summary != nil:
				return &singleMetric{v: float64(m.GetSummary().GetSampleCount())}
			}
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

// TestTwoAlertsOneTarget: two alerts naming the same target make one
// execution; the second is refused by the lease.
func TestTwoAlertsOneTarget(t *testing.T) {
	h := newHarness(t, strings.ReplaceAll(restartInstance, "instance: '{{ $labels.instance }}'", "instance: all-of-api"))
	h.fire("g1", errorAlert("api-1"), t0)
	h.fire("g2", errorAlert("api-2"), t0)
	r := h.waitRefusal(engine.RailLease)
	if got := h.executions(engine.Filter{}); len(got) != 1 || !strings.Contains(r.Reason, got[0].ID) {
		t.Fatalf("executions %d, refusal %+v", len(got), r)
	}
	if n := h.drv.count(); n > 1 {
		t.Fatalf("%d actions for one target", n)
	}
}

// TestRails: each safety rail refuses a run it should, and nothing acts.
func TestRails(t *testing.T) {
	verifyNever := "fixed{instance=\"{{ $target.instance }}\"} == 1"
	for _, c := range []struct {
		rail  string
		yaml  func(string) string
		opts  []option
		setup func(h *harness)
	}{
		{rail: engine.RailKillSwitch, setup: func(h *harness) {
			if _, err := h.eng.Engage(context.Background(), engine.Principal{ID: "alice"}, "incident review"); err != nil {
				h.t.Fatal(err)
			}
		}},
		{rail: engine.RailTarget, yaml: func(s string) string {
			return strings.Replace(s, "'{{ $labels.instance }}'", "'{{ $labels.pod }}'", 1)
		}},
		{rail: engine.RailMaintenance, yaml: func(s string) string {
			return s + "      maintenance_windows:\n        - {name: upgrade, start: \"2026-03-10T09:00:00Z\", end: \"2026-03-10T11:00:00Z\"}\n"
		}},
		{rail: engine.RailMaintenance, opts: []option{withConfig(func(c *engine.Config) {
			c.MaintenanceWindows = []runbook.Window{{Name: "tuesdays", Days: []string{"tue"}, Start: "09:30", Duration: model.Duration(time.Hour)}}
		})}},
		{rail: engine.RailCooldown, setup: func(h *harness) {
			h.series(map[string]float64{`fixed{instance="api-1"}`: 1})
			h.fire("g0", errorAlert("api-1"), t0.Add(-time.Hour))
			h.waitState(h.waitExecutions(1)[0].ID, engine.StateSucceeded, 5*time.Second)
		}},
		{rail: engine.RailMaxRuns, yaml: func(s string) string {
			return strings.Replace(strings.Replace(s, "cooldown: 10m", "cooldown: 1m", 1), "count: 5", "count: 1", 1)
		}, setup: func(h *harness) {
			h.series(map[string]float64{`fixed{instance="api-0"}`: 1})
			h.fire("g0", errorAlert("api-0"), t0.Add(-time.Hour))
			h.waitState(h.waitExecutions(1)[0].ID, engine.StateSucceeded, 5*time.Second)
		}},
		{rail: engine.RailGlobalMaxRuns, opts: []option{withConfig(func(c *engine.Config) {
			c.MaxRuns = runbook.MaxRuns{Count: 1, Window: model.Duration(time.Hour)}
		})}, setup: func(h *harness) {
			h.series(map[string]float64{`fixed{instance="api-0"}`: 1})
			h.fire("g0", errorAlert("api-0"), t0.Add(-time.Hour))
			h.waitState(h.waitExecutions(1)[0].ID, engine.StateSucceeded, 5*time.Second)
		}},
		{rail: engine.RailBlastRadius, yaml: func(s string) string {
			return s + "      blast_radius: {max_targets: 1}\n"
		}, setup: func(h *harness) {
			h.fire("g0", errorAlert("api-0"), t0.Add(-time.Hour))
			h.waitState(h.waitExecutions(1)[0].ID, engine.StateVerifying, 0)
		}},
		{rail: engine.RailBlastRadius, yaml: func(s string) string {
			return s + "      blast_radius: {max_fraction: 0.5, population: 'count(up{job=\"{{ $target.service }}\"})'}\n"
		}, setup: func(h *harness) {
			// A fleet of one: restarting it is the whole fleet.
			h.series(map[string]float64{`up{job="api",instance="api-1"}`: 1})
		}},
		{rail: engine.RailPrecondition, yaml: func(s string) string {
			return strings.Replace(s, "    steps:\n", "    preconditions:\n      - {name: no deploy, expr: 'deploys_in_progress == 0'}\n    steps:\n", 1)
		}},
		{rail: engine.RailMinHealthy, yaml: func(s string) string {
			return s + "      blast_radius: {min_healthy: 'count(up{job=\"{{ $target.service }}\"} == 1) >= 2'}\n"
		}, setup: func(h *harness) {
			h.series(map[string]float64{`up{job="api",instance="api-1"}`: 0, `up{job="api",instance="api-2"}`: 1})
		}},
	} {
		t.Run(c.rail, func(t *testing.T) {
			yaml := strings.Replace(restartInstance, "'fixed{instance=\"{{ $target.instance }}\"} == 1'", "'"+verifyNever+"'", 1)
			if c.yaml != nil {
				yaml = c.yaml(yaml)
			}
			h := newHarness(t, yaml, c.opts...)
			if c.setup != nil {
				c.setup(h)
			}
			before := h.drv.count()
			h.fire("g1", errorAlert("api-1"), t0)
			r := h.waitRefusal(c.rail)
			if r.Runbook != "restart-api-instance" || r.Reason == "" || r.Trigger.Alertname != "HighErrorRate" {
				t.Errorf("refusal %+v", r)
			}
			if n := h.drv.count(); n != before {
				t.Errorf("%d actions after the refusal, %d before", n, before)
			}
		})
	}
}

const approval = `runbooks:
  - name: rollback-api
    trigger: {alert: HighErrorRate}
    target: {service: '{{ $labels.job }}'}
    steps:
      - action: workflow.rollback
        params: {service: '{{ $target.service }}'}
        verify: {expr: vector(1), within: 1m}
    safety:
      approval: {required: true, approvers: [alice], timeout: 10m}
      cooldown: 10m
      max_runs: {count: 5, window: 1h}
`

// TestApproval: a run waits for an approver; anyone else is refused; the
// approver lets it run.
func TestApproval(t *testing.T) {
	h := newHarness(t, approval)
	h.fire("g1", errorAlert("api-1"), t0)
	x := h.waitState(h.waitExecutions(1)[0].ID, engine.StatePendingApproval, 0)
	if x.Approval == nil || !x.Approval.Deadline.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("approval %+v", x.Approval)
	}
	ctx := context.Background()
	if _, err := h.eng.Approve(ctx, x.ID, engine.Principal{ID: "tok-1", Name: "bob"}, ""); !errors.Is(err, engine.ErrForbidden) {
		t.Fatalf("bob approves: %v", err)
	}
	if h.drv.count() != 0 {
		t.Fatal("acted before approval")
	}
	if _, err := h.eng.Approve(ctx, x.ID, engine.Principal{ID: "tok-2", Name: "alice"}, "go"); err != nil {
		t.Fatal(err)
	}
	x = h.waitState(x.ID, engine.StateSucceeded, 0)
	if x.ApprovedBy != "alice (tok-2)" || h.drv.count() != 1 {
		t.Fatalf("approved by %q, %d actions", x.ApprovedBy, h.drv.count())
	}
	if _, err := h.eng.Approve(ctx, x.ID, engine.Principal{ID: "tok-2", Name: "alice"}, ""); !errors.Is(err, engine.ErrConflict) {
		t.Errorf("approve twice: %v", err)
	}

	// Who asks for a run cannot approve it.
	h2 := newHarness(t, strings.Replace(approval, "approvers: [alice]", "approvers: [alice, bob]", 1))
	m, err := h2.eng.RunManual(ctx, "rollback-api", map[string]string{"service": "auth"}, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h2.eng.Approve(ctx, m.ID, engine.Principal{ID: "alice"}, ""); !errors.Is(err, engine.ErrForbidden) {
		t.Fatalf("self-approval: %v", err)
	}
	if _, err := h2.eng.Deny(ctx, m.ID, engine.Principal{ID: "bob"}, "not during the demo"); err != nil {
		t.Fatal(err)
	}
	if x := h2.waitState(m.ID, engine.StateDenied, 0); x.DeniedBy != "bob" || h2.drv.count() != 0 {
		t.Fatalf("denied %+v, %d actions", x, h2.drv.count())
	}
}

// TestManualRunForIncident: a run chosen on an incident's message is the
// incident's: listed under it, as a run its alert started would be.
func TestManualRunForIncident(t *testing.T) {
	h := newHarness(t, strings.Replace(approval, "approvers: [alice]", "approvers: [alice, bob]", 1))
	h.fire("g1", errorAlert("api-1"), t0)
	inc := h.incident()
	ctx := context.Background()
	m, err := h.eng.RunManualFor(ctx, inc.ID, "rollback-api", map[string]string{"service": "auth"}, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if m.Trigger.Kind != "manual" || m.Trigger.IncidentID != inc.ID || m.Trigger.RequestedBy != "alice" {
		t.Fatalf("trigger %+v", m.Trigger)
	}
	found := false
	for _, x := range h.eng.List(engine.Filter{IncidentID: inc.ID}) {
		found = found || x.ID == m.ID
	}
	if !found {
		t.Fatalf("run %s not listed under incident %s", m.ID, inc.ID)
	}
	// Without an incident, it is nobody's.
	other, err := h.eng.RunManual(ctx, "rollback-api", map[string]string{"service": "billing"}, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if other.Trigger.IncidentID != "" {
		t.Fatalf("a plain manual run belongs to incident %q", other.Trigger.IncidentID)
	}
}

// TestApprovalTimeout: nobody approves in time: the run is denied, the
// incident escalated and noted, nothing acted.
func TestApprovalTimeout(t *testing.T) {
	h := newHarness(t, approval)
	h.fire("g1", errorAlert("api-1"), t0)
	x := h.waitState(h.waitExecutions(1)[0].ID, engine.StatePendingApproval, 0)
	x = h.waitState(x.ID, engine.StateDenied, time.Minute)
	if !strings.Contains(x.Reason, "nobody approved within 10m") || h.drv.count() != 0 {
		t.Fatalf("reason %q, %d actions", x.Reason, h.drv.count())
	}
	tu.Eventually(t, 10*time.Second, "incident escalated", func() (bool, string) {
		inc := h.incident()
		return inc.EscalationLevel == 1 && inc.Notes == 1, fmt.Sprintf("level %d notes %d", inc.EscalationLevel, inc.Notes)
	})
}

// TestKillSwitchStopsRunningExecution: the kill switch cancels the action
// in flight, ends the run cancelled, and refuses new runs until released.
func TestKillSwitchStopsRunningExecution(t *testing.T) {
	h := newHarness(t, restartInstance)
	inFlight := make(chan struct{}, 1)
	h.drv.set(func(ctx context.Context, c action.Call) (action.Result, error) {
		inFlight <- struct{}{}
		<-ctx.Done() // a slow restart
		return action.Result{}, ctx.Err()
	})
	h.fire("g1", errorAlert("api-1"), t0)
	<-inFlight
	x := h.waitExecutions(1)[0]
	ctx := context.Background()
	if _, err := h.eng.Engage(ctx, engine.Principal{ID: "alice"}, ""); !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("engage without a reason: %v", err)
	}
	if _, err := h.eng.Engage(ctx, engine.Principal{ID: "alice"}, "runaway restarts"); err != nil {
		t.Fatal(err)
	}
	x = h.waitState(x.ID, engine.StateCancelled, 0)
	if !strings.Contains(x.Reason, "kill switch") || len(x.Steps) != 1 || x.Steps[0].OK || x.Steps[0].Error == "" {
		t.Fatalf("execution %+v", x)
	}
	h.drv.set(nil)
	h.fire("g2", errorAlert("api-2"), t0)
	h.waitRefusal(engine.RailKillSwitch)
	// It holds across a restart.
	h.restart()
	if !h.eng.KillSwitch().Engaged {
		t.Fatal("the kill switch was released by a restart")
	}
	if _, err := h.eng.Release(ctx, engine.Principal{ID: "alice"}, "fixed"); err != nil {
		t.Fatal(err)
	}
	h.fire("g3", errorAlert("api-3"), t0)
	tu.Eventually(t, 10*time.Second, "a run after the release", func() (bool, string) {
		for _, x := range h.executions(engine.Filter{}) {
			if x.Target["instance"] == "api-3" {
				return true, ""
			}
		}
		return false, ""
	})
}

// TestCancel: a person cancels a run in its verification; no rollback,
// no escalation.
func TestCancel(t *testing.T) {
	h := newHarness(t, restartInstance)
	h.fire("g1", errorAlert("api-1"), t0)
	x := h.waitState(h.waitExecutions(1)[0].ID, engine.StateVerifying, 0)
	if _, err := h.eng.Cancel(context.Background(), x.ID, engine.Principal{ID: "bob"}, "I'll take it"); err != nil {
		t.Fatal(err)
	}
	x = h.waitState(x.ID, engine.StateCancelled, 0)
	if x.CancelRequested != "bob" || h.incident().EscalationLevel != 0 {
		t.Fatalf("%+v", x)
	}
	if _, err := h.eng.Cancel(context.Background(), x.ID, engine.Principal{ID: "bob"}, ""); !errors.Is(err, engine.ErrConflict) {
		t.Errorf("cancel an ended run: %v", err)
	}
}

// TestLadderAndRollback: a step whose verification does not hold hands
// over to the next; a failure with on_failure: rollback runs the rollback
// steps and escalates.
func TestLadderAndRollback(t *testing.T) {
	const ladder = `runbooks:
  - name: ladder
    trigger: {alert: HighErrorRate}
    target: {service: '{{ $labels.job }}'}
    steps:
      - name: restart
        action: workflow.restart_service
        params: {service: '{{ $target.service }}'}
        verify: {expr: 'step1_fixed == 1', within: 1m, interval: 10s}
      - name: scale
        action: workflow.scale
        params: {service: '{{ $target.service }}', replicas: '6'}
        verify: {expr: 'step2_fixed == 1', within: 1m, interval: 10s}
        on_failure: rollback
    rollback:
      - action: workflow.scale
        params: {service: '{{ $target.service }}', replicas: '3'}
    safety:
      cooldown: 10m
      max_runs: {count: 5, window: 1h}
`
	h := newHarness(t, ladder)
	h.fire("g1", errorAlert("api-1"), t0)
	x := h.waitExecutions(1)[0]
	x = h.waitState(x.ID, engine.StateRolledBack, 10*time.Second)
	var got []string
	for _, c := range h.drv.actions() {
		got = append(got, c.Action+" "+c.Params.String("replicas"))
	}
	want := []string{"workflow.restart_service ", "workflow.scale 6", "workflow.scale 3"}
	if !slices.Equal(got, want) {
		t.Fatalf("actions %q, want %q", got, want)
	}
	tu.Eventually(t, 10*time.Second, "escalated", func() (bool, string) {
		return h.incident().EscalationLevel == 1, ""
	})

	// Now the second step works: the run succeeds at it.
	h2 := newHarness(t, ladder)
	h2.series(map[string]float64{"step2_fixed": 1})
	h2.fire("g1", errorAlert("api-1"), t0)
	x = h2.waitState(h2.waitExecutions(1)[0].ID, engine.StateSucceeded, 10*time.Second)
	if h2.drv.count() != 2 || x.Step != 1 {
		t.Fatalf("%d actions, ended at step %d", h2.drv.count(), x.Step)
	}
}

// TestRetries: a failing action is retried with backoff; a refusal is
// not.
func TestRetries(t *testing.T) {
	yaml := strings.Replace(restartInstance, "        verify:\n", "        retries: 2\n        verify:\n", 1)
	h := newHarness(t, yaml)
	h.drv.set(func(context.Context, action.Call) (action.Result, error) { return action.Result{}, errors.New("503") })
	h.fire("g1", errorAlert("api-1"), t0)
	x := h.waitState(h.waitExecutions(1)[0].ID, engine.StateEscalated, time.Second)
	if n := h.drv.count(); n != 3 || len(x.Steps) != 3 {
		t.Fatalf("%d attempts, want 3", n)
	}
	h2 := newHarness(t, yaml)
	h2.drv.set(func(context.Context, action.Call) (action.Result, error) {
		return action.Result{}, action.Permanent(errors.New("404 no such instance"))
	})
	h2.fire("g1", errorAlert("api-1"), t0)
	h2.waitState(h2.waitExecutions(1)[0].ID, engine.StateEscalated, time.Second)
	if n := h2.drv.count(); n != 1 {
		t.Fatalf("%d attempts of a refused action", n)
	}
}

// TestTimedOutStep: an attempt cut off by the step's timeout may still
// act on the target. A step that is not idempotent is then neither
// retried nor followed by the next step (found from outside: a paused
// target, once resumed, carried out the timed-out call and the next
// step's); an idempotent one is retried with the same key.
func TestTimedOutStep(t *testing.T) {
	const twoSteps = `runbooks:
  - name: restart-then-scale
    trigger: {alert: HighErrorRate}
    target: {service: '{{ $labels.job }}'}
    steps:
      - name: restart
        action: workflow.restart_service
        params: {service: '{{ $target.service }}'}
        timeout: 200ms
        retries: 2
        on_failure: next
      - name: scale
        action: workflow.scale
        params: {service: '{{ $target.service }}', replicas: '6'}
        verify: {expr: 'fixed == 1', within: 1m, interval: 10s}
    safety:
      cooldown: 10m
      max_runs: {count: 5, window: 1h}
`
	for _, idempotent := range []bool{false, true} {
		t.Run(fmt.Sprintf("idempotent=%v", idempotent), func(t *testing.T) {
			yaml := twoSteps
			if idempotent {
				yaml = strings.Replace(yaml, "        retries: 2\n", "        retries: 2\n        idempotent: true\n", 1)
			}
			h := newHarness(t, yaml)
			h.drv.set(func(ctx context.Context, c action.Call) (action.Result, error) {
				if c.Action == "workflow.scale" {
					return action.Result{}, nil
				}
				<-ctx.Done() // the target does not answer
				return action.Result{}, ctx.Err()
			})
			h.fire("g1", errorAlert("api-1"), t0)
			x := h.waitExecutions(1)[0]
			calls := func() []string {
				var out []string
				for _, c := range h.drv.actions() {
					out = append(out, c.Action)
				}
				return out
			}
			if !idempotent {
				x = h.waitState(x.ID, engine.StateEscalated, 10*time.Second)
				if want := []string{"workflow.restart_service"}; !slices.Equal(calls(), want) {
					t.Fatalf("calls %q, want %q: a timed-out call that is not idempotent must not be followed by another", calls(), want)
				}
				if !strings.Contains(x.Reason, "timed out") || !strings.Contains(x.Reason, "may have acted") || len(x.Steps) != 1 || !x.Steps[0].TimedOut {
					t.Fatalf("reason %q, steps %+v", x.Reason, x.Steps)
				}
				return
			}
			tu.Eventually(t, 30*time.Second, "three attempts, then the next step", func() (bool, string) {
				h.clock.Add(time.Second) // the retries' backoff
				x, _, _ = h.eng.Get(context.Background(), x.ID)
				return slices.Equal(calls(), []string{"workflow.restart_service", "workflow.restart_service", "workflow.restart_service", "workflow.scale"}), fmt.Sprint(calls(), x.State)
			})
			acts := h.drv.actions()
			if acts[0].Key != acts[1].Key || acts[1].Key != acts[2].Key {
				t.Errorf("keys %q %q %q: the retries of an idempotent step carry its key", acts[0].Key, acts[1].Key, acts[2].Key)
			}
		})
	}
}

// TestShadow: a shadow runbook decides and records its plan, and acts on
// nothing.
func TestShadow(t *testing.T) {
	h := newHarness(t, strings.Replace(restartInstance, "    safety:\n", "    safety:\n      mode: shadow\n", 1))
	h.fire("g1", errorAlert("api-1"), t0)
	x := h.waitState(h.waitExecutions(1)[0].ID, engine.StateShadowed, 0)
	if h.drv.count() != 0 || len(x.Plan) != 1 || x.Plan[0].Params["instance"] != "api-1" || !strings.Contains(x.Plan[0].Verify, `fixed{instance="api-1"}`) {
		t.Fatalf("%d actions, plan %+v", h.drv.count(), x.Plan)
	}
	tu.Eventually(t, 10*time.Second, "the incident knows", func() (bool, string) {
		inc := h.incident()
		return len(inc.Runbooks) == 1 && inc.Runbooks[0].Outcome == "shadowed", fmt.Sprint(inc.Runbooks)
	})
}

// TestRestart: a restart loses no pending approval (its deadline
// included), no lease and no cooldown.
func TestRestart(t *testing.T) { stores(t, testRestart) }

func testRestart(t *testing.T, opts ...option) {
	t.Run("pending approval", func(t *testing.T) {
		h := newHarness(t, approval, opts...)
		h.fire("g1", errorAlert("api-1"), t0)
		x := h.waitState(h.waitExecutions(1)[0].ID, engine.StatePendingApproval, 0)
		h.clock.Add(4 * time.Minute)
		h.restart()
		y := h.waitState(x.ID, engine.StatePendingApproval, 0)
		if !y.Approval.Deadline.Equal(x.Approval.Deadline) {
			t.Fatalf("deadline %s, was %s", y.Approval.Deadline, x.Approval.Deadline)
		}
		if _, err := h.eng.Approve(context.Background(), x.ID, engine.Principal{ID: "alice"}, ""); err != nil {
			t.Fatal(err)
		}
		h.waitState(x.ID, engine.StateSucceeded, 0)
		if h.drv.count() != 1 {
			t.Fatalf("%d actions", h.drv.count())
		}
	})
	t.Run("lease", func(t *testing.T) {
		h := newHarness(t, restartInstance, opts...)
		h.fire("g1", errorAlert("api-1"), t0)
		x := h.waitState(h.waitExecutions(1)[0].ID, engine.StateVerifying, 0)
		h.restart()
		h.waitState(x.ID, engine.StateVerifying, 0)
		// The same target again: refused, the restarted run holds it.
		h.fire("g2", model.LabelSet{"alertname": "HighErrorRate", "job": "api", "instance": "api-1", "route": "/x"}, t0)
		h.waitRefusal(engine.RailLease)
		h.series(map[string]float64{`fixed{instance="api-1"}`: 1})
		h.waitState(x.ID, engine.StateSucceeded, 5*time.Second)
		if n := h.drv.count(); n != 1 {
			t.Fatalf("%d actions: the restart re-ran a finished step", n)
		}
	})
	t.Run("cooldown", func(t *testing.T) {
		h := newHarness(t, restartInstance, opts...)
		h.series(map[string]float64{`fixed{instance="api-1"}`: 1})
		h.fire("g1", errorAlert("api-1"), t0)
		h.waitState(h.waitExecutions(1)[0].ID, engine.StateSucceeded, 5*time.Second)
		h.restart()
		h.fire("g2", errorAlert("api-1"), h.clock.Now())
		h.waitRefusal(engine.RailCooldown)
	})
}

// TestRestartMidStep: a crash while an action runs. A step that is not
// idempotent is never run again: the run escalates. An idempotent one
// runs again.
func TestRestartMidStep(t *testing.T) { stores(t, testRestartMidStep) }

func testRestartMidStep(t *testing.T, opts ...option) {
	for _, idempotent := range []bool{false, true} {
		t.Run(fmt.Sprintf("idempotent=%v", idempotent), func(t *testing.T) {
			yaml := restartInstance
			if idempotent {
				yaml = strings.Replace(yaml, "        verify:\n", "        idempotent: true\n        verify:\n", 1)
			}
			h := newHarness(t, yaml, opts...)
			h.drv.set(func(context.Context, action.Call) (action.Result, error) {
				runtime.Goexit() // the process dies with the action in flight
				return action.Result{}, nil
			})
			h.fire("g1", errorAlert("api-1"), t0)
			x := h.waitExecutions(1)[0]
			tu.Eventually(t, 10*time.Second, "the action in flight", func() (bool, string) {
				x, _, _ = h.eng.Get(context.Background(), x.ID)
				return x.InFlight, string(x.State)
			})
			h.drv.set(nil)
			h.restart()
			if !idempotent {
				x = h.waitState(x.ID, engine.StateEscalated, 0)
				if !strings.Contains(x.Reason, "interrupted") || h.drv.count() != 1 {
					t.Fatalf("reason %q, %d calls", x.Reason, h.drv.count())
				}
				return
			}
			h.waitState(x.ID, engine.StateVerifying, 0)
			calls := h.drv.actions()
			if len(calls) != 2 || calls[0].Key != calls[1].Key {
				t.Fatalf("calls %+v: the idempotent step must run again with the same key", calls)
			}
		})
	}
}

// TestLearning: a runbook that failed ranks below an untried one for the
// same alert; records are exported.
func TestLearning(t *testing.T) {
	const two = `runbooks:
  - name: a-restart
    trigger: {alert: HighErrorRate}
    target: {instance: '{{ $labels.instance }}'}
    steps:
      - action: workflow.restart_service
        params: {service: api}
        verify: {expr: 'never == 1', within: 1m, interval: 20s}
    safety: {cooldown: 10m, max_runs: {count: 5, window: 1h}}
  - name: b-rollback
    trigger: {alert: HighErrorRate}
    target: {instance: '{{ $labels.instance }}'}
    steps:
      - action: workflow.rollback
        params: {service: api}
        verify: {expr: vector(1), within: 1m}
    safety: {cooldown: 10m, max_runs: {count: 5, window: 1h}}
`
	h := newHarness(t, two)
	h.fire("g1", errorAlert("api-1"), t0)
	x := h.waitExecutions(1)[0]
	if x.Runbook != "a-restart" {
		t.Fatalf("untried runbooks run by name: %s first", x.Runbook)
	}
	h.waitState(x.ID, engine.StateEscalated, 20*time.Second)
	h.fire("g2", errorAlert("api-2"), h.clock.Now())
	tu.Eventually(t, 10*time.Second, "the second run", func() (bool, string) {
		xs := h.executions(engine.Filter{})
		return len(xs) == 2 && xs[0].Runbook == "b-rollback", fmt.Sprint(len(xs))
	})
	recs := h.eng.Records()
	if len(recs) == 0 || recs[0].Runbook != "a-restart" || recs[0].Attempts != 1 || recs[0].Successes != 0 {
		t.Fatalf("records %+v", recs)
	}
	if got := gauge(t, h, "aiops_runbook_attempts_total").v; got != 1 {
		t.Errorf("attempts %g", got)
	}
	// The record survives a restart.
	h.restart()
	if recs := h.eng.Records(); len(recs) < 1 || recs[0].Attempts != 1 {
		t.Fatalf("records after a restart %+v", recs)
	}
}

// TestConditionTrigger: a forecast condition starts a run without an
// incident; its escalation goes to the notify channels.
func TestConditionTrigger(t *testing.T) {
	const cond = `runbooks:
  - name: clean-volume
    trigger:
      forecast: {metric: system_filesystem_usage_bytes, within: 4h}
      matchers: ['instance="db-0"']
    target: {instance: '{{ $labels.instance }}'}
    steps:
      - action: workflow.clean_volume
        params: {volume: postgres-data}
        verify: {expr: 'aiops_capacity_exhaustion_seconds{instance="db-0"} > 14400', within: 1m, interval: 20s}
    escalate: {notify: [oncall]}
    safety: {cooldown: 1h, max_runs: {count: 2, window: 1d}}
`
	h := newHarness(t, cond)
	h.series(map[string]float64{
		`aiops_capacity_exhaustion_seconds{aiops_metric="system_filesystem_usage_bytes",instance="db-0"}`: 3600,
		`aiops_capacity_exhaustion_seconds{aiops_metric="system_filesystem_usage_bytes",instance="db-1"}`: 3600,
	})
	var xs []engine.Execution
	tu.Eventually(t, 20*time.Second, "a run on db-0", func() (bool, string) {
		h.clock.Add(10 * time.Second)
		xs = h.executions(engine.Filter{})
		return len(xs) == 1, fmt.Sprint(len(xs))
	})
	x := h.waitState(xs[0].ID, engine.StateEscalated, 20*time.Second)
	if x.Trigger.Kind != "condition" || x.Target["instance"] != "db-0" || x.Trigger.IncidentID != "" {
		t.Fatalf("%+v", x)
	}
	tu.Eventually(t, 10*time.Second, "the escalation notified", func() (bool, string) {
		h.drv.mu.Lock()
		defer h.drv.mu.Unlock()
		for _, c := range h.drv.calls {
			if c.Action == "notify" && slices.Equal(c.Params["channels"].List, []string{"oncall"}) && strings.Contains(c.Params.String("message"), "clean-volume") {
				return true, ""
			}
		}
		return false, ""
	})
}

type singleMetric struct{ v float64 }

// TestSecretsNeverShown: a secret reaches the action and nowhere else:
// not the logs, not the store (executions, incidents, refusals), not the
// execution's view, even when the driver's error echoes it.
func TestSecretsNeverShown(t *testing.T) {
	const key, token = "k3y-VALUE-0451", "t0ken-VALUE-9q7"
	file := t.TempDir() + "/token"
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := `runbooks:
  - name: page-vendor
    trigger: {alert: HighErrorRate}
    target: {service: '{{ $labels.job }}'}
    steps:
      - action: webhook
        params:
          url: 'https://hooks.example.com/x?key={{ secret "key" }}'
          headers: {Authorization: 'Bearer {{ secret "token" }}'}
          body: '{"service": "{{ $target.service }}"}'
        retries: 1
        verify: {expr: vector(1), within: 1m}
    secrets:
      key: {env: HOOK_KEY}
      token: {file: ` + file + `}
    safety: {cooldown: 10m, max_runs: {count: 5, window: 1h}}
`
	h := newHarness(t, yaml)
	h.env["HOOK_KEY"] = key
	first := true
	h.drv.set(func(_ context.Context, c action.Call) (action.Result, error) {
		if first {
			first = false
			return action.Result{}, fmt.Errorf("POST %s: 401: Bearer %s rejected", c.Params.String("url"), token)
		}
		return action.Result{Outcome: "sent", Detail: "echo: " + c.Params["headers"].Map["Authorization"]}, nil
	})
	h.fire("g1", errorAlert("api-1"), t0)
	x := h.waitState(h.waitExecutions(1)[0].ID, engine.StateSucceeded, time.Second)
	calls := h.drv.actions()
	if len(calls) != 2 || calls[1].Params["headers"].Map["Authorization"] != "Bearer "+token || !strings.Contains(calls[1].Params.String("url"), key) {
		t.Fatalf("the action did not get the secrets: %+v", calls)
	}
	if x.Steps[0].Error == "" || !strings.Contains(x.Steps[0].Error, "<secret:token>") || !strings.Contains(x.Steps[0].Params["url"], "<secret:key>") {
		t.Fatalf("the record does not mask: %+v", x.Steps[0])
	}
	// Let the incident resolve so that every kind of event exists.
	h.resolve("g1", errorAlert("api-1"), t0)
	tu.Eventually(t, 10*time.Second, "resolved", func() (bool, string) {
		return h.incident().Status == incident.StatusResolved, ""
	})
	var everything []string
	evs, err := h.events.QueryEvents(context.Background(), storage.EventQuery{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		everything = append(everything, e.Kind+" "+string(e.Payload)+fmt.Sprint(e.Labels))
	}
	view, _ := json.Marshal(h.executions(engine.Filter{}))
	_, log, _ := h.eng.Get(context.Background(), x.ID)
	logJSON, _ := json.Marshal(log)
	timeline, _ := h.inc.Timeline(context.Background(), h.incident().ID)
	timelineJSON, _ := json.Marshal(timeline)
	for what, text := range map[string]string{
		"logs": h.logs.String(), "store": strings.Join(everything, "\n"), "executions": string(view),
		"execution log": string(logJSON), "incident timeline": string(timelineJSON),
	} {
		for _, secret := range []string{key, token} {
			if strings.Contains(text, secret) {
				t.Errorf("the secret shows in the %s", what)
			}
		}
	}
	if len(evs) < 10 {
		t.Fatalf("only %d events stored", len(evs))
	}
}

// TestEscalateUnhandled: an alert the policy covers that no runbook
// handles is escalated once its time is up; one a run handles, or one the
// policy does not cover, is not.
func TestEscalateUnhandled(t *testing.T) {
	yaml := strings.Replace(restartInstance, "    steps:\n", "    preconditions:\n      - {name: never, expr: 'deploys_in_progress == 1'}\n    steps:\n", 1)
	h := newHarness(t, yaml, withConfig(func(c *engine.Config) {
		c.EscalateUnhandled = engine.UnhandledPolicy{After: 2 * time.Minute, Alerts: []string{`{severity="critical"}`}}
	}))
	h.fire("g1", errorAlert("api-1"), t0)
	warn := model.LabelSet{"alertname": "HostHighMemoryUsage", "job": "node", "severity": "warning"}
	h.fire("g2", warn, t0)
	h.waitRefusal(engine.RailPrecondition)
	incs, _ := h.inc.List(incident.Query{})
	byName := func(name string) incident.Incident {
		for _, i := range incs {
			if strings.Contains(i.Title, name) {
				got, _ := h.inc.Get(i.ID)
				return got
			}
		}
		t.Fatalf("no incident %s", name)
		return incident.Incident{}
	}
	tu.Eventually(t, 20*time.Second, "the critical alert escalated", func() (bool, string) {
		h.clock.Add(10 * time.Second)
		i := byName("HighErrorRate")
		return i.EscalationLevel == 1 && i.Notes == 1, fmt.Sprintf("level %d at %s", i.EscalationLevel, h.clock.Now())
	})
	if !h.clock.Now().After(t0.Add(2 * time.Minute)) {
		t.Errorf("escalated before its time: %s", h.clock.Now())
	}
	if i := byName("HostHighMemoryUsage"); i.EscalationLevel != 0 {
		t.Errorf("a warning the policy does not cover was escalated")
	}

	// A run handles the alert: no escalation.
	h2 := newHarness(t, restartInstance, withConfig(func(c *engine.Config) {
		c.EscalateUnhandled = engine.UnhandledPolicy{After: 2 * time.Minute}
	}))
	h2.fire("g1", errorAlert("api-1"), t0)
	x := h2.waitState(h2.waitExecutions(1)[0].ID, engine.StateVerifying, 0)
	h2.advance(3*time.Minute, 10*time.Second)
	x, _, _ = h2.eng.Get(context.Background(), x.ID)
	if i := h2.incident(); i.EscalationLevel != 0 || x.State != engine.StateVerifying {
		t.Fatalf("escalated (level %d) while a run (%s) handles it", i.EscalationLevel, x.State)
	}
	// The run's check holds and it ends, but the alert fires on: it goes
	// to people once it has outlived the fix by the time alerts take to
	// clear (5m).
	h2.series(map[string]float64{`fixed{instance="api-1"}`: 1})
	x = h2.waitState(x.ID, engine.StateSucceeded, 10*time.Second)
	h2.advance(4*time.Minute, 10*time.Second)
	if i := h2.incident(); i.EscalationLevel != 0 {
		t.Fatalf("escalated %s after the fix; the policy waits 5m", h2.clock.Now().Sub(*x.EndedAt))
	}
	tu.Eventually(t, 20*time.Second, "the alert that outlived the fix escalated", func() (bool, string) {
		h2.clock.Add(10 * time.Second)
		return h2.incident().EscalationLevel == 1, fmt.Sprintf("at %s", h2.clock.Now().Sub(*x.EndedAt))
	})
	if took := h2.clock.Now().Sub(*x.EndedAt); took < 5*time.Minute || took > 6*time.Minute {
		t.Errorf("escalated %s after the fix, want 5m", took)
	}

	// A run on the api does not hold back an alert of another service
	// that no runbook handles: it goes to people on time.
	h3 := newHarness(t, restartInstance, withConfig(func(c *engine.Config) {
		c.EscalateUnhandled = engine.UnhandledPolicy{After: 2 * time.Minute}
	}))
	h3.fire("g1", errorAlert("api-1"), t0)
	x = h3.waitState(h3.waitExecutions(1)[0].ID, engine.StateVerifying, 0)
	crash := model.LabelSet{"alertname": "CrashLooping", "job": "worker", "instance": "worker-0", "severity": "warning"}
	h3.fire("g2", crash, t0)
	seen := h3.clock.Now()
	incs, _ = h3.inc.List(incident.Query{})
	var crashID, apiID string
	for _, i := range incs {
		if strings.Contains(i.Title, "CrashLooping") {
			crashID = i.ID
		} else {
			apiID = i.ID
		}
	}
	escalated := func() bool { i, _ := h3.inc.Get(crashID); return i.EscalationLevel == 1 }
	for !escalated() && h3.clock.Now().Sub(seen) < 5*time.Minute {
		h3.advance(10*time.Second, 10*time.Second)
	}
	if took := h3.clock.Now().Sub(seen); !escalated() || took < 2*time.Minute || took > 2*time.Minute+20*time.Second {
		t.Errorf("escalated %v, %s after it fired; want 2m", escalated(), took)
	}
	x, _, _ = h3.eng.Get(context.Background(), x.ID)
	if i, _ := h3.inc.Get(apiID); i.EscalationLevel != 0 || x.State != engine.StateVerifying {
		t.Errorf("the api's alert escalated (level %d) while its run (%s) handles it", i.EscalationLevel, x.State)
	}
}

// TestConcurrentDecisionsDecideOnce: a double click on Approve, or
// Approve and Deny pressed at once by two approvers, is one decision.
// Found from outside: eight approvals sent at once through Slack to
// aiops serve were all answered "approved" and recorded as eight
// approved events; the check and the append were not one step, so a
// denial racing an approval could be followed by a run.
func TestConcurrentDecisionsDecideOnce(t *testing.T) {
	for round := 0; round < 5; round++ {
		h := newHarness(t, strings.Replace(approval, "approvers: [alice]", "approvers: [alice, bob]", 1))
		ctx := context.Background()
		m, err := h.eng.RunManual(ctx, "rollback-api", map[string]string{"service": "auth"}, "carol")
		if err != nil {
			t.Fatal(err)
		}
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			approved int
			denied   int
		)
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				if i%2 == 0 {
					_, err = h.eng.Approve(ctx, m.ID, engine.Principal{ID: "alice"}, "")
				} else {
					_, err = h.eng.Deny(ctx, m.ID, engine.Principal{ID: "bob"}, "no")
				}
				if err != nil && !errors.Is(err, engine.ErrConflict) {
					t.Errorf("decision: %v", err)
				}
				if err != nil && strings.Contains(err.Error(), "is pending_approval, not waiting") {
					t.Errorf("a decided execution described as pending: %v", err)
				}
				mu.Lock()
				defer mu.Unlock()
				if err == nil && i%2 == 0 {
					approved++
				} else if err == nil {
					denied++
				}
			}()
		}
		wg.Wait()
		if approved+denied != 1 {
			t.Fatalf("round %d: %d approvals and %d denials accepted, want one decision", round, approved, denied)
		}
		if denied == 1 {
			if x := h.waitState(m.ID, engine.StateDenied, 0); h.drv.count() != 0 {
				t.Fatalf("denied run acted %d times: %+v", h.drv.count(), x)
			}
		} else if x := h.waitState(m.ID, engine.StateSucceeded, 0); h.drv.count() != 1 || x.DeniedBy != "" {
			t.Fatalf("approved run: %d actions, denied by %q", h.drv.count(), x.DeniedBy)
		}
	}
}
