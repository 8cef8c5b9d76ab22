package slacknotify

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"

	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/analyzer/results"
	"github.com/aiops-dev/aiops/api/promapi"
	tu "github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	aiopsstorage "github.com/aiops-dev/aiops/storage"
)

// TestChartOfTheAlertInTheThread: a posted incident gets a PNG chart of
// its alert's expression in its thread, drawn from the store through the
// PromQL engine and uploaded through Slack's files API.
func TestChartOfTheAlertInTheThread(t *testing.T) {
	e := newEnv(t)
	store := storetest.Embedded(t)
	app := store.Appender(context.Background())
	for i := range 90 {
		ts := e.clock.Now().Add(-90 * time.Minute).Add(time.Duration(i) * time.Minute)
		v := 1.0
		if i > 60 {
			v = 0
		}
		for _, inst := range []string{"api-1", "api-2"} {
			if _, err := app.Append(0, labels.FromStrings("__name__", "up", "instance", inst), ts.UnixMilli(), v); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var asked []string
	queryRange := engineRange(t, store, &mu, &asked)

	n, err := New(e.cfg, Deps{
		Incidents: e.mg, Feed: e.mg.Feed(incident.FeedOptions{PollInterval: 50 * time.Millisecond}), Head: e.mg.FeedHead,
		BotToken: token, Logger: tu.Logger(t), Sleep: e.sleeps.sleep, QueryRange: queryRange, Now: e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	e.fire("oncall", "g1", "InstanceDown")
	tu.WaitFor(t, "chart uploaded", 10*time.Second, func() bool { return len(e.slack.Files()) == 1 })
	top := e.slack.TopLevel("C-DEFAULT")[0]
	f := e.slack.Files()[0]
	if f.Channel != "C-DEFAULT" || f.ThreadTS != top.TS {
		t.Fatalf("chart shared in %s/%s, want the incident's thread %s/%s", f.Channel, f.ThreadTS, "C-DEFAULT", top.TS)
	}
	if !bytes.HasPrefix(f.Content, []byte("\x89PNG\r\n\x1a\n")) || len(f.Content) < 2000 {
		t.Fatalf("the upload is not a PNG chart (%d bytes)", len(f.Content))
	}
	if p := os.Getenv("AIOPS_SLACK_CHART_OUT"); p != "" {
		os.WriteFile(p, f.Content, 0o644)
	}
	if f.Title != "up == 0" {
		t.Fatalf("chart title %q, want the alert's expression", f.Title)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 1 || asked[0] != "up" {
		t.Fatalf("queried %v, want the series side of the alert's comparison", asked)
	}
	for expr, want := range map[string]string{"rate(x[5m]) > 0.1": "rate(x[5m])", "(0.5 < y)": "y", "x > bool 1": "x > bool 1", "x > y": "x > y", "up{": "up{"} {
		if got, _, _ := splitThreshold(expr); got != want {
			t.Errorf("splitThreshold(%q) = %q, want %q", expr, got, want)
		}
	}
}

func TestForecastBounds(t *testing.T) {
	got := forecastBounds(`aiops_capacity_exhaustion_seconds{service="db", volume="data"}`)
	want := []string{
		`aiops_capacity_exhaustion_seconds_lower{service="db",volume="data"}`,
		`aiops_capacity_exhaustion_seconds_upper{service="db",volume="data"}`,
	}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("forecastBounds = %q, want %q", got, want)
	}
	if got := forecastBounds(`rate(x[5m])`); got != nil {
		t.Fatalf("bounds of a non-forecast: %q", got)
	}
	if s, th, ok := splitThreshold(`aiops_capacity_exhaustion_seconds{service="db"} < 14400`); !ok || th != 14400 || forecastBounds(s) == nil {
		t.Fatalf("a capacity alert's chart: series %q threshold %v %v", s, th, ok)
	}
}

// engineRange evaluates range queries with the PromQL engine over q,
// recording the expressions asked.
func engineRange(t *testing.T, q storage.Queryable, mu *sync.Mutex, asked *[]string) QueryRangeFunc {
	engine := promql.NewEngine(promapi.EngineOpts(promapi.DefaultConfig(), tu.Logger(t), nil))
	t.Cleanup(func() { engine.Close() })
	return func(ctx context.Context, expr string, start, end time.Time, step time.Duration) (promql.Matrix, error) {
		mu.Lock()
		*asked = append(*asked, expr)
		mu.Unlock()
		qry, err := engine.NewRangeQuery(ctx, q, nil, expr, start, end, step)
		if err != nil {
			return nil, err
		}
		defer qry.Close()
		res := qry.Exec(ctx)
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Matrix()
	}
}

func TestForecastChartHasItsBounds(t *testing.T) {
	store := storetest.Embedded(t)
	app := store.Appender(context.Background())
	now := tu.Epoch
	for i := range 60 {
		ts := now.Add(-time.Hour).Add(time.Duration(i) * time.Minute).UnixMilli()
		left := float64(6*3600 - i*60)
		for name, v := range map[string]float64{"": left, "_lower": left * 0.8, "_upper": left * 1.2} {
			if _, err := app.Append(0, labels.FromStrings("__name__", "aiops_capacity_exhaustion_seconds"+name, "volume", "data"), ts, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var asked []string
	n := &Notifier{deps: Deps{QueryRange: engineRange(t, store, &mu, &asked)}}
	png, err := n.chart(context.Background(), `aiops_capacity_exhaustion_seconds{volume="data"} < 14400`, now, now)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("chart: %v (%d bytes)", err, len(png))
	}
	if p := os.Getenv("AIOPS_SLACK_FORECAST_CHART_OUT"); p != "" {
		os.WriteFile(p, png, 0o644)
	}
	want := []string{`aiops_capacity_exhaustion_seconds{volume="data"}`, `aiops_capacity_exhaustion_seconds_lower{volume="data"}`, `aiops_capacity_exhaustion_seconds_upper{volume="data"}`}
	if strings.Join(asked, " ") != strings.Join(want, " ") {
		t.Fatalf("asked %q, want %q", asked, want)
	}
}

// eventRecorder records the event queries a chart makes.
type eventRecorder struct {
	EventQuerier
	mu    sync.Mutex
	asked []aiopsstorage.EventQuery
}

func (r *eventRecorder) QueryEvents(ctx context.Context, q aiopsstorage.EventQuery) ([]aiopsstorage.Event, error) {
	r.mu.Lock()
	r.asked = append(r.asked, q)
	r.mu.Unlock()
	return r.EventQuerier.QueryEvents(ctx, q)
}

// TestAnomalyChartDrawsTheAnalysedSeries: the chart of an anomaly alert
// (an aggregation over aiops_anomaly_score) draws the series the score
// was computed on, not the score, and reads that series' anomaly events
// for the normal range the detector expected.
func TestAnomalyChartDrawsTheAnalysedSeries(t *testing.T) {
	store := storetest.Embedded(t)
	ctx := context.Background()
	now := tu.Epoch
	latency := labels.FromStrings("__name__", "latency_seconds", "job", "api")
	app := store.Appender(ctx)
	for i := range 60 {
		ts := now.Add(-time.Hour).Add(time.Duration(i) * time.Minute)
		v := 0.1
		if i >= 50 {
			v = 2
		}
		if _, err := app.Append(0, latency, ts.UnixMilli(), v); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	var evs []aiopsstorage.Event
	for i := 50; i < 60; i++ {
		lo, exp, hi := 0.05, 0.1, 0.15
		ev, err := results.EncodeAnomaly(results.Anomaly{Series: latency.Map(), Time: now.Add(-time.Hour).Add(time.Duration(i) * time.Minute),
			Score: 0.99, Value: 2, Expected: &exp, Lower: &lo, Upper: &hi})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if err := store.AppendEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var asked []string
	rec := &eventRecorder{EventQuerier: store}
	src := ChartSource{QueryRange: engineRange(t, store, &mu, &asked), Events: rec}
	expr := `max by (job) (max_over_time(aiops_anomaly_score{aiops_metric="latency_seconds",job="api"}[2m])) >= 0.8`
	png, err := Chart(ctx, src, expr, now.Add(-time.Hour), now)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("chart: %v (%d bytes)", err, len(png))
	}
	if p := os.Getenv("AIOPS_SLACK_ANOMALY_CHART_OUT"); p != "" {
		os.WriteFile(p, png, 0o644)
	}
	if want := `latency_seconds{job="api"}`; strings.Join(asked, " ") != want {
		t.Fatalf("queried %q, want only the analysed series %q", asked, want)
	}
	if len(rec.asked) != 1 || rec.asked[0].Subject != fmt.Sprintf("%016x", latency.Hash()) {
		t.Fatalf("event queries %+v, want one for the analysed series' subject %016x", rec.asked, latency.Hash())
	}
	// Without the events it is the same series, without the marks.
	asked = nil
	png2, err := Chart(ctx, ChartSource{QueryRange: src.QueryRange}, expr, now.Add(-time.Hour), now)
	if err != nil || len(png2) == 0 || bytes.Equal(png, png2) {
		t.Fatalf("chart without events: %v (%d bytes, same as with them: %v)", err, len(png2), bytes.Equal(png, png2))
	}
	// A score selected by a pattern names no one series: the score is drawn.
	asked = nil
	if _, err := Chart(ctx, src, `aiops_anomaly_score{aiops_metric=~"lat.*"} > 0.8`, now.Add(-time.Hour), now); err != nil {
		t.Fatal(err)
	}
	if want := `aiops_anomaly_score{aiops_metric=~"lat.*"}`; strings.Join(asked, " ") != want {
		t.Fatalf("queried %q, want %q", asked, want)
	}
}
