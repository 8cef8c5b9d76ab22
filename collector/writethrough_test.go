package collector

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
)

// TestWriteThrough: with the store healthy, metrics are written in the
// receiver's call and never queued; while it is down, accepted requests
// are queued (spilled) and written once it is back, exactly once; then
// requests go straight through again.
func TestWriteThrough(t *testing.T) {
	store := &gatedStore{Store: storetest.Embedded(t)}
	cfg := allInOneConfig(t)
	cfg.Batch.MinSize = 10
	r := start(t, cfg, Deps{Store: store})
	spilled := func() float64 {
		return metricValue(t, r.reg, "aiops_collector_spilled_items_total", map[string]string{"signal": "metrics"})
	}
	ts := time.Now().Truncate(time.Millisecond)

	// Healthy: the point is stored when the client hears OK.
	if resp := postOTLP(t, r.http, gaugeRequest(0, 100, ts)); resp.StatusCode != http.StatusOK {
		t.Fatalf("healthy store: %s", resp.Status)
	}
	if n := countSamples(t, store, nameIs("bp_gauge")); n != 100 {
		t.Fatalf("%d of 100 points stored when the write was acknowledged", n)
	}
	if s := spilled(); s != 0 {
		t.Fatalf("%v items spilled while the store was healthy", s)
	}

	// Down: accepted all the same, into the queue.
	store.down.Store(true)
	for i := 1; i <= 3; i++ {
		if resp := postOTLP(t, r.http, gaugeRequest(100*i, 100, ts)); resp.StatusCode != http.StatusOK {
			t.Fatalf("store down, request %d: %s", i, resp.Status)
		}
	}
	if s := spilled(); s != 300 {
		t.Fatalf("%v items spilled while the store was down, want 300", s)
	}
	if n := countSamples(t, store, nameIs("bp_gauge")); n != 100 {
		t.Fatalf("%d points stored while the store was down, want the first 100", n)
	}

	store.down.Store(false)
	testutil.Eventually(t, 30*time.Second, "spilled points written", func() (bool, string) {
		n := countSamples(t, store, nameIs("bp_gauge"))
		return n == 400, fmt.Sprintf("%d of 400", n)
	})
	for series, samples := range readSeries(t, store, nameIs("bp_gauge")) {
		if len(samples) != 1 {
			t.Errorf("%s: %d samples, want 1", series, len(samples))
		}
	}

	// Caught up: straight through again.
	testutil.Eventually(t, 10*time.Second, "writes go straight through again", func() (bool, string) {
		before := spilled()
		resp := postOTLP(t, r.http, gaugeRequest(1000, 10, ts.Add(time.Second)))
		return resp.StatusCode == http.StatusOK && spilled() == before, fmt.Sprintf("%s, spilled %v", resp.Status, spilled())
	})
}

// slowStore delays every commit.
type slowStore struct {
	*gatedStore
	delay time.Duration
}

type slowAppender struct {
	promstorage.AppenderV2
	delay time.Duration
}

func (s *slowStore) AppenderV2(ctx context.Context) promstorage.AppenderV2 {
	return &slowAppender{AppenderV2: s.gatedStore.AppenderV2(ctx), delay: s.delay}
}

func (a *slowAppender) Commit() error {
	time.Sleep(a.delay)
	return a.AppenderV2.Commit()
}

// TestWriteThroughSlowStore: a write slower than queue.slow_write still
// succeeds, but the requests after it go through the queue, so clients do
// not wait for the store; everything arrives.
func TestWriteThroughSlowStore(t *testing.T) {
	store := &slowStore{gatedStore: &gatedStore{Store: storetest.Embedded(t)}, delay: 300 * time.Millisecond}
	cfg := allInOneConfig(t)
	cfg.Queue.SlowWrite = 100 * time.Millisecond
	cfg.Batch.MinSize = 10
	r := start(t, cfg, Deps{Store: store})
	ts := time.Now().Truncate(time.Millisecond)
	for i := range 5 {
		if resp := postOTLP(t, r.http, gaugeRequest(100*i, 100, ts)); resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %s", i, resp.Status)
		}
	}
	if s := metricValue(t, r.reg, "aiops_collector_spilled_items_total", map[string]string{"signal": "metrics"}); s == 0 {
		t.Error("nothing spilled after a write slower than slow_write")
	}
	testutil.Eventually(t, 30*time.Second, "every point stored", func() (bool, string) {
		n := countSamples(t, store, nameIs("bp_gauge"))
		return n == 500, fmt.Sprintf("%d of 500", n)
	})
}
