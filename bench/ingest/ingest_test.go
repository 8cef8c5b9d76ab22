package ingest

import (
	"context"
	"flag"
	"testing"

	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

	"github.com/aiops-dev/aiops/collector"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
)

var (
	benchPoints       = flag.Int("bench.points", 2_000_000, "points per Run run")
	benchCacheSeries  = flag.Int("bench.cache_series", 0, "collector.translation.cache_series (-1: every point through the translator)")
	benchWriteThrough = flag.String("bench.write_through", collector.WriteThroughAuto, "collector.queue.write_through: auto, on or off")
	benchSenders      = flag.Int("bench.senders", 4, "concurrent OTLP/gRPC clients")
)

// benchConfig is the collector configuration of the ingest benchmarks;
// the flags above select the steps to compare.
func benchConfig() *collector.Config {
	cfg := collector.DefaultConfig()
	cfg.Translation.CacheSeries = *benchCacheSeries
	cfg.Queue.WriteThrough = *benchWriteThrough
	return &cfg
}

// BenchmarkIngestEmbedded measures OTLP points/s into the embedded store:
//
//	go test ./bench/ingest -run '^$' -bench IngestEmbedded -benchtime 1x -count 5
//
// -bench.cache_series=-1 and -bench.write_through=off measure without the
// translation cache and the write-through path.
func BenchmarkIngestEmbedded(b *testing.B) {
	for _, persistent := range []bool{true, false} {
		name := "memory-queue"
		if persistent {
			name = "persistent-queue"
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				store := storetest.Embedded(b)
				opts := Options{Store: store, Points: *benchPoints, Config: benchConfig(), Senders: *benchSenders}
				if persistent {
					opts.QueueDir = b.TempDir()
				}
				res, err := Run(context.Background(), opts)
				if err != nil {
					b.Fatal(err)
				}
				if res.Lost != 0 {
					b.Fatalf("lost %d points: %s", res.Lost, res)
				}
				b.ReportMetric(res.PointsPerSecond, "points/s")
				b.ReportMetric(res.PointsPerCPUSecond, "points/CPU-s")
				b.ReportMetric(float64(res.MaxHeapBytes>>20), "maxheap-MiB")
				b.Log(res)
			}
		})
	}
}

// TestRunSmall runs the benchmark code on a small input so that
// it cannot rot: every point must arrive.
func TestRunSmall(t *testing.T) {
	store := storetest.Embedded(t)
	res, err := Run(context.Background(), Options{Store: store, Points: 40_000, Series: 4_000, PointsPerRequest: 1_000, QueueDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Points != 40_000 || res.Stored != res.Points || res.Lost != 0 {
		t.Fatalf("%s", res)
	}
}

// TestRequestsPerSource checks the benchmark's client model: every
// sender owns its own series and sends each series' points in time
// order, in requests of at most PointsPerRequest points.
func TestRequestsPerSource(t *testing.T) {
	o := Options{Points: 10_000, Series: 1_000, PointsPerRequest: 300, Senders: 3}
	requests, points, _ := encodeRequests(o)
	if points != 10_000 || len(requests) != 3 {
		t.Fatalf("%d points in %d senders, want 10000 in 3", points, len(requests))
	}
	owner := map[string]int{}
	last := map[string]uint64{}
	total := 0
	for k, reqs := range requests {
		for i, b := range reqs {
			req := pmetricotlp.NewExportRequest()
			if err := req.UnmarshalProto(b); err != nil {
				t.Fatal(err)
			}
			if n := req.Metrics().DataPointCount(); n > o.PointsPerRequest || n == 0 || (n < o.PointsPerRequest && i != len(reqs)-1) {
				t.Fatalf("sender %d request %d has %d points", k, i, n)
			}
			rms := req.Metrics().ResourceMetrics()
			for r := range rms.Len() {
				dps := rms.At(r).ScopeMetrics().At(0).Metrics().At(0).Gauge().DataPoints()
				for d := range dps.Len() {
					dp := dps.At(d)
					s, _ := dp.Attributes().Get("series")
					id := s.Str()
					if o, ok := owner[id]; ok && o != k {
						t.Fatalf("series %s sent by senders %d and %d", id, o, k)
					}
					owner[id] = k
					if ts := uint64(dp.Timestamp()); ts <= last[id] {
						t.Fatalf("series %s: point at %d after %d", id, ts, last[id])
					}
					last[id] = uint64(dp.Timestamp())
					total++
				}
			}
		}
	}
	if total != 10_000 || len(owner) != 1_000 {
		t.Fatalf("%d points over %d series, want 10000 over 1000", total, len(owner))
	}
}
