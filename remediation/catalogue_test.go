package remediation_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"

	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/prometheus/alertmanager/alert"

	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/remediation"
	"github.com/aiops-dev/aiops/remediation/engine"
	"github.com/aiops-dev/aiops/sim/chaos"
	"github.com/aiops-dev/aiops/sim/control"
	simengine "github.com/aiops-dev/aiops/sim/engine"
	simmodel "github.com/aiops-dev/aiops/sim/model"
	"github.com/aiops-dev/aiops/sim/simtest"
	"github.com/aiops-dev/aiops/sim/telemetry"
	"github.com/aiops-dev/aiops/sim/truth"
)

// loop is the closed loop in simulated time: the simulated workflow
// engine's metrics go into a TSDB where the shipped rules are evaluated
// every step; firing alerts are grouped as Alertmanager groups them
// (alertname, job) and handed to the incident manager; the remediation
// engine, on the simulation's clock, follows the incidents with the
// shipped runbooks, queries the same TSDB and acts through the
// simulator's control API. Each step waits for the engine to settle.
type loop struct {
	t     *testing.T
	sim   *simengine.Engine
	rules *simtest.Rules
	clock *testutil.Clock
	inc   *incident.Manager
	rem   *remediation.Remediation
	// firing are the alerts handed over as firing, by fingerprint.
	firing map[model.Fingerprint]*alert.Alert
	log    *strings.Builder
}

// step is the simulated time per tick and the rules' evaluation interval.
const step = 15 * time.Second

func newLoop(t *testing.T) *loop {
	t.Helper()
	mc := simmodel.DefaultConfig()
	mc.Start, mc.Seed = testutil.Epoch, 7
	opts := telemetry.DefaultOptions()
	sim, err := simengine.New(simengine.Config{Model: mc, Levels: truth.DefaultLevels(), Step: step, Telemetry: &opts})
	if err != nil {
		t.Fatal(err)
	}
	const token = "sim-control-token"
	h, err := control.NewHandler(sim, token, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	l := &loop{t: t, sim: sim, clock: testutil.NewClock(sim.Now()), firing: map[model.Fingerprint]*alert.Alert{}, log: &strings.Builder{}}
	l.rules = simtest.NewRules(t, step, simtest.RuleFiles(t, "..")...)
	events := storetest.Embedded(t)
	icfg := incident.DefaultConfig()
	l.inc, err = incident.New(context.Background(), icfg, incident.Deps{Events: events, Now: l.clock.Now, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := remediation.DefaultConfig()
	cfg.RunbookFiles = []string{"../deploy/runbooks/*.yml"}
	cfg.EscalateUnhandled = remediation.UnhandledConfig{After: model.Duration(2 * time.Minute), Alerts: []string{`{severity="critical"}`, `{alertname="CrashLooping"}`}}
	cfg.Drivers.Workflow = &remediation.WorkflowConfig{URL: srv.URL, Token: remediation.Secret{Value: token}}
	l.rem, err = remediation.New(context.Background(), cfg, remediation.Deps{
		Events: events, Queryable: l.rules.Storage(), Engine: l.rules.Engine(),
		Parser:    parser.NewParser(parser.Options{EnableExperimentalFunctions: true}),
		Incidents: l.inc, Feed: l.inc.Feed(incident.FeedOptions{PollInterval: 50 * time.Millisecond}), FeedHead: l.inc.FeedHead,
		Clock: l.clock, Logger: testutil.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.rem.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return l
}

// tick advances the simulation one step and lets the loop settle.
func (l *loop) tick() {
	l.t.Helper()
	batch, err := l.sim.Tick(context.Background())
	if err != nil {
		l.t.Fatal(err)
	}
	l.rules.Append(batch)
	now := l.sim.Now()
	l.rules.Eval(now)
	l.clock.Set(now)
	l.handAlerts(now)
	if err := l.inc.CheckDeadlines(context.Background()); err != nil {
		l.t.Fatal(err)
	}
	l.settle()
}

// settle waits until the engine has nothing left to do at this time.
func (l *loop) settle() {
	l.t.Helper()
	eng := l.rem.Engine()
	testutil.Eventually(l.t, time.Minute, "the remediation engine settles", func() (bool, string) {
		a := eng.Activity()
		w := l.clock.Waiters()
		return a.Busy == 0 && !a.FeedBehind && w == a.Sleeping, fmt.Sprintf("%+v, %d timers", a, w)
	})
}

// handAlerts hands the firing alerts to the incident manager grouped by
// (alertname, job), with those that stopped firing as resolved.
func (l *loop) handAlerts(now time.Time) {
	groups := map[string][]*alert.Alert{}
	glabels := map[string]model.LabelSet{}
	seen := map[model.Fingerprint]bool{}
	for _, ra := range l.rules.Active() {
		ls := model.LabelSet{}
		ra.Labels.Range(func(lb labels.Label) { ls[model.LabelName(lb.Name)] = model.LabelValue(lb.Value) })
		a := alert.New(model.Alert{Labels: ls, StartsAt: ra.ActiveAt, EndsAt: now.Add(4 * step)}, now, false)
		fp := ls.Fingerprint()
		seen[fp] = true
		if prev := l.firing[fp]; prev != nil {
			a.StartsAt = prev.StartsAt
		}
		l.firing[fp] = a
		gl := model.LabelSet{"alertname": ls["alertname"], "job": ls["job"]}
		key := gl.String()
		groups[key], glabels[key] = append(groups[key], a), gl
	}
	for fp, a := range l.firing {
		if seen[fp] {
			continue
		}
		r := *a
		r.EndsAt = now
		delete(l.firing, fp)
		gl := model.LabelSet{"alertname": a.Labels["alertname"], "job": a.Labels["job"]}
		key := gl.String()
		groups[key], glabels[key] = append(groups[key], &r), gl
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := l.inc.HandleGroup(context.Background(), incident.Group{Key: k, Receiver: "sim", Labels: glabels[k], Alerts: groups[k]}); err != nil {
			l.t.Fatal(err)
		}
	}
}

// actions are the control actions the simulator received after t.
func (l *loop) actions(after time.Time) []truth.Event {
	var out []truth.Event
	for _, ev := range l.sim.Timeline().Events {
		if ev.Kind == truth.ActionReceived && !ev.Time.Before(after) {
			out = append(out, ev)
		}
	}
	return out
}

func (l *loop) state() string {
	var b strings.Builder
	h := l.sim.Health()
	fmt.Fprintf(&b, "healthy=%v", h.Healthy)
	var firing []string
	for n := range l.rules.Firing() {
		firing = append(firing, n)
	}
	sort.Strings(firing)
	fmt.Fprintf(&b, " firing=%v", firing)
	for _, x := range l.rem.Engine().List(engine.Filter{}) {
		fmt.Fprintf(&b, "\n  execution %s %s on %v: %s (%s)", x.Runbook, x.Trigger.Alertname, x.Target, x.State, x.Reason)
	}
	incs, _ := l.inc.List(incident.Query{})
	for _, inc := range incs {
		fixed := ""
		if inc.FixedBy != nil {
			fixed = " fixed by " + inc.FixedBy.Runbook
		}
		fmt.Fprintf(&b, "\n  incident %q %s escalation %d%s", inc.Title, inc.Status, inc.EscalationLevel, fixed)
	}
	for _, ev := range l.actions(time.Time{}) {
		fmt.Fprintf(&b, "\n  action at %s: %s → %s%s", ev.Offset, ev.Action.Action.String(), ev.Action.Outcome, ev.Action.Error)
	}
	rs, _ := l.rem.Engine().Refusals(context.Background(), time.Time{}, 0)
	seen := map[string]bool{}
	for _, r := range rs {
		if k := r.Runbook + r.Rail + r.Reason; !seen[k] {
			seen[k] = true
			fmt.Fprintf(&b, "\n  refused %s (%s): %s: %s", r.Runbook, r.Trigger.Alertname, r.Rail, r.Reason)
		}
	}
	return b.String()
}

// until ticks until cond holds, failing after max of simulated time.
func (l *loop) until(what string, max time.Duration, cond func() bool) {
	l.t.Helper()
	deadline := l.sim.Now().Add(max)
	for !cond() {
		if l.sim.Now().After(deadline) {
			l.t.Fatalf("%s: not within %s of simulated time; %s", what, max, l.state())
		}
		l.tick()
	}
}

func (l *loop) ticks(d time.Duration) {
	l.t.Helper()
	end := l.sim.Now().Add(d)
	for l.sim.Now().Before(end) {
		l.tick()
	}
}

func intensity(v float64) *float64 { return &v }

// catalogueCase is one fault and how long its loop may take.
type catalogueCase struct {
	spec   chaos.Spec
	warmup time.Duration
	// within bounds, from the injection, the recovery of a fault with a
	// fix, or the escalation of one without.
	within time.Duration
}

func catalogue() []catalogueCase {
	return []catalogueCase{
		{spec: chaos.Spec{Fault: chaos.LLMOutage}, within: 15 * time.Minute},
		{spec: chaos.Spec{Fault: chaos.LLMSlow}, within: 15 * time.Minute},
		{spec: chaos.Spec{Fault: chaos.DBPoolLeak, Intensity: intensity(3)}, within: 20 * time.Minute},
		{spec: chaos.Spec{Fault: chaos.DBSlow}, within: 15 * time.Minute},
		{spec: chaos.Spec{Fault: chaos.MemoryLeak, Intensity: intensity(30)}, within: 50 * time.Minute},
		{spec: chaos.Spec{Fault: chaos.WorkerCrashLoop}, within: 20 * time.Minute},
		{spec: chaos.Spec{Fault: chaos.TrafficSurge, Intensity: intensity(10)}, warmup: 40 * time.Minute, within: 15 * time.Minute},
		{spec: chaos.Spec{Fault: chaos.RedisDown}, within: 15 * time.Minute},
		{spec: chaos.Spec{Fault: chaos.AuthAttack}, within: 15 * time.Minute},
		{spec: chaos.Spec{Fault: chaos.DiskFill, Intensity: intensity(500)}, within: 20 * time.Minute},
		{spec: chaos.Spec{Fault: chaos.CPUHog, Target: "api-0"}, within: 15 * time.Minute},
		{spec: chaos.Spec{Fault: chaos.BadConfig, Target: "api-1"}, within: 15 * time.Minute},
		{spec: chaos.Spec{Fault: chaos.BadDeploy}, within: 15 * time.Minute},
		{spec: chaos.Spec{Fault: chaos.Cascade, Target: "postgres"}, within: 20 * time.Minute},
		{spec: chaos.Spec{Fault: chaos.Cascade, Target: "redis"}, within: 15 * time.Minute},
	}
}

// TestCatalogue runs every fault of the simulator's catalogue through the
// closed loop in simulated time with the shipped rules and runbooks. A
// fault with a fix must be fixed by a runbook taking exactly the fix's
// actions, health must come back, and the incident of the alert that
// triggered the fix must resolve itself as fixed by that run. A fault
// without a fix must be escalated within two minutes of its first alert,
// with at most one action taken.
func TestCatalogue(t *testing.T) {
	for _, c := range catalogue() {
		name := c.spec.Fault
		if c.spec.Target != "" {
			name += "/" + c.spec.Target
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testCatalogueCase(t, c)
		})
	}
}

func testCatalogueCase(t *testing.T, c catalogueCase) {
	l := newLoop(t)
	warmup := c.warmup
	if warmup == 0 {
		warmup = 12 * time.Minute
	}
	l.ticks(warmup)
	if !l.sim.Health().Healthy || len(l.rules.Firing()) > 0 || len(l.actions(time.Time{})) > 0 {
		t.Fatalf("not quiet before the fault: %s", l.state())
	}
	spec := c.spec
	spec.Duration = chaos.Duration(3 * time.Hour)
	f, err := l.sim.InjectFault(spec)
	if err != nil {
		t.Fatal(err)
	}
	injected := l.sim.Now()
	if f.Fix.Escalate {
		var detected time.Time
		l.until("an incident escalated", c.within, func() bool {
			if detected.IsZero() && len(l.rules.Firing()) > 0 {
				detected = l.sim.Now()
			}
			incs, _ := l.inc.List(incident.Query{})
			return slices.ContainsFunc(incs, func(i incident.Incident) bool { return i.EscalationLevel > 0 })
		})
		if took := l.sim.Now().Sub(detected); took > 2*time.Minute+step {
			t.Errorf("escalated %s after the first alert; want within 2m", took)
		}
		l.ticks(10 * time.Minute)
		if n := len(l.actions(injected)); n > 1 {
			t.Errorf("%d actions on a fault without a fix; at most 1: %s", n, l.state())
		}
		t.Logf("%s: escalated %s after injection; %s", f.Fault, l.sim.Now().Sub(injected)-10*time.Minute, l.state())
		return
	}
	want := map[string]bool{}
	for _, a := range f.Fix.Actions {
		want[a.Action+" "+a.Target] = true
	}
	fixedAt := time.Time{}
	l.until("fixed by a runbook", c.within, func() bool {
		got := map[string]bool{}
		for _, ev := range l.actions(injected) {
			got[ev.Action.Action.Action+" "+ev.Action.Target] = true
		}
		for k := range want {
			if !got[k] {
				return false
			}
		}
		if fixedAt.IsZero() {
			fixedAt = l.sim.Now()
		}
		return l.sim.Health().Healthy
	})
	recovered := l.sim.Now()
	l.until("the incident resolved as fixed by the run", 20*time.Minute, func() bool {
		incs, _ := l.inc.List(incident.Query{})
		return slices.ContainsFunc(incs, func(i incident.Incident) bool { return i.FixedBy != nil && i.Status == incident.StatusResolved })
	})
	// Nothing else was done, before or after the fix.
	for _, ev := range l.actions(injected) {
		if k := ev.Action.Action.Action + " " + ev.Action.Target; !want[k] {
			t.Errorf("a wrong action: %s; the fix is %v", ev.Action.Action.String(), f.Fix.Actions)
		}
	}
	t.Logf("%s: fix applied %s after injection, healthy %s after; %s", f.Fault, fixedAt.Sub(injected), recovered.Sub(injected), l.state())
}
