package ruler

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/rules"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/aiops-dev/aiops/internal/chtest"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage/clickhouse"
)

func newEngine() *promql.Engine {
	return promql.NewEngine(promql.EngineOpts{
		MaxSamples:    1_000_000,
		Timeout:       time.Minute,
		LookbackDelta: 5 * time.Minute,
	})
}

// testStore is what the tests need of a store: both stores are one.
type testStore interface {
	promstorage.Queryable
	promstorage.Appendable
	promstorage.AppendableV2
}

// put appends one float sample at now.
func put(t *testing.T, s testStore, value float64, kv ...string) {
	t.Helper()
	app := s.Appender(context.Background())
	if _, err := app.Append(0, labels.FromStrings(kv...), time.Now().UnixMilli(), value); err != nil {
		t.Fatal(err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}

func writeRules(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// notifications records what the ruler hands to the Alertmanager.
type notifications struct {
	mu  sync.Mutex
	got []rules.Alert
}

func (n *notifications) notify(_ context.Context, expr string, alerts ...*rules.Alert) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, a := range alerts {
		n.got = append(n.got, *a)
	}
}

func (n *notifications) of(name string) []rules.Alert {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []rules.Alert
	for _, a := range n.got {
		if a.Labels.Get(labels.AlertName) == name {
			out = append(out, a)
		}
	}
	return out
}

type running struct {
	r      *Ruler
	cancel context.CancelFunc
	done   chan struct{}
}

func (rr *running) stop() {
	rr.cancel()
	<-rr.done
}

func startRuler(t *testing.T, opts Options) *running {
	t.Helper()
	opts.Engine = newEngine()
	opts.Logger = testutil.Logger(t)
	opts.ExternalURL, _ = url.Parse("http://aiops.test:9090")
	r, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rr := &running{r: r, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(rr.done)
		r.Run(ctx)
	}()
	t.Cleanup(rr.stop)
	return rr
}

// alertOf returns the active alert of the named rule, if any.
func alertOf(r *Ruler, name string) *rules.Alert {
	for _, ar := range r.Manager().AlertingRules() {
		if ar.Name() != name {
			continue
		}
		if as := ar.ActiveAlerts(); len(as) == 1 {
			return as[0]
		}
	}
	return nil
}

func stateOf(r *Ruler, name string) rules.AlertState {
	if a := alertOf(r, name); a != nil {
		return a.State
	}
	return rules.StateInactive
}

func instant(t *testing.T, s testStore, q string) promql.Vector {
	t.Helper()
	qry, err := newEngine().NewInstantQuery(context.Background(), s, nil, q, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer qry.Close()
	res := qry.Exec(context.Background())
	if res.Err != nil {
		t.Fatalf("%s: %v", q, res.Err)
	}
	v, _ := res.Vector()
	return v
}

// TestEvaluation runs a recording rule and an alerting rule with `for` and
// keep_firing_for over each store.
func TestEvaluation(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		store := storetest.Embedded(t)
		testEvaluation(t, store)
	})
	t.Run("clickhouse", func(t *testing.T) {
		srv := chtest.Start(t)
		cfg := clickhouse.DefaultConfig()
		cfg.Addresses = []string{srv.NativeAddr()}
		cfg.Database = srv.NewDatabase(t)
		store, err := clickhouse.Open(context.Background(), cfg, testutil.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		testEvaluation(t, store)
	})
}

func testEvaluation(t *testing.T, store testStore) {
	file := filepath.Join(t.TempDir(), "rules.yml")
	writeRules(t, file, `
groups:
  - name: load
    interval: 100ms
    rules:
      - record: job:test_load:max
        expr: max by (job) (test_load)
      - alert: HighLoad
        expr: job:test_load:max > 0.8
        for: 1s
        keep_firing_for: 1s
        labels:
          severity: page
        annotations:
          summary: 'load {{ $value }} on {{ $labels.job }}'
`)
	put(t, store, 0.9, "__name__", "test_load", "job", "api", "instance", "a")
	n := &notifications{}
	rr := startRuler(t, Options{Files: []string{file}, Storage: store, Notify: n.notify})

	testutil.WaitFor(t, "HighLoad pending", 5*time.Second, func() bool { return stateOf(rr.r, "HighLoad") == rules.StatePending })
	testutil.WaitFor(t, "HighLoad firing", 5*time.Second, func() bool { return stateOf(rr.r, "HighLoad") == rules.StateFiring })
	a := alertOf(rr.r, "HighLoad")
	if held := a.FiredAt.Sub(a.ActiveAt); held < time.Second {
		t.Errorf("fired %s after becoming active, want >= for (1s)", held)
	}
	if len(n.of("HighLoad")) == 0 {
		testutil.WaitFor(t, "firing notification", 2*time.Second, func() bool { return len(n.of("HighLoad")) > 0 })
	}
	sent := n.of("HighLoad")[0]
	if !sent.FiredAt.Equal(a.FiredAt) || !sent.ResolvedAt.IsZero() || !sent.ValidUntil.After(time.Now()) {
		t.Errorf("firing notification: fired %s resolved %s valid until %s", sent.FiredAt, sent.ResolvedAt, sent.ValidUntil)
	}
	if got := sent.Labels.Get("severity"); got != "page" || sent.Labels.Get("job") != "api" {
		t.Errorf("labels %s", sent.Labels)
	}
	if got := sent.Annotations.Get("summary"); got != "load 0.9 on api" {
		t.Errorf("summary %q", got)
	}

	// Recording rule output and the ALERTS series are in the store. The
	// group hands alerts to the notifier before it commits the round's
	// samples, so they may land a moment after the notification.
	testutil.WaitFor(t, "recorded series", 2*time.Second, func() bool {
		v := instant(t, store, `job:test_load:max{job="api"}`)
		return len(v) == 1 && v[0].F == 0.9
	})
	testutil.WaitFor(t, "ALERTS series", 2*time.Second, func() bool {
		return len(instant(t, store, `ALERTS{alertname="HighLoad",alertstate="firing",severity="page"}`)) == 1
	})
	testutil.WaitFor(t, "ALERTS_FOR_STATE at the active time", 2*time.Second, func() bool {
		v := instant(t, store, `ALERTS_FOR_STATE{alertname="HighLoad"}`)
		return len(v) == 1 && int64(v[0].F) == a.ActiveAt.Unix()
	})

	// The condition clears: the alert keeps firing for keep_firing_for.
	put(t, store, 0.1, "__name__", "test_load", "job", "api", "instance", "a")
	cleared := time.Now()
	testutil.WaitFor(t, "keep firing", 2*time.Second, func() bool {
		a := alertOf(rr.r, "HighLoad")
		return a != nil && !a.KeepFiringSince.IsZero()
	})
	if s := stateOf(rr.r, "HighLoad"); s != rules.StateFiring {
		t.Fatalf("state while keep_firing_for runs: %s", s)
	}
	testutil.WaitFor(t, "resolved", 5*time.Second, func() bool { return alertOf(rr.r, "HighLoad") == nil })
	if d := time.Since(cleared); d < time.Second {
		t.Errorf("resolved %s after the condition cleared, want >= keep_firing_for (1s)", d)
	}
	testutil.WaitFor(t, "resolved notification", 2*time.Second, func() bool {
		all := n.of("HighLoad")
		return !all[len(all)-1].ResolvedAt.IsZero()
	})
	all := n.of("HighLoad")
	last := all[len(all)-1]
	if last.ResolvedAt.Sub(last.KeepFiringSince) < time.Second {
		t.Errorf("resolved at %s, %s after keep firing began", last.ResolvedAt, last.ResolvedAt.Sub(last.KeepFiringSince))
	}
}

// TestRestartRestoresState stops the ruler and the store and starts them
// again over the same directories: a firing alert is firing with its
// original active time, a pending alert keeps counting from before the
// restart, and an alert firing only through keep_firing_for still fires.
// The last needs the ruler's state file: a third start without it shows
// that ALERTS_FOR_STATE alone loses that alert.
func TestRestartRestoresState(t *testing.T) {
	storeDir, stateDir := t.TempDir(), t.TempDir()
	file := filepath.Join(t.TempDir(), "rules.yml")
	writeRules(t, file, `
groups:
  - name: state
    interval: 100ms
    rules:
      - alert: Firing
        expr: test_up > 0
        for: 300ms
      - alert: Pending
        expr: test_up > 0
        for: 1h
      - alert: Kept
        expr: test_flag > 0
        keep_firing_for: 1h
`)
	stateFile := filepath.Join(stateDir, "rules-state.json")
	store := storetest.EmbeddedIn(t, storeDir)
	put(t, store, 1, "__name__", "test_up", "job", "x")
	put(t, store, 1, "__name__", "test_flag", "job", "x")
	n1 := &notifications{}
	rr := startRuler(t, Options{Files: []string{file}, Storage: store, Notify: n1.notify, StateFile: stateFile})
	testutil.WaitFor(t, "alerts firing and pending", 5*time.Second, func() bool {
		return stateOf(rr.r, "Firing") == rules.StateFiring && stateOf(rr.r, "Pending") == rules.StatePending &&
			stateOf(rr.r, "Kept") == rules.StateFiring
	})
	put(t, store, 0, "__name__", "test_flag", "job", "x")
	testutil.WaitFor(t, "Kept firing through keep_firing_for", 5*time.Second, func() bool {
		a := alertOf(rr.r, "Kept")
		return a != nil && !a.KeepFiringSince.IsZero()
	})
	firing, pending, kept := *alertOf(rr.r, "Firing"), *alertOf(rr.r, "Pending"), *alertOf(rr.r, "Kept")
	// Let enough time pass that an alert created afresh after the restart
	// would have a visibly later active time (ALERTS_FOR_STATE keeps
	// seconds).
	time.Sleep(2500 * time.Millisecond)
	rr.stop()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	restart := time.Now()
	store = storetest.EmbeddedIn(t, storeDir)
	n2 := &notifications{}
	rr2 := startRuler(t, Options{Files: []string{file}, Storage: store, Notify: n2.notify, StateFile: stateFile})
	// Restoration runs after the second evaluation.
	testutil.WaitFor(t, "restored alerts", 5*time.Second, func() bool {
		for _, g := range rr2.r.Manager().RuleGroups() {
			if g.GetLastEvaluation().IsZero() {
				return false
			}
		}
		return len(n2.of("Firing")) > 0 && len(n2.of("Kept")) > 0
	})
	time.Sleep(300 * time.Millisecond)

	if a := alertOf(rr2.r, "Firing"); a == nil || a.State != rules.StateFiring || a.ActiveAt.Unix() != firing.ActiveAt.Unix() {
		t.Errorf("Firing after restart: %+v, want firing, active since %s", a, firing.ActiveAt)
	}
	if a := alertOf(rr2.r, "Pending"); a == nil || a.State != rules.StatePending || !a.ActiveAt.Before(restart.Add(-time.Second)) {
		t.Errorf("Pending after restart: %+v, want pending, active since before the restart (was %s)", a, pending.ActiveAt)
	}
	a := alertOf(rr2.r, "Kept")
	if a == nil || a.State != rules.StateFiring || !a.KeepFiringSince.Equal(kept.KeepFiringSince) || a.ActiveAt.Unix() != kept.ActiveAt.Unix() {
		t.Fatalf("Kept after restart: %+v, want firing since %s, keeping since %s", a, kept.ActiveAt, kept.KeepFiringSince)
	}
	if sent := n2.of("Kept"); !sent[0].FiredAt.Equal(kept.FiredAt) || !sent[0].ResolvedAt.IsZero() {
		t.Errorf("Kept notification after restart: fired %s resolved %s, want fired %s", sent[0].FiredAt, sent[0].ResolvedAt, kept.FiredAt)
	}
	rr2.stop()

	// Without the state file, only what ALERTS_FOR_STATE restores is back.
	n3 := &notifications{}
	rr3 := startRuler(t, Options{Files: []string{file}, Storage: store, Notify: n3.notify})
	testutil.WaitFor(t, "Firing restored again", 5*time.Second, func() bool { return len(n3.of("Firing")) > 0 })
	time.Sleep(300 * time.Millisecond)
	if a := alertOf(rr3.r, "Firing"); a == nil || a.ActiveAt.Unix() != firing.ActiveAt.Unix() {
		t.Errorf("Firing without state file: %+v", a)
	}
	if a := alertOf(rr3.r, "Kept"); a != nil {
		t.Errorf("Kept came back without the state file (%+v): ALERTS_FOR_STATE restores keep_firing_for after all; the state file may be redundant", a)
	}
}

// TestReloadBrokenFile checks that an invalid rule file is refused with
// file, line and reason while the old rules keep running with their state,
// and that a valid change afterwards keeps the state of unchanged alerts.
func TestReloadBrokenFile(t *testing.T) {
	store := storetest.Embedded(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "rules.yml")
	good := `
groups:
  - name: g
    interval: 100ms
    rules:
      - alert: Up
        expr: test_up > 0
`
	writeRules(t, file, good)
	put(t, store, 1, "__name__", "test_up", "job", "x")
	rr := startRuler(t, Options{Files: []string{filepath.Join(dir, "*.yml")}, Storage: store, Notify: (&notifications{}).notify})
	testutil.WaitFor(t, "Up firing", 5*time.Second, func() bool { return stateOf(rr.r, "Up") == rules.StateFiring })
	before := *alertOf(rr.r, "Up")

	cases := []struct {
		name, content, want string
	}{
		{"bad expression", good + "      - alert: Broken\n        expr: rate(test_up[5m]\n", "9:15: group \"g\", rule 2, \"Broken\": could not parse expression"},
		{"bad yaml", good + "      - alert: 'Broken\n        expr: x\n", "yaml: line 8: found unexpected end of stream"},
		{"unknown field", good + "      - alert: Broken\n        expr: x\n        fore: 5m\n", "field fore not found"},
	}
	for _, c := range cases {
		writeRules(t, file, c.content)
		err := rr.r.Reload(context.Background())
		if err == nil {
			t.Fatalf("%s: reload succeeded", c.name)
		}
		if !strings.Contains(err.Error(), file+": ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q, want file %s and %q", c.name, err, file, c.want)
		}
	}
	writeRules(t, file, good)
	if err := os.Rename(file, file+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := rr.r.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "matches no file") {
		t.Errorf("reload with the rule files gone: %v, want a refusal saying the path matches no file", err)
	}
	if err := os.Rename(file+".moved", file); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if got := len(rr.r.Manager().Rules()); got != 1 {
		t.Errorf("%d rules after failed reloads, want the old 1", got)
	}
	if a := alertOf(rr.r, "Up"); a == nil || a.State != rules.StateFiring || !a.ActiveAt.Equal(before.ActiveAt) {
		t.Errorf("Up after failed reloads: %+v", a)
	}

	writeRules(t, file, good+"      - alert: Also\n        expr: test_up > 0\n")
	if err := rr.r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "new rule firing", 5*time.Second, func() bool { return stateOf(rr.r, "Also") == rules.StateFiring })
	if a := alertOf(rr.r, "Up"); a == nil || !a.ActiveAt.Equal(before.ActiveAt) || !a.FiredAt.Equal(before.FiredAt) {
		t.Errorf("Up after reload lost its state: %+v, was %+v", a, before)
	}
}
