package clickhouse

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/aiops-dev/aiops/internal/testutil"
)

const hour = int64(time.Hour / time.Millisecond)

func TestClosedWindows(t *testing.T) {
	now := 100*hour + 30*60*1000 // 100:30
	for _, tc := range []struct {
		name             string
		start, end       int64
		wantFrom, wantTo int64
	}{
		{"the last 6 h", now - 6*hour, now, 94 * hour, 100 * hour},
		{"a past range ending mid-hour", 90*hour + 10, 92*hour + 10, 90 * hour, 93 * hour},
		{"a range ending on a window's first millisecond", 90 * hour, 92 * hour, 90 * hour, 93 * hour},
		{"within the open hour", now - 10*60*1000, now, 0, 0},
		{"in the future", now + hour, now + 2*hour, 0, 0},
		{"open-ended", math.MinInt64, math.MaxInt64, 0, 0},
		{"more than a month", now - 40*24*hour, now, 0, 0},
		{"before the epoch", -3*hour + 1, -hour - 1, -3 * hour, -hour},
	} {
		from, to := closedWindows(tc.start, tc.end, now)
		if from != tc.wantFrom || to != tc.wantTo {
			t.Errorf("%s: closedWindows(%d, %d) = [%d, %d), want [%d, %d)", tc.name, tc.start, tc.end, from, to, tc.wantFrom, tc.wantTo)
		}
	}
	// Just after the hour, the hour before is not closed yet.
	if from, to := closedWindows(90*hour, 100*hour+60_000, 100*hour+60_000); from != 90*hour || to != 99*hour {
		t.Errorf("within the grace: [%d, %d), want [%d, %d)", from, to, 90*hour, 99*hour)
	}
}

func TestWindowEntries(t *testing.T) {
	// Two segments (two runs of rows), the second starting inside the
	// second hour; the third hour is empty.
	segs := []floatSeg{
		{ts: []int64{0, 1000, hour - 1, hour}, vals: []float64{1, 2, 3, 4}},
		{ts: []int64{hour + 10, 3*hour + 5}, vals: []float64{5, math.Float64frombits(value.StaleNaN)}},
	}
	es, err := windowEntries(7, segs, 0, 4*hour)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]int64{{0, 1000, hour - 1}, {hour, hour + 10}, nil, {3*hour + 5}}
	if len(es) != len(want) {
		t.Fatalf("%d entries, want %d", len(es), len(want))
	}
	for i, e := range es {
		if e.key != (cacheKey{7, int64(i) * hour}) || e.n != len(want[i]) {
			t.Fatalf("entry %d: key %v with %d samples", i, e.key, e.n)
		}
		ts, vals, err := e.decodeInto(math.MinInt64, math.MaxInt64, nil, nil)
		if err != nil || !slices.Equal(ts, want[i]) {
			t.Fatalf("entry %d decodes to %v (%v), want %v", i, ts, err, want[i])
		}
		if i == 3 && !value.IsStaleNaN(vals[0]) {
			t.Fatalf("the staleness marker came back as %v", vals[0])
		}
	}
	// Decoding trims to the range asked for.
	ts, _, _ := es[0].decodeInto(1, hour-1, nil, nil)
	if !slices.Equal(ts, []int64{1000, hour - 1}) {
		t.Fatalf("trimmed: %v", ts)
	}
}

func TestSampleCacheFillEvictInvalidate(t *testing.T) {
	entry := func(fp uint64, w int64) *cacheEntry {
		e, err := encodeWindow(fp, w, []int64{w, w + 15000}, []float64{1, 2})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	c := newSampleCache(entry(1, 0).size()+entry(1, hour).size()+entry(2, 0).size(), 0)
	c.keepDays(map[int32]bool{0: true})

	seq := c.sequence()
	c.fill(seq, []*cacheEntry{entry(1, 0), entry(1, hour), entry(2, 0)})
	if _, ok := c.lookup(1, 0, 2*hour, nil); !ok {
		t.Fatal("filled windows are missing")
	}
	// A fourth entry evicts the least recently used one: series 2.
	c.fill(seq, []*cacheEntry{entry(3, 0)})
	if st := c.stats(); st.entries != 3 || st.bytes != c.maxBytes {
		t.Fatalf("after eviction: %+v", st)
	}
	if _, ok := c.lookup(2, 0, hour, nil); ok {
		t.Fatal("the least recently used entry was kept")
	}

	// A read that began before an invalidation of its window does not
	// fill it; other windows it read are fine.
	c.invalidateRange(hour+5, hour+6)
	if _, ok := c.lookup(1, hour, 2*hour, nil); ok {
		t.Fatal("the invalidated window is still cached")
	}
	c.fill(seq, []*cacheEntry{entry(1, hour), entry(4, 2*hour)})
	if _, ok := c.lookup(1, hour, 2*hour, nil); ok {
		t.Fatal("a read from before the invalidation filled the window")
	}
	if _, ok := c.lookup(4, 2*hour, 3*hour, nil); !ok {
		t.Fatal("a window that was not invalidated was not filled")
	}
	if !c.changedSince(seq, 0, 2*hour) || c.changedSince(seq, 2*hour, 3*hour) {
		t.Fatal("changedSince does not tell the invalidated window")
	}
	seq = c.sequence()
	c.fill(seq, []*cacheEntry{entry(1, hour)})
	if _, ok := c.lookup(1, hour, 2*hour, nil); !ok {
		t.Fatal("a read after the invalidation did not fill")
	}

	// Whole days, and days the table no longer holds.
	c.invalidateDay(0)
	if st := c.stats(); st.entries != 0 || st.bytes != 0 {
		t.Fatalf("after invalidating the day: %+v", st)
	}
	seq = c.sequence()
	c.fill(seq, []*cacheEntry{entry(1, 0), entry(1, 24*hour)})
	if st := c.stats(); st.entries != 1 {
		t.Fatalf("filled a day the table does not hold: %+v", st)
	}
	c.keepDays(map[int32]bool{})
	if st := c.stats(); st.entries != 0 {
		t.Fatalf("after the day was dropped: %+v", st)
	}
}

// cacheData writes n series × 3 h at 15 s, starting at base.
func cacheData(t *testing.T, s *Store, base int64, n int) {
	t.Helper()
	app := s.AppenderV2(ctx)
	for i := range n {
		ls := labels.FromStrings("__name__", "m", "i", fmt.Sprint(i))
		for ts := base; ts < base+3*hour; ts += 15000 {
			if _, err := app.Append(0, ls, 0, ts, float64(ts/1000+int64(i)), nil, nil, promstorage.AOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	commit(t, app)
}

// TestSampleCacheMatchesClickHouse checks that Selects served from the
// cache return what ClickHouse holds, for ranges that start and end
// inside hours, cold and warm.
func TestSampleCacheMatchesClickHouse(t *testing.T) {
	cfg := testConfig(t)
	clock := testutil.NewClock(testutil.Epoch)
	cached := openAt(t, cfg, clock)
	direct := openAt(t, cfg, clock, func(c *Config) { c.SampleCacheMiB = 0 })
	base := windowOf(clock.Now().Add(-50*time.Hour).UnixMilli()) + 20*60*1000 // at :20
	cacheData(t, cached, base, 5)
	// A counter with start timestamps, which the cache leaves to
	// ClickHouse.
	app := cached.AppenderV2(ctx)
	for ts := base; ts < base+3*hour; ts += 15000 {
		if _, err := app.Append(0, labels.FromStrings("__name__", "m", "i", "st"), base-1000, ts, float64(ts), nil, nil, promstorage.AOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	commit(t, app)

	ranges := [][2]int64{
		{base, base + 3*hour},
		{base + 7*60*1000, base + 2*hour + 1},
		{base - hour, base + 30*60*1000},
		{base + hour, base + hour + 1},
		{base + 40*60*1000, base + 40*60*1000 + 15000},
		{base, base + 3*hour},
	}
	for round := range 2 {
		for _, r := range ranges {
			hints := &promstorage.SelectHints{Start: r[0], End: r[1]}
			got, _ := readAll(t, newQuerier(t, cached, r[0], r[1]), hints, eq("__name__", "m"))
			want, _ := readAll(t, newQuerier(t, direct, r[0], r[1]), hints, eq("__name__", "m"))
			if len(want) != 6 && r[1]-r[0] > 15000 {
				t.Fatalf("range %v: ClickHouse returned %d series", r, len(want))
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round %d, range [%d, %d]: the cache returned\n%v\nClickHouse\n%v", round, r[0]-base, r[1]-base, got, want)
			}
		}
	}
	// 5 series × the 4 hours holding data, and the empty hour before,
	// which is on the same day (the cache keeps only days the table has).
	want := 5 * 5
	if dayOf(base-hour) != dayOf(base) {
		t.Fatal("the hour before the data is on another day")
	}
	if st := cached.cache.stats(); st.entries != want || st.hits == 0 {
		t.Fatalf("cache after two rounds: %+v, want %d entries and hits", st, want)
	}
}

// TestSampleCacheFollowsOtherWriters checks that a reader's cache sees
// late samples written by another store (another process) into cached
// hours, and days dropped by the other's retention; and that a reader
// with a refresh interval sees its own late samples at once.
func TestSampleCacheFollowsOtherWriters(t *testing.T) {
	for _, scan := range []bool{true, false} {
		t.Run(fmt.Sprintf("scan=%v", scan), func(t *testing.T) {
			// Retention stays off but for the store that applies it:
			// each store applies it once as it opens, which could drop the
			// old day before the test reads it.
			cfg := testConfig(t)
			clock := testutil.NewClock(testutil.Epoch)
			open := func(mutate ...func(*Config)) *Store {
				s := openAt(t, cfg, clock, mutate...)
				if !scan {
					// Every new part then invalidates its whole day.
					s.maxScanRows = 0
				}
				return s
			}
			writer, reader := open(), open()
			now := clock.Now()
			old := windowOf(now.Add(-20*24*time.Hour).UnixMilli()) + 24*hour
			recent := windowOf(now.Add(-30 * time.Hour).UnixMilli())
			cacheData(t, writer, old, 2)
			cacheData(t, writer, recent, 2)

			count := func(mint, maxt int64) int {
				got, _ := readAll(t, newQuerier(t, reader, mint, maxt), nil, eq("__name__", "m"))
				n := 0
				for _, ss := range got {
					n += len(ss)
				}
				return n
			}
			const perSeries = 3 * 3600 / 15
			for range 2 {
				if n := count(recent, recent+3*hour); n != 2*perSeries {
					t.Fatalf("%d samples, want %d", n, 2*perSeries)
				}
			}
			// 2 series × 4 hours: the range ends on the fourth hour's
			// first millisecond.
			if st := reader.cache.stats(); st.hits != 2 || st.entries != 2*4 {
				t.Fatalf("the second read did not come from the cache: %+v", st)
			}

			// A late sample inside a cached hour, and a replay of one
			// already there (not counted twice).
			late := recent + hour + 7000
			app := writer.AppenderV2(ctx)
			for _, ts := range []int64{late, recent + hour} {
				if _, err := app.Append(0, labels.FromStrings("__name__", "m", "i", "0"), 0, ts, 1, nil, nil, promstorage.AOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			commit(t, app)
			if n := count(recent, recent+3*hour); n != 2*perSeries+1 {
				t.Fatalf("after a late sample: %d samples, want %d", n, 2*perSeries+1)
			}

			// Merging parts adds nothing; the cache keeps its hours.
			if err := writer.Merge(ctx); err != nil {
				t.Fatal(err)
			}
			if n := count(recent, recent+3*hour); n != 2*perSeries+1 {
				t.Fatalf("after merging: %d samples, want %d", n, 2*perSeries+1)
			}

			// Another store's retention drops the old day, which the
			// reader has cached.
			if n := count(old, old+3*hour); n != 2*perSeries {
				t.Fatalf("old day: %d samples, want %d", n, 2*perSeries)
			}
			pruner := open(func(c *Config) { c.Retention = model.Duration(10 * 24 * time.Hour) })
			if _, err := pruner.ApplyRetention(ctx, now); err != nil {
				t.Fatal(err)
			}
			if n := count(old, old+3*hour); n != 0 {
				t.Fatalf("after retention dropped the old day: %d samples, want 0", n)
			}
			if n := cachedOn(reader.cache, dayOf(old)); n != 0 {
				t.Fatalf("the cache keeps %d entries of the dropped day", n)
			}

			// A reader that looks for others' writes once an hour still
			// sees its own late samples at once.
			lazy := open(func(c *Config) { c.SeriesIndexRefresh = model.Duration(time.Hour) })
			lazyCount := func() int {
				got, _ := readAll(t, newQuerier(t, lazy, recent, recent+3*hour), nil, eq("__name__", "m"))
				return len(got[`{__name__="m", i="1"}`])
			}
			for range 2 {
				if n := lazyCount(); n != perSeries {
					t.Fatalf("lazy reader: %d samples, want %d", n, perSeries)
				}
			}
			app = lazy.AppenderV2(ctx)
			if _, err := app.Append(0, labels.FromStrings("__name__", "m", "i", "1"), 0, late, 1, nil, nil, promstorage.AOptions{}); err != nil {
				t.Fatal(err)
			}
			commit(t, app)
			if n := lazyCount(); n != perSeries+1 {
				t.Fatalf("lazy reader after its own late sample: %d samples, want %d", n, perSeries+1)
			}
		})
	}
}

// cachedOn counts the entries of a day.
func cachedOn(c *sampleCache, day int32) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for w, m := range c.byWin {
		if dayOf(w) == day {
			n += len(m)
		}
	}
	return n
}

// cachedIn counts the entries of a window.
func cachedIn(c *sampleCache, w int64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byWin[w])
}

func TestHead(t *testing.T) {
	h := newHead(10)
	if closed, _, _ := h.advance(1000); len(closed) != 0 {
		t.Fatal("an empty, incomplete head handed something over")
	}
	zeros := make([]int64, 8)
	h.add([]uint64{1, 1, 1, 2}, []int64{1000, 1015, 999, 1000}, zeros[:4], []float64{1, 2, 0, 5})
	// Out of order, a duplicate (the first one added stays) and one with a
	// start timestamp.
	h.add([]uint64{1, 1, 3}, []int64{1010, 1015, 1000}, []int64{0, 0, 900}, []float64{3, 9, 7})
	ts, vals, st := h.appendTo(1, 0, 2000, nil, nil)
	if st || !slices.Equal(ts, []int64{1000, 1010, 1015}) || !slices.Equal(vals, []float64{1, 3, 2}) {
		t.Fatalf("series 1: %v %v (start timestamps %v)", ts, vals, st)
	}
	if ts, _, _ := h.appendTo(1, 1001, 1014, nil, nil); !slices.Equal(ts, []int64{1010}) {
		t.Fatalf("series 1 in [1001, 1014]: %v", ts)
	}
	if _, _, st := h.appendTo(3, 0, 2000, nil, nil); !st {
		t.Fatal("series 3 has start timestamps")
	}
	if h.n != 5 {
		t.Fatalf("%d samples held, want 5", h.n)
	}
	// A complete head hands what it drops to the cache, but for series
	// with start timestamps.
	h.setComplete(true, 7)
	closed, seq, err := h.advance(1011)
	if err != nil || seq != 7 || len(closed) != 2 {
		t.Fatalf("advancing handed over %d entries with number %d (%v), want 2 with 7", len(closed), seq, err)
	}
	slices.SortFunc(closed, func(a, b *cacheEntry) int { return int(a.key.fp) - int(b.key.fp) })
	if ts, vals, _ := closed[0].decodeInto(0, 2000, nil, nil); closed[0].key != (cacheKey{1, 0}) || !slices.Equal(ts, []int64{1000, 1010}) || !slices.Equal(vals, []float64{1, 3}) {
		t.Fatalf("handed over %v: %v %v", closed[0].key, ts, vals)
	}
	if ts, _, _ := h.appendTo(1, 0, 2000, nil, nil); !slices.Equal(ts, []int64{1015}) || h.n != 1 {
		t.Fatalf("after advancing: %v, %d held", ts, h.n)
	}
	if !h.covers(1011) || h.covers(1010) {
		t.Fatal("covers is wrong about the head's start")
	}
	// A Select that used the head sees that a sync left it incomplete.
	seq = h.sequence()
	h.setComplete(false, 8)
	if h.sequence() == seq || h.covers(1011) {
		t.Fatal("an incomplete head looks unchanged")
	}
	h.setComplete(true, 8)
	// Over budget, the head turns itself off.
	fps, ts10 := make([]uint64, 10), make([]int64, 10)
	for i := range ts10 {
		fps[i], ts10[i] = 4, int64(2000+i)
	}
	h.add(fps, ts10, make([]int64, 10), make([]float64, 10))
	if !h.isOff() || h.covers(1011) || h.n != 0 {
		t.Fatalf("over budget: off %v, %d held", h.isOff(), h.n)
	}
}

// TestHeadFollowsOtherWriters checks that Selects of the open hour,
// served from the head, return what ClickHouse holds while another store
// (another process) keeps writing, out of order and with replays; that a
// reader with a refresh interval sees its own new samples at once; and
// that when the hour closes the head hands it to the cache, which still
// sees late samples.
func TestHeadFollowsOtherWriters(t *testing.T) {
	headFollowsOtherWriters(t, testutil.Epoch, true)
}

// TestHeadAtAnyTime runs TestHeadFollowsOtherWriters with the stores'
// clock at every testutil instant: on the hour (inside the grace after
// it), within it, before midnight (the next hour is in the next day's
// partition), at month and year ends.
func TestHeadAtAnyTime(t *testing.T) {
	for _, at := range testutil.Instants() {
		t.Run(at.Format(time.RFC3339), func(t *testing.T) {
			t.Parallel()
			headFollowsOtherWriters(t, at, false)
		})
	}
}

// TestHeadInLocalZone runs it across daylight-saving changes with the
// local time zone set to one that has them: hours and days are UTC's.
func TestHeadInLocalZone(t *testing.T) {
	for _, zone := range []string{"Europe/Berlin", "America/New_York"} {
		testutil.InLocalZone(t, zone, func() {
			for _, at := range testutil.DSTChanges() {
				headFollowsOtherWriters(t, at, false)
			}
		})
	}
}

// headFollowsOtherWriters is TestHeadFollowsOtherWriters with the clock
// at at; full adds the checks that do not depend on the clock.
func headFollowsOtherWriters(t *testing.T, at time.Time, full bool) {
	cfg := testConfig(t)
	clock := testutil.NewClock(at)
	writer, reader := openAt(t, cfg, clock), openAt(t, cfg, clock)
	direct := openAt(t, cfg, clock, func(c *Config) { c.SampleCacheMiB = 0 })
	now := at.UnixMilli()
	write := func(s *Store, i int, tss ...int64) {
		t.Helper()
		app := s.AppenderV2(ctx)
		for _, ts := range tss {
			if _, err := app.Append(0, labels.FromStrings("__name__", "m", "i", fmt.Sprint(i)), 0, ts, float64(ts), nil, nil, promstorage.AOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		commit(t, app)
	}
	every15s := func(from, to int64) []int64 {
		var tss []int64
		for ts := from; ts <= to; ts += 15000 {
			tss = append(tss, ts)
		}
		return tss
	}
	for i := range 3 {
		write(writer, i, every15s(now-90*60*1000, now)...)
	}
	check := func(what string, s *Store, mint, maxt int64) map[string][]sample {
		t.Helper()
		got, _ := readAll(t, newQuerier(t, s, mint, maxt), nil, eq("__name__", "m"))
		want, _ := readAll(t, newQuerier(t, direct, mint, maxt), nil, eq("__name__", "m"))
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: the head returned\n%v\nClickHouse\n%v", what, got, want)
		}
		return got
	}
	for _, r := range [][2]int64{{now - 90*60*1000, now}, {now - 5*60*1000, now}, {now - 30*1000, now + 60*1000}} {
		check("first read", reader, r[0], r[1])
		check("second read", reader, r[0], r[1])
	}
	if !reader.head.covers(now) || reader.head.n == 0 {
		t.Fatalf("the head is not in use: complete %v, %d samples", reader.head.complete, reader.head.n)
	}

	// New samples, one between two others, and a replay.
	write(writer, 0, now+15000, now+30000)
	write(writer, 1, now-7000, now-15000)
	got := check("after new samples", reader, now-60*1000, now+60*1000)
	if n := len(got[`{__name__="m", i="0"}`]); n != 5+2 {
		t.Fatalf("series 0 has %d samples in the last minute and the next, want 7", n)
	}

	if full {
		// A store that looks for others' writes once an hour sees its
		// own at once.
		lazy := openAt(t, cfg, clock, func(c *Config) { c.SeriesIndexRefresh = model.Duration(time.Hour) })
		check("lazy reader", lazy, now-60*1000, now+60*1000)
		write(lazy, 2, now+45000)
		got = check("lazy reader after its own write", lazy, now-60*1000, now+60*1000)
		if n := len(got[`{__name__="m", i="2"}`]); n != 5+1 {
			t.Fatalf("series 2 has %d samples, want 6", n)
		}
	}

	// An hour later the hours the head held are closed: the cache serves
	// them, the head the new open hour, and a late sample in a closed
	// hour is seen.
	later := clock.Add(time.Hour).UnixMilli()
	for i := range 3 {
		write(writer, i, every15s(now+60*1000, later)...)
	}
	for range 2 {
		got = check("an hour later", reader, now-90*60*1000, later)
	}
	if open := windowOf(later - cacheGrace); !reader.head.covers(open) || reader.head.covers(open-1) {
		t.Fatalf("an hour later the head starts at %d, want %d", reader.head.start, open)
	}
	if n := cachedIn(reader.cache, windowOf(now-1000)); n != 3 {
		t.Fatalf("the cache holds %d series of the hour closed meanwhile, want 3", n)
	}
	before := len(got[`{__name__="m", i="1"}`])
	write(writer, 1, now-1000)
	got = check("a late sample in a closed hour", reader, now-90*60*1000, later)
	if n := len(got[`{__name__="m", i="1"}`]); n != before+1 {
		t.Fatalf("series 1 has %d samples, want %d", n, before+1)
	}
}
