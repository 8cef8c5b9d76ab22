package engine_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/sim/engine"
	"github.com/aiops-dev/aiops/sim/model"
	"github.com/aiops-dev/aiops/sim/telemetry"
	"github.com/aiops-dev/aiops/sim/truth"
)

// stuckExporter never answers until its context ends, as an exporter
// whose receiver is unreachable and retrying does.
type stuckExporter struct{ calls atomic.Int64 }

func (e *stuckExporter) Temporality(k sdkmetric.InstrumentKind) metricdata.Temporality {
	return sdkmetric.DefaultTemporalitySelector(k)
}

func (e *stuckExporter) Aggregation(k sdkmetric.InstrumentKind) sdkmetric.Aggregation {
	return sdkmetric.DefaultAggregationSelector(k)
}

func (e *stuckExporter) Export(ctx context.Context, _ *metricdata.ResourceMetrics) error {
	e.calls.Add(1)
	<-ctx.Done()
	return ctx.Err()
}

func (e *stuckExporter) ForceFlush(context.Context) error { return nil }
func (e *stuckExporter) Shutdown(context.Context) error   { return nil }

// TestRunWithUnreachableReceiver: an export that never returns (aiops
// down) must not stop the simulated engine: it keeps stepping in real
// time, so its ground truth goes on while aiops is away.
func TestRunWithUnreachableReceiver(t *testing.T) {
	mc := model.DefaultConfig()
	mc.Start = testutil.Epoch
	exp := &stuckExporter{}
	e, err := engine.New(engine.Config{Model: mc, Levels: truth.DefaultLevels(), Step: 20 * time.Millisecond,
		Telemetry: &telemetry.Options{Metrics: exp}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, time.Now) }()
	testutil.WaitFor(t, "the engine steps on while every export hangs", 30*time.Second, func() bool {
		return e.Now().Sub(testutil.Epoch) >= 20*20*time.Millisecond && exp.calls.Load() >= 5
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
