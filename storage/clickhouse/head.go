package clickhouse

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// The head.
//
// What the sample cache cannot hold is the open hour, which is still
// being written; reading it from ClickHouse costs a Select one stretch of
// rows per series again. So the process also keeps the float samples of
// every series from the start of the open hour on (the head, as
// Prometheus's TSDB calls its in-memory block), and keeps it current the
// way the cache is: every sync reads, from the parts of metric_samples
// holding block numbers it has not seen, their rows from the head's
// start on. Only parts still active after that read were certainly read
// whole; if one was merged away meanwhile, its successor holds the same
// blocks and is read by the next sync, and until then the head is
// incomplete and Selects read ClickHouse. When an hour closes, the head
// hands it to the cache, which serves it from then on.
//
// The head holds at most clickhouse.sample_cache_mib of samples (16 bytes
// each); beyond that it turns itself off and Selects read ClickHouse.
// Series with start timestamps are not held.

// headSeries is the samples of one series in the head, sorted by
// timestamp without duplicates.
type headSeries struct {
	ts   []int64
	vals []float64
	// unsorted is set when a sample arrived out of order.
	unsorted bool
	// st is set when the series has start timestamps: it is read from
	// ClickHouse.
	st bool
}

type head struct {
	maxSamples int

	mu     sync.RWMutex
	start  int64 // samples before it are not held
	series map[uint64]*headSeries
	n      int    // samples held
	seq    uint64 // counts changes
	// complete is set while the head holds every row of metric_samples
	// from start on that the last sync saw; off, once over budget.
	complete, off bool
	// syncedSeq is the cache's invalidation number when the last sync
	// completed the head.
	syncedSeq uint64
}

func newHead(maxSamples int) *head {
	return &head{maxSamples: maxSamples, series: map[uint64]*headSeries{}}
}

// sequence changes whenever the head does.
func (h *head) sequence() uint64 {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.seq
}

// covers reports whether the head holds every sample from t on.
func (h *head) covers(t int64) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.complete && !h.off && h.start <= t
}

// advance drops the samples before start. When the head was complete,
// it returns them as cache entries, one per series and hour, with the
// cache's invalidation number of the sync that completed it: an hour the
// head held whole need not be read again when it closes.
func (h *head) advance(start int64) (_ []*cacheEntry, seq uint64, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if start <= h.start {
		return nil, 0, nil
	}
	handOff := h.complete && !h.off
	h.start = start
	h.seq++
	var out []*cacheEntry
	for fp, s := range h.series {
		i := sort.Search(len(s.ts), func(i int) bool { return s.ts[i] >= start })
		if i == 0 {
			continue
		}
		if handOff && !s.st {
			es, err := windowEntries(fp, []floatSeg{{ts: s.ts[:i], vals: s.vals[:i]}}, windowOf(s.ts[0]), start)
			if err != nil {
				return nil, 0, err
			}
			out = append(out, es...)
		}
		h.n -= i
		if i == len(s.ts) {
			delete(h.series, fp)
			continue
		}
		s.ts = slices.Clone(s.ts[i:])
		s.vals = slices.Clone(s.vals[i:])
	}
	return out, h.syncedSeq, nil
}

// add appends rows (those before the head's start are skipped); past its
// budget, the head turns itself off.
func (h *head) add(fps []uint64, ts, sts []int64, vals []float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.off || len(fps) == 0 {
		return
	}
	h.seq++
	var touched []*headSeries
	for i, fp := range fps {
		t := ts[i]
		if t < h.start {
			continue
		}
		s := h.series[fp]
		if s == nil {
			s = &headSeries{}
			h.series[fp] = s
		}
		if sts[i] != 0 {
			s.st = true
		}
		if n := len(s.ts); n > 0 && t <= s.ts[n-1] {
			if !s.unsorted {
				touched = append(touched, s)
			}
			s.unsorted = true
		}
		s.ts = append(s.ts, t)
		s.vals = append(s.vals, vals[i])
		h.n++
	}
	for _, s := range touched {
		h.n -= s.sortDedup()
	}
	if h.n > h.maxSamples {
		h.off = true
		h.series, h.n = nil, 0
	}
}

// sortDedup sorts the samples and drops repeated timestamps, keeping the
// first one added; it returns how many it dropped.
func (s *headSeries) sortDedup() int {
	idx := make([]int, len(s.ts))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(s.ts[a], s.ts[b]) })
	ts := make([]int64, 0, len(idx))
	vals := make([]float64, 0, len(idx))
	for _, i := range idx {
		if n := len(ts); n > 0 && ts[n-1] == s.ts[i] {
			continue
		}
		ts = append(ts, s.ts[i])
		vals = append(vals, s.vals[i])
	}
	dropped := len(s.ts) - len(ts)
	s.ts, s.vals, s.unsorted = ts, vals, false
	return dropped
}

// appendTo appends the samples of fp in [mint, maxt] to ts and vals; st
// is set when the series has start timestamps (and nothing is appended).
func (h *head) appendTo(fp uint64, mint, maxt int64, ts []int64, vals []float64) (_ []int64, _ []float64, st bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	s := h.series[fp]
	if s == nil {
		return ts, vals, false
	}
	if s.st {
		return ts, vals, true
	}
	i := sort.Search(len(s.ts), func(i int) bool { return s.ts[i] >= mint })
	j := sort.Search(len(s.ts), func(i int) bool { return s.ts[i] > maxt })
	if i < j {
		ts = append(ts, s.ts[i:j]...)
		vals = append(vals, s.vals[i:j]...)
	}
	return ts, vals, false
}

// written adds the rows this process committed, when syncs are spaced
// by series_index_refresh and would add them only later.
func (h *head) written(fps []uint64, ts, sts []int64, vals []float64) {
	h.mu.RLock()
	synced := h.start != 0
	h.mu.RUnlock()
	if synced {
		h.add(fps, ts, sts, vals)
	}
}

// setComplete records whether the last sync read everything new, and
// the cache's invalidation number after it.
func (h *head) setComplete(ok bool, seq uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.complete != ok {
		h.seq++ // a Select that used the head must not use it now
	}
	h.complete, h.syncedSeq = ok, seq
}

// isOff reports whether the head turned itself off.
func (h *head) isOff() bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.off
}

// followHead reads into the head the rows from its start on of the given
// new parts of metric_samples.
func (s *Store) followHead(ctx context.Context, parts []tablePart) error {
	h := s.head
	h.mu.RLock()
	start := h.start
	h.mu.RUnlock()
	return s.byShard(parts, s.t.samples, func(conn driver.Conn, table string, parts []tablePart) error {
		return s.followHeadParts(ctx, conn, table, parts, start)
	})
}

func (s *Store) followHeadParts(ctx context.Context, conn driver.Conn, table string, parts []tablePart, start int64) error {
	h := s.head
	rows, err := conn.Query(ctx, fmt.Sprintf(
		"SELECT fingerprint, timestamp, value, start_timestamp FROM %s WHERE _part IN (%s) AND timestamp >= %d",
		table, partNames(parts), start))
	if err != nil {
		return s.wrap("read new samples", err)
	}
	defer rows.Close()
	const batch = 8192
	var (
		fps  = make([]uint64, 0, batch)
		ts   = make([]int64, 0, batch)
		sts  = make([]int64, 0, batch)
		vals = make([]float64, 0, batch)
		fp   uint64
		t    int64
		st   int64
		v    float64
	)
	for rows.Next() {
		if err := rows.Scan(&fp, &t, &v, &st); err != nil {
			return s.wrap("read new samples", err)
		}
		fps, ts, sts, vals = append(fps, fp), append(ts, t), append(sts, st), append(vals, v)
		if len(fps) == batch {
			h.add(fps, ts, sts, vals)
			fps, ts, sts, vals = fps[:0], ts[:0], sts[:0], vals[:0]
		}
	}
	if err := rows.Err(); err != nil {
		return s.wrap("read new samples", err)
	}
	h.add(fps, ts, sts, vals)
	return nil
}
