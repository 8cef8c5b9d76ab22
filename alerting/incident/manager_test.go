package incident

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/prometheus/alertmanager/notify"
)

var (
	errRate  = model.LabelSet{"alertname": "HighErrorRate", "severity": "warning", "job": "api", "instance": "a:1"}
	errRate2 = model.LabelSet{"alertname": "HighErrorRate", "severity": "critical", "job": "api", "instance": "a:2"}
	pool     = model.LabelSet{"alertname": "PoolFull", "severity": "critical", "service": "postgres"}
)

// TestLifecycle walks an incident from its first alert to auto-resolve:
// open, replay (nothing new), acknowledge (twice: once recorded), the
// alerts resolving, the quiet period, resolution by aiops.
func TestLifecycle(t *testing.T) {
	c := newClock()
	m := newManager(t, openEmbedded(t, t.TempDir()), testConfig(), c)
	ctx := context.Background()

	start := t0.Add(-time.Minute)
	a1 := mkAlert(errRate, start, time.Time{})
	send(t, m, "{}:{alertname=\"HighErrorRate\"}", a1)
	inc := only(t, m)
	if inc.Status != StatusOpen || inc.Version != 2 || inc.FiringAlerts != 1 {
		t.Fatalf("opened: %+v", inc)
	}
	if inc.Severity != "warning" || inc.Service != "api" || inc.Title != "HighErrorRate on api" || inc.Summary != "summary of HighErrorRate" {
		t.Errorf("severity %q service %q title %q summary %q", inc.Severity, inc.Service, inc.Title, inc.Summary)
	}
	if len(inc.Links) != 1 || inc.Links[0].Expr != "HighErrorRate_expr > 1" || !strings.HasPrefix(inc.Links[0].GeneratorURL, "https://aiops.example.com/graph") {
		t.Errorf("links %+v", inc.Links)
	}
	if inc.Receiver != "oncall" || inc.GroupLabels["alertname"] != "HighErrorRate" || !strings.HasPrefix(inc.ID, "inc-") {
		t.Errorf("group: %+v", inc)
	}

	// The same group again (a retried or repeated notification) and a
	// second alert joining: only the second alert is new; severity rises.
	c.Add(time.Minute)
	send(t, m, "{}:{alertname=\"HighErrorRate\"}", a1)
	if got := only(t, m).Version; got != 2 {
		t.Fatalf("replay changed the incident: version %d", got)
	}
	a2 := mkAlert(errRate2, t0, time.Time{})
	send(t, m, "{}:{alertname=\"HighErrorRate\"}", a1, a2)
	inc = only(t, m)
	if inc.Version != 3 || inc.FiringAlerts != 2 || inc.Severity != "critical" {
		t.Fatalf("second alert: %+v", inc)
	}

	inc, err := m.Acknowledge(ctx, inc.ID, Action{Actor: "alice", Comment: "looking"})
	if err != nil || inc.Status != StatusAcknowledged || inc.AcknowledgedBy != "alice" || inc.Version != 4 {
		t.Fatalf("acknowledge: %+v %v", inc, err)
	}
	if again, err := m.Acknowledge(ctx, inc.ID, Action{Actor: "bob"}); err != nil || again.Version != 4 || again.AcknowledgedBy != "alice" {
		t.Fatalf("second acknowledge: %+v %v", again, err)
	}

	// Both alerts resolve; the quiet period starts.
	c.Add(time.Minute)
	end := c.Now()
	send(t, m, "{}:{alertname=\"HighErrorRate\"}", mkAlert(errRate, start, end), mkAlert(errRate2, t0, end))
	inc = only(t, m)
	if inc.Status != StatusAcknowledged || inc.FiringAlerts != 0 || inc.AlertsResolvedAt == nil || !inc.AlertsResolvedAt.Equal(end) {
		t.Fatalf("alerts resolved: %+v", inc)
	}
	c.Add(4 * time.Minute)
	if err := m.CheckDeadlines(ctx); err != nil {
		t.Fatal(err)
	}
	if s := only(t, m).Status; s != StatusAcknowledged {
		t.Fatalf("resolved before the quiet period ended: %s", s)
	}
	c.Add(time.Minute)
	if err := m.CheckDeadlines(ctx); err != nil {
		t.Fatal(err)
	}
	inc = only(t, m)
	if inc.Status != StatusResolved || inc.ResolvedBy != SystemActor || inc.ResolvedAt == nil {
		t.Fatalf("auto-resolve: %+v", inc)
	}
	evs := mustTimeline(t, m, inc.ID)
	want := []EventType{EventOpened, EventAlertFiring, EventAlertFiring, EventAcknowledged, EventAlertResolved, EventAlertResolved, EventResolved}
	if !slices.Equal(types(evs), want) {
		t.Fatalf("timeline %v, want %v", types(evs), want)
	}
	if evs[3].Actor != "alice" || evs[3].Comment != "looking" || !strings.Contains(evs[6].Reason, "quiet for 5m") {
		t.Errorf("timeline details: %+v %+v", evs[3], evs[6])
	}
	if inc.Version != uint64(len(evs)) {
		t.Errorf("version %d, %d events", inc.Version, len(evs))
	}

	// Acknowledging a resolved incident is refused; a note is recorded
	// without changing the status.
	if _, err := m.Acknowledge(ctx, inc.ID, Action{Actor: "bob"}); !errors.Is(err, ErrResolved) {
		t.Errorf("acknowledge resolved: %v", err)
	}
	if got, err := m.AddNote(ctx, inc.ID, "postmortem: pool size", Action{Actor: "bob"}); err != nil || got.Status != StatusResolved || got.Notes != 1 {
		t.Errorf("note on resolved: %+v %v", got, err)
	}
	if _, err := m.Acknowledge(ctx, "inc-nope", Action{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
}

// TestReopen: a new alert within the reopen window reopens the incident;
// after the window it opens a new one. Repeats of an alert the incident
// already has never reopen it.
func TestReopen(t *testing.T) {
	c := newClock()
	m := newManager(t, openEmbedded(t, t.TempDir()), testConfig(), c)
	ctx := context.Background()
	key := "{}:{alertname=\"PoolFull\"}"

	a := mkAlert(pool, t0, time.Time{})
	send(t, m, key, a)
	first := only(t, m)
	if _, err := m.Resolve(ctx, first.ID, Action{Actor: "alice", Comment: "restarted the pool"}); err != nil {
		t.Fatal(err)
	}
	// Still firing, sent again: resolving by hand sticks.
	c.Add(10 * time.Minute)
	send(t, m, key, a)
	if inc := only(t, m); inc.Status != StatusResolved {
		t.Fatalf("repeat of a known alert reopened: %+v", inc)
	}
	// It resolves, then fires again (a new start) within the window.
	c.Add(time.Minute)
	send(t, m, key, mkAlert(pool, t0, c.Now()))
	c.Add(time.Minute)
	send(t, m, key, mkAlert(pool, c.Now(), time.Time{}))
	inc := only(t, m)
	if inc.ID != first.ID || inc.Status != StatusOpen || inc.Reopens != 1 || inc.ResolvedAt != nil || inc.FiringAlerts != 1 {
		t.Fatalf("reopen: %+v", inc)
	}
	evs := mustTimeline(t, m, inc.ID)
	if tail := types(evs)[len(evs)-3:]; !slices.Equal(tail, []EventType{EventAlertResolved, EventReopened, EventAlertFiring}) {
		t.Fatalf("timeline %v", types(evs))
	}

	// Resolved, then a new alert after the window: a new incident.
	c.Add(time.Minute)
	send(t, m, key, mkAlert(pool, c.Now().Add(-time.Minute), c.Now()))
	c.Add(6 * time.Minute)
	if err := m.CheckDeadlines(ctx); err != nil {
		t.Fatal(err)
	}
	if inc, _ := m.Get(first.ID); inc.Status != StatusResolved {
		t.Fatalf("not auto-resolved: %+v", inc)
	}
	c.Add(61 * time.Minute)
	send(t, m, key, mkAlert(pool, c.Now(), time.Time{}))
	incs, _ := m.List(Query{})
	if len(incs) != 2 || incs[0].ID == first.ID || incs[0].Status != StatusOpen || incs[1].ID != first.ID || incs[1].Status != StatusResolved {
		t.Fatalf("after the window: %+v", incs)
	}
}

// TestMutedAndAutoResolveZero: a firing alert that leaves the group (it
// was silenced) counts as resolved; with auto_resolve_after 0 the
// incident resolves at once.
func TestMutedAndAutoResolveZero(t *testing.T) {
	c := newClock()
	cfg := testConfig()
	cfg.AutoResolveAfter = 0
	m := newManager(t, openEmbedded(t, t.TempDir()), cfg, c)
	key := "{}:{alertname=\"HighErrorRate\"}"
	a1, a2 := mkAlert(errRate, t0, time.Time{}), mkAlert(errRate2, t0, time.Time{})
	send(t, m, key, a1, a2)
	c.Add(time.Minute)
	send(t, m, key, a1)
	inc := only(t, m)
	if inc.FiringAlerts != 1 || inc.Status != StatusOpen {
		t.Fatalf("after a2 was muted: %+v", inc)
	}
	for _, a := range inc.Alerts {
		if a.Fingerprint == a2.Fingerprint().String() && (a.Status != AlertResolved || a.Reason != "muted") {
			t.Errorf("muted alert: %+v", a)
		}
	}
	c.Add(time.Minute)
	send(t, m, key, mkAlert(errRate, t0, c.Now()))
	inc = only(t, m)
	if inc.Status != StatusResolved || inc.ResolvedBy != SystemActor {
		t.Fatalf("auto_resolve_after 0: %+v", inc)
	}
}

func TestEscalation(t *testing.T) {
	c := newClock()
	cfg := testConfig()
	cfg.EscalateAfter = model.Duration(15 * time.Minute)
	m := newManager(t, openEmbedded(t, t.TempDir()), cfg, c)
	ctx := context.Background()
	send(t, m, "k1", mkAlert(pool, t0, time.Time{}))
	send(t, m, "k2", mkAlert(errRate, t0, time.Time{}))
	incs, _ := m.List(Query{})
	acked := incs[0].ID
	if _, err := m.Acknowledge(ctx, acked, Action{Actor: "alice"}); err != nil {
		t.Fatal(err)
	}
	c.Add(16 * time.Minute)
	for range 2 {
		if err := m.CheckDeadlines(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, inc := range mustList(m) {
		want := 1
		if inc.ID == acked {
			want = 0
		}
		if inc.EscalationLevel != want {
			t.Errorf("%s (%s): escalation level %d, want %d", inc.ID, inc.Status, inc.EscalationLevel, want)
		}
	}
	inc, err := m.Escalate(ctx, acked, Action{Actor: "alice", Comment: "need the DBA"})
	if err != nil || inc.EscalationLevel != 1 {
		t.Fatalf("escalate: %+v %v", inc, err)
	}
}

func mustList(m *Manager) []Incident {
	incs, _ := m.List(Query{Limit: 1000})
	return incs
}

// TestRunbookEvents: remediation's events are recorded once per run and
// phase, also on a resolved incident.
func TestRunbookEvents(t *testing.T) {
	m := newManager(t, openEmbedded(t, t.TempDir()), testConfig(), newClock())
	ctx := context.Background()
	send(t, m, "k", mkAlert(pool, t0, time.Time{}))
	id := only(t, m).ID
	rb := RunbookEvent{RunID: "run-1", Runbook: "restart-pool"}
	for range 2 {
		if _, err := m.RecordRunbook(ctx, id, RunbookStarted, rb, Action{Actor: "remediation"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Resolve(ctx, id, Action{Actor: "alice"}); err != nil {
		t.Fatal(err)
	}
	rb.Outcome, rb.Message = "succeeded", "pool back to 40%"
	inc, err := m.RecordRunbook(ctx, id, RunbookFinished, rb, Action{Actor: "remediation"})
	if err != nil {
		t.Fatal(err)
	}
	if len(inc.Runbooks) != 1 || inc.Runbooks[0].Outcome != "succeeded" || inc.Runbooks[0].StartedAt == nil || inc.Runbooks[0].FinishedAt == nil || inc.Status != StatusResolved {
		t.Fatalf("runbooks %+v status %s", inc.Runbooks, inc.Status)
	}
	want := []EventType{EventOpened, EventAlertFiring, EventRunbookStarted, EventResolved, EventRunbookFinished}
	if got := types(mustTimeline(t, m, id)); !slices.Equal(got, want) {
		t.Fatalf("timeline %v, want %v", got, want)
	}
	if _, err := m.RecordRunbook(ctx, id, "halfway", rb, Action{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad phase: %v", err)
	}

	// Steps: one event per key, the params as given (masked by the
	// caller), kept in the timeline and after a restart.
	step := rb
	step.Step = &RunbookStep{Key: "steps[0]#1", Name: "restart", Action: "workflow.restart_service",
		Params: map[string]string{"service": "api"}, Result: "started"}
	for range 2 {
		if _, err := m.RecordRunbook(ctx, id, RunbookStepDone, step, Action{Actor: "remediation"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.RecordRunbook(ctx, id, RunbookStepDone, rb, Action{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("step without a step: %v", err)
	}
	evs := mustTimeline(t, m, id)
	last := evs[len(evs)-1]
	if last.Type != EventRunbookStep || last.Runbook.Step == nil || last.Runbook.Step.Params["service"] != "api" || evs[len(evs)-2].Type == EventRunbookStep {
		t.Fatalf("timeline %v, last %+v", types(evs), last.Runbook)
	}
	m2 := newManager(t, m.events, testConfig(), nil)
	if _, err := m2.RecordRunbook(ctx, id, RunbookStepDone, step, Action{Actor: "remediation"}); err != nil {
		t.Fatal(err)
	}
	if n := len(mustTimeline(t, m2, id)); n != len(evs) {
		t.Fatalf("a step recorded again after a restart: %d events, was %d", n, len(evs))
	}
}

func TestNotifyContextAndReceivers(t *testing.T) {
	cfg := testConfig()
	cfg.Receivers = []string{"pager"}
	m := newManager(t, openEmbedded(t, t.TempDir()), cfg, newClock())
	v := m.Notify(context.Background(), mkAlert(pool, t0, time.Time{}))
	if v.Err() == nil || v.ShouldRetry() || v.Reason() != notify.MissingContextReason {
		t.Errorf("no group key: %v retry=%v", v.Err(), v.ShouldRetry())
	}
	send(t, m, "k", mkAlert(pool, t0, time.Time{})) // receiver "oncall": not ours
	if incs, _ := m.List(Query{}); len(incs) != 0 {
		t.Fatalf("incident for another receiver: %+v", incs)
	}
	if v := m.Notify(groupCtx("k", "pager", nil), mkAlert(pool, t0, time.Time{})); v.Err() != nil {
		t.Fatal(v.Err())
	}
	only(t, m)
}

func TestListFilters(t *testing.T) {
	c := newClock()
	m := newManager(t, openEmbedded(t, t.TempDir()), testConfig(), c)
	send(t, m, "k1", mkAlert(pool, t0, time.Time{}))
	c.Add(time.Minute)
	send(t, m, "k2", mkAlert(errRate, t0, time.Time{}))
	c.Add(time.Minute)
	incs, _ := m.List(Query{})
	if _, err := m.Resolve(context.Background(), incs[1].ID, Action{Actor: "x"}); err != nil { // pool
		t.Fatal(err)
	}
	count := func(q Query) int { got, _ := m.List(q); return len(got) }
	sel := func(s string) [][]*labels.Matcher {
		return [][]*labels.Matcher{{labels.MustNewMatcher(labels.MatchRegexp, "alertname", s)}}
	}
	for name, c := range map[string]struct {
		q    Query
		want int
	}{
		"all":              {Query{}, 2},
		"status resolved":  {Query{Statuses: []Status{StatusResolved}}, 1},
		"status open/ack":  {Query{Statuses: []Status{StatusOpen, StatusAcknowledged}}, 1},
		"service":          {Query{Services: []string{"postgres"}}, 1},
		"severity":         {Query{Severities: []string{"warning"}}, 1},
		"matcher":          {Query{Selectors: sel("Pool.*")}, 1},
		"matchers or":      {Query{Selectors: append(sel("Pool.*"), sel("High.*")...)}, 2},
		"no match":         {Query{Selectors: sel("Nope")}, 0},
		"end before all":   {Query{End: t0.Add(-time.Second)}, 0},
		"end after first":  {Query{End: t0.Add(30 * time.Second)}, 1},
		"start after both": {Query{Start: t0.Add(time.Hour)}, 1}, // the resolved one ended before
	} {
		if got := count(c.q); got != c.want {
			t.Errorf("%s: %d incidents, want %d", name, got, c.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.AutoResolveAfter = -1 }, "incidents.auto_resolve_after: must be >= 0"},
		{func(c *Config) { c.ReopenWindow = -1 }, "incidents.reopen_window"},
		{func(c *Config) { c.EscalateAfter = -1 }, "incidents.escalate_after"},
		{func(c *Config) { c.CheckInterval = 0 }, "incidents.check_interval: must be > 0"},
		{func(c *Config) { c.RootCauseTimeout = 0 }, "incidents.root_cause_timeout"},
		{func(c *Config) { c.RootCauseLookback = -1 }, "incidents.root_cause_lookback"},
		{func(c *Config) { c.MaxRootCauses = -1 }, "incidents.max_root_causes"},
		{func(c *Config) { c.ServiceLabels = nil }, "incidents.service_labels"},
		{func(c *Config) { c.ServiceLabels = []string{"job", ""} }, "incidents.service_labels[1]"},
		{func(c *Config) { c.Receivers = []string{""} }, "incidents.receivers[0]"},
	} {
		cfg := DefaultConfig()
		c.edit(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate: %v, want %q", err, c.want)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	if _, err := New(context.Background(), Config{}, Deps{}); err == nil {
		t.Error("New accepted a zero config")
	}
}

// TestResolveByRunbook: a runbook's fix resolves the incident only once
// its alerts have resolved, records the run as what fixed it, changes
// nothing when repeated, and forgets it when the incident reopens.
func TestResolveByRunbook(t *testing.T) {
	c := newClock()
	m := newManager(t, openEmbedded(t, t.TempDir()), testConfig(), c)
	ctx := context.Background()
	a := mkAlert(pool, t0, time.Time{})
	send(t, m, "k", a)
	id := only(t, m).ID
	rb := RunbookEvent{RunID: "run-1", Runbook: "restart-pool", Outcome: "succeeded"}
	act := Action{Actor: "remediation"}
	if _, err := m.ResolveByRunbook(ctx, id, rb, act); !errors.Is(err, ErrFiring) {
		t.Fatalf("resolve with a firing alert: %v, want ErrFiring", err)
	}
	if _, err := m.ResolveByRunbook(ctx, id, RunbookEvent{RunID: "run-1"}, act); !errors.Is(err, ErrInvalid) {
		t.Fatalf("resolve without a runbook name: %v, want ErrInvalid", err)
	}
	c.Add(time.Minute)
	send(t, m, "k", mkAlert(pool, t0, c.Now()))
	inc, err := m.ResolveByRunbook(ctx, id, rb, act)
	if err != nil {
		t.Fatal(err)
	}
	if inc.Status != StatusResolved || inc.FixedBy == nil || *inc.FixedBy != (FixedBy{RunID: "run-1", Runbook: "restart-pool"}) || inc.ResolvedBy != "remediation" {
		t.Fatalf("after the fix: status %s fixed_by %+v resolved_by %q", inc.Status, inc.FixedBy, inc.ResolvedBy)
	}
	if _, err := m.ResolveByRunbook(ctx, id, rb, act); err != nil {
		t.Fatalf("again: %v", err)
	}
	evs := mustTimeline(t, m, id)
	last := evs[len(evs)-1]
	if want := []EventType{EventOpened, EventAlertFiring, EventAlertResolved, EventResolved}; !slices.Equal(types(evs), want) {
		t.Fatalf("timeline %v, want %v", types(evs), want)
	}
	if last.Runbook == nil || last.Runbook.RunID != "run-1" || !strings.Contains(last.Reason, "auto-resolved") {
		t.Fatalf("resolution event %+v", last)
	}
	// Folded again from the store, the incident still says what fixed it.
	m2 := newManager(t, m.events, testConfig(), c)
	if got, _ := m2.Get(id); got.FixedBy == nil || got.FixedBy.Runbook != "restart-pool" {
		t.Fatalf("after a restart: fixed_by %+v", got.FixedBy)
	}
	c.Add(time.Minute)
	send(t, m, "k", mkAlert(pool, c.Now(), time.Time{}))
	if inc, _ := m.Get(id); inc.Status != StatusOpen || inc.FixedBy != nil {
		t.Fatalf("reopened: status %s fixed_by %+v", inc.Status, inc.FixedBy)
	}
}
