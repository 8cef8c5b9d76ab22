package selfmon

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage/embedded"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		interval time.Duration
		want     string
	}{
		{0, ""},
		{15 * time.Second, ""},
		{time.Second, ""},
		{time.Millisecond, "self_monitoring.interval: must be 0 (off) or at least 1s, got 1ms"},
		{-time.Second, "self_monitoring.interval: must be 0 (off) or at least 1s, got -1s"},
	} {
		err := Config{Interval: model.Duration(tc.interval)}.Validate()
		if got := ""; err != nil {
			got = err.Error()
			if got != tc.want {
				t.Errorf("%s: %q, want %q", tc.interval, got, tc.want)
			}
		} else if tc.want != "" {
			t.Errorf("%s: no error, want %q", tc.interval, tc.want)
		}
	}
}

// TestRecordWritesTheRegistry writes a registry with every kind of
// metric into an embedded store and reads back the series a scrape of
// it would have made.
func TestRecordWritesTheRegistry(t *testing.T) {
	clock := testutil.NewClock(testutil.Epoch)
	store := storetest.Embedded(t, embedded.WithClock(clock.Now))
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "things_total", Help: "h"}, []string{"job"})
	c.WithLabelValues("billing").Add(3)
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "queue_items", Help: "h"})
	g.Set(7)
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "took_seconds", Help: "h", Buckets: []float64{0.1, 1}})
	h.Observe(0.05)
	h.Observe(5)
	s := prometheus.NewSummary(prometheus.SummaryOpts{Name: "size_bytes", Help: "h", Objectives: map[float64]float64{0.5: 0.05}})
	s.Observe(10)
	reg.MustRegister(c, g, h, s)

	r, err := New(Config{Interval: model.Duration(time.Second)}, Deps{Gatherer: reg, Appendable: store,
		Instance: "node-1:9090", Registerer: reg, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := r.Record(ctx); err != nil {
		t.Fatal(err)
	}
	clock.Add(15 * time.Second)
	g.Set(8)
	n, err := r.Record(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// 1 counter + 1 gauge + 4 buckets/sum/count + 3 summary + the
	// recorder's own two counters.
	if n != 1+1+5+3+2 {
		t.Errorf("second record wrote %d samples, want 12", n)
	}

	q, err := store.Querier(testutil.Epoch.Add(-time.Minute).UnixMilli(), clock.Now().UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	got := map[string][]float64{}
	ss := q.Select(ctx, true, nil, labels.MustNewMatcher(labels.MatchEqual, "job", Job))
	for ss.Next() {
		ser := ss.At()
		if inst := ser.Labels().Get("instance"); inst != "node-1:9090" {
			t.Errorf("%s: instance %q", ser.Labels(), inst)
		}
		ls := ser.Labels()
		// le or quantile, the name, and the exported job.
		key := ls.Get("le") + ls.Get("quantile") + ls.Get("__name__") + "/" + ls.Get("exported_job")
		it := ser.Iterator(nil)
		for it.Next() == chunkenc.ValFloat {
			_, v := it.At()
			got[key] = append(got[key], v)
		}
	}
	if err := ss.Err(); err != nil {
		t.Fatal(err)
	}
	want := map[string][]float64{
		"things_total/billing":     {3, 3},
		"queue_items/":             {7, 8},
		"0.1took_seconds_bucket/":  {1, 1},
		"1took_seconds_bucket/":    {1, 1},
		"+Inftook_seconds_bucket/": {2, 2},
		"took_seconds_sum/":        {5.05, 5.05},
		"took_seconds_count/":      {2, 2},
		"0.5size_bytes/":           {10, 10},
		"size_bytes_sum/":          {10, 10},
		"size_bytes_count/":        {1, 1},
	}
	for k, v := range want {
		if g := got[k]; len(g) != len(v) || g[0] != v[0] || g[1] != v[1] {
			t.Errorf("%s: %v, want %v", k, g, v)
		}
	}
	if w := got["aiops_selfmon_samples_written_total/"]; len(w) != 2 || w[0] != 0 || w[1] != 12 {
		t.Errorf("aiops_selfmon_samples_written_total: %v, want [0 12]", w)
	}
}

// TestRunOff: with interval 0 Run returns at once and writes nothing.
func TestRunOff(t *testing.T) {
	store := storetest.Embedded(t)
	r, err := New(Config{}, Deps{Gatherer: prometheus.NewRegistry(), Appendable: store})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run with interval 0 did not return")
	}
	if _, err := New(Config{Interval: model.Duration(time.Millisecond)}, Deps{}); err == nil || !strings.Contains(err.Error(), "self_monitoring.interval") {
		t.Errorf("New with a 1ms interval: %v", err)
	}
}
