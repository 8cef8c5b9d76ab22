package promapi

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aiops-dev/aiops/internal/testutil/storetest"
)

// TestSubqueryStepsBounded: a subquery of absurdly many steps is refused
// with 400 bad_data before the evaluator allocates per step. Found from
// outside: one GET /api/v1/query?query=sum_over_time(gen[100y:1ms]) with
// a read token killed aiops serve (fatal error: runtime: out of memory,
// in promql's runSubquery asking for 25 TB), whatever the data.
func TestSubqueryStepsBounded(t *testing.T) {
	store := storetest.Embedded(t)
	loadFixture(t, store)
	srv := newTestAPI(t, DefaultConfig(), store)
	at := unix(fixtureEnd)
	for _, c := range []struct {
		path   string
		params url.Values
	}{
		{"/api/v1/query", url.Values{"query": {"sum_over_time(up[100y:1ms])"}, "time": {at}}},
		// Nested: the inner one runs over the outer's range at its own step.
		{"/api/v1/query", url.Values{"query": {"max_over_time(sum_over_time(up[1h:1ms])[30d:1h])"}, "time": {at}}},
		// Each step of a range query needs the subquery's steps over the
		// whole range, not over one step.
		{"/api/v1/query_range", url.Values{"query": {"max_over_time(up[1m:1ms])"}, "start": {unix(fixtureEnd.Add(-30 * 24 * time.Hour))}, "end": {at}, "step": {"1h"}}},
		{"/api/v1/query", url.Values{"query": {"sum_over_time(up[11y:] @ end())"}, "time": {at}}},
	} {
		r := call(t, srv, http.MethodGet, c.path, c.params)
		if r.code != http.StatusBadRequest || !strings.Contains(r.body, `"errorType":"bad_data"`) || !strings.Contains(r.body, "query.max_subquery_steps") {
			t.Errorf("%s %v: %d %s", c.path, c.params, r.code, r.body)
		}
	}
	// What dashboards ask for still runs: 30 days at 1m is 43,201 steps.
	r := call(t, srv, http.MethodGet, "/api/v1/query", url.Values{"query": {"max_over_time(rate(up[5m])[30d:1m])"}, "time": {at}})
	if r.code != http.StatusOK {
		t.Errorf("30d:1m subquery: %d %s", r.code, r.body)
	}
}

func TestSubquerySteps(t *testing.T) {
	p := NewParser(DefaultConfig())
	for _, c := range []struct {
		q          string
		start, end int64
		want       int64
	}{
		{"up", 0, 0, 0},
		{"up[1h:1m]", 0, 0, 61},
		{"up[1h:]", 0, 0, 61},                           // the default step, 1m
		{"up[1h:1m]", 0, 3_600_000, 121},                // over a range: its length more
		{"up[1h:1m] offset 1d", 0, 0, 61},               // an offset moves it, no more
		{"max_over_time(up[1m:1s])[1h:1m]", 0, 0, 3661}, // the inner one over the outer's 1h and its own 1m
	} {
		expr, err := p.ParseExpr(c.q)
		if err != nil {
			t.Fatal(err)
		}
		if got := subquerySteps(expr, c.start, c.end, time.Minute.Milliseconds()); got != c.want {
			t.Errorf("%s over [%d, %d]: %d steps, want %d", c.q, c.start, c.end, got, c.want)
		}
	}
}
