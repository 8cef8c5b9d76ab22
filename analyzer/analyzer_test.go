package analyzer

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"go.yaml.in/yaml/v3"

	"github.com/aiops-dev/aiops/analyzer/results"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage"
	"github.com/aiops-dev/aiops/storage/embedded"
)

const step = 5 * time.Minute

// fixture writes a noisy latency series with one spike, a disk filling
// at a known rate and the disk's size, every step from start.
type fixture struct {
	start, spike time.Time
	spikeValue   float64
	rate         float64 // disk bytes per second
}

// fixtureSeed seeds the latency noise. Each point's noise is drawn from
// its offset from the start, not from the clock, so the fixture is the
// same wherever the clock puts it.
const fixtureSeed = 1

// latency is the latency series at ts: 0.2 s with Gaussian noise of
// 0.01 s, or the spike.
func (f fixture) latency(ts time.Time) float64 {
	if ts.Equal(f.spike) {
		return f.spikeValue
	}
	i := uint64(ts.Sub(f.start) / step)
	return 0.2 + 0.01*rand.New(rand.NewPCG(fixtureSeed, i)).NormFloat64()
}

func writeFixture(t *testing.T, s *embedded.Store, from, to time.Time, f fixture) {
	t.Helper()
	ctx := context.Background()
	app := s.Appender(ctx)
	lat := labels.FromStrings("__name__", "app_latency_seconds", "service_name", "api")
	used := labels.FromStrings("__name__", "disk_used_bytes", "mount", "/data", "host", "db1")
	size := labels.FromStrings("__name__", "disk_size_bytes", "mount", "/data", "host", "db1")
	for ts := from; !ts.After(to); ts = ts.Add(step) {
		ms := ts.UnixMilli()
		for _, s := range []struct {
			l labels.Labels
			v float64
		}{{lat, f.latency(ts)}, {used, 1e9 + f.rate*ts.Sub(f.start).Seconds()}, {size, 100e9}} {
			if _, err := app.Append(0, s.l, ms, s.v); err != nil {
				t.Fatalf("append %s: %v", s.l, err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}

func testConfig(t *testing.T, stateDir string) Config {
	t.Helper()
	text := `
interval: 30s
lookback: 96h
state_dir: ` + stateDir + `
selectors:
  - selector: 'app_latency_seconds{service_name="api"}'
    sensitivity: 1
    seasonality: auto
capacities:
  - usage: disk_used_bytes
    capacity_query: disk_size_bytes
    match_on: [host, mount]
    window: 24h
`
	cfg := DefaultConfig()
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func query(t *testing.T, s *embedded.Store, q string, at time.Time) promql.Vector {
	t.Helper()
	ng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e7, Timeout: time.Minute, LookbackDelta: 5 * time.Minute, EnableAtModifier: true})
	qry, err := ng.NewInstantQuery(context.Background(), s, nil, q, at)
	if err != nil {
		t.Fatal(err)
	}
	defer qry.Close()
	res := qry.Exec(context.Background())
	if res.Err != nil {
		t.Fatalf("%s: %v", q, res.Err)
	}
	vec, err := res.Vector()
	if err != nil {
		t.Fatal(err)
	}
	return vec
}

func anomalies(t *testing.T, s *embedded.Store) []storage.Event {
	t.Helper()
	evs, err := s.QueryEvents(context.Background(), storage.EventQuery{KindPrefix: results.AnomalyKind})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestEndToEnd runs the analyzer on the embedded store (Prometheus TSDB
// and SQLite): scores become series, the spike becomes one event, the disk
// forecast is right, re-runs and restarts neither duplicate nor relearn.
func TestEndToEnd(t *testing.T) {
	endToEnd(t, testutil.Epoch)
}

// TestEndToEndAtAnyTime runs TestEndToEnd with its clock at every hour
// of a day and on the dates around which calendars change, and finds the
// same scores every time: nothing the analyzer does depends on where the
// clock stands, only on the data.
func TestEndToEndAtAnyTime(t *testing.T) {
	want := endToEnd(t, testutil.Epoch)
	for _, at := range testutil.Instants() {
		t.Run(at.Format(time.RFC3339), func(t *testing.T) {
			t.Parallel()
			if got := endToEnd(t, at); got != want {
				t.Errorf("at %s: %+v, at %s: %+v", at, got, testutil.Epoch, want)
			}
		})
	}
}

// TestEndToEndInLocalZone runs TestEndToEnd across the daylight-saving
// changes with the local time zone set to one that has them: the
// analyzer does not read local time.
func TestEndToEndInLocalZone(t *testing.T) {
	want := endToEnd(t, testutil.Epoch)
	for _, zone := range []string{"Europe/Berlin", "America/New_York"} {
		testutil.InLocalZone(t, zone, func() {
			for _, at := range testutil.DSTChanges() {
				if got := endToEnd(t, at); got != want {
					t.Errorf("in %s at %s: %+v, want %+v", zone, at, got, want)
				}
			}
		})
	}
}

// endToEndResult is what endToEnd measured, to compare runs at different
// times.
type endToEndResult struct {
	spikeScore, maxBefore, exhaustion float64
}

func endToEnd(t *testing.T, now time.Time) endToEndResult {
	t.Helper()
	ctx := context.Background()
	s := storetest.Embedded(t)
	f := fixture{start: now.Add(-72 * time.Hour), spike: now.Add(-10 * time.Hour), spikeValue: 2, rate: 1e9 / 3600}
	stateDir := t.TempDir()
	clock := testutil.NewClock(now)

	reg := prometheus.NewRegistry()
	deps := Deps{Queryable: s, Appendable: s, Events: s, Registerer: reg, Now: clock.Now}
	a, err := New(testConfig(t, stateDir), deps)
	if err != nil {
		t.Fatal(err)
	}
	// Data arrives and the analyzer evaluates, as live, every half hour.
	writeFixture(t, s, f.start, f.start, f)
	for ts := f.start.Add(30 * time.Minute); !ts.After(now); ts = ts.Add(30 * time.Minute) {
		writeFixture(t, s, ts.Add(-30*time.Minute+step), ts, f)
		if err := a.Step(ctx, ts); err != nil {
			t.Fatal(err)
		}
	}
	if got := promtest.ToFloat64(a.m.appendErrors); got != 0 {
		t.Fatalf("%v results refused by the store", got)
	}
	points := int(72*time.Hour/step) + 1
	if got := promtest.ToFloat64(a.m.samples); got != float64(points) {
		t.Fatalf("scored %v samples, want %d", got, points)
	}

	// Scores are a series with the original labels.
	vec := query(t, s, `count_over_time(aiops_anomaly_score{aiops_metric="app_latency_seconds",service_name="api"}[100h])`, now)
	if len(vec) != 1 || int(vec[0].F) != points {
		t.Fatalf("score series: %v", vec)
	}
	vec = query(t, s, `aiops_anomaly_score{service_name="api"}`, f.spike)
	if len(vec) != 1 || vec[0].F < 0.9 {
		t.Fatalf("score at the spike: %v, want >= 0.9", vec)
	}
	res := endToEndResult{spikeScore: vec[0].F}
	// No false alarm before the spike: nothing reaches the event
	// threshold (0.6, p ≈ 1e-4). That holds for this noise, not for any:
	// on white noise the detector scores about 3e-4 of the points at 0.6
	// or more (2,000 draws of this fixture), close to the nominal rate of
	// 1e-4 per side, so about one draw in five has such a point among the
	// ~670 scored in these 60 hours. The noise is therefore fixed
	// (fixtureSeed; 0.43 at most here) rather than seeded from the
	// clock, which made this test fail at some hours (0.642 at 21:00 UTC
	// and 0.635 at 22:00 on 2026-12-06). The scores do not depend on the
	// hour otherwise: TestEndToEndAtAnyTime.
	vec = query(t, s, `max_over_time(aiops_anomaly_score{service_name="api"}[60h])`, f.spike.Add(-time.Hour))
	if len(vec) != 1 || vec[0].F >= 0.6 {
		t.Fatalf("scores before the spike reach %v, want < 0.6", vec)
	}
	res.maxBefore = vec[0].F

	// The spike is one anomaly event.
	evs := anomalies(t, s)
	if len(evs) != 1 {
		t.Fatalf("want 1 anomaly event, got %d: %+v", len(evs), evs)
	}
	an, err := results.DecodeAnomaly(evs[0])
	if err != nil {
		t.Fatal(err)
	}
	if !an.Time.Equal(f.spike) || an.Value != 2 || an.Series["service_name"] != "api" || an.Upper == nil || *an.Upper > 1 {
		t.Fatalf("anomaly %+v", an)
	}

	// The disk has 99e9 - 72e9 bytes left at 1e9 per hour: 27 hours.
	vec = query(t, s, `aiops_capacity_exhaustion_seconds{aiops_metric="disk_used_bytes",mount="/data",host="db1"}`, now)
	if len(vec) != 1 || math.Abs(vec[0].F-27*3600) > 0.05*27*3600 {
		t.Fatalf("exhaustion: %v, want about %v", vec, 27*3600)
	}
	res.exhaustion = vec[0].F
	lo := query(t, s, `aiops_capacity_exhaustion_seconds_lower`, now)
	hi := query(t, s, `aiops_capacity_exhaustion_seconds_upper`, now)
	if len(lo) != 1 || len(hi) != 1 || lo[0].F > vec[0].F || hi[0].F < vec[0].F {
		t.Fatalf("bounds %v %v around %v", lo, hi, vec)
	}

	// A second step at the same time sees nothing new.
	if err := a.Step(ctx, now); err != nil {
		t.Fatal(err)
	}
	if got := promtest.ToFloat64(a.m.samples); got != float64(points) {
		t.Fatalf("re-run scored again: %v samples", got)
	}
	if err := a.SaveState(); err != nil {
		t.Fatal(err)
	}

	// Restart from the snapshot: only the new hour is scored, and a new
	// spike in it is found at once (no cold start).
	later := clock.Add(time.Hour)
	f2 := f
	f2.spike = now.Add(30 * time.Minute)
	f2.spikeValue = -3 // a drop, unlike anything the detector has seen
	writeFixture(t, s, now.Add(step), later, f2)
	b, err := New(testConfig(t, stateDir), Deps{Queryable: s, Appendable: s, Events: s, Registerer: prometheus.NewRegistry(), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.LoadState(); err != nil {
		t.Fatal(err)
	}
	if err := b.Step(ctx, later); err != nil {
		t.Fatal(err)
	}
	if got := promtest.ToFloat64(b.m.samples); got != 12 {
		t.Fatalf("after restart scored %v samples, want the 12 new ones", got)
	}
	if evs := anomalies(t, s); len(evs) != 2 {
		t.Fatalf("want 2 anomaly events after the second spike, got %d", len(evs))
	}

	// A cold start (no state) scores everything again but stores no
	// duplicate events: their IDs depend only on series and time.
	c, err := New(testConfig(t, t.TempDir()), Deps{Queryable: s, Appendable: s, Events: s, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Step(ctx, later); err != nil {
		t.Fatal(err)
	}
	if evs := anomalies(t, s); len(evs) != 2 {
		t.Fatalf("cold start duplicated events: %d", len(evs))
	}
	return res
}

// TestRunSavesStateOnShutdown runs the loop and stops it.
func TestRunSavesStateOnShutdown(t *testing.T) {
	s := storetest.Embedded(t)
	now := testutil.Epoch
	f := fixture{start: now.Add(-6 * time.Hour), spike: now.Add(time.Hour), rate: 1}
	writeFixture(t, s, f.start, now, f)
	stateDir := t.TempDir()
	a, err := New(testConfig(t, stateDir), Deps{Queryable: s, Appendable: s, Events: s, Now: testutil.NewClock(now).Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	testutil.WaitFor(t, "the first step", 30*time.Second, func() bool { return promtest.ToFloat64(a.m.samples) > 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(stateDir, stateFile))
	if err != nil || fi.Size() == 0 {
		t.Fatalf("state not written: %v", err)
	}
	b, _ := New(testConfig(t, stateDir), Deps{Queryable: s, Appendable: s, Events: s})
	if err := b.LoadState(); err != nil {
		t.Fatal(err)
	}
	if b.count != 1 {
		t.Fatalf("restored %d series, want 1", b.count)
	}
	// A corrupt snapshot is reported by LoadState; Run starts cold.
	if err := os.WriteFile(filepath.Join(stateDir, stateFile), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := b.LoadState(); err == nil {
		t.Fatal("want an error loading a corrupt snapshot")
	}
}

func TestShardAndOwnOutputSkipped(t *testing.T) {
	s := storetest.Embedded(t)
	now := testutil.Epoch
	f := fixture{start: now.Add(-2 * time.Hour), spike: now.Add(time.Hour), rate: 1}
	writeFixture(t, s, f.start, now, f)
	cfg := testConfig(t, "")
	cfg.Selectors = []SelectorConfig{{Selector: `{__name__=~".+"}`}}
	cfg.Capacities = nil
	// This replica owns nothing but the disk series.
	shard := func(l labels.Labels) bool { return l.Get("mount") == "/data" }
	a, err := New(cfg, Deps{Queryable: s, Appendable: s, Events: s, Shard: shard})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // the second step must not analyse the first's output
		if err := a.Step(context.Background(), now); err != nil {
			t.Fatal(err)
		}
	}
	if a.count != 2 {
		t.Fatalf("analysed %d series, want the 2 disk series", a.count)
	}
}

func TestConfigValidateNamesKey(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*Config)
		want   string
	}{
		{func(c *Config) { c.Interval = 0 }, "analyzer.interval:"},
		{func(c *Config) { c.Lookback = model.Duration(time.Second) }, "analyzer.lookback:"},
		{func(c *Config) { c.EventThreshold = 2 }, "analyzer.event_threshold:"},
		{func(c *Config) { c.Selectors[0].Selector = "rate(x[5m])" }, "analyzer.selectors[0].selector:"},
		{func(c *Config) { c.Selectors[0].Sensitivity = -1 }, "analyzer.selectors[0].sensitivity:"},
		{func(c *Config) { c.Selectors[0].Seasonality = "daily" }, "analyzer.selectors[0].seasonality:"},
		{func(c *Config) { c.Capacities[0].CapacityQuery = "" }, "analyzer.capacities[0]: set capacity"},
		{func(c *Config) { c.Capacities[0].CapacityQuery = "sum(" }, "analyzer.capacities[0].capacity_query:"},
		{func(c *Config) { c.Capacities[0].Usage = "" }, "analyzer.capacities[0].usage:"},
	} {
		cfg := testConfig(t, "")
		tc.mutate(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want prefix %q", err, tc.want)
		}
	}
	if _, err := New(testConfig(t, ""), Deps{}); err == nil || !strings.Contains(err.Error(), "Queryable") {
		t.Errorf("New without deps: %v", err)
	}
}

// TestSeriesMovesBetweenReplicas: two analyzers on one store, as the
// replicas of an HA pair; the series moves from one to the other midway
// (its owner left). Every sample is scored once in all, the new owner
// trains on what the old one scored rather than score it again, still
// finds the spike, and the old owner drops its state.
func TestSeriesMovesBetweenReplicas(t *testing.T) {
	ctx := context.Background()
	s := storetest.Embedded(t)
	now := testutil.Epoch
	f := fixture{start: now.Add(-72 * time.Hour), spike: now.Add(-10 * time.Hour), spikeValue: 2, rate: 1}
	cfg := testConfig(t, "")
	cfg.Capacities = nil
	owner := "a"
	mk := func(name string) *Analyzer {
		a, err := New(cfg, Deps{Queryable: s, Appendable: s, Events: s, Shard: func(labels.Labels) bool { return owner == name }})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a, b := mk("a"), mk("b")
	writeFixture(t, s, f.start, f.start, f)
	for ts := f.start.Add(30 * time.Minute); !ts.After(now); ts = ts.Add(30 * time.Minute) {
		writeFixture(t, s, ts.Add(-30*time.Minute+step), ts, f)
		if ts.Sub(f.start) >= 36*time.Hour {
			owner = "b"
		}
		for _, x := range []*Analyzer{a, b} {
			if err := x.Step(ctx, ts); err != nil {
				t.Fatal(err)
			}
		}
	}
	points := int(72*time.Hour/step) + 1
	scoredA, scoredB := promtest.ToFloat64(a.m.samples), promtest.ToFloat64(b.m.samples)
	if int(scoredA+scoredB) != points || scoredA == 0 || scoredB == 0 {
		t.Fatalf("scored %v by a and %v by b, want %d in all, by both", scoredA, scoredB, points)
	}
	vec := query(t, s, `count_over_time(aiops_anomaly_score{service_name="api"}[100h])`, now)
	if len(vec) != 1 || int(vec[0].F) != points {
		t.Fatalf("score series: %v", vec)
	}
	if vec := query(t, s, `aiops_anomaly_score{service_name="api"}`, f.spike); len(vec) != 1 || vec[0].F < 0.9 {
		t.Fatalf("score at the spike, after the move: %v, want >= 0.9", vec)
	}
	if evs := anomalies(t, s); len(evs) != 1 {
		t.Fatalf("want 1 anomaly event, got %d", len(evs))
	}
	if a.count != 0 {
		t.Errorf("the old owner keeps %d series", a.count)
	}
}
