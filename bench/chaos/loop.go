package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"sync/atomic"
	"time"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/rules"
	prw "github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"

	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/collector/storeexporter"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/remediation"
	"github.com/aiops-dev/aiops/sim/control"
	simengine "github.com/aiops-dev/aiops/sim/engine"
	simmodel "github.com/aiops-dev/aiops/sim/model"
	"github.com/aiops-dev/aiops/sim/simtest"
	"github.com/aiops-dev/aiops/sim/telemetry"
	"github.com/aiops-dev/aiops/sim/truth"
	"github.com/aiops-dev/aiops/storage/embedded"
)

// loop is the closed loop in simulated time: the simulated workflow
// engine's metrics go through the collector's OTLP translation into
// aiops's embedded store, where the shipped rules are evaluated every
// step; firing alerts are grouped as the shipped Alertmanager route
// groups them (alertname, job) and handed to the incident manager; the
// remediation engine, on the simulation's clock, follows the incidents
// with the runbooks, queries the same store and acts through the
// simulator's control API over HTTP. Each step waits for the remediation
// engine to settle, so the outcome does not depend on the machine's
// speed.
//
// One aiops serves every scenario of a run (its store, incidents,
// executions and learning record carry over); each scenario gets a fresh
// simulator (reset), a day after the previous one, so the store's time
// only moves forward and every scenario starts at the same hour.
type loop struct {
	sim *simengine.Engine
	// handler is the current simulator's control API, behind srv.
	handler atomic.Pointer[http.Handler]
	srv     *httptest.Server
	cfg     Config
	day     int
	store   *embedded.Store
	dir     string
	engine  *promql.Engine
	groups  []*rules.Group
	conv    *prw.PrometheusConverter
	prwSet  prw.Settings
	clock   *testutil.Clock
	inc     *incident.Manager
	rem     *remediation.Remediation
	firing  map[model.Fingerprint]*alert.Alert
	stop    func()
}

const controlToken = "chaos-bench-control-token"

func newLoop(ctx context.Context, cfg Config, seed uint64, logger *slog.Logger) (_ *loop, err error) {
	l := &loop{firing: map[model.Fingerprint]*alert.Alert{}, cfg: cfg}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	if err := l.reset(ctx, seed); err != nil {
		return nil, err
	}
	l.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*l.handler.Load()).ServeHTTP(w, r) }))

	if l.dir, err = os.MkdirTemp(cfg.DataDir, "chaos-"); err != nil {
		return nil, err
	}
	scfg := embedded.DefaultConfig()
	scfg.DataDir = l.dir
	l.clock = testutil.NewClock(l.sim.Now())
	if l.store, err = embedded.Open(scfg, nil, nil, embedded.WithClock(l.clock.Now)); err != nil {
		return nil, err
	}
	l.engine = promql.NewEngine(promql.EngineOpts{MaxSamples: 50_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute,
		EnableAtModifier: true, EnableNegativeOffset: true})
	p := parser.NewParser(parser.Options{EnableExperimentalFunctions: true})
	m := rules.NewManager(&rules.ManagerOptions{
		AppendableV2: l.store, Queryable: l.store, QueryFunc: rules.EngineQueryFunc(l.engine, l.store),
		Context: ctx, Parser: p, Logger: slog.New(slog.DiscardHandler),
		NotifyFunc: func(context.Context, string, ...*rules.Alert) {},
	})
	groups, errs := m.LoadGroups(cfg.Step, labels.EmptyLabels(), "", nil, false, cfg.RuleFiles...)
	if len(errs) > 0 {
		return nil, fmt.Errorf("rule files: %w", errors.Join(errs...))
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		l.groups = append(l.groups, groups[k])
	}
	l.prwSet = storeexporter.TranslationConfig{}.Settings()
	l.conv = prw.NewPrometheusConverter(nil)

	icfg := incident.DefaultConfig()
	if l.inc, err = incident.New(ctx, icfg, incident.Deps{Events: l.store, Now: l.clock.Now, Logger: logger}); err != nil {
		return nil, err
	}
	rcfg := remediation.DefaultConfig()
	rcfg.RunbookFiles = cfg.RunbookFiles
	rcfg.EscalateUnhandled = remediation.UnhandledConfig{After: model.Duration(cfg.EscalateAfter), Alerts: cfg.EscalateAlerts}
	rcfg.Drivers.Workflow = &remediation.WorkflowConfig{URL: l.srv.URL, Token: remediation.Secret{Value: controlToken}}
	if l.rem, err = remediation.New(ctx, rcfg, remediation.Deps{
		Events: l.store, Queryable: l.store, Engine: l.engine, Parser: p,
		Incidents: l.inc, Feed: l.inc.Feed(incident.FeedOptions{PollInterval: 20 * time.Millisecond}), FeedHead: l.inc.FeedHead,
		Clock: l.clock, Logger: logger,
	}); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); l.rem.Run(rctx) }()
	l.stop = func() { cancel(); <-done }
	return l, nil
}

// reset starts a fresh simulator with seed, a day after the previous
// one began, and points the control API at it. The on-call closes what
// the last scenario left open (the escalated incidents), as people
// would before the next day: else its alerts would join them.
func (l *loop) reset(ctx context.Context, seed uint64) error {
	if l.inc != nil {
		incs, _ := l.inc.List(incident.Query{})
		for _, i := range incs {
			if i.Status == incident.StatusResolved {
				continue
			}
			if _, err := l.inc.Resolve(ctx, i.ID, incident.Action{Actor: "chaos-oncall", Comment: "the scenario is over"}); err != nil {
				return fmt.Errorf("resolve %s: %w", i.ID, err)
			}
		}
	}
	mc := simmodel.DefaultConfig()
	mc.Start, mc.Seed = testutil.Epoch.AddDate(0, 0, l.day), seed
	l.day++
	opts := telemetry.DefaultOptions()
	sim, err := simengine.New(simengine.Config{Model: mc, Levels: truth.DefaultLevels(), Step: l.cfg.Step, Telemetry: &opts})
	if err != nil {
		return err
	}
	h, err := control.NewHandler(sim, controlToken, nil)
	if err != nil {
		return err
	}
	var hh http.Handler = h
	l.sim = sim
	l.handler.Store(&hh)
	return nil
}

func (l *loop) close() {
	if l.stop != nil {
		l.stop()
	}
	if l.srv != nil {
		l.srv.Close()
	}
	if l.store != nil {
		l.store.Close()
	}
	if l.dir != "" {
		os.RemoveAll(l.dir)
	}
}

// tick advances the simulation one step and lets the loop settle.
func (l *loop) tick(ctx context.Context) error {
	batch, err := l.sim.Tick(ctx)
	if err != nil {
		return err
	}
	app := l.store.AppenderV2(ctx)
	l.conv.Reset(app)
	if _, err := l.conv.FromMetrics(ctx, simtest.ToPdata(batch), l.prwSet); err != nil {
		app.Rollback()
		return fmt.Errorf("translate metrics: %w", err)
	}
	l.conv.Reset(nil)
	if err := app.Commit(); err != nil {
		return fmt.Errorf("write metrics: %w", err)
	}
	now := l.sim.Now()
	for _, g := range l.groups {
		g.Eval(ctx, now)
	}
	l.clock.Set(now)
	if err := l.handAlerts(ctx, now); err != nil {
		return err
	}
	if err := l.inc.CheckDeadlines(ctx); err != nil {
		return err
	}
	return l.settle(ctx)
}

// settle waits until the remediation engine has nothing left to do at
// this simulated time: no goroutine at work, the incident feed handled,
// and every sleeper waiting on the clock.
func (l *loop) settle(ctx context.Context) error {
	eng := l.rem.Engine()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		a := eng.Activity()
		if a.Busy == 0 && !a.FeedBehind && l.clock.Waiters() == a.Sleeping {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the remediation engine did not settle at %s: %+v, %d timers", l.sim.Now().Format(time.RFC3339), a, l.clock.Waiters())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// active are the alerts in the firing state.
func (l *loop) active() []*rules.Alert {
	var out []*rules.Alert
	for _, g := range l.groups {
		for _, rule := range g.AlertingRules() {
			for _, a := range rule.ActiveAlerts() {
				if a.State == rules.StateFiring {
					out = append(out, a)
				}
			}
		}
	}
	return out
}

// handAlerts hands the firing alerts to the incident manager grouped by
// (alertname, job), with those that stopped firing as resolved.
func (l *loop) handAlerts(ctx context.Context, now time.Time) error {
	groups := map[string][]*alert.Alert{}
	glabels := map[string]model.LabelSet{}
	seen := map[model.Fingerprint]bool{}
	for _, ra := range l.active() {
		ls := model.LabelSet{}
		ra.Labels.Range(func(lb labels.Label) { ls[model.LabelName(lb.Name)] = model.LabelValue(lb.Value) })
		a := alert.New(model.Alert{Labels: ls, StartsAt: ra.ActiveAt, EndsAt: now.Add(4 * time.Minute)}, now, false)
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
		if err := l.inc.HandleGroup(ctx, incident.Group{Key: k, Receiver: "chaos", Labels: glabels[k], Alerts: groups[k]}); err != nil {
			return err
		}
	}
	return nil
}

// actions are the control actions the simulator received at or after t.
func (l *loop) actions(after time.Time) []truth.Event {
	var out []truth.Event
	for _, ev := range l.sim.Timeline().Events {
		if ev.Kind == truth.ActionReceived && !ev.Time.Before(after) {
			out = append(out, ev)
		}
	}
	return out
}

// escalated reports whether some incident opened since t went to
// people.
func (l *loop) escalated(since time.Time) bool {
	incs, _ := l.inc.List(incident.Query{})
	for _, i := range incs {
		if i.EscalationLevel > 0 && !i.OpenedAt.Before(since) {
			return true
		}
	}
	return false
}

// resolvedByRunbook reports whether some incident opened since t
// resolved as fixed by a run.
func (l *loop) resolvedByRunbook(since time.Time) bool {
	incs, _ := l.inc.List(incident.Query{})
	for _, i := range incs {
		if i.FixedBy != nil && i.Status == incident.StatusResolved && !i.OpenedAt.Before(since) {
			return true
		}
	}
	return false
}
