package correlate

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage"
	"github.com/aiops-dev/aiops/storage/embedded"
)

// writeTraces stores n traces of web → api → (worker, postgres via a
// client span) into a real embedded store; every 4th call from api to
// worker fails.
func writeTraces(t *testing.T, n int, start time.Time) *embedded.Store {
	t.Helper()
	// Spans are kept for the store's retention, measured by its clock.
	s := storetest.Embedded(t, embedded.WithClock(testutil.NewClock(start).Now))
	var spans []storage.Span
	for i := 0; i < n; i++ {
		tid := fmt.Sprintf("%032x", i+1)
		at := start.Add(time.Duration(i) * time.Second)
		sp := func(id, parent, svc, kind, status string, d time.Duration, attrs map[string]string) storage.Span {
			return storage.Span{TraceID: tid, SpanID: id, ParentSpanID: parent, Name: svc + " op", Kind: kind,
				ServiceName: svc, StartTime: at, EndTime: at.Add(d), StatusCode: status, Attributes: attrs}
		}
		workerStatus := "Ok"
		if i%4 == 0 {
			workerStatus = "Error"
		}
		spans = append(spans,
			sp("0000000000000001", "", "web", "Server", "Ok", 50*time.Millisecond, nil),
			sp("0000000000000002", "0000000000000001", "web", "Client", "Ok", 40*time.Millisecond, nil),
			sp("0000000000000003", "0000000000000002", "api", "Server", "Ok", 35*time.Millisecond, nil),
			sp("0000000000000004", "0000000000000003", "api", "Client", "Ok", 10*time.Millisecond, map[string]string{"db.system": "postgresql"}),
			sp("0000000000000005", "0000000000000003", "api", "Client", workerStatus, 20*time.Millisecond, nil),
			sp("0000000000000006", "0000000000000005", "worker", "Server", workerStatus, 18*time.Millisecond, nil),
		)
	}
	if err := s.AppendSpans(context.Background(), spans); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBuildGraph(t *testing.T) {
	start := testutil.Epoch
	s := writeTraces(t, 200, start)
	g, err := BuildGraph(context.Background(), s, start, start.Add(199*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(g.Services) != "[api postgresql web worker]" {
		t.Fatalf("services %v", g.Services)
	}
	want := map[[2]string][2]float64{ // calls, error rate
		{"web", "api"}:        {200, 0},
		{"api", "worker"}:     {200, 0.25},
		{"api", "postgresql"}: {200, 0},
	}
	if len(g.Edges) != len(want) {
		t.Fatalf("edges %+v", g.Edges)
	}
	for k, w := range want {
		e, ok := g.Edge(k[0], k[1])
		if !ok || float64(e.Calls) != w[0] || math.Abs(e.ErrorRate-w[1]) > 1e-9 {
			t.Errorf("edge %v: %+v, want calls %v error rate %v", k, e, w[0], w[1])
		}
		if math.Abs(e.CallRate-200.0/199) > 1e-9 {
			t.Errorf("edge %v: call rate %v", k, e.CallRate)
		}
	}
	if e, _ := g.Edge("api", "worker"); e.MeanDuration != 18*time.Millisecond {
		t.Errorf("api→worker mean duration %v, want the callee's 18ms", e.MeanDuration)
	}
	if !g.dependsOn("web", "postgresql") || g.dependsOn("postgresql", "web") {
		t.Error("transitive dependency wrong")
	}

	// A page smaller than the window's spans still reads each span once.
	got, err := readSpans(context.Background(), s, start, start.Add(199*time.Second), 100)
	if err != nil || len(got) != 1200 {
		t.Fatalf("paged read: %d spans, %v", len(got), err)
	}
	seen := map[string]bool{}
	for _, sp := range got {
		k := sp.TraceID + sp.SpanID
		if seen[k] {
			t.Fatalf("span %s read twice", k)
		}
		seen[k] = true
	}
	if _, err := BuildGraph(context.Background(), s, start, start.Add(-time.Second)); err == nil {
		t.Fatal("want an error for an inverted window")
	}
}

func TestRankRootCauses(t *testing.T) {
	start := testutil.Epoch
	s := writeTraces(t, 100, start)
	g, err := BuildGraph(context.Background(), s, start, start.Add(100*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t0 := start.Add(time.Hour)
	// The worker goes wrong first; api and web follow.
	as := []Anomaly{
		{Service: "web", Series: "web latency", Onset: t0.Add(3 * time.Minute), Score: 0.9},
		{Service: "api", Series: "api errors", Onset: t0.Add(1 * time.Minute), Score: 0.95},
		{Service: "worker", Series: "worker errors", Onset: t0, Score: 0.7},
		{Service: "api", Series: "api latency", Onset: t0.Add(2 * time.Minute), Score: 0.8},
	}
	got := RankRootCauses(g, as)
	if len(got) != 3 || got[0].Service != "worker" || got[1].Service != "api" || got[2].Service != "web" {
		t.Fatalf("ranking %+v", got)
	}
	if got[1].Anomalies != 2 || !got[1].Onset.Equal(t0.Add(time.Minute)) {
		t.Fatalf("api: %+v", got[1])
	}
	t.Logf("%+v", got[0])

	// Onset alone does not make an unrelated service the cause when the
	// graph says the others' trouble flows from a dependency they share.
	as = []Anomaly{
		{Service: "web", Onset: t0.Add(2 * time.Minute), Score: 0.9},
		{Service: "api", Onset: t0.Add(1 * time.Minute), Score: 0.9},
		{Service: "postgresql", Onset: t0.Add(1 * time.Minute), Score: 0.9},
		{Service: "billing", Onset: t0, Score: 0.6}, // not in the graph
	}
	got = RankRootCauses(g, as)
	if got[0].Service != "postgresql" {
		t.Fatalf("ranking %+v", got)
	}
	// Without traces, onset decides.
	got = RankRootCauses(nil, as)
	if got[0].Service != "billing" {
		t.Fatalf("without a graph: %+v", got)
	}
	if RankRootCauses(g, nil) != nil {
		t.Fatal("no anomalies, no causes")
	}
}
