package clickhouse

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// Reading samples.
//
// The samples of a Select come from one query without ORDER BY: sorting
// millions of rows on the server (18.16 cannot read in key order) costs
// more than it saves. Rows still arrive in long runs of one series in
// timestamp order, because every part is sorted by (fingerprint,
// timestamp) and is read in order. The reader appends rows to flat
// columns and notes where each run starts; a series with one run (the
// usual case once parts are merged) then simply points into the flat
// columns, one with several non-overlapping runs is concatenated, and only
// overlapping runs (out-of-order writes or replayed duplicates not yet
// merged away) are sorted and de-duplicated.

// run is a stretch of rows of one series with increasing timestamps.
type run struct {
	fp         uint64
	start, end int // row indexes [start, end)
}

// runIndex groups runs by fingerprint.
type runIndex struct {
	runs   []run
	byFP   map[uint64][]int32 // indexes into runs; nil entry when single
	single map[uint64]int32
}

func (ri *runIndex) finish() {
	ri.single = make(map[uint64]int32, len(ri.runs))
	for i, r := range ri.runs {
		if j, ok := ri.single[r.fp]; ok {
			if ri.byFP == nil {
				ri.byFP = map[uint64][]int32{}
			}
			if ri.byFP[r.fp] == nil {
				ri.byFP[r.fp] = []int32{j}
			}
			ri.byFP[r.fp] = append(ri.byFP[r.fp], int32(i))
			continue
		}
		ri.single[r.fp] = int32(i)
	}
}

// of returns the runs of a fingerprint.
func (ri *runIndex) of(fp uint64) []run {
	if idx, ok := ri.byFP[fp]; ok {
		out := make([]run, len(idx))
		for i, j := range idx {
			out[i] = ri.runs[j]
		}
		return out
	}
	if j, ok := ri.single[fp]; ok {
		return []run{ri.runs[j]}
	}
	return nil
}

// sampleColumns holds the float samples of one Select.
type sampleColumns struct {
	ts, sts []int64
	vals    []float64
	runIndex
}

func (s *Store) loadFloats(ctx context.Context, where string, start, end int64, matchers []*labels.Matcher) (*sampleColumns, error) {
	q := fmt.Sprintf(`SELECT fingerprint, timestamp, value, start_timestamp FROM %s
WHERE fingerprint IN (SELECT fingerprint FROM %s WHERE %s AND bitAnd(kinds, %d) != 0)
AND timestamp >= %d AND timestamp <= %d`, s.t.samples, s.t.series, where, kindFloat, start, end)
	rows, err := s.conn.Query(ctx, q)
	if err != nil {
		return nil, s.wrap("select samples", err)
	}
	defer rows.Close()
	c := &sampleColumns{}
	var (
		fp, curFP uint64
		t, st     int64
		v         float64
		lastT     int64
		runStart  = -1
	)
	dest := []any{&fp, &t, &v, &st}
	limit := s.cfg.MaxSamples
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, s.wrap("select samples", err)
		}
		n := len(c.ts)
		if runStart < 0 || fp != curFP || t <= lastT {
			if runStart >= 0 {
				c.runs = append(c.runs, run{fp: curFP, start: runStart, end: n})
			}
			runStart, curFP = n, fp
		}
		lastT = t
		c.ts = append(c.ts, t)
		c.vals = append(c.vals, v)
		c.sts = append(c.sts, st)
		// The exact check happens on what is returned; this one stops a
		// runaway read early. Rows of series that fail the Go-side
		// matcher check are few, so twice the limit is a safe bound.
		if limit > 0 && n >= 2*limit {
			return nil, s.tooManySamples(matchers, start, end)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("select samples", err)
	}
	if runStart >= 0 {
		c.runs = append(c.runs, run{fp: curFP, start: runStart, end: len(c.ts)})
	}
	c.finish()
	return c, nil
}

// forSeries returns the samples of one series, sorted by timestamp and
// without duplicate timestamps.
func (c *sampleColumns) forSeries(fp uint64) (ts []int64, vals []float64, sts []int64) {
	runs := c.of(fp)
	switch len(runs) {
	case 0:
		return nil, nil, nil
	case 1:
		r := runs[0]
		return c.ts[r.start:r.end:r.end], c.vals[r.start:r.end:r.end], c.sts[r.start:r.end:r.end]
	}
	sortRuns(runs, c.ts)
	n := 0
	for _, r := range runs {
		n += r.end - r.start
	}
	ts, vals, sts = make([]int64, 0, n), make([]float64, 0, n), make([]int64, 0, n)
	if !runsOverlap(runs, c.ts) {
		for _, r := range runs {
			ts = append(ts, c.ts[r.start:r.end]...)
			vals = append(vals, c.vals[r.start:r.end]...)
			sts = append(sts, c.sts[r.start:r.end]...)
		}
		return ts, vals, sts
	}
	idx := mergeRuns(runs, c.ts)
	for _, i := range idx {
		ts = append(ts, c.ts[i])
		vals = append(vals, c.vals[i])
		sts = append(sts, c.sts[i])
	}
	return ts, vals, sts
}

func sortRuns(runs []run, ts []int64) {
	slices.SortStableFunc(runs, func(a, b run) int {
		switch {
		case ts[a.start] < ts[b.start]:
			return -1
		case ts[a.start] > ts[b.start]:
			return 1
		}
		return a.start - b.start
	})
}

// runsOverlap reports whether sorted runs share any timestamp range.
func runsOverlap(runs []run, ts []int64) bool {
	for i := 1; i < len(runs); i++ {
		if ts[runs[i-1].end-1] >= ts[runs[i].start] {
			return true
		}
	}
	return false
}

// mergeRuns returns the row indexes of the runs in timestamp order, with
// one row per timestamp: the first one read. Duplicates come from
// at-least-once replays and carry the same value.
func mergeRuns(runs []run, ts []int64) []int {
	var idx []int
	for _, r := range runs {
		for i := r.start; i < r.end; i++ {
			idx = append(idx, i)
		}
	}
	sort.SliceStable(idx, func(a, b int) bool { return ts[idx[a]] < ts[idx[b]] })
	out := idx[:0]
	for _, i := range idx {
		if len(out) > 0 && ts[out[len(out)-1]] == ts[i] {
			continue
		}
		out = append(out, i)
	}
	return out
}

// histColumns holds the native histogram samples of one Select.
type histColumns struct {
	ts, sts []int64
	// data holds the encoded histograms; scanning into []byte shares
	// the string clickhouse-go allocated anyway, without another copy.
	data [][]byte
	runIndex
}

func (s *Store) loadHistograms(ctx context.Context, where string, start, end int64, matchers []*labels.Matcher) (*histColumns, error) {
	q := fmt.Sprintf(`SELECT fingerprint, timestamp, start_timestamp, histogram FROM %s
WHERE fingerprint IN (SELECT fingerprint FROM %s WHERE %s AND bitAnd(kinds, %d) != 0)
AND timestamp >= %d AND timestamp <= %d`, s.t.histograms, s.t.series, where, kindHistogram, start, end)
	rows, err := s.conn.Query(ctx, q)
	if err != nil {
		return nil, s.wrap("select histograms", err)
	}
	defer rows.Close()
	c := &histColumns{}
	var (
		fp, curFP uint64
		t, st     int64
		data      []byte
		lastT     int64
		runStart  = -1
	)
	dest := []any{&fp, &t, &st, &data}
	limit := s.cfg.MaxSamples
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, s.wrap("select histograms", err)
		}
		n := len(c.ts)
		if runStart < 0 || fp != curFP || t <= lastT {
			if runStart >= 0 {
				c.runs = append(c.runs, run{fp: curFP, start: runStart, end: n})
			}
			runStart, curFP = n, fp
		}
		lastT = t
		c.ts = append(c.ts, t)
		c.sts = append(c.sts, st)
		c.data = append(c.data, data)
		if limit > 0 && n >= 2*limit {
			return nil, s.tooManySamples(matchers, start, end)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("select histograms", err)
	}
	if runStart >= 0 {
		c.runs = append(c.runs, run{fp: curFP, start: runStart, end: len(c.ts)})
	}
	c.finish()
	return c, nil
}

func (c *histColumns) forSeries(fp uint64) (ts, sts []int64, data [][]byte) {
	runs := c.of(fp)
	switch len(runs) {
	case 0:
		return nil, nil, nil
	case 1:
		r := runs[0]
		return c.ts[r.start:r.end:r.end], c.sts[r.start:r.end:r.end], c.data[r.start:r.end:r.end]
	}
	sortRuns(runs, c.ts)
	var idx []int
	if runsOverlap(runs, c.ts) {
		idx = mergeRuns(runs, c.ts)
	} else {
		for _, r := range runs {
			for i := r.start; i < r.end; i++ {
				idx = append(idx, i)
			}
		}
	}
	ts, sts, data = make([]int64, 0, len(idx)), make([]int64, 0, len(idx)), make([][]byte, 0, len(idx))
	for _, i := range idx {
		ts = append(ts, c.ts[i])
		sts = append(sts, c.sts[i])
		data = append(data, c.data[i])
	}
	return ts, sts, data
}

// series is one selected series with its samples; floats and histograms
// are separate sorted columns merged by the iterator.
type series struct {
	ls    labels.Labels
	ts    []int64
	vals  []float64
	sts   []int64
	hts   []int64
	hsts  []int64
	hdata [][]byte
	// hints are the counter reset hints the TSDB would report (hints.go).
	hints []histogram.CounterResetHint
}

func (s *series) Labels() labels.Labels { return s.ls }

func (s *series) Iterator(it chunkenc.Iterator) chunkenc.Iterator {
	if si, ok := it.(*seriesIterator); ok {
		si.reset(s)
		return si
	}
	si := &seriesIterator{}
	si.reset(s)
	return si
}

// seriesIterator walks a series' floats and histograms in timestamp
// order. When a float and a histogram share a timestamp (a series that
// changed type within one scrape, which Prometheus's TSDB would reject),
// the float wins and the histogram is skipped.
type seriesIterator struct {
	s      *series
	fi, hi int // next candidates
	cur    chunkenc.ValueType
	ci     int // index of the current sample in its column
	err    error
}

func (it *seriesIterator) reset(s *series) {
	*it = seriesIterator{s: s, ci: -1}
}

// pick selects the sample at fi/hi with the smaller timestamp.
func (it *seriesIterator) pick() chunkenc.ValueType {
	s := it.s
	hasF, hasH := it.fi < len(s.ts), it.hi < len(s.hts)
	switch {
	case hasF && (!hasH || s.ts[it.fi] <= s.hts[it.hi]):
		if hasH && s.ts[it.fi] == s.hts[it.hi] {
			it.hi++
		}
		it.ci, it.cur = it.fi, chunkenc.ValFloat
		it.fi++
	case hasH:
		it.ci = it.hi
		it.hi++
		if histogramFormat(s.hdata[it.ci]) == formatIntHistogram {
			it.cur = chunkenc.ValHistogram
		} else {
			it.cur = chunkenc.ValFloatHistogram
		}
	default:
		it.cur = chunkenc.ValNone
	}
	return it.cur
}

func (it *seriesIterator) Next() chunkenc.ValueType {
	if it.err != nil {
		return chunkenc.ValNone
	}
	return it.pick()
}

func (it *seriesIterator) Seek(t int64) chunkenc.ValueType {
	if it.err != nil {
		return chunkenc.ValNone
	}
	if it.cur != chunkenc.ValNone && it.AtT() >= t {
		return it.cur
	}
	s := it.s
	it.fi += sort.Search(len(s.ts)-it.fi, func(i int) bool { return s.ts[it.fi+i] >= t })
	it.hi += sort.Search(len(s.hts)-it.hi, func(i int) bool { return s.hts[it.hi+i] >= t })
	return it.pick()
}

func (it *seriesIterator) At() (int64, float64) {
	return it.s.ts[it.ci], it.s.vals[it.ci]
}

func (it *seriesIterator) AtHistogram(h *histogram.Histogram) (int64, *histogram.Histogram) {
	if h == nil {
		h = &histogram.Histogram{}
	}
	if err := decodeHistogram(it.s.hdata[it.ci], h); err != nil && it.err == nil {
		it.err = fmt.Errorf("clickhouse: series %s at %d: %w", it.s.ls, it.s.hts[it.ci], err)
	}
	if it.s.hints != nil {
		h.CounterResetHint = it.s.hints[it.ci]
	}
	return it.s.hts[it.ci], h
}

func (it *seriesIterator) AtFloatHistogram(fh *histogram.FloatHistogram) (int64, *histogram.FloatHistogram) {
	if fh == nil {
		fh = &histogram.FloatHistogram{}
	}
	if err := decodeFloatHistogram(it.s.hdata[it.ci], fh); err != nil && it.err == nil {
		it.err = fmt.Errorf("clickhouse: series %s at %d: %w", it.s.ls, it.s.hts[it.ci], err)
	}
	if it.s.hints != nil {
		fh.CounterResetHint = it.s.hints[it.ci]
	}
	return it.s.hts[it.ci], fh
}

func (it *seriesIterator) AtT() int64 {
	if it.cur == chunkenc.ValFloat {
		return it.s.ts[it.ci]
	}
	return it.s.hts[it.ci]
}

func (it *seriesIterator) AtST() int64 {
	if it.cur == chunkenc.ValFloat {
		return it.s.sts[it.ci]
	}
	return it.s.hsts[it.ci]
}

func (it *seriesIterator) Err() error { return it.err }
