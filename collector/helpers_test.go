package collector

import (
	"context"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/aiops-dev/aiops/internal/freeport"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/storage"
	"github.com/aiops-dev/aiops/storage/embedded"
)

// freeAddr returns a 127.0.0.1 address with a port nobody listens on.
func freeAddr(t testing.TB) string { return freeport.Addr(t) }

// running is a collector started by a test.
type running struct {
	*Collector
	reg    *prometheus.Registry
	grpc   string
	http   string
	cancel context.CancelFunc
	done   chan error
}

// allInOneConfig returns an all-in-one config listening on free ports
// with a persistent queue in a temporary directory.
func allInOneConfig(t testing.TB) Config {
	cfg := DefaultConfig()
	cfg.OTLP.GRPCEndpoint = freeAddr(t)
	cfg.OTLP.HTTPEndpoint = freeAddr(t)
	cfg.Queue.Dir = t.TempDir()
	cfg.Batch.FlushTimeout = 50 * time.Millisecond
	cfg.RetryAfter = time.Second
	return cfg
}

// start runs a collector until the test ends (or stop is called).
func start(t testing.TB, cfg Config, deps Deps) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	deps.Registerer = reg
	if deps.Logger == nil {
		deps.Logger = testutil.Logger(t)
	}
	c, err := New(cfg, deps)
	if err != nil {
		t.Fatalf("collector.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Collector: c, reg: reg, grpc: cfg.OTLP.GRPCEndpoint, http: cfg.OTLP.HTTPEndpoint, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	select {
	case <-c.Started():
	case err := <-r.done:
		t.Fatalf("collector stopped while starting: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("collector did not start within 60s")
	}
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop shuts the collector down and waits for Run to return.
func (r *running) stop(t testing.TB) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("collector.Run: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Error("collector did not stop within 60s")
	}
}

// counter returns the value of a counter or gauge in reg; 0 if absent.
func metricValue(t testing.TB, reg prometheus.Gatherer, name string, lbls map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !labelsMatch(m.GetLabel(), lbls) {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

func labelsMatch(have []*dto.LabelPair, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, l := range have {
			if l.GetName() == k && l.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// sample is one stored sample of any kind.
type sample struct {
	t  int64
	v  float64
	h  *histogram.Histogram
	fh *histogram.FloatHistogram
}

// series reads all series matching ms from q, keyed by their labels.
func readSeries(t testing.TB, q promstorage.Queryable, ms ...*labels.Matcher) map[string][]sample {
	t.Helper()
	// Every test writes data from around now; a bounded range keeps
	// stores that partition by time from scanning everything.
	return readSeriesIn(t, q, time.Now().Add(-7*24*time.Hour), time.Now().Add(24*time.Hour), ms...)
}

// readSeriesIn is readSeries for data between from and to, for tests at
// fixed instants.
func readSeriesIn(t testing.TB, q promstorage.Queryable, from, to time.Time, ms ...*labels.Matcher) map[string][]sample {
	t.Helper()
	querier, err := q.Querier(from.UnixMilli(), to.UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	defer querier.Close()
	out := map[string][]sample{}
	set := querier.Select(context.Background(), false, nil, ms...)
	for set.Next() {
		s := set.At()
		var samples []sample
		it := s.Iterator(nil)
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			switch vt {
			case chunkenc.ValFloat:
				ts, v := it.At()
				samples = append(samples, sample{t: ts, v: v})
			case chunkenc.ValHistogram:
				ts, h := it.AtHistogram(nil)
				samples = append(samples, sample{t: ts, h: h})
			case chunkenc.ValFloatHistogram:
				ts, fh := it.AtFloatHistogram(nil)
				samples = append(samples, sample{t: ts, fh: fh})
			}
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		out[s.Labels().String()] = samples
	}
	if err := set.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// countSamples counts all samples of series matching ms.
func countSamples(t testing.TB, q promstorage.Queryable, ms ...*labels.Matcher) int {
	n := 0
	for _, s := range readSeries(t, q, ms...) {
		n += len(s)
	}
	return n
}

func nameIs(name string) *labels.Matcher {
	return labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, name)
}

func seriesNames(all map[string][]sample) []string {
	var names []string
	for k := range all {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

var _ = errors.New
var _ storage.Store = (*embedded.Store)(nil)
