package clickhouse

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// Reading samples.
//
// The samples of a Select come from one query per kind (float, histogram)
// without ORDER BY: sorting millions of rows on the server (18.16 cannot
// read in key order) costs more than it saves. Rows still arrive in long
// runs of one series in timestamp order, because every part is sorted by
// (fingerprint, timestamp) and is read in order. The reader appends rows
// to chunked columns and notes where each run starts; a series' samples
// are then its runs in place, as segments the iterator walks one after the
// other. Only overlapping runs (out-of-order writes, or replayed
// duplicates not yet merged away) are merged, sorted and de-duplicated
// into a new segment.

// floatChunkRows is the size of one chunk of the flat float columns.
// Columns grow by whole chunks, so a large result is never copied to grow,
// and runs end at chunk boundaries.
const floatChunkRows = 1 << 16

// run is a stretch of rows of one series with increasing timestamps,
// within one chunk.
type run struct {
	fp         uint64
	chunk      int32
	start, end int32 // row indexes [start, end) in the chunk
}

// runIndex groups runs by fingerprint.
type runIndex struct {
	runs  []run
	multi map[uint64][]int32 // fingerprints with several runs: indexes into runs
	first map[uint64]int32   // every fingerprint: its first run
}

func (ri *runIndex) finish() {
	ri.first = make(map[uint64]int32, len(ri.runs))
	for i, r := range ri.runs {
		j, ok := ri.first[r.fp]
		if !ok {
			ri.first[r.fp] = int32(i)
			continue
		}
		if ri.multi == nil {
			ri.multi = map[uint64][]int32{}
		}
		if ri.multi[r.fp] == nil {
			ri.multi[r.fp] = []int32{j}
		}
		ri.multi[r.fp] = append(ri.multi[r.fp], int32(i))
	}
}

// of returns the runs of a fingerprint.
func (ri *runIndex) of(fp uint64) []run {
	if idx, ok := ri.multi[fp]; ok {
		out := make([]run, len(idx))
		for i, j := range idx {
			out[i] = ri.runs[j]
		}
		return out
	}
	if j, ok := ri.first[fp]; ok {
		return []run{ri.runs[j]}
	}
	return nil
}

type floatChunk struct {
	ts, sts []int64
	vals    []float64
}

// sampleColumns holds the float samples of one Select.
type sampleColumns struct {
	chunks []*floatChunk
	runIndex
}

// floatRead is one part of a float read: the series cond selects, in
// [from, to].
type floatRead struct {
	cond     string
	from, to int64
}

// loadFloats reads the float samples of the given reads, in one query;
// their start timestamps only when withST says some have one. start and
// end are the Select's range, for the limit's message.
func (s *Store) loadFloats(ctx context.Context, reads []floatRead, start, end int64, withST bool, matchers []*labels.Matcher) (*sampleColumns, error) {
	cols := "fingerprint, timestamp, value"
	if withST {
		cols += ", start_timestamp"
	}
	selects := make([]string, len(reads))
	for i, r := range reads {
		selects[i] = fmt.Sprintf(`SELECT %s FROM %s
WHERE %s AND timestamp >= %d AND timestamp <= %d`, cols, s.t.samples, r.cond, r.from, r.to)
	}
	q := strings.Join(selects, "\nUNION ALL\n")
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
		chunk     *floatChunk
		total     int
	)
	dest := []any{&fp, &t, &v, &st}
	if !withST {
		dest = dest[:3] // st stays 0
	}
	limit := s.cfg.MaxSamples
	closeRun := func(n int) {
		if runStart >= 0 {
			c.runs = append(c.runs, run{fp: curFP, chunk: int32(len(c.chunks) - 1), start: int32(runStart), end: int32(n)})
		}
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, s.wrap("select samples", err)
		}
		if chunk == nil || len(chunk.ts) == floatChunkRows {
			if chunk != nil {
				closeRun(len(chunk.ts))
				runStart = -1
			}
			chunk = &floatChunk{
				ts:   make([]int64, 0, floatChunkRows),
				sts:  make([]int64, 0, floatChunkRows),
				vals: make([]float64, 0, floatChunkRows),
			}
			c.chunks = append(c.chunks, chunk)
		}
		n := len(chunk.ts)
		if runStart < 0 || fp != curFP || t <= lastT {
			closeRun(n)
			runStart, curFP = n, fp
		}
		lastT = t
		chunk.ts = append(chunk.ts, t)
		chunk.vals = append(chunk.vals, v)
		chunk.sts = append(chunk.sts, st)
		total++
		// The exact check happens on what is returned; this one stops a
		// runaway read early. Rows of series that fail the Go-side
		// matcher check are few, so twice the limit is a safe bound.
		if limit > 0 && total > 2*limit {
			return nil, s.tooManySamples(matchers, start, end)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("select samples", err)
	}
	if chunk != nil {
		closeRun(len(chunk.ts))
	}
	c.finish()
	return c, nil
}

// floatSeg is a stretch of float samples of one series, sorted by
// timestamp; a series' segments follow each other in time.
type floatSeg struct {
	ts, sts []int64
	vals    []float64
}

func (c *sampleColumns) seg(r run) floatSeg {
	ch := c.chunks[r.chunk]
	return floatSeg{ts: ch.ts[r.start:r.end:r.end], sts: ch.sts[r.start:r.end:r.end], vals: ch.vals[r.start:r.end:r.end]}
}

// forSeries returns the float samples of one series as segments in time
// order, without duplicate timestamps. Runs that follow each other are
// used in place; only overlapping runs (out-of-order writes, or replayed
// duplicates not merged yet) are merged into a new segment.
func (c *sampleColumns) forSeries(fp uint64) []floatSeg {
	runs := c.of(fp)
	if len(runs) == 0 {
		return nil
	}
	segs := make([]floatSeg, len(runs))
	for i, r := range runs {
		segs[i] = c.seg(r)
	}
	if len(segs) == 1 {
		return segs
	}
	slices.SortStableFunc(segs, func(a, b floatSeg) int { return cmp.Compare(a.ts[0], b.ts[0]) })
	overlap := false
	for i := 1; i < len(segs); i++ {
		if segs[i-1].ts[len(segs[i-1].ts)-1] >= segs[i].ts[0] {
			overlap = true
			break
		}
	}
	if !overlap {
		return segs
	}
	return []floatSeg{mergeSegs(segs)}
}

// mergeSegs merges sorted segments into one, keeping the first sample
// read of each timestamp. Duplicates come from at-least-once replays and
// carry the same value.
func mergeSegs(segs []floatSeg) floatSeg {
	type ref struct{ seg, i int32 }
	n := 0
	for _, sg := range segs {
		n += len(sg.ts)
	}
	refs := make([]ref, 0, n)
	for si, sg := range segs {
		for i := range sg.ts {
			refs = append(refs, ref{int32(si), int32(i)})
		}
	}
	slices.SortStableFunc(refs, func(a, b ref) int { return cmp.Compare(segs[a.seg].ts[a.i], segs[b.seg].ts[b.i]) })
	out := floatSeg{ts: make([]int64, 0, n), sts: make([]int64, 0, n), vals: make([]float64, 0, n)}
	for _, r := range refs {
		sg := segs[r.seg]
		t := sg.ts[r.i]
		if len(out.ts) > 0 && out.ts[len(out.ts)-1] == t {
			continue
		}
		out.ts = append(out.ts, t)
		out.sts = append(out.sts, sg.sts[r.i])
		out.vals = append(out.vals, sg.vals[r.i])
	}
	return out
}

func sortRuns(runs []run, ts []int64) {
	slices.SortStableFunc(runs, func(a, b run) int {
		switch {
		case ts[a.start] < ts[b.start]:
			return -1
		case ts[a.start] > ts[b.start]:
			return 1
		}
		return int(a.start - b.start)
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
		for i := int(r.start); i < int(r.end); i++ {
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

// loadHistograms reads the histogram samples of the series that fpCond
// selects.
func (s *Store) loadHistograms(ctx context.Context, fpCond string, start, end int64, matchers []*labels.Matcher) (*histColumns, error) {
	q := fmt.Sprintf(`SELECT fingerprint, timestamp, start_timestamp, histogram FROM %s
WHERE %s AND timestamp >= %d AND timestamp <= %d`, s.t.histograms, fpCond, start, end)
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
				c.runs = append(c.runs, run{fp: curFP, start: int32(runStart), end: int32(n)})
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
		c.runs = append(c.runs, run{fp: curFP, start: int32(runStart), end: int32(len(c.ts))})
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
			for i := int(r.start); i < int(r.end); i++ {
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

// series is one selected series with its samples: float segments in
// time order and a histogram column, merged by the iterator.
type series struct {
	ls    labels.Labels
	segs  []floatSeg
	hts   []int64
	hsts  []int64
	hdata [][]byte
	// hints are the counter reset hints the TSDB would report (hints.go).
	hints []histogram.CounterResetHint
}

func (s *series) Labels() labels.Labels { return s.ls }

func (s *series) numFloats() int {
	n := 0
	for _, sg := range s.segs {
		n += len(sg.ts)
	}
	return n
}

// floatBetween reports whether a float sample lies strictly between a and b.
func (s *series) floatBetween(a, b int64) bool {
	for _, sg := range s.segs {
		if len(sg.ts) == 0 || sg.ts[len(sg.ts)-1] <= a {
			continue
		}
		i := sort.Search(len(sg.ts), func(i int) bool { return sg.ts[i] > a })
		return sg.ts[i] < b
	}
	return false
}

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
	fs, fi int // next float candidate: segment and index in it
	hi     int // next histogram candidate
	cur    chunkenc.ValueType
	ci     int      // current sample: index in seg (floats) or in s.hts
	cs     int      // the current float sample's segment: index in s.segs
	seg    floatSeg // and the segment itself
	err    error
}

func (it *seriesIterator) reset(s *series) {
	*it = seriesIterator{s: s, cs: -1}
	it.skipEmpty()
}

// skipEmpty moves the float candidate past exhausted segments.
func (it *seriesIterator) skipEmpty() {
	for it.fs < len(it.s.segs) && it.fi >= len(it.s.segs[it.fs].ts) {
		it.fs++
		it.fi = 0
	}
}

// takeFloat makes the float candidate the current sample.
func (it *seriesIterator) takeFloat() chunkenc.ValueType {
	if it.cs != it.fs {
		it.cs, it.seg = it.fs, it.s.segs[it.fs]
	}
	it.ci, it.cur = it.fi, chunkenc.ValFloat
	if it.fi++; it.fi >= len(it.seg.ts) {
		it.skipEmpty()
	}
	return it.cur
}

// pick makes the earlier of the two candidates the current sample.
func (it *seriesIterator) pick() chunkenc.ValueType {
	s := it.s
	if it.hi >= len(s.hts) && it.fs < len(s.segs) {
		// Only floats left: the common case, kept short.
		return it.takeFloat()
	}
	hasF, hasH := it.fs < len(s.segs), it.hi < len(s.hts)
	var ft int64
	if hasF {
		ft = s.segs[it.fs].ts[it.fi]
	}
	switch {
	case hasF && (!hasH || ft <= s.hts[it.hi]):
		if hasH && ft == s.hts[it.hi] {
			it.hi++
		}
		return it.takeFloat()
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
	// Skip whole segments that end before t, then search within one.
	for it.fs < len(s.segs) {
		sg := s.segs[it.fs]
		if sg.ts[len(sg.ts)-1] >= t {
			it.fi += sort.Search(len(sg.ts)-it.fi, func(i int) bool { return sg.ts[it.fi+i] >= t })
			break
		}
		it.fs++
		it.fi = 0
	}
	it.hi += sort.Search(len(s.hts)-it.hi, func(i int) bool { return s.hts[it.hi+i] >= t })
	return it.pick()
}

func (it *seriesIterator) At() (int64, float64) {
	return it.seg.ts[it.ci], it.seg.vals[it.ci]
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
		return it.seg.ts[it.ci]
	}
	return it.s.hts[it.ci]
}

func (it *seriesIterator) AtST() int64 {
	if it.cur == chunkenc.ValFloat {
		return it.seg.sts[it.ci]
	}
	return it.s.hsts[it.ci]
}

func (it *seriesIterator) Err() error { return it.err }
