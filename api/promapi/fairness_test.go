package promapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/aiops-dev/aiops/api/auth"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
)

func asPrincipal(id string) context.Context {
	return auth.WithPrincipal(context.Background(), auth.Principal{ID: id})
}

// TestQueryGatePerPrincipal: a principal's queries beyond its share wait
// without holding the engine's slots, which stay free for others.
func TestQueryGatePerPrincipal(t *testing.T) {
	g := newQueryGate(3, 2)
	for range 2 {
		if _, err := g.Insert(asPrincipal("a"), "q"); err != nil {
			t.Fatal(err)
		}
	}
	waitCtx, cancel := context.WithCancel(asPrincipal("a"))
	third := make(chan error, 1)
	go func() {
		_, err := g.Insert(waitCtx, "q")
		third <- err
	}()
	// The engine has one slot left, and b gets it although a's third
	// query asked first.
	idx, err := g.Insert(asPrincipal("b"), "q")
	if err != nil {
		t.Fatalf("b: %v", err)
	}
	cancel()
	if err := <-third; !errors.Is(err, context.Canceled) {
		t.Errorf("a's third query: %v, want it to have waited until canceled", err)
	}
	g.Delete(idx)
	if len(g.keys) != 1 {
		t.Errorf("gate remembers %d principals, want 1 (a, still running)", len(g.keys))
	}
}

// fairnessAPI serves an API over a store where queries of block_me wait
// until released; the X-Principal header stands for authentication.
func fairnessAPI(t *testing.T) (*httptest.Server, *storetest.Blocking) {
	t.Helper()
	store := storetest.Embedded(t)
	loadFixture(t, store)
	blocking := storetest.NewBlocking(store, "block_me")
	t.Cleanup(blocking.Release)
	cfg := DefaultConfig()
	// A query still waiting for a slot when this passes fails the test
	// instead of hanging it; on this code no query waits that long.
	cfg.Timeout = model.Duration(30 * time.Second)
	api, err := New(Options{Config: cfg, Storage: blocking})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := auth.WithPrincipal(r.Context(), auth.Principal{ID: r.Header.Get("X-Principal")})
		api.Handler().ServeHTTP(w, r.WithContext(ctx))
	}))
	t.Cleanup(func() {
		blocking.Release()
		srv.Close()
		api.Close()
	})
	return srv, blocking
}

func queryAs(t *testing.T, srv *httptest.Server, principal, q string) response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/query?"+url.Values{"query": {q}, "time": {unix(fixtureEnd)}}.Encode(), nil)
	req.Header.Set("X-Principal", principal)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Errorf("query as %s: %v", principal, err)
		return response{}
	}
	defer resp.Body.Close()
	var b [4096]byte
	n, _ := resp.Body.Read(b[:])
	return response{code: resp.StatusCode, body: string(b[:n])}
}

// TestHeavyQueriesOfOnePrincipalLeaveRoomForOthers: 25 queries from one
// token, each holding its slot, take only that token's share; a trivial
// query from another token is answered while they all still run.
func TestHeavyQueriesOfOnePrincipalLeaveRoomForOthers(t *testing.T) {
	srv, blocking := fairnessAPI(t)
	share := DefaultConfig().MaxConcurrencyPerPrincipal

	var wg sync.WaitGroup
	heavy := make(chan response, 25)
	for range 25 {
		wg.Go(func() { heavy <- queryAs(t, srv, "dashboard-token", "sum(block_me)") })
	}
	testutil.WaitFor(t, fmt.Sprintf("%d of the heavy queries running", share), 30*time.Second, func() bool {
		return blocking.Waiting() == share
	})

	got := queryAs(t, srv, "other-token", "sum by (job) (http_requests_total)")
	if got.code != http.StatusOK || got.body != goodQueryBody {
		t.Errorf("trivial query of another token while 25 heavy ones are running: %d %s", got.code, got.body)
	}
	if len(heavy) != 0 || blocking.Waiting() != share {
		t.Fatalf("the heavy queries did not all wait: %d answered, %d running", len(heavy), blocking.Waiting())
	}

	blocking.Release()
	wg.Wait()
	close(heavy)
	for r := range heavy {
		if r.code != http.StatusOK {
			t.Errorf("heavy query after release: %d %s", r.code, r.body)
		}
	}
}

// TestHeapGuard: above query.max_heap_mib, requests that would start
// queries are refused with 503 and Retry-After; others are answered.
func TestHeapGuard(t *testing.T) {
	store := storetest.Embedded(t)
	loadFixture(t, store)
	cfg := DefaultConfig()
	cfg.MaxHeapMiB = 1 // any test binary's heap is larger
	srv := newTestAPI(t, cfg, store)
	for _, path := range []string{"/api/v1/query", "/api/v1/query_range", "/api/v1/series", "/api/v1/labels", "/api/v1/label/job/values"} {
		got := call(t, srv, http.MethodGet, path, url.Values{"query": {"up"}, "match[]": {"up"}, "start": {"0"}, "end": {"1"}, "step": {"1"}})
		if got.code != http.StatusServiceUnavailable || !isError(got.body, "unavailable", "query.max_heap_mib") {
			t.Errorf("%s above the heap limit: %d %s", path, got.code, got.body)
		}
	}
	if got := call(t, srv, http.MethodGet, "/api/v1/parse_query", url.Values{"query": {"up"}}); got.code != http.StatusOK {
		t.Errorf("parse_query above the heap limit: %d %s", got.code, got.body)
	}

	cfg.MaxHeapMiB = 1 << 20 // 1 TiB
	srv = newTestAPI(t, cfg, store)
	if got := call(t, srv, http.MethodGet, "/api/v1/query", url.Values{"query": {"sum by (job) (http_requests_total)"}, "time": {unix(fixtureEnd)}}); got.code != http.StatusOK || got.body != goodQueryBody {
		t.Errorf("query below the heap limit: %d %s", got.code, got.body)
	}
}
