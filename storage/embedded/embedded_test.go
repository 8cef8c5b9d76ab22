package embedded

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/model/value"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/storage"
)

// open opens the store in dir with its clock at testutil.Epoch, where the
// tests keep their data.
func open(t *testing.T, dir string) *Store {
	t.Helper()
	return openWith(t, dir, DefaultConfig(), testutil.NewClock(testutil.Epoch))
}

func openWith(t *testing.T, dir string, cfg Config, clock *testutil.Clock) *Store {
	t.Helper()
	cfg.DataDir = dir
	s, err := Open(cfg, nil, nil, WithClock(clock.Now))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConfigValidateNamesKey(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*Config)
		key    string
	}{
		{func(c *Config) { c.DataDir = "" }, "storage.embedded.data_dir"},
		{func(c *Config) { c.Retention = 0 }, "storage.embedded.retention"},
		{func(c *Config) { c.EventRetention = -1 }, "storage.embedded.event_retention"},
		{func(c *Config) { c.OutOfOrderWindow = -1 }, "storage.embedded.out_of_order_window"},
	} {
		cfg := DefaultConfig()
		tc.mutate(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.key+":") {
			t.Errorf("Validate() = %v, want error naming %s", err, tc.key)
		}
	}
}

// TestEverySignalSurvivesRestart writes samples, a histogram, metadata,
// logs, spans and events, reopens the store and reads them all back.
func TestEverySignalSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)

	now := testutil.Epoch
	ts := now.UnixMilli()
	series := labels.FromStrings("__name__", "http_requests_total", "job", "api")
	app := s.AppenderV2(ctx)
	md := metadata.Metadata{Type: model.MetricTypeCounter, Help: "Requests.", Unit: ""}
	for i := range 3 {
		if _, err := app.Append(0, series, 0, ts+int64(i)*1000, float64(i), nil, nil, promstorage.AOptions{MetricFamilyName: "http_requests_total", Metadata: md}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := app.Append(0, series, 0, ts+3000, math.Float64frombits(value.StaleNaN), nil, nil, promstorage.AOptions{}); err != nil {
		t.Fatal(err)
	}
	h := &histogram.Histogram{Count: 5, Sum: 12.5, Schema: 0, ZeroThreshold: 0.001, ZeroCount: 1,
		PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{2, 0}}
	if _, err := app.Append(0, labels.FromStrings("__name__", "latency_seconds"), 0, ts, 0, h, nil, promstorage.AOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}

	logs := []storage.LogRecord{{Timestamp: now, ObservedTimestamp: now, TraceID: "0102", SpanID: "03", SeverityText: "ERROR",
		SeverityNumber: 17, Body: "boom", ServiceName: "api", Attributes: map[string]string{"k": "v"}, ResourceAttributes: map[string]string{"service.name": "api"}}}
	spans := []storage.Span{{TraceID: "0102", SpanID: "03", Name: "GET /", Kind: "Server", ServiceName: "api",
		StartTime: now, EndTime: now.Add(time.Second), StatusCode: "Error", Attributes: map[string]string{"http.route": "/"}}}
	events := []storage.Event{{ID: "e1", Time: now, Kind: "anomaly", Subject: "s1", Labels: map[string]string{"a": "b"}, Payload: []byte(`{"score":0.9}`)}}
	if err := s.AppendLogs(ctx, logs); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendSpans(ctx, spans); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendEvents(ctx, events); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir)
	q, err := s.Querier(ts-1000, ts+10000)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	set := q.Select(ctx, true, nil, labels.MustNewMatcher(labels.MatchEqual, "job", "api"))
	var got []float64
	for set.Next() {
		it := set.At().Iterator(nil)
		for it.Next() == chunkenc.ValFloat {
			_, v := it.At()
			got = append(got, v)
		}
	}
	if err := set.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[2] != 2 || !value.IsStaleNaN(got[3]) {
		t.Errorf("samples after restart = %v, want [0 1 2 StaleNaN]", got)
	}
	hset := q.Select(ctx, true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "latency_seconds"))
	if !hset.Next() {
		t.Fatal("histogram series missing after restart")
	}
	hit := hset.At().Iterator(nil)
	if hit.Next() != chunkenc.ValHistogram {
		t.Fatal("histogram sample missing after restart")
	}
	if _, gotH := hit.AtHistogram(nil); gotH.Count != 5 || gotH.Sum != 12.5 {
		t.Errorf("histogram after restart = %v", gotH)
	}

	mds, err := s.MetricMetadata(ctx, "http_requests_total", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(mds["http_requests_total"]) != 1 || mds["http_requests_total"][0] != md {
		t.Errorf("metadata after restart = %v, want %v", mds, md)
	}

	gotLogs, err := s.QueryLogs(ctx, storage.LogQuery{ServiceName: "api"})
	if err != nil {
		t.Fatal(err)
	}
	if len(gotLogs) != 1 || gotLogs[0].Body != "boom" || gotLogs[0].Attributes["k"] != "v" || !gotLogs[0].Timestamp.Equal(now) {
		t.Errorf("logs after restart = %+v", gotLogs)
	}
	gotSpans, err := s.QuerySpans(ctx, storage.SpanQuery{TraceID: "0102"})
	if err != nil {
		t.Fatal(err)
	}
	if len(gotSpans) != 1 || gotSpans[0].StatusCode != "Error" || gotSpans[0].EndTime.Sub(gotSpans[0].StartTime) != time.Second {
		t.Errorf("spans after restart = %+v", gotSpans)
	}
	gotEvents, err := s.QueryEvents(ctx, storage.EventQuery{KindPrefix: "anom"})
	if err != nil {
		t.Fatal(err)
	}
	if len(gotEvents) != 1 || string(gotEvents[0].Payload) != `{"score":0.9}` || gotEvents[0].Labels["a"] != "b" {
		t.Errorf("events after restart = %+v", gotEvents)
	}
}

// TestReplaysDoNotDuplicate appends the same logs, spans, events and
// samples twice, as an at-least-once queue does after a failure.
func TestReplaysDoNotDuplicate(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	now := testutil.Epoch
	logs := []storage.LogRecord{{Timestamp: now, Body: "a"}, {Timestamp: now, Body: "b"}}
	spans := []storage.Span{{TraceID: "t", SpanID: "1", StartTime: now}, {TraceID: "t", SpanID: "2", StartTime: now}}
	events := []storage.Event{{ID: "x", Time: now, Kind: "k"}}
	ls := labels.FromStrings("__name__", "m")
	for range 2 {
		if err := s.AppendLogs(ctx, logs); err != nil {
			t.Fatal(err)
		}
		if err := s.AppendSpans(ctx, spans); err != nil {
			t.Fatal(err)
		}
		if err := s.AppendEvents(ctx, events); err != nil {
			t.Fatal(err)
		}
		app := s.AppenderV2(ctx)
		for i := range 10 {
			if _, err := app.Append(0, ls, 0, now.UnixMilli()+int64(i), float64(i), nil, nil, promstorage.AOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		if err := app.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	gotLogs, _ := s.QueryLogs(ctx, storage.LogQuery{})
	gotSpans, _ := s.QuerySpans(ctx, storage.SpanQuery{})
	gotEvents, _ := s.QueryEvents(ctx, storage.EventQuery{})
	if len(gotLogs) != 2 || len(gotSpans) != 2 || len(gotEvents) != 1 {
		t.Errorf("after replay: %d logs, %d spans, %d events; want 2, 2, 1", len(gotLogs), len(gotSpans), len(gotEvents))
	}
	q, err := s.Querier(0, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	set := q.Select(ctx, false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "m"))
	n := 0
	for set.Next() {
		it := set.At().Iterator(nil)
		for it.Next() != chunkenc.ValNone {
			n++
		}
	}
	if n != 10 {
		t.Errorf("samples after replay = %d, want 10", n)
	}
}

func TestEventCursorPagination(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	base := time.Unix(1700000000, 0).UTC()
	var events []storage.Event
	for i := range 5 {
		// Two events share each timestamp, so the cursor must break ties by id.
		events = append(events, storage.Event{ID: string(rune('a' + i)), Time: base.Add(time.Duration(i/2) * time.Second), Kind: "incident.opened", Subject: "inc-1"})
	}
	events = append(events, storage.Event{ID: "z", Time: base, Kind: "anomaly", Subject: "other"})
	if err := s.AppendEvents(ctx, events); err != nil {
		t.Fatal(err)
	}
	var ids []string
	q := storage.EventQuery{KindPrefix: "incident.", Subject: "inc-1", Limit: 2}
	for {
		page, err := s.QueryEvents(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			ids = append(ids, e.ID)
		}
		last := page[len(page)-1]
		q.AfterTime, q.AfterID = last.Time, last.ID
	}
	if got := strings.Join(ids, ""); got != "abcde" {
		t.Errorf("paged ids = %q, want abcde", got)
	}
}

func TestAppendEventWithoutIDIsRefused(t *testing.T) {
	s := open(t, t.TempDir())
	err := s.AppendEvents(context.Background(), []storage.Event{{Kind: "anomaly"}})
	if err == nil || !strings.Contains(err.Error(), "no id") {
		t.Fatalf("AppendEvents without id = %v, want error naming the missing id", err)
	}
}

// TestRetentionDropsOldLogsAndSpans: the retention loop, which runs as
// the store opens, measures against the store's clock: what is older
// than the retention then is dropped, the rest is kept however far the
// wall clock is from it.
func TestRetentionDropsOldLogsAndSpans(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.EventRetention = model.Duration(30 * 24 * time.Hour)
	clock := testutil.NewClock(testutil.Epoch)
	s := openWith(t, dir, cfg, clock)
	now := clock.Now()
	old := now.Add(-time.Duration(cfg.Retention) - time.Hour)
	oldEvent := now.Add(-time.Duration(cfg.EventRetention) - time.Hour)
	if err := s.AppendLogs(ctx, []storage.LogRecord{{Timestamp: old, Body: "old"}, {Timestamp: now, Body: "new"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendSpans(ctx, []storage.Span{{TraceID: "t", SpanID: "old", StartTime: old}, {TraceID: "t", SpanID: "new", StartTime: now}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendEvents(ctx, []storage.Event{{ID: "old", Time: oldEvent, Kind: "k"}, {ID: "new", Time: old, Kind: "k"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openWith(t, dir, cfg, clock)
	testutil.Eventually(t, 10*time.Second, "retention as the store opens", func() (bool, string) {
		logs, _ := s.QueryLogs(ctx, storage.LogQuery{})
		spans, _ := s.QuerySpans(ctx, storage.SpanQuery{})
		events, _ := s.QueryEvents(ctx, storage.EventQuery{})
		ok := len(logs) == 1 && logs[0].Body == "new" && len(spans) == 1 && spans[0].SpanID == "new" && len(events) == 1 && events[0].ID == "new"
		return ok, fmt.Sprintf("logs %+v spans %+v events %+v, want only the new ones", logs, spans, events)
	})
}

func TestReadyFailsAfterClose(t *testing.T) {
	s := open(t, t.TempDir())
	if err := s.Ready(context.Background()); err != nil {
		t.Fatalf("Ready on open store: %v", err)
	}
	s.Close()
	if err := s.Ready(context.Background()); err == nil {
		t.Fatal("Ready after Close = nil, want error")
	}
}
