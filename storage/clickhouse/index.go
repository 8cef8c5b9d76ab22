package clickhouse

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

// The series index.
//
// ClickHouse 18.16 has no secondary indexes, so selecting series by label
// in SQL scans every series row of the metric and evaluates the matchers
// on each, for every Select: about 9 ms for a metric of 2,000 series, and
// most of a ClickHouse alert-rule round. The index keeps a copy of
// metric_series in memory, with postings per label value, as Prometheus's
// TSDB does for its head block, and answers the series part of Select,
// LabelNames and LabelValues without a query.
//
// It follows the table by its parts. A MergeTree part is immutable and
// carries the range of block numbers it was made of: an INSERT makes a
// part of one new block number, a merge makes a part covering the ranges
// of the parts it replaces. The index remembers which block numbers it
// has read; a sync lists the table's active parts (system.parts, held in
// the server's memory) and reads only the parts that hold a block number
// it has not read. Inserts that commit out of order, merges and other
// writers' inserts are all covered, and re-reading a row is harmless
// (rows are merged by fingerprint). A part is only counted as read if it
// was still active after the read: parts never come back, so it was in
// the read's snapshot; one merged away in between is found again in the
// part that replaced it. Partitions (days) missing from the listing were
// dropped by retention, here or by another process, and are forgotten.
//
// By default a Select syncs first (one small query when nothing changed;
// concurrent Selects share a sync), so a query sees every series committed
// before it started, from any writer. clickhouse.series_index_refresh
// trades that for fewer queries: syncs then happen at most that often,
// and series written by other processes show up that much later (this
// process's own writes are added as they commit).

// indexEntry is one series in the index.
type indexEntry struct {
	fp    uint64
	kinds uint8
	ls    labels.Labels
	days  []int32 // sorted
}

func (e *indexEntry) activeIn(minDay, maxDay int32) bool {
	i, _ := slices.BinarySearch(e.days, minDay)
	return i < len(e.days) && e.days[i] <= maxDay
}

func (e *indexEntry) addDay(day int32) {
	i, found := slices.BinarySearch(e.days, day)
	if !found {
		e.days = slices.Insert(e.days, i, day)
	}
}

// seriesIndex is the in-memory copy of metric_series.
type seriesIndex struct {
	mu       sync.RWMutex
	byFP     map[uint64]*indexEntry
	postings map[string]map[string][]*indexEntry // label name → value → series
	gen      uint64                              // counts changes
	// active is set by the first sync: until a process queries, it
	// keeps nothing (an ingester never does).
	active bool

	// gate runs the syncs; read belongs to them.
	gate syncGate
	read readBlocks[shardDay] // partition (day) of a shard → block numbers read
}

func newSeriesIndex(refresh time.Duration) *seriesIndex {
	return &seriesIndex{
		gate:     syncGate{refresh: refresh},
		byFP:     map[uint64]*indexEntry{},
		postings: map[string]map[string][]*indexEntry{},
		read:     readBlocks[shardDay]{},
	}
}

// add records a series row: one this process wrote, or read from the
// table. ls is only called for a series the index does not hold yet.
func (ix *seriesIndex) add(fp uint64, day int32, kinds uint8, ls func() labels.Labels) {
	e, ok := ix.byFP[fp]
	if ok && e.kinds&kinds == kinds && e.activeIn(day, day) {
		return // nothing new
	}
	ix.gen++
	if !ok {
		e = &indexEntry{fp: fp, ls: ls()}
		ix.byFP[fp] = e
		e.ls.Range(func(l labels.Label) {
			vals := ix.postings[l.Name]
			if vals == nil {
				vals = map[string][]*indexEntry{}
				ix.postings[l.Name] = vals
			}
			vals[l.Value] = append(vals[l.Value], e)
		})
	}
	e.kinds |= kinds
	e.addDay(day)
}

// written adds the series rows an appender of this process committed.
func (ix *seriesIndex) written(rows []pendingSeries) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if !ix.active {
		return
	}
	for _, r := range rows {
		ix.add(r.key.fp, r.key.day, r.key.kind, func() labels.Labels { return r.ls })
	}
}

// forgetDays drops the days not in keep (partitions dropped by
// retention), and series left without a day.
func (ix *seriesIndex) forgetDays(keep map[int32]bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.gen++
	gone := map[*indexEntry]bool{}
	for fp, e := range ix.byFP {
		e.days = slices.DeleteFunc(e.days, func(d int32) bool { return !keep[d] })
		if len(e.days) == 0 {
			delete(ix.byFP, fp)
			gone[e] = true
		}
	}
	if len(gone) == 0 {
		return
	}
	for name, vals := range ix.postings {
		for v, list := range vals {
			list = slices.DeleteFunc(list, func(e *indexEntry) bool { return gone[e] })
			if len(list) == 0 {
				delete(vals, v)
			} else {
				vals[v] = list
			}
		}
		if len(vals) == 0 {
			delete(ix.postings, name)
		}
	}
}

// match returns the series active in [minDay, maxDay] that match every
// matcher, sorted by labels, and the index's generation they come from.
// limit > 0 fails with ErrLimit past it.
func (ix *seriesIndex) match(minDay, maxDay int32, matchers []*labels.Matcher, limit int) ([]seriesInfo, uint64, error) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var out []seriesInfo
	err := ix.each(minDay, maxDay, matchers, func(e *indexEntry) error {
		if limit > 0 && len(out) >= limit {
			return fmt.Errorf("query exceeds clickhouse.max_series=%d: more series match: %w", limit, ErrLimit)
		}
		out = append(out, seriesInfo{fp: e.fp, kinds: e.kinds, ls: e.ls})
		return nil
	})
	if err != nil {
		return nil, ix.gen, err
	}
	sort.Slice(out, func(i, j int) bool { return labels.Compare(out[i].ls, out[j].ls) < 0 })
	return out, ix.gen, nil
}

// generation changes whenever the index does.
func (ix *seriesIndex) generation() uint64 {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.gen
}

// labelValues calls add with the values of a label (names when name is
// "") among the matching series active in [minDay, maxDay], in no
// particular order and possibly more than once.
func (ix *seriesIndex) labelValues(minDay, maxDay int32, name string, matchers []*labels.Matcher, add func(string)) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if name != "" && len(matchers) == 0 {
		// What Grafana's variables ask most: straight from the postings.
		for v, list := range ix.postings[name] {
			for _, e := range list {
				if e.activeIn(minDay, maxDay) {
					add(v)
					break
				}
			}
		}
		return
	}
	_ = ix.each(minDay, maxDay, matchers, func(e *indexEntry) error {
		if name == "" {
			e.ls.Range(func(l labels.Label) { add(l.Name) })
		} else if v := e.ls.Get(name); v != "" {
			add(v)
		}
		return nil
	})
}

// each calls f with every series active in [minDay, maxDay] that matches
// every matcher, until f fails. The caller holds ix.mu.
func (ix *seriesIndex) each(minDay, maxDay int32, matchers []*labels.Matcher, f func(*indexEntry) error) error {
	check := newMatcherMemo(matchers)
	visit := func(e *indexEntry) error {
		if !e.activeIn(minDay, maxDay) || !check.matches(e.ls) {
			return nil
		}
		return f(e)
	}
	if cands, ok := ix.candidates(matchers); ok {
		for _, e := range cands {
			if err := visit(e); err != nil {
				return err
			}
		}
		return nil
	}
	for _, e := range ix.byFP {
		if err := visit(e); err != nil {
			return err
		}
	}
	return nil
}

// candidates narrows the series to look at with one matcher that a
// series can only pass by having the label: the equality matcher with the
// shortest postings list, else the first such regular expression or
// inequality, whose postings are the union over the label's matching
// values. ok is false when no matcher narrows (every one matches the
// empty value).
func (ix *seriesIndex) candidates(matchers []*labels.Matcher) (_ []*indexEntry, ok bool) {
	var best []*indexEntry
	found := false
	for _, m := range matchers {
		if m.Type != labels.MatchEqual || m.Value == "" {
			continue
		}
		list := ix.postings[m.Name][m.Value]
		if !found || len(list) < len(best) {
			best, found = list, true
		}
	}
	if found {
		return best, true
	}
	for _, m := range matchers {
		if m.Matches("") {
			continue
		}
		var union []*indexEntry
		for v, list := range ix.postings[m.Name] {
			if m.Matches(v) {
				union = append(union, list...)
			}
		}
		// A series has one value per label, so the lists are disjoint.
		return union, true
	}
	return nil, false
}

// matcherMemo checks label sets against matchers, remembering the answer
// of each regular expression per value: a selection sees the same few
// values over and over.
type matcherMemo struct {
	matchers []*labels.Matcher
	memo     []map[string]bool
}

func newMatcherMemo(matchers []*labels.Matcher) *matcherMemo {
	c := &matcherMemo{matchers: matchers, memo: make([]map[string]bool, len(matchers))}
	for i, m := range matchers {
		if m.Type == labels.MatchRegexp || m.Type == labels.MatchNotRegexp {
			c.memo[i] = map[string]bool{}
		}
	}
	return c
}

func (c *matcherMemo) matches(ls labels.Labels) bool {
	for i, m := range c.matchers {
		v := ls.Get(m.Name)
		if c.memo[i] == nil {
			if !m.Matches(v) {
				return false
			}
			continue
		}
		ok, seen := c.memo[i][v]
		if !seen {
			ok = m.Matches(v)
			c.memo[i][v] = ok
		}
		if !ok {
			return false
		}
	}
	return true
}

// syncIndex brings the index up to date with metric_series, unless a sync
// that began after the caller asked (or within the refresh interval) has
// done so already.
func (s *Store) syncIndex(ctx context.Context) error {
	return s.index.gate.run(func() error { return s.readSeriesChanges(ctx) })
}

// readSeriesChanges reads what metric_series gained or lost since the
// last sync.
func (s *Store) readSeriesChanges(ctx context.Context) error {
	ix := s.index
	// From here on commits are added as they happen; the ones before are
	// in the parts listed next.
	ix.mu.Lock()
	ix.active = true
	ix.mu.Unlock()
	parts, err := s.listParts(ctx, seriesTable)
	if err != nil {
		return err
	}
	days := map[int32]bool{}
	shardDays := map[shardDay]bool{}
	var unread []tablePart
	for _, p := range parts {
		days[p.day] = true
		sd := shardDay{p.shard, p.day}
		shardDays[sd] = true
		if !ix.read.covers(sd, p) {
			unread = append(unread, p)
		}
	}
	if len(unread) > 0 {
		if err := s.readSeriesParts(ctx, unread); err != nil {
			return err
		}
		// Only parts still active now were certainly in the read's
		// snapshot.
		after, err := s.listParts(ctx, seriesTable)
		if err != nil {
			return err
		}
		active := partKeys(after)
		for _, p := range unread {
			if !active[p.key()] {
				continue
			}
			ix.read.add(shardDay{p.shard, p.day}, p)
		}
	}
	dropped := false
	for sd := range ix.read {
		if !shardDays[sd] {
			delete(ix.read, sd)
			dropped = true
		}
	}
	if dropped {
		ix.forgetDays(days)
	}
	return nil
}

// shardDay is a daily partition of one shard's table.
type shardDay struct {
	shard int
	day   int32
}

// readSeriesParts adds the rows of the given parts to the index.
func (s *Store) readSeriesParts(ctx context.Context, parts []tablePart) error {
	return s.byShard(parts, s.t.series, func(conn driver.Conn, table string, parts []tablePart) error {
		return s.readSeriesPartsOf(ctx, conn, table, parts)
	})
}

func (s *Store) readSeriesPartsOf(ctx context.Context, conn driver.Conn, table string, parts []tablePart) error {
	rows, err := conn.Query(ctx, fmt.Sprintf(
		"SELECT fingerprint, day, kinds, metric_name, label_names, label_values FROM %s WHERE _part IN (%s)",
		table, partNames(parts)))
	if err != nil {
		return s.wrap("read series", err)
	}
	defer rows.Close()
	var (
		fp     uint64
		day    int32
		kinds  uint8
		name   string
		lnames []string
		lvals  []string
		b      labels.ScratchBuilder
		bad    error
	)
	toLabels := func() labels.Labels {
		if len(lnames) != len(lvals) {
			bad = fmt.Errorf("clickhouse: series %d has %d label names and %d values", fp, len(lnames), len(lvals))
		}
		b.Reset()
		if name != "" {
			b.Add(model.MetricNameLabel, name)
		}
		for i := range min(len(lnames), len(lvals)) {
			b.Add(lnames[i], lvals[i])
		}
		b.Sort()
		return b.Labels()
	}
	ix := s.index
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for rows.Next() {
		if err := rows.Scan(&fp, &day, &kinds, &name, &lnames, &lvals); err != nil {
			return s.wrap("read series", err)
		}
		ix.add(fp, day, kinds, toLabels)
		if bad != nil {
			return bad
		}
	}
	if err := rows.Err(); err != nil {
		return s.wrap("read series", err)
	}
	return nil
}

// readBlocks is what the syncs of a table have read of its parts: the
// block numbers, by shard (and day, for the series index). A part whose
// blocks are covered was read whole and is not read again.
type readBlocks[K comparable] map[K]*blockRanges

// covers reports whether part p, under key k, was read.
func (m readBlocks[K]) covers(k K, p tablePart) bool {
	r := m[k]
	return r != nil && r.covers(p.minBlock, p.maxBlock)
}

// add records part p, under key k, as read.
func (m readBlocks[K]) add(k K, p tablePart) {
	r := m[k]
	if r == nil {
		r = &blockRanges{}
		m[k] = r
	}
	r.add(p.minBlock, p.maxBlock)
}

// blockRanges is a set of block numbers as sorted, disjoint, non-adjacent
// closed ranges.
type blockRanges struct {
	r [][2]int64
}

func (b *blockRanges) covers(lo, hi int64) bool {
	i := sort.Search(len(b.r), func(i int) bool { return b.r[i][1] >= lo })
	return i < len(b.r) && b.r[i][0] <= lo && hi <= b.r[i][1]
}

func (b *blockRanges) add(lo, hi int64) {
	// The ranges that overlap or touch [lo, hi] are merged with it.
	i := sort.Search(len(b.r), func(i int) bool { return b.r[i][1] >= lo-1 })
	j := i
	for j < len(b.r) && b.r[j][0] <= hi+1 {
		lo, hi = min(lo, b.r[j][0]), max(hi, b.r[j][1])
		j++
	}
	b.r = slices.Replace(b.r, i, j, [2]int64{lo, hi})
}
