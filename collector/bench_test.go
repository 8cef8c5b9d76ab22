package collector

import (
	"context"
	"flag"
	"testing"
)

var (
	benchPoints       = flag.Int("bench.points", 2_000_000, "points per BenchIngest run")
	benchCacheSeries  = flag.Int("bench.cache_series", 0, "collector.translation.cache_series (-1: every point through the translator)")
	benchWriteThrough = flag.String("bench.write_through", WriteThroughAuto, "collector.queue.write_through: auto, on or off")
	benchSenders      = flag.Int("bench.senders", 4, "concurrent OTLP/gRPC clients")
)

// benchConfig is the collector configuration of the ingest benchmarks;
// the flags above select the steps to compare.
func benchConfig() *Config {
	cfg := DefaultConfig()
	cfg.Translation.CacheSeries = *benchCacheSeries
	cfg.Queue.WriteThrough = *benchWriteThrough
	return &cfg
}

// BenchmarkIngestEmbedded measures OTLP points/s into the embedded store:
//
//	go test ./collector -run '^$' -bench IngestEmbedded -benchtime 1x -count 5
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
				store := openEmbedded(b, b.TempDir())
				opts := BenchOptions{Store: store, Points: *benchPoints, Config: benchConfig(), Senders: *benchSenders}
				if persistent {
					opts.QueueDir = b.TempDir()
				}
				res, err := BenchIngest(context.Background(), opts)
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

// TestBenchIngestSmall runs the benchmark code on a small input so that
// it cannot rot: every point must arrive.
func TestBenchIngestSmall(t *testing.T) {
	store := openEmbedded(t, t.TempDir())
	res, err := BenchIngest(context.Background(), BenchOptions{Store: store, Points: 40_000, Series: 4_000, PointsPerRequest: 1_000, QueueDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Points != 40_000 || res.Stored != res.Points || res.Lost != 0 {
		t.Fatalf("%s", res)
	}
}
