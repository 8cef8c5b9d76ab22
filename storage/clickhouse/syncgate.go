package clickhouse

import (
	"sync"
	"time"
)

// syncGate runs the syncs of the series index or the sample cache one at
// a time, and lets a caller skip its own when a sync that began after it
// asked (or within the refresh interval) has done the work already.
type syncGate struct {
	refresh time.Duration
	// now is the clock of the refresh interval; nil is time.Now. The span
	// head takes the store's clock, so that tests step it.
	now func() time.Time

	mu        sync.Mutex
	lastStart time.Time // when the last successful sync began
}

// run calls sync unless that is not needed. Syncs run one at a time, so
// what only they touch needs no other lock. The gate measures intervals
// on the monotonic clock (unless now is set); where a sync stands in time
// (which hour is open) is the store's clock's business.
func (g *syncGate) run(sync func() error) error {
	clock := g.now
	if clock == nil {
		clock = time.Now
	}
	asked := clock()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.lastStart.After(asked) || (g.refresh > 0 && asked.Sub(g.lastStart) < g.refresh) {
		return nil
	}
	began := clock()
	if err := sync(); err != nil {
		return err
	}
	g.lastStart = began
	return nil
}

// expire makes the next caller sync whatever the refresh interval.
func (g *syncGate) expire() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lastStart = time.Time{}
}
