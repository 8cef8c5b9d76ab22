package embedded

import (
	"sync"
	"time"

	"github.com/prometheus/prometheus/tsdb"
)

// gate hands out the open TSDB for one use at a time (a lease: a querier
// until it is closed, an appender until it commits or rolls back) and
// lets the store close it once the uses in flight are over, so that a
// reopen never pulls a TSDB from under a reader or a writer.
//
// While the store closes the TSDB, new leases are refused at once
// (rather than queued), so that callers fail fast and retry. A lease
// that is never given back (an appender that was neither committed nor
// rolled back) holds a close up for at most the drain timeout; it is then
// abandoned, and whatever it does later fails on the closed TSDB.
type gate struct {
	mu      sync.Mutex
	db      *tsdb.DB // nil while closed
	gen     uint64   // counts the TSDBs opened, so that a late release of an abandoned lease is ignored
	leases  int
	closing bool
}

// acquire returns the open TSDB and the function that gives the lease
// back (which may be called more than once), or nil while there is
// none or it is being closed.
func (g *gate) acquire() (*tsdb.DB, func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing || g.db == nil {
		return nil, nil
	}
	g.leases++
	gen := g.gen
	var once sync.Once
	return g.db, func() {
		once.Do(func() {
			g.mu.Lock()
			if g.gen == gen {
				g.leases--
			}
			g.mu.Unlock()
		})
	}
}

// take refuses new leases, waits up to timeout for those out to be given
// back, and returns the TSDB (nil if there was none) for the caller to
// close; it reports how many leases it abandoned.
func (g *gate) take(timeout time.Duration) (*tsdb.DB, int) {
	g.mu.Lock()
	g.closing = true
	g.mu.Unlock()
	deadline := time.Now().Add(timeout)
	for {
		g.mu.Lock()
		if g.leases == 0 || time.Now().After(deadline) {
			db, abandoned := g.db, g.leases
			g.db, g.leases = nil, 0
			g.gen++
			g.mu.Unlock()
			return db, abandoned
		}
		g.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
}

// put installs db (nil to stay closed) and takes leases again.
func (g *gate) put(db *tsdb.DB) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.db, g.closing = db, false
}
