package promapi

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/aiops-dev/aiops/internal/testutil/storetest"
)

const goodQueryBody = `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"api"},"value":[1700000600,"440"]}]}}`

func TestQueryTimeoutLeavesOtherQueriesAlone(t *testing.T) {
	store := storetest.Embedded(t)
	loadFixture(t, store)
	cfg := DefaultConfig()
	cfg.Timeout = model.Duration(time.Second)
	// The slow query below is a subquery of 2.6 million steps.
	cfg.MaxSubquerySteps = 10_000_000
	srv := newTestAPI(t, cfg, store)

	// A subquery at 1 s resolution over 30 days, on 200 series: about 20 s
	// of evaluation, far beyond the 1 s timeout. The engine checks the
	// deadline between series, so many short series stop it promptly.
	app := store.AppenderV2(context.Background())
	for i := range 200 {
		ls := labels.FromStrings("__name__", "slow_gauge", "n", strconv.Itoa(i))
		if _, err := app.Append(0, ls, 0, fixtureEnd.UnixMilli(), 1, nil, nil, promstorage.AOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	slow := make(chan response, 1)
	began := time.Now()
	go func() {
		defer func() { t.Logf("slow query took %v", time.Since(began)) }()
		slow <- call(t, srv, http.MethodPost, "/api/v1/query", url.Values{
			"query": {`count_over_time(slow_gauge[30d:1s])`},
			"time":  {unix(fixtureEnd)},
		})
	}()
	time.Sleep(200 * time.Millisecond)

	// While the slow query runs, others are answered.
	answered := 0
	for done := false; !done; {
		got := call(t, srv, http.MethodGet, "/api/v1/query", url.Values{"query": {"sum by (job) (http_requests_total)"}, "time": {unix(fixtureEnd)}})
		if got.code != 200 || got.body != goodQueryBody {
			t.Fatalf("concurrent query: got %d %s", got.code, got.body)
		}
		select {
		case r := <-slow:
			slow <- r
			done = true
		default:
			answered++
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("%d queries answered while the slow one ran", answered)
	if answered == 0 {
		t.Error("no query was answered while the slow query ran")
	}

	got := <-slow
	want := `{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}`
	if got.code != http.StatusServiceUnavailable || got.body != want {
		t.Errorf("slow query: got %d %s, want 503 %s", got.code, got.body, want)
	}
}

func TestMaxSamplesLeavesOtherQueriesAlone(t *testing.T) {
	store := storetest.Embedded(t)
	loadFixture(t, store)
	cfg := DefaultConfig()
	cfg.MaxSamples = 50 // http_requests_total[10m] holds 82
	srv := newTestAPI(t, cfg, store)

	const want = `{"status":"error","errorType":"execution","error":"query processing would load too many samples into memory in query execution"}`
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for w := 0; w < 4; w++ {
		wg.Go(func() {
			for i := 0; i < 10; i++ {
				got := call(t, srv, http.MethodGet, "/api/v1/query", url.Values{"query": {"http_requests_total[10m]"}, "time": {unix(fixtureEnd)}})
				if got.code != http.StatusUnprocessableEntity || got.body != want {
					errs <- "too big instant query: " + got.body
				}
				got = call(t, srv, http.MethodPost, "/api/v1/query_range", url.Values{
					"query": {"http_requests_total"}, "start": {unix(fixtureStart)}, "end": {unix(fixtureEnd)}, "step": {"15s"},
				})
				if got.code != http.StatusUnprocessableEntity || got.body != want {
					errs <- "too big range query: " + got.body
				}
				got = call(t, srv, http.MethodGet, "/api/v1/query", url.Values{"query": {"sum by (job) (http_requests_total)"}, "time": {unix(fixtureEnd)}})
				if got.code != 200 || got.body != goodQueryBody {
					errs <- "concurrent good query: " + got.body
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestQueryGate(t *testing.T) {
	g := newQueryGate(2, 2)
	if g.GetMaxConcurrent() != 2 {
		t.Fatalf("GetMaxConcurrent = %d", g.GetMaxConcurrent())
	}
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if _, err := g.Insert(ctx, "q"); err != nil {
			t.Fatalf("Insert %d: %v", i, err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := g.Insert(short, "q"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Insert into a full gate = %v, want deadline exceeded", err)
	}
	g.Delete(0)
	if _, err := g.Insert(ctx, "q"); err != nil {
		t.Fatalf("Insert after Delete: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	for _, c := range []struct {
		mutate func(*Config)
		key    string
	}{
		{func(c *Config) { c.Timeout = 0 }, "query.timeout"},
		{func(c *Config) { c.MaxSamples = -1 }, "query.max_samples"},
		{func(c *Config) { c.LookbackDelta = 0 }, "query.lookback_delta"},
		{func(c *Config) { c.MaxConcurrency = 0 }, "query.max_concurrency"},
		{func(c *Config) { c.SubqueryStep = -1 }, "query.subquery_step"},
		{func(c *Config) { c.MaxLength = 0 }, "query.max_length"},
		{func(c *Config) { c.MaxDepth = 0 }, "query.max_depth"},
		{func(c *Config) { c.MaxSubquerySteps = 0 }, "query.max_subquery_steps"},
		{func(c *Config) { c.MaxConcurrencyPerPrincipal = 0 }, "query.max_concurrency_per_principal"},
		{func(c *Config) { c.RulesMaxConcurrency = 0 }, "query.rules_max_concurrency"},
		{func(c *Config) { c.MaxHeapMiB = -1 }, "query.max_heap_mib"},
	} {
		cfg := DefaultConfig()
		c.mutate(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), c.key+": ") {
			t.Errorf("Validate() = %v, want an error naming %s", err, c.key)
		}
		if _, err := New(Options{Config: cfg, Storage: storetest.Embedded(t)}); err == nil {
			t.Errorf("New accepted a config with a bad %s", c.key)
		}
	}
}
