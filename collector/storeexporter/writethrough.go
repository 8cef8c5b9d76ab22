package storeexporter

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/aiops-dev/aiops/collector/internal/obs"
)

// WriteThroughConfig makes the metrics exporter write each request to the
// store synchronously, in the receiver's call, while the store takes
// writes; the queue then holds only what the store could not take.
//
// Why: a store with a write-ahead log of its own (the embedded TSDB) makes
// an accepted sample durable when its append commits. Writing every
// request to the persistent queue first, then reading, decoding and
// deleting it, doubles that work and was the largest per-point cost after
// translation. The queue stays for what it is for: a store that is down
// or slow. A write that fails with a retryable error puts its request
// into the queue (spills it); so does every request after it, in order,
// until the queue has written everything this process spilled; then
// writes go straight through again. A write slower than SlowWrite
// succeeds, but the requests after it spill, so that clients do not wait
// for a slow store. When the queue is full the client is pushed back, as
// before.
type WriteThroughConfig struct {
	Enabled bool `mapstructure:"enabled"`
	// SlowWrite is the latency budget of a synchronous write. Default 1s.
	SlowWrite time.Duration `mapstructure:"slow_write"`
}

// Validate names the key relative to the write_through section.
func (c WriteThroughConfig) Validate() error {
	if c.SlowWrite < 0 {
		return fmt.Errorf("slow_write: must be >= 0, got %s", c.SlowWrite)
	}
	return nil
}

// writeThroughMetrics is the metrics exporter with write-through: it
// writes straight to the store and hands to the queued exporter (whose
// push is the same write) only what the store did not take.
type writeThroughMetrics struct {
	exporter.Metrics // the queued exporter
	e                *storeExporter
	slow             time.Duration
	timeout          time.Duration
	logger           *slog.Logger

	spilling atomic.Bool
	// pending counts items spilled by this process and not yet written
	// from the queue. Items a previous run left in a persistent queue are
	// written in the background without holding writes back: the store
	// takes them out of order (the embedded TSDB's out-of-order window,
	// ClickHouse in any order).
	pending atomic.Int64
}

func newWriteThroughMetrics(e *storeExporter, cfg WriteThroughConfig, timeout time.Duration) *writeThroughMetrics {
	slow := cfg.SlowWrite
	if slow == 0 {
		slow = time.Second
	}
	return &writeThroughMetrics{e: e, slow: slow, timeout: timeout, logger: e.logger}
}

func (*writeThroughMetrics) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: false}
}

func (w *writeThroughMetrics) ConsumeMetrics(ctx context.Context, md pmetric.Metrics) error {
	if !w.spilling.Load() {
		start := time.Now()
		wctx, cancel := ctx, context.CancelFunc(func() {})
		if w.timeout > 0 {
			wctx, cancel = context.WithTimeout(ctx, w.timeout)
		}
		err := w.e.pushMetrics(wctx, md)
		cancel()
		switch {
		case err == nil:
			if d := time.Since(start); d > w.slow {
				w.startSpilling("store is slow", "write_seconds", d.Seconds())
			}
			return nil
		case consumererror.IsPermanent(err):
			// Counted and logged by the push; the queue would drop it
			// the same way, since no retry can change it.
			return nil
		case ctx.Err() != nil:
			// The client gave up; it retries, nothing was committed.
			return err
		}
		w.startSpilling("store refused a write", "err", err)
	}
	n := int64(md.DataPointCount())
	w.pending.Add(n)
	if err := w.Metrics.ConsumeMetrics(ctx, md); err != nil {
		w.written(n)
		return err
	}
	w.e.metrics.Spilled.WithLabelValues(obs.SignalMetrics, w.e.name).Add(float64(n))
	return nil
}

func (w *writeThroughMetrics) startSpilling(why string, args ...any) {
	if w.spilling.CompareAndSwap(false, true) {
		w.logger.Warn(why+"; queueing metrics until the queue has caught up", append([]any{"exporter", w.e.name}, args...)...)
	}
}

// written is called when the queue has written (or dropped for good) n
// items.
func (w *writeThroughMetrics) written(n int64) {
	for {
		old := w.pending.Load()
		left := max(old-n, 0)
		if w.pending.CompareAndSwap(old, left) {
			if left == 0 && w.spilling.CompareAndSwap(true, false) {
				w.logger.Info("queue caught up; writing metrics straight to the store again", "exporter", w.e.name)
			}
			return
		}
	}
}
