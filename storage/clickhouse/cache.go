package clickhouse

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/aiops-dev/aiops/storage"
)

// The sample cache.
//
// ClickHouse 18.16 pays about 0.1 ms for every stretch of rows it reads
// that is not next to the previous one: a selection of 120 series over
// 6 h reads 240 such stretches (a series' rows in each daily partition),
// most of its 25–30 ms, however few rows each holds. Dashboards ask the
// same ranges again on every refresh, and all but the newest hour of them
// is no longer written. So the float samples of closed hours are kept in
// memory, one Gorilla-encoded chunk (Prometheus's XOR chunk, about 1.4
// bytes per sample) per series and hour, and a Select reads from
// ClickHouse only what is not cached: the open hour (unless the head,
// head.go, holds it), and the series the cache has not seen. What the
// Select reads of closed hours fills the cache (least recently used
// chunks leave it beyond clickhouse.sample_cache_mib).
//
// Samples still arrive for closed hours (a queue replaying after an
// outage, a late scrape, another process backfilling), so the cache
// follows metric_samples the way the series index follows metric_series:
// by the block numbers of its parts. Before a Select uses the cache, a
// sync lists the table's active parts; every part holding a block number
// not seen before is new data, and its time range (min and max timestamp,
// read from that part alone) invalidates the cached hours it overlaps. A
// part too large to read cheaply, or merged away before its range could be
// read, invalidates its whole day instead. Days missing from the listing
// were dropped by retention and are forgotten.
//
// A read that fills the cache may race with an invalidation: it read
// before a late part committed, and the sync that saw the part ran before
// the fill. Every invalidation is numbered, and a fill only stores the
// hours that no invalidation has touched since the read began.
//
// The cache assumes, as the index does, that the table is written only
// through aiops (inserts and whole-partition drops; no ALTER … DELETE).
// Series with start timestamps, and native histograms, are not cached.

const (
	cacheWindow = int64(time.Hour / time.Millisecond)
	// cacheGrace is how long after its end an hour counts as closed: what
	// collectors buffer and batch arrives within it.
	cacheGrace = int64(5 * time.Minute / time.Millisecond)
	// cacheEntryOverhead is roughly what an entry costs besides its chunk
	// (the entry, its map slots, the chunk's slice header).
	cacheEntryOverhead = 120
	// maxRangeScanRows bounds the parts whose time range a sync reads
	// (about 5 ms per million rows); a larger new part invalidates its
	// whole day.
	maxRangeScanRows = 4 << 20
)

// windowOf is the start of the hour holding ms.
func windowOf(ms int64) int64 { return floorDiv(ms, cacheWindow) * cacheWindow }

type cacheKey struct {
	fp     uint64
	window int64
}

// cacheEntry is one series' float samples in one closed hour.
type cacheEntry struct {
	key        cacheKey
	chunk      []byte // an XOR chunk; never modified once stored
	n          int    // samples in it
	prev, next *cacheEntry
}

func (e *cacheEntry) size() int64 { return int64(len(e.chunk)) + cacheEntryOverhead }

// sampleCache holds the float samples of closed hours.
type sampleCache struct {
	maxBytes int64

	mu    sync.Mutex
	byWin map[int64]map[uint64]*cacheEntry // window → fingerprint → entry
	// head is the sentinel of the LRU list: head.next is the most
	// recently used entry.
	head  cacheEntry
	bytes int64
	// seq numbers invalidations. invalidWin and invalidDay hold the
	// number of the last one of each window and day, so a fill can tell
	// whether its read is still current.
	seq        uint64
	invalidWin map[int64]uint64
	invalidDay map[int32]uint64
	// present holds the days the last sync found in the table.
	present map[int32]bool
	// hits and misses count series lookups.
	hits, misses uint64

	// gate runs the syncs; read belongs to them.
	gate syncGate
	// read holds the block numbers seen, per shard (one on a single
	// server): unique across a table of one server.
	read readBlocks[int]
}

func newSampleCache(maxBytes int64, refresh time.Duration) *sampleCache {
	c := &sampleCache{
		maxBytes:   maxBytes,
		gate:       syncGate{refresh: refresh},
		byWin:      map[int64]map[uint64]*cacheEntry{},
		invalidWin: map[int64]uint64{},
		invalidDay: map[int32]uint64{},
		present:    map[int32]bool{},
		read:       readBlocks[int]{},
	}
	c.head.prev, c.head.next = &c.head, &c.head
	return c
}

func (c *sampleCache) unlink(e *cacheEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (c *sampleCache) pushFront(e *cacheEntry) {
	e.prev, e.next = &c.head, c.head.next
	c.head.next.prev = e
	c.head.next = e
}

func (c *sampleCache) remove(e *cacheEntry) {
	c.unlink(e)
	m := c.byWin[e.key.window]
	delete(m, e.key.fp)
	if len(m) == 0 {
		delete(c.byWin, e.key.window)
	}
	c.bytes -= e.size()
}

func (c *sampleCache) dropWindow(w int64) {
	for _, e := range c.byWin[w] {
		c.unlink(e)
		c.bytes -= e.size()
	}
	delete(c.byWin, w)
}

// sequence is the number of the last invalidation; a read that fills the
// cache takes it before it starts.
func (c *sampleCache) sequence() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seq
}

// changedSince reports whether any window in [from, to) was invalidated
// after invalidation number seq.
func (c *sampleCache) changedSince(seq uint64, from, to int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for w := from; w < to; w += cacheWindow {
		if c.invalidatedAfter(seq, w) {
			return true
		}
	}
	return false
}

func (c *sampleCache) invalidatedAfter(seq uint64, w int64) bool {
	return c.invalidWin[w] > seq || c.invalidDay[dayOf(w)] > seq
}

// invalidateRange drops the windows overlapping [mint, maxt].
func (c *sampleCache) invalidateRange(mint, maxt int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	if maxt-mint > 7*msPerDay {
		// A backfill over weeks: per day is cheaper.
		for d := dayOf(mint); d <= dayOf(maxt); d++ {
			c.invalidateDayLocked(d)
		}
		return
	}
	for w := windowOf(mint); w <= maxt; w += cacheWindow {
		c.invalidWin[w] = c.seq
		c.dropWindow(w)
	}
}

// invalidateDay drops every window of a day.
func (c *sampleCache) invalidateDay(day int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	c.invalidateDayLocked(day)
}

func (c *sampleCache) invalidateDayLocked(day int32) {
	c.invalidDay[day] = c.seq
	for w := int64(day) * msPerDay; w < int64(day+1)*msPerDay; w += cacheWindow {
		c.dropWindow(w)
	}
}

// keepDays records the days the table holds and forgets the others:
// their partitions were dropped.
func (c *sampleCache) keepDays(days map[int32]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.present = days
	for w := range c.byWin {
		if !days[dayOf(w)] {
			c.dropWindow(w)
		}
	}
	for w := range c.invalidWin {
		if !days[dayOf(w)] {
			delete(c.invalidWin, w)
		}
	}
	for d := range c.invalidDay {
		if !days[d] {
			delete(c.invalidDay, d)
		}
	}
}

// closedWindows returns the closed windows [from, to) that a Select of
// [start, end] at time now can use: every window that overlaps the range
// and ended cacheGrace before now. from == to when there are none.
func closedWindows(start, end, now int64) (from, to int64) {
	closedTo := windowOf(now - cacheGrace)
	// Open-ended selections, and far more windows than any dashboard
	// asks for, would only churn the cache.
	if start <= math.MinInt64/2 || start >= closedTo || min(end, closedTo)-start > 31*msPerDay {
		return 0, 0
	}
	from = windowOf(start)
	to = closedTo
	if end < closedTo {
		to = windowOf(end) + cacheWindow
	}
	return from, to
}

// lookup appends the cached chunks of fp for the windows [from, to), in
// order, to out, or returns out unchanged and false when any is missing.
func (c *sampleCache) lookup(fp uint64, from, to int64, out []*cacheEntry) (_ []*cacheEntry, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(out)
	for w := from; w < to; w += cacheWindow {
		e := c.byWin[w][fp]
		if e == nil {
			c.misses++
			return out[:n], false
		}
		out = append(out, e)
	}
	for _, e := range out[n:] {
		c.unlink(e)
		c.pushFront(e)
	}
	c.hits++
	return out, true
}

// fill stores the chunks read after invalidation number seq, except
// those of windows invalidated since and of days the table does not hold.
func (c *sampleCache) fill(seq uint64, entries []*cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range entries {
		w := e.key.window
		if c.invalidatedAfter(seq, w) || !c.present[dayOf(w)] {
			continue
		}
		m := c.byWin[w]
		if m == nil {
			m = map[uint64]*cacheEntry{}
			c.byWin[w] = m
		}
		if old := m[e.key.fp]; old != nil {
			c.remove(old)
			if len(m) == 0 {
				c.byWin[w] = m
			}
		}
		m[e.key.fp] = e
		c.pushFront(e)
		c.bytes += e.size()
	}
	for c.bytes > c.maxBytes && c.head.prev != &c.head {
		c.remove(c.head.prev)
	}
}

// cacheStats describes a sample cache.
type cacheStats struct {
	entries      int
	bytes        int64
	hits, misses uint64
}

func (c *sampleCache) stats() cacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := cacheStats{bytes: c.bytes, hits: c.hits, misses: c.misses}
	for _, m := range c.byWin {
		st.entries += len(m)
	}
	return st
}

// encodeWindow encodes the samples of seg in [w, w+cacheWindow) as an
// entry. seg is sorted without duplicate timestamps.
func encodeWindow(fp uint64, w int64, ts []int64, vals []float64) (*cacheEntry, error) {
	chk := chunkenc.NewXORChunk()
	app, err := chk.Appender()
	if err != nil {
		return nil, err
	}
	for i, t := range ts {
		app.Append(0, t, vals[i])
	}
	b := chk.Bytes()
	return &cacheEntry{key: cacheKey{fp, w}, chunk: b[:len(b):len(b)], n: len(ts)}, nil
}

// decodeInto appends the samples of e in [mint, maxt] to ts and vals.
func (e *cacheEntry) decodeInto(mint, maxt int64, ts []int64, vals []float64) ([]int64, []float64, error) {
	chk, err := chunkenc.FromData(chunkenc.EncXOR, e.chunk)
	if err != nil {
		return ts, vals, err
	}
	it := chk.Iterator(nil)
	for it.Next() == chunkenc.ValFloat {
		t, v := it.At()
		if t < mint {
			continue
		}
		if t > maxt {
			break
		}
		ts = append(ts, t)
		vals = append(vals, v)
	}
	return ts, vals, it.Err()
}

// syncCache brings the cache up to date with metric_samples (see the top
// of this file) when use says a Select will use it, unless a sync that
// began after the caller asked (or within the refresh interval) has done
// so already.
func (s *Store) syncCache(ctx context.Context, use bool) error {
	if s.cache == nil || !use {
		return nil
	}
	return s.cache.gate.run(func() error { return s.readSampleChanges(ctx, s.now()) })
}

// readSampleChanges reads what metric_samples gained or lost since the
// last sync: invalidates the cache's hours that changed, forgets dropped
// days, reads new rows into the head and moves it to the hour open at
// now, the store's clock as the sync began.
func (s *Store) readSampleChanges(ctx context.Context, now time.Time) error {
	c := s.cache
	h := s.head
	closed, seq, err := h.advance(windowOf(now.UnixMilli() - cacheGrace))
	if err != nil {
		return fmt.Errorf("clickhouse: hand the closed hour to the cache: %w", err)
	}
	c.fill(seq, closed)
	parts, err := s.listParts(ctx, samplesTable)
	if err != nil {
		return err
	}
	days := map[int32]bool{}
	var unread, scan []tablePart
	for _, p := range parts {
		days[p.day] = true
		if c.read.covers(p.shard, p) {
			continue
		}
		unread = append(unread, p)
		if p.rows <= s.maxScanRows {
			scan = append(scan, p)
		}
	}
	complete := true
	if len(unread) > 0 {
		ranges, err := s.partTimeRanges(ctx, scan)
		if err != nil {
			return err
		}
		// A part merged away before the head read it is read again in
		// its successor, by the next sync.
		var headRead map[string]bool
		if !h.isOff() {
			if err := s.followHead(ctx, unread); err != nil {
				return err
			}
			if h.isOff() {
				s.logger.Warn("clickhouse head over budget: the open hour is read from ClickHouse from now on; raise clickhouse.sample_cache_mib to keep it",
					"max_samples", h.maxSamples)
			}
			after, err := s.listParts(ctx, samplesTable)
			if err != nil {
				return err
			}
			headRead = partKeys(after)
		}
		for _, p := range unread {
			if r, ok := ranges[p.key()]; ok {
				c.invalidateRange(r[0], r[1])
			} else {
				// Too large to scan, or merged away since the listing:
				// where its new rows lie is unknown.
				c.invalidateDay(p.day)
			}
			if headRead != nil && !headRead[p.key()] {
				complete = false
				continue
			}
			c.read.add(p.shard, p)
		}
	}
	c.keepDays(days)
	h.setComplete(complete, c.sequence())
	return nil
}

// tablePart is one active part of metric_series or metric_samples.
type tablePart struct {
	shard              int    // index in shardsOf
	name               string // unique within its shard's table
	day                int32  // its partition
	minBlock, maxBlock int64
	rows               uint64
}

// key names the part uniquely across shards.
func (p tablePart) key() string { return strconv.Itoa(p.shard) + "/" + p.name }

// partKeys is the set of the parts' keys.
func partKeys(parts []tablePart) map[string]bool {
	keys := make(map[string]bool, len(parts))
	for _, p := range parts {
		keys[p.key()] = true
	}
	return keys
}

// listParts lists the active parts of a table of the store's database:
// of its _local table on every shard in cluster mode.
func (s *Store) listParts(ctx context.Context, table string) ([]tablePart, error) {
	var out []tablePart
	for i, sh := range s.shardsOf() {
		_, local, _ := strings.Cut(s.localOf(s.t.db+"."+quoteIdent(table), sh.t), ".")
		ps, err := s.listShardParts(ctx, sh.conn, unquoteIdent(local))
		if err != nil {
			return nil, err
		}
		for j := range ps {
			ps[j].shard = i
		}
		out = append(out, ps...)
	}
	return out, nil
}

func (s *Store) listShardParts(ctx context.Context, conn driver.Conn, table string) ([]tablePart, error) {
	rows, err := conn.Query(ctx, fmt.Sprintf(
		"SELECT partition, name, min_block_number, max_block_number, rows FROM system.parts WHERE database = %s AND table = %s AND active",
		quote(s.cfg.Database), quote(table)))
	if err != nil {
		return nil, s.wrap("list parts of "+table, err)
	}
	defer rows.Close()
	var out []tablePart
	for rows.Next() {
		var (
			p         tablePart
			partition string
		)
		if err := rows.Scan(&partition, &p.name, &p.minBlock, &p.maxBlock, &p.rows); err != nil {
			return nil, s.wrap("list parts of "+table, err)
		}
		day, err := parsePartition(partition, 32)
		if err != nil {
			return nil, fmt.Errorf("clickhouse: %s part %s: %w", table, p.name, err)
		}
		p.day = int32(day)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("list parts of "+table, err)
	}
	return out, nil
}

// partNames lists the names of parts for an IN clause.
func partNames(parts []tablePart) string {
	names := make([]string, len(parts))
	for i, p := range parts {
		names[i] = quote(p.name)
	}
	return strings.Join(names, ", ")
}

// byShard groups parts by the shard that holds them, and calls f with
// that shard's connection and the name of its table for table (one of
// s.t), until f fails.
func (s *Store) byShard(parts []tablePart, table string, f func(conn driver.Conn, local string, parts []tablePart) error) error {
	shards := s.shardsOf()
	groups := map[int][]tablePart{}
	for _, p := range parts {
		groups[p.shard] = append(groups[p.shard], p)
	}
	for i, ps := range groups {
		if i >= len(shards) {
			return fmt.Errorf("clickhouse: part %s of shard %d, which the cluster no longer has: %w", ps[0].name, i, storage.ErrUnavailable)
		}
		if err := f(shards[i].conn, s.localOf(table, shards[i].t), ps); err != nil {
			return err
		}
	}
	return nil
}

// partTimeRanges reads the first and last timestamp of each part of
// metric_samples named; parts merged away meanwhile are missing from the
// answer.
func (s *Store) partTimeRanges(ctx context.Context, parts []tablePart) (map[string][2]int64, error) {
	out := map[string][2]int64{}
	err := s.byShard(parts, s.t.samples, func(conn driver.Conn, table string, parts []tablePart) error {
		rows, err := conn.Query(ctx, fmt.Sprintf(
			"SELECT _part, min(timestamp), max(timestamp) FROM %s WHERE _part IN (%s) GROUP BY _part",
			table, partNames(parts)))
		if err != nil {
			return s.wrap("read time ranges of new parts", err)
		}
		defer rows.Close()
		for rows.Next() {
			var (
				name     string
				min, max int64
			)
			if err := rows.Scan(&name, &min, &max); err != nil {
				return s.wrap("read time ranges of new parts", err)
			}
			out[tablePart{shard: parts[0].shard, name: name}.key()] = [2]int64{min, max}
		}
		if err := rows.Err(); err != nil {
			return s.wrap("read time ranges of new parts", err)
		}
		return nil
	})
	return out, err
}
