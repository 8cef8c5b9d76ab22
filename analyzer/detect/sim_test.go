package detect_test

import (
	"context"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aiops-dev/aiops/analyzer/detect"
	"github.com/aiops-dev/aiops/sim/engine"
	"github.com/aiops-dev/aiops/sim/model"
	"github.com/aiops-dev/aiops/sim/simtest"
	"github.com/aiops-dev/aiops/sim/telemetry"
	"github.com/aiops-dev/aiops/sim/truth"
)

// TestSimulatorHealthyBaseline runs the workflow-engine simulator without
// faults (its quiet scenario's engine, at a quarter of its peak rate: a
// daily demand curve with wandering noise) for three simulated days, records what the
// shipped rules record (deploy/rules/http.yml) every two simulated
// minutes, and scores the series the
// simulator's analyzer configuration selects (deploy/sim/aiops.yaml:
// request rate with seasonality found, error ratio and p95 without) with
// one detector per series. No series may reach the shipped alert rules'
// threshold (0.8, deploy/rules/aiops.yml) more than once on any day, and
// the request rates' daily cycle must be found. (The error ratio has no
// series: a healthy engine answers no 5xx.)
func TestSimulatorHealthyBaseline(t *testing.T) {
	// Two minutes, not the one of aiops's rule evaluation: the same
	// series at half the points, so that three days take seconds.
	const step = 2 * time.Minute
	mc := model.DefaultConfig()
	mc.Start, mc.Seed = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), 11
	// A quarter of the default peak: the simulator's cost is per request,
	// and a smaller service is the noisier baseline.
	mc.PeakRPS /= 4
	opts := telemetry.DefaultOptions()
	e, err := engine.New(engine.Config{Model: mc, Levels: truth.DefaultLevels(), Step: step, Telemetry: &opts})
	if err != nil {
		t.Fatal(err)
	}
	rules := simtest.NewRules(t, step, filepath.Join("..", "..", "deploy", "rules", "http.yml"))
	selectors := []struct {
		expr string
		cfg  detect.Config
	}{
		{"job:http_server_requests:rate5m", detect.Config{}},
		{"job:http_server_request_error:ratio_rate5m", detect.Config{Period: -1}},
		{"job:http_server_request_duration_seconds:p95_5m", detect.Config{Period: -1}},
	}
	type series struct {
		det       *detect.Detector
		high      bool
		crossings map[int]int // day → rises to >= 0.8
		points    int
		period    int
	}
	all := map[string]*series{}
	const days = 3
	for e.Now().Before(mc.Start.Add(days * 24 * time.Hour)) {
		batch, err := e.Tick(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		rules.Append(batch)
		now := e.Now()
		rules.Eval(now)
		for _, sel := range selectors {
			for _, s := range rules.Query(sel.expr, now) {
				key := s.Metric.String()
				st := all[key]
				if st == nil {
					st = &series{det: detect.New(sel.cfg), crossings: map[int]int{}}
					all[key] = st
				}
				r := st.det.Observe(now, s.F)
				st.period = r.Period
				high := r.Score >= 0.8
				if high && !st.high {
					st.crossings[int(now.Sub(mc.Start)/(24*time.Hour))]++
				}
				st.high = high
				st.points++
			}
		}
	}
	keys := make([]string, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(all) != 4 {
		t.Fatalf("series scored: %v, want the request rate and p95 of api and auth", keys)
	}
	total := 0
	for _, k := range keys {
		st := all[k]
		if st.points < days*24*30*9/10 {
			t.Errorf("%s: %d points in %d days", k, st.points, days)
		}
		if strings.Contains(k, "requests:rate5m") && st.period != 720 {
			t.Errorf("%s: period %d at the end, want a day (720 points)", k, st.period)
		}
		for day, c := range st.crossings {
			total += c
			if c > 1 {
				t.Errorf("%s: reached 0.8 %d times on day %d", k, c, day)
			}
		}
	}
	t.Logf("%d series, %d simulated days, %d crossings of 0.8", len(all), days, total)
}
