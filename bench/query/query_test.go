package query

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/aiops-dev/aiops/api/promapi"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
)

func newEngine(tb testing.TB) *promapi.Engine {
	tb.Helper()
	engine, err := promapi.NewEngine(promapi.DefaultConfig(), nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { engine.Close() })
	return engine
}

func TestDataset(t *testing.T) {
	d := DefaultDataset(time.Unix(1700000000, 0))
	if d.Series() != 10_000 || d.Steps() != 1441 {
		t.Fatalf("default data set: %d series × %d steps, want 10000 × 1441", d.Series(), d.Steps())
	}

	d = Dataset{Services: 3, InstancesPerService: 2, End: time.Unix(1700000000, 0), Duration: 30 * time.Minute, Interval: 15 * time.Second, Seed: 7}
	store := storetest.Embedded(t)
	if err := d.Load(context.Background(), store); err != nil {
		t.Fatal(err)
	}
	q, err := store.Querier(d.Start().UnixMilli(), d.End.UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ss := q.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+"))
	n := 0
	for ss.Next() {
		n++
		s := ss.At()
		it := s.Iterator(nil)
		samples, prev := 0, math.Inf(-1)
		name := s.Labels().Get("__name__")
		for it.Next() != 0 {
			_, v := it.At()
			if name != "worker_queue_depth" && v < prev {
				t.Errorf("%s: counter went down from %g to %g", s.Labels(), prev, v)
			}
			prev = v
			samples++
		}
		if samples != d.Steps() {
			t.Errorf("%s: %d samples, want %d", s.Labels(), samples, d.Steps())
		}
	}
	if err := ss.Err(); err != nil {
		t.Fatal(err)
	}
	if n != d.Series() {
		t.Errorf("stored %d series, want %d", n, d.Series())
	}

	// Buckets are cumulative: each holds at least the one below it.
	engine := newEngine(t)
	for _, check := range []string{
		`http_request_duration_seconds_bucket{le="0.1"} > ignoring(le) http_request_duration_seconds_bucket{le="0.25"}`,
		`http_request_duration_seconds_bucket{le="5"} > ignoring(le) http_request_duration_seconds_bucket{le="+Inf"}`,
		`http_request_duration_seconds_bucket{le="+Inf"} != ignoring(le) http_request_duration_seconds_count`,
	} {
		_, got, err := RangeQuery(context.Background(), engine, store, check, d.Start(), d.End, time.Minute)
		if err != nil || got != 0 {
			t.Errorf("%s: %d series, err %v; want none", check, got, err)
		}
	}

	results, err := Run(context.Background(), engine, store, d, Options{Range: 20 * time.Minute, Step: time.Minute, Runs: 3})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]int{ // least and most series
		"rate":               {3 * 2 * 20, 3 * 2 * 20},
		"sum_by_rate":        {3, 3},
		"histogram_quantile": {1, 1},
		// A range query's topk returns every series that was in the top
		// ten at some step, out of 3 services × 5 endpoints.
		"topk": {10, 15},
		// svc-00..02, both instances, the 4 /api/v1 routes, 2 5xx codes.
		"regex_selector": {3 * 2 * 4 * 2, 3 * 2 * 4 * 2},
	}
	for _, r := range results {
		w := want[r.Query.Name]
		if r.Series < w[0] || r.Series > w[1] || len(r.Durations) != 3 || r.Median() <= 0 || r.First <= 0 {
			t.Errorf("%s: %d series, %d runs, median %v, first run %v; want %d..%d series, 3 runs", r.Query.Name, r.Series, len(r.Durations), r.Median(), r.First, w[0], w[1])
		}
	}
	if len(results) != len(Queries()) {
		t.Errorf("%d results for %d queries", len(results), len(Queries()))
	}
}

// BenchmarkDashboardQueries measures the dashboard queries on the
// embedded store over the default data set (10,000 series × 6 h at 15 s).
// Loading takes a while and is not measured.
//
//	go test ./bench/query -run '^$' -bench DashboardQueries -benchtime 10x
func BenchmarkDashboardQueries(b *testing.B) {
	store := storetest.Embedded(b)
	d := DefaultDataset(time.Now())
	began := time.Now()
	if err := d.Load(context.Background(), store); err != nil {
		b.Fatal(err)
	}
	// Settle the head as a running store would be: older data in blocks.
	if err := store.Compact(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Logf("loaded %d series × %d samples in %v", d.Series(), d.Steps(), time.Since(began))
	benchQueries(b, newEngine(b), store, d, DefaultOptions())
}

func benchQueries(b *testing.B, engine promql.QueryEngine, q promstorage.Queryable, d Dataset, opts Options) {
	for _, query := range Queries() {
		b.Run(query.Name, func(b *testing.B) {
			// Machines here are shared and noisy: report the median run
			// besides Go's mean.
			r := Result{Query: query}
			for b.Loop() {
				took, n, err := RangeQuery(context.Background(), engine, q, query.Expr, d.End.Add(-opts.Range), d.End, opts.Step)
				if err != nil {
					b.Fatal(err)
				}
				r.Series = n
				r.Durations = append(r.Durations, took)
			}
			b.ReportMetric(float64(r.Series), "series")
			b.ReportMetric(float64(r.Median())/1e6, "ms-median")
		})
	}
}
