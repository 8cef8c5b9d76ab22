package storeexporter

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/aiops-dev/aiops/collector/internal/obs"
	"github.com/aiops-dev/aiops/storage/embedded"
)

// BenchmarkWriteMetrics measures the translator and the embedded store's
// appender alone, per data point:
//
//	go test ./collector/storeexporter -run '^$' -bench WriteMetrics
func BenchmarkWriteMetrics(b *testing.B) {
	b.Run("cached", func(b *testing.B) { benchWriteMetrics(b, TranslationConfig{}) })
	b.Run("translator", func(b *testing.B) { benchWriteMetrics(b, TranslationConfig{CacheSeries: -1}) })
}

func benchWriteMetrics(b *testing.B, tc TranslationConfig) {
	cfg := embedded.DefaultConfig()
	cfg.DataDir = b.TempDir()
	store, err := embedded.Open(cfg, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	w := NewMetricsWriter(store, tc, obs.NewUnregistered(), slog.New(slog.DiscardHandler), "bench")
	const series = 10_000
	start := time.Now().Add(-time.Hour)
	batch := func(round int) pmetric.Metrics {
		md := pmetric.NewMetrics()
		var dps pmetric.NumberDataPointSlice
		for s := range series {
			if s%100 == 0 {
				rm := md.ResourceMetrics().AppendEmpty()
				rm.Resource().Attributes().PutStr("service.name", "bench")
				rm.Resource().Attributes().PutStr("service.instance.id", fmt.Sprintf("inst-%d", s/100))
				m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
				m.SetName("bench_value")
				dps = m.SetEmptyGauge().DataPoints()
			}
			dp := dps.AppendEmpty()
			dp.Attributes().PutStr("series", fmt.Sprintf("s%06d", s))
			dp.Attributes().PutStr("region", "eu-west-1")
			dp.SetTimestamp(pcommon.NewTimestampFromTime(start.Add(time.Duration(round) * time.Second)))
			dp.SetDoubleValue(float64(round))
		}
		return md
	}
	// Series exist before timing starts, as in a long-running process.
	if err := w.WriteMetrics(context.Background(), batch(0)); err != nil {
		b.Fatal(err)
	}
	batches := make([]pmetric.Metrics, b.N)
	for i := range b.N {
		batches[i] = batch(i + 1)
	}
	runtime.GC()
	b.ResetTimer()
	cpu := processCPU()
	for i := range b.N {
		if err := w.WriteMetrics(context.Background(), batches[i]); err != nil {
			b.Fatal(err)
		}
	}
	// CPU time stays comparable on a shared machine where wall time
	// does not.
	b.ReportMetric(float64((processCPU()-cpu).Nanoseconds())/float64(b.N*series), "cpu-ns/point")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*series), "ns/point")
}

// processCPU is the CPU time (user + system) the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
