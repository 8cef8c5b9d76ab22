package correlate

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/aiops-dev/aiops/analyzer/results"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/storage"
	"github.com/aiops-dev/aiops/storage/embedded"
)

// TestStoreRanker ranks over what an analyzer stored: anomaly events
// written through the results codec and the spans beside them.
func TestStoreRanker(t *testing.T) {
	ctx := context.Background()
	cfg := embedded.DefaultConfig()
	cfg.DataDir = t.TempDir()
	t0 := testutil.Epoch
	// Retention runs against the store's clock: at the wall clock's date
	// the spans laid at t0 would be past it and could vanish mid-test.
	s, err := embedded.Open(cfg, nil, nil, embedded.WithClock(func() time.Time { return t0.Add(10 * time.Minute) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var spans []storage.Span
	for i := 0; i < 20; i++ {
		tid := fmt.Sprintf("%032x", i+1)
		at := t0.Add(time.Duration(i) * time.Second)
		spans = append(spans,
			storage.Span{TraceID: tid, SpanID: "01", ServiceName: "api", Kind: "Server", StartTime: at, EndTime: at.Add(time.Millisecond)},
			storage.Span{TraceID: tid, SpanID: "02", ParentSpanID: "01", ServiceName: "api", Kind: "Client", StartTime: at, EndTime: at.Add(time.Millisecond)},
			storage.Span{TraceID: tid, SpanID: "03", ParentSpanID: "02", ServiceName: "db", Kind: "Server", StartTime: at, EndTime: at.Add(time.Millisecond), StatusCode: "Error"},
		)
	}
	if err := s.AppendSpans(ctx, spans); err != nil {
		t.Fatal(err)
	}
	var evs []storage.Event
	for i, svc := range []string{"api", "db"} {
		lset := labels.FromStrings("__name__", "latency", "service_name", svc)
		ev, err := results.EncodeAnomaly(results.Anomaly{Series: lset.Map(), Time: t0.Add(time.Duration(2-i) * time.Minute), Score: 0.9})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	// Neither an undecodable anomaly nor another kind sharing the prefix
	// hides the others.
	evs = append(evs,
		storage.Event{ID: "broken", Time: t0, Kind: results.AnomalyKind, Payload: []byte("{")},
		storage.Event{ID: "other", Time: t0, Kind: results.AnomalyKind + ".other", Payload: []byte("{}")},
	)
	if err := s.AppendEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	causes, g, err := StoreRanker{Events: s, Spans: s, Logger: testutil.Discard()}.RootCauses(ctx, t0.Add(-time.Minute), t0.Add(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Edges) != 1 || len(causes) != 2 || causes[0].Service != "db" {
		t.Fatalf("graph %+v causes %+v", g.Edges, causes)
	}
	// Without spans, onset decides: db's anomaly came first too.
	causes, g, err = StoreRanker{Events: s}.RootCauses(ctx, t0.Add(-time.Minute), t0.Add(10*time.Minute))
	if err != nil || g != nil || len(causes) != 2 || causes[0].Service != "db" || !causes[0].Onset.Equal(t0.Add(time.Minute)) {
		t.Fatalf("without spans: %+v %v %v", causes, g, err)
	}
	// Outside the window, nothing.
	if causes, _, err := (StoreRanker{Events: s}).RootCauses(ctx, t0.Add(time.Hour), t0.Add(2*time.Hour)); err != nil || len(causes) != 0 {
		t.Fatalf("empty window: %+v %v", causes, err)
	}
}
