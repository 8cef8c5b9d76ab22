package storeexporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/aiops-dev/aiops/collector/internal/obs"
	"github.com/aiops-dev/aiops/collector/internal/queuecount"
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
//
// With Group set, requests arriving together are written in one store
// transaction (group commit): a write starts when GroupMinItems points
// wait, or GroupInterval after the previous write started, and each
// request is acknowledged when the write holding it has committed. This
// is for ClickHouse, where every INSERT makes a part the server has to
// merge: inserts stay as large and as rare as the queue's batches made
// them, without the queue's encode, bbolt write, read and decode per
// request.
type WriteThroughConfig struct {
	Enabled bool `mapstructure:"enabled"`
	// SlowWrite is the latency budget of a synchronous write. Default 1s.
	SlowWrite     time.Duration `mapstructure:"slow_write"`
	Group         bool          `mapstructure:"group"`
	GroupMinItems int           `mapstructure:"group_min_items"`
	GroupInterval time.Duration `mapstructure:"group_interval"`
}

// Validate names the key relative to the write_through section.
func (c WriteThroughConfig) Validate() error {
	if c.SlowWrite < 0 {
		return fmt.Errorf("slow_write: must be >= 0, got %s", c.SlowWrite)
	}
	if c.GroupMinItems < 0 {
		return fmt.Errorf("group_min_items: must be >= 0, got %d", c.GroupMinItems)
	}
	if c.GroupInterval < 0 {
		return fmt.Errorf("group_interval: must be >= 0, got %s", c.GroupInterval)
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

	// group is nil unless requests are written together.
	group *groupWriter
}

func newWriteThroughMetrics(e *storeExporter, cfg WriteThroughConfig, timeout time.Duration) *writeThroughMetrics {
	slow := cfg.SlowWrite
	if slow == 0 {
		slow = time.Second
	}
	w := &writeThroughMetrics{e: e, slow: slow, timeout: timeout, logger: e.logger}
	if cfg.Group {
		w.group = newGroupWriter(w, cfg.GroupMinItems, cfg.GroupInterval)
	}
	return w
}

func (w *writeThroughMetrics) Start(ctx context.Context, host component.Host) error {
	if err := w.Metrics.Start(ctx, host); err != nil {
		return err
	}
	if w.group != nil {
		w.group.started.Store(true)
		go w.group.run()
	}
	return nil
}

// Shutdown writes what waits in a group, then shuts the queue down.
func (w *writeThroughMetrics) Shutdown(ctx context.Context) error {
	if w.group != nil {
		w.group.stop()
	}
	return w.Metrics.Shutdown(ctx)
}

// write writes mds straight to the store, within the exporter's timeout.
func (w *writeThroughMetrics) write(ctx context.Context, mds ...pmetric.Metrics) error {
	if w.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, w.timeout)
		defer cancel()
	}
	return w.e.writeMetrics(ctx, mds...)
}

func (*writeThroughMetrics) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: false}
}

func (w *writeThroughMetrics) ConsumeMetrics(ctx context.Context, md pmetric.Metrics) error {
	if !w.spilling.Load() {
		start := time.Now()
		var err error
		var took time.Duration
		if w.group != nil {
			// The wait for the group is not the store's slowness.
			took, err = w.group.write(ctx, md)
		} else {
			err = w.write(ctx, md)
			took = time.Since(start)
		}
		switch {
		case err == nil:
			if d := took; d > w.slow {
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
		queuecount.Offered(w.e.metrics, obs.SignalMetrics, int(n), err)
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

// groupWriter writes the requests that wait together in one store
// transaction, one transaction at a time.
type groupWriter struct {
	w        *writeThroughMetrics
	minItems int
	interval time.Duration

	mu      sync.Mutex
	waiting []*groupWaiter
	items   int
	closed  bool
	wake    chan struct{} // buffered 1
	started atomic.Bool
	done    chan struct{}
}

type groupWaiter struct {
	md     pmetric.Metrics
	result chan groupResult // buffered 1
}

type groupResult struct {
	err  error
	took time.Duration // how long the write took
}

var errGroupClosed = errors.New("exporter is shutting down")

func newGroupWriter(w *writeThroughMetrics, minItems int, interval time.Duration) *groupWriter {
	return &groupWriter{w: w, minItems: minItems, interval: interval, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// write waits until md has been written with whatever else waited, and
// returns that write's outcome for md and how long the write took. If ctx
// ends first, md may still be written; a client that retries then writes
// it twice, which the stores absorb (docs/COLLECTOR.md: only identical
// retries duplicate).
func (g *groupWriter) write(ctx context.Context, md pmetric.Metrics) (time.Duration, error) {
	wt := &groupWaiter{md: md, result: make(chan groupResult, 1)}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return 0, errGroupClosed
	}
	first := len(g.waiting) == 0
	g.waiting = append(g.waiting, wt)
	g.items += md.DataPointCount()
	full := g.items >= g.minItems
	g.mu.Unlock()
	if first || full {
		select {
		case g.wake <- struct{}{}:
		default:
		}
	}
	select {
	case r := <-wt.result:
		return r.took, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (g *groupWriter) run() {
	defer close(g.done)
	var lastStart time.Time
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		g.mu.Lock()
		n, closed := g.items, g.closed
		g.mu.Unlock()
		if n == 0 && closed {
			return
		}
		due := lastStart.Add(g.interval)
		if n == 0 || (n < g.minItems && !closed && time.Now().Before(due)) {
			wait := time.Hour
			if n > 0 {
				wait = time.Until(due)
			}
			timer.Reset(wait)
			select {
			case <-g.wake:
			case <-timer.C:
			}
			continue
		}
		g.mu.Lock()
		batch := g.waiting
		g.waiting, g.items = nil, 0
		g.mu.Unlock()
		lastStart = time.Now()
		g.flush(batch)
	}
}

// flush writes batch in one transaction. If the store refuses it for good,
// that may be one request's fault: each is then written alone, so only
// what the store refuses is dropped.
func (g *groupWriter) flush(batch []*groupWaiter) {
	mds := make([]pmetric.Metrics, len(batch))
	for i, wt := range batch {
		mds[i] = wt.md
	}
	start := time.Now()
	err := g.w.write(context.Background(), mds...)
	if len(batch) > 1 && consumererror.IsPermanent(err) {
		for _, wt := range batch {
			start := time.Now()
			err := g.w.write(context.Background(), wt.md)
			wt.result <- groupResult{err, time.Since(start)}
		}
		return
	}
	took := time.Since(start)
	for _, wt := range batch {
		wt.result <- groupResult{err, took}
	}
}

// stop makes run write what waits and return.
func (g *groupWriter) stop() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
	if g.started.Load() {
		<-g.done
	}
}
