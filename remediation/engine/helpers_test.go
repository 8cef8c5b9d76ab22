package engine_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/notify"

	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/api/promapi"
	"github.com/aiops-dev/aiops/internal/chtest"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/remediation/action"
	"github.com/aiops-dev/aiops/remediation/engine"
	"github.com/aiops-dev/aiops/remediation/runbook"
	"github.com/aiops-dev/aiops/storage"
	"github.com/aiops-dev/aiops/storage/clickhouse"
)

// driver records every call and answers with what the test says.
type driver struct {
	mu    sync.Mutex
	calls []action.Call
	// do, when set, answers a call; nil answers ok.
	do func(ctx context.Context, c action.Call) (action.Result, error)
}

func (d *driver) Do(ctx context.Context, c action.Call) (action.Result, error) {
	d.mu.Lock()
	d.calls = append(d.calls, c)
	f := d.do
	d.mu.Unlock()
	if f != nil {
		return f(ctx, c)
	}
	return action.Result{Outcome: "done"}, nil
}

func (d *driver) set(f func(ctx context.Context, c action.Call) (action.Result, error)) {
	d.mu.Lock()
	d.do = f
	d.mu.Unlock()
}

// actions returns the calls of actions other than notify (escalations).
func (d *driver) actions() []action.Call {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []action.Call
	for _, c := range d.calls {
		if c.Action != "notify" {
			out = append(out, c)
		}
	}
	return out
}

func (d *driver) count() int { return len(d.actions()) }

// harness is aiops's incidents and the remediation engine on one store,
// on a clock the test moves.
type harness struct {
	t      *testing.T
	clock  *testutil.Clock
	events storage.EventStore
	store  storage.Store
	inc    *incident.Manager
	eng    *engine.Engine
	drv    *driver
	logs   *testutil.SyncBuffer
	cfg    engine.Config
	reg    *prometheus.Registry
	env    map[string]string

	stop func()
}

var t0 = testutil.Epoch

type option func(*harness)

func withConfig(f func(*engine.Config)) option { return func(h *harness) { f(&h.cfg) } }

// withStore runs the harness on a store open makes instead of a fresh
// embedded one.
func withStore(open func(t *testing.T) storage.Store) option {
	return func(h *harness) {
		s := open(h.t)
		h.store, h.events = s, s
	}
}

// clickHouse is started by the first test that needs it.
var clickHouse chtest.Lazy

func TestMain(m *testing.M) {
	code := m.Run()
	clickHouse.Stop()
	os.Exit(code)
}

// clickHouseStore opens a ClickHouse store in a database of its own.
func clickHouseStore(t *testing.T) storage.Store {
	t.Helper()
	srv := clickHouse.Get(t)
	cfg := clickhouse.DefaultConfig()
	cfg.Addresses = []string{srv.NativeAddr()}
	cfg.Database = srv.NewDatabase(t)
	cfg.Compression = "none"
	cfg.Retention = 0
	s, err := clickhouse.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// stores runs f on each backend.
func stores(t *testing.T, f func(t *testing.T, opts ...option)) {
	t.Run("embedded", func(t *testing.T) { f(t) })
	t.Run("clickhouse", func(t *testing.T) { f(t, withStore(clickHouseStore)) })
}

// newHarness loads the runbooks and starts incidents and the engine on an
// embedded store.
func newHarness(t *testing.T, runbooks string, opts ...option) *harness {
	t.Helper()
	h := &harness{t: t, clock: testutil.NewClock(t0), drv: &driver{}, logs: &testutil.SyncBuffer{}, env: map[string]string{}}
	rbs, ps := runbook.Parse("test.yml", []byte(runbooks))
	if len(ps) == 0 {
		ps = runbook.Validate(rbs, runbook.ValidateOptions{})
	}
	if len(ps) > 0 {
		t.Fatalf("runbooks: %v", ps)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("engine log:\n%s", h.logs.String())
		}
	})
	h.cfg = engine.Config{Runbooks: rbs, ConditionInterval: 10 * time.Second, ExternalURL: &url.URL{Scheme: "http", Host: "aiops"}}
	for _, o := range opts {
		o(h)
	}
	if h.store == nil {
		s := storetest.Embedded(t)
		h.store, h.events = s, s
	}
	h.start()
	return h
}

// start starts incidents and the engine on the harness's store.
func (h *harness) start() {
	t := h.t
	t.Helper()
	icfg := incident.DefaultConfig()
	icfg.AutoResolveAfter = model.Duration(time.Hour)
	inc, err := incident.New(context.Background(), icfg, incident.Deps{Events: h.events, Logger: testutil.Logger(t), Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	h.inc = inc
	pe, err := promapi.NewEngine(promapi.DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pe.Close() })
	h.reg = prometheus.NewRegistry()
	eng, err := engine.New(context.Background(), h.cfg, engine.Deps{
		Events:    h.events,
		Query:     engine.PromQuerier{Engine: pe, Queryable: h.store},
		Actions:   h.drv,
		Incidents: inc,
		Feed:      inc.Feed(incident.FeedOptions{PollInterval: 20 * time.Millisecond}),
		FeedHead:  inc.FeedHead,
		Secrets: runbook.SecretSource{Getenv: func(k string) (string, bool) {
			v, ok := h.env[k]
			return v, ok
		}},
		Clock:      h.clock,
		Logger:     slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: h.reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.eng = eng
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		eng.Run(ctx)
	}()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(h.stop)
}

// restart stops the engine and the incident manager and starts new ones
// on the same store, as a process restart does.
func (h *harness) restart() {
	h.t.Helper()
	h.stop()
	h.start()
}

// fire sends a group with the alert firing since start, as Alertmanager's
// dispatcher hands it to the incident manager.
func (h *harness) fire(group string, ls model.LabelSet, start time.Time) {
	h.t.Helper()
	h.notify(group, ls, mkAlert(ls, start, time.Time{}))
}

// resolve sends the alert resolved now.
func (h *harness) resolve(group string, ls model.LabelSet, start time.Time) {
	h.t.Helper()
	h.notify(group, ls, mkAlert(ls, start, h.clock.Now()))
}

func (h *harness) notify(group string, ls model.LabelSet, alerts ...*alert.Alert) {
	h.t.Helper()
	ctx := notify.WithGroupKey(context.Background(), group)
	ctx = notify.WithReceiverName(ctx, "oncall")
	ctx = notify.WithGroupLabels(ctx, model.LabelSet{"alertname": ls["alertname"]})
	if v := h.inc.Notify(ctx, alerts...); v.Err() != nil {
		h.t.Fatalf("notify: %v", v.Err())
	}
}

func mkAlert(ls model.LabelSet, start, end time.Time) *alert.Alert {
	a := model.Alert{Labels: ls, StartsAt: start, EndsAt: end}
	if end.IsZero() {
		a.EndsAt = start.Add(100 * 365 * 24 * time.Hour)
	}
	return alert.New(a, start, false)
}

// series writes one sample of each series at the clock's time.
func (h *harness) series(values map[string]float64) {
	h.t.Helper()
	app := h.store.Appender(context.Background())
	ts := h.clock.Now().UnixMilli()
	for sel, v := range values {
		ls, err := parseSeries(sel)
		if err != nil {
			h.t.Fatal(err)
		}
		if _, err := app.Append(0, ls, ts, v); err != nil {
			h.t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		h.t.Fatal(err)
	}
}

func parseSeries(sel string) (labels.Labels, error) {
	name, rest, _ := strings.Cut(sel, "{")
	b := labels.NewBuilder(labels.FromStrings(labels.MetricName, name))
	rest = strings.TrimSuffix(rest, "}")
	for kv := range strings.SplitSeq(rest, ",") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return labels.EmptyLabels(), fmt.Errorf("bad series %q", sel)
		}
		b.Set(k, strings.Trim(v, `"`))
	}
	return b.Labels(), nil
}

// advance moves the clock by d in steps, letting the engine settle after
// each.
func (h *harness) advance(d, step time.Duration) {
	h.t.Helper()
	for end := h.clock.Now().Add(d); h.clock.Now().Before(end); {
		h.clock.Add(step)
		testutil.Eventually(h.t, 20*time.Second, "the engine settles", func() (bool, string) {
			a := h.eng.Activity()
			return a.Busy == 0 && !a.FeedBehind && h.clock.Waiters() == a.Sleeping, fmt.Sprintf("%+v, %d timers", a, h.clock.Waiters())
		})
	}
}

// executions lists the engine's executions.
func (h *harness) executions(f engine.Filter) []engine.Execution { return h.eng.List(f) }

// waitState waits until the execution is in state, moving the clock by
// step at every poll (step 0 leaves it).
func (h *harness) waitState(id string, state engine.State, step time.Duration) engine.Execution {
	h.t.Helper()
	var x engine.Execution
	testutil.Eventually(h.t, 20*time.Second, fmt.Sprintf("execution %s %s", id, state), func() (bool, string) {
		if step > 0 {
			h.clock.Add(step)
		}
		var err error
		x, _, err = h.eng.Get(context.Background(), id)
		if err != nil {
			return false, err.Error()
		}
		return x.State == state, fmt.Sprintf("state %s, reason %q", x.State, x.Reason)
	})
	return x
}

// waitExecutions waits until n executions exist and returns them.
func (h *harness) waitExecutions(n int) []engine.Execution {
	h.t.Helper()
	var xs []engine.Execution
	testutil.Eventually(h.t, 20*time.Second, fmt.Sprintf("%d executions", n), func() (bool, string) {
		xs = h.executions(engine.Filter{})
		return len(xs) >= n, fmt.Sprintf("%d executions", len(xs))
	})
	return xs
}

// waitRefusal waits for a refusal by the rail.
func (h *harness) waitRefusal(rail string) engine.Refusal {
	h.t.Helper()
	var found engine.Refusal
	testutil.Eventually(h.t, 20*time.Second, "refusal by "+rail, func() (bool, string) {
		rs, err := h.eng.Refusals(context.Background(), time.Time{}, 0)
		if err != nil {
			return false, err.Error()
		}
		var rails []string
		for _, r := range rs {
			if r.Rail == rail {
				found = r
				return true, ""
			}
			rails = append(rails, r.Rail+": "+r.Reason)
		}
		return false, fmt.Sprint(rails)
	})
	return found
}

// only returns the one incident.
func (h *harness) incident() incident.Incident {
	h.t.Helper()
	incs, _ := h.inc.List(incident.Query{})
	if len(incs) != 1 {
		h.t.Fatalf("%d incidents, want 1", len(incs))
	}
	return incs[0]
}

func (h *harness) timelineTypes(id string) []incident.EventType {
	h.t.Helper()
	evs, err := h.inc.Timeline(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []incident.EventType
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}
