package results

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/storage"
	"github.com/aiops-dev/aiops/storage/embedded"
)

func openStore(t *testing.T) *embedded.Store {
	t.Helper()
	cfg := embedded.DefaultConfig()
	cfg.DataDir = t.TempDir()
	s, err := embedded.Open(cfg, nil, nil)
	if err != nil {
		t.Fatalf("open embedded store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestAnomalyCodec: an anomaly survives the store, and its event's ID
// depends on nothing but the series and the time, in any zone, so a
// sample scored again (or by another version) is stored once.
func TestAnomalyCodec(t *testing.T) {
	at := testutil.Epoch.Add(90 * time.Second)
	exp := 0.25
	an := Anomaly{Series: map[string]string{"__name__": "latency", "service_name": "api"}, Time: at,
		Score: 0.93, Value: 2, Expected: &exp, Surprise: 7.5}
	ev, err := EncodeAnomaly(an)
	if err != nil {
		t.Fatal(err)
	}
	// The ID format is stored in every deployment: it must not change.
	if ev.ID != "anomaly-551eef9367064fa8a1b9c3bb" || ev.Kind != AnomalyKind || !ev.Time.Equal(at) || ev.Labels["service_name"] != "api" {
		t.Fatalf("event %+v", ev)
	}
	again := an
	again.Time = at.In(time.FixedZone("UTC+5", 5*3600))
	again.Score = 0.5
	if ev2, _ := EncodeAnomaly(again); ev2.ID != ev.ID || ev2.Subject != ev.Subject {
		t.Fatalf("same series and time: id %s subject %s, want %s %s", ev2.ID, ev2.Subject, ev.ID, ev.Subject)
	}
	other := an
	other.Time = at.Add(time.Millisecond)
	if ev3, _ := EncodeAnomaly(other); ev3.ID == ev.ID {
		t.Fatal("another time, same id")
	}

	s := openStore(t)
	ctx := context.Background()
	if err := s.AppendEvents(ctx, []storage.Event{ev, ev}); err != nil {
		t.Fatal(err)
	}
	evs, err := s.QueryEvents(ctx, storage.EventQuery{KindPrefix: AnomalyKind})
	if err != nil || len(evs) != 1 {
		t.Fatalf("%d events, %v", len(evs), err)
	}
	got, err := DecodeAnomaly(evs[0])
	if err != nil {
		t.Fatal(err)
	}
	if !got.Time.Equal(at) || got.Score != 0.93 || *got.Expected != 0.25 || got.Lower != nil || got.Series["__name__"] != "latency" {
		t.Fatalf("decoded %+v", got)
	}
	if _, err := DecodeAnomaly(storage.Event{ID: "x", Kind: "anomaly.other", Payload: evs[0].Payload}); err == nil {
		t.Fatal("decoded an event of another kind")
	}
	if _, err := DecodeAnomaly(storage.Event{ID: "x", Kind: AnomalyKind, Payload: []byte("{")}); err == nil {
		t.Fatal("decoded a broken payload")
	}
}

func TestSeriesLabels(t *testing.T) {
	got := SeriesLabels(ScoreMetric, labels.FromStrings("__name__", "latency", "job", "api"))
	if want := labels.FromStrings("__name__", ScoreMetric, MetricLabel, "latency", "job", "api"); !labels.Equal(got, want) {
		t.Fatalf("%s, want %s", got, want)
	}
	for _, tc := range []struct {
		ls   map[string]string
		want string
	}{
		{map[string]string{"service_name": "a", "service": "b", "job": "c"}, "a"},
		{map[string]string{"service": "b", "job": "c"}, "b"},
		{map[string]string{"job": "c"}, "c"},
		{map[string]string{"instance": "x"}, ""},
	} {
		if got := ServiceOf(tc.ls); got != tc.want {
			t.Errorf("ServiceOf(%v) = %q, want %q", tc.ls, got, tc.want)
		}
	}
}

// TestReadForecasts: the newest forecast of each series with its bounds;
// nothing for a series whose bounds are all there is, whose last sample is
// a stale marker, or whose forecast is older than the lookback.
func TestReadForecasts(t *testing.T) {
	s := openStore(t)
	now := testutil.Epoch
	app := s.Appender(context.Background())
	add := func(name string, at time.Time, v float64, kv ...string) {
		t.Helper()
		if _, err := app.Append(0, labels.FromStrings(append([]string{"__name__", name}, kv...)...), at.UnixMilli(), v); err != nil {
			t.Fatal(err)
		}
	}
	pg := []string{MetricLabel, "db_client_connection_count", "job", "postgres"}
	disk := []string{MetricLabel, "system_filesystem_usage_bytes", "job", "api"}
	boundsOnly := []string{MetricLabel, "x", "job", "bounds"}
	stale := []string{MetricLabel, "x", "job", "gone"}
	old := []string{MetricLabel, "x", "job", "old"}
	add(ExhaustionMetric, now.Add(-6*time.Minute), 4000, pg...) // superseded
	add(ExhaustionMetric, now.Add(-time.Minute), 3600, pg...)
	add(ExhaustionLowerMetric, now.Add(-time.Minute), 1800, pg...)
	add(ExhaustionUpperMetric, now.Add(-time.Minute), 7200, pg...)
	add(ExhaustionMetric, now.Add(-2*time.Minute), math.Inf(1), disk...)
	add(ExhaustionLowerMetric, now.Add(-2*time.Minute), 86400, disk...)
	add(ExhaustionLowerMetric, now.Add(-2*time.Minute), 5, boundsOnly...)
	add(ExhaustionMetric, now.Add(-3*time.Minute), 50, stale...)
	add(ExhaustionMetric, now.Add(-2*time.Minute), math.Float64frombits(value.StaleNaN), stale...)
	add(ExhaustionMetric, now.Add(-2*time.Hour), 60, old...)
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	fs, err := ReadForecasts(ctx, s, now, 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 2 {
		t.Fatalf("forecasts %+v", fs)
	}
	// Ordered by labels: aiops_metric="db_client_connection_count" first.
	p, d := fs[0], fs[1]
	if d.Labels.Get("job") != "api" || !math.IsInf(d.Seconds, 1) || d.Lower != 86400 || !math.IsNaN(d.Upper) || !d.EvaluatedAt.Equal(now.Add(-2*time.Minute)) {
		t.Errorf("disk %+v", d)
	}
	if p.Labels.Get(MetricLabel) != "db_client_connection_count" || p.Labels.Has("__name__") || p.Seconds != 3600 || p.Lower != 1800 || p.Upper != 7200 {
		t.Errorf("postgres %+v", p)
	}
	fs, err = ReadForecasts(ctx, s, now.Add(-5*time.Minute), 15*time.Minute, []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "job", "postgres")})
	if err != nil || len(fs) != 1 || fs[0].Seconds != 4000 {
		t.Errorf("five minutes ago, postgres only: %+v %v", fs, err)
	}
	fs, err = ReadForecasts(ctx, s, now, 3*time.Hour,
		[]*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "job", "old")},
		[]*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "job", "api")},
		[]*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, "job", "api|old")})
	if err != nil || len(fs) != 2 || fs[0].Labels.Get("job") != "api" || fs[1].Labels.Get("job") != "old" || fs[1].Seconds != 60 {
		t.Errorf("two selectors, overlapping: %+v %v", fs, err)
	}
}
