package clickhouse

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
)

// floatResult holds the float samples of one Select: rows read from
// ClickHouse, decoded cached hours and samples from the head.
type floatResult struct {
	start, end int64
	cols       *sampleColumns
	// cached holds the decoded closed hours of the series the cache
	// had, head the open hour of the series the head had; their rows
	// from ClickHouse lie in between, if any.
	cached, head map[uint64]floatSeg
	// segs holds the segments already worked out for a series (the
	// ones that filled the cache).
	segs map[uint64][]floatSeg
}

// forSeries returns the float samples of one series in [start, end] as
// segments in time order.
func (r *floatResult) forSeries(fp uint64) []floatSeg {
	segs, ok := r.segs[fp]
	if !ok && r.cols != nil {
		segs = trimSegs(r.cols.forSeries(fp), r.start, r.end)
	}
	if c, ok := r.cached[fp]; ok && len(c.ts) > 0 {
		segs = append([]floatSeg{c}, segs...)
	}
	if h, ok := r.head[fp]; ok && len(h.ts) > 0 {
		segs = append(segs, h)
	}
	return segs
}

// trimSegs cuts sorted segments to [start, end].
func trimSegs(segs []floatSeg, start, end int64) []floatSeg {
	out := segs[:0]
	for _, sg := range segs {
		i := sort.Search(len(sg.ts), func(i int) bool { return sg.ts[i] >= start })
		j := sort.Search(len(sg.ts), func(i int) bool { return sg.ts[i] > end })
		if i < j {
			out = append(out, floatSeg{ts: sg.ts[i:j:j], sts: sg.sts[i:j:j], vals: sg.vals[i:j:j]})
		}
	}
	return out
}

// loadFloatSeries reads the float samples of the selected series in
// [start, end]: what the sample cache holds of closed hours and what the
// head holds of the open one from memory, the rest from ClickHouse.
// Series the cache lacks are read from the start of the first hour to the
// end of the last, so that their closed hours can be cached whole.
func (s *Store) loadFloatSeries(ctx context.Context, infos []seriesInfo, where string, start, end, now int64, matchers []*labels.Matcher) (*floatResult, error) {
	cond := s.fingerprintCond(infos, kindFloat, where)
	if cond == "" {
		return nil, nil
	}
	withST := slices.ContainsFunc(infos, func(info seriesInfo) bool { return info.kinds&kindFloatST != 0 })
	res := &floatResult{start: start, end: end}
	inline := s.cache != nil && !strings.HasPrefix(cond, "fingerprint IN (SELECT")
	var from, to int64
	if inline {
		from, to = closedWindows(start, end, now)
	}
	// open is where the part of the range that is still written begins.
	open := start
	if from != to {
		open = to
	}
	useHead := inline && s.head != nil && open <= end && s.head.covers(open)
	if from == to && !useHead {
		cols, err := s.loadFloats(ctx, []floatRead{{cond, start, end}}, start, end, withST, matchers)
		res.cols = cols
		return res, err
	}

	c := s.cache
	seq := c.sequence()
	var (
		// withStart: series with start timestamps, read from ClickHouse.
		withStart, hits, misses, fromHead []uint64
		entries                           = map[uint64][]*cacheEntry{}
		memN                              int
	)
	for _, info := range infos {
		if info.kinds&kindFloat == 0 {
			continue
		}
		if info.kinds&kindFloatST != 0 {
			withStart = append(withStart, info.fp)
			continue
		}
		if useHead {
			fromHead = append(fromHead, info.fp)
		}
		if from == to {
			continue
		}
		es, ok := c.lookup(info.fp, from, to, nil)
		if !ok {
			misses = append(misses, info.fp)
			continue
		}
		hits = append(hits, info.fp)
		entries[info.fp] = es
		for _, e := range es {
			memN += e.n
		}
	}

	if useHead {
		res.head = make(map[uint64]floatSeg, len(fromHead))
		var ts []int64
		var vals []float64
		for _, fp := range fromHead {
			n := len(ts)
			var st bool
			if ts, vals, st = s.head.appendTo(fp, open, end, ts, vals); st {
				// Start timestamps the series index has not seen yet.
				withStart = append(withStart, fp)
				hits = slices.DeleteFunc(hits, func(x uint64) bool { return x == fp })
				misses = slices.DeleteFunc(misses, func(x uint64) bool { return x == fp })
				continue
			}
			res.head[fp] = floatSeg{ts: ts[n:len(ts):len(ts)], vals: vals[n:len(ts):len(ts)]}
		}
		memN += len(ts)
	}
	if s.cfg.MaxSamples > 0 && memN > 2*s.cfg.MaxSamples {
		return nil, s.tooManySamples(matchers, start, end)
	}

	var reads []floatRead
	if len(withStart) > 0 {
		reads = append(reads, floatRead{fingerprintList(withStart), start, end})
	}
	if len(hits) > 0 && !useHead && to <= end {
		reads = append(reads, floatRead{fingerprintList(hits), to, end})
	}
	if len(misses) > 0 {
		// Whole windows: the last may end after end.
		last := max(end, to-1)
		if useHead {
			last = to - 1
		}
		reads = append(reads, floatRead{fingerprintList(misses), from, last})
	}
	if len(reads) > 0 {
		cols, err := s.loadFloats(ctx, reads, start, end, len(withStart) > 0, matchers)
		if err != nil {
			return nil, err
		}
		res.cols = cols
	}

	longest := 0
	if len(hits) > 0 {
		res.cached = make(map[uint64]floatSeg, len(hits))
		ts := make([]int64, 0, memN)
		vals := make([]float64, 0, memN)
		for _, fp := range hits {
			n := len(ts)
			for _, e := range entries[fp] {
				var err error
				if ts, vals, err = e.decodeInto(start, end, ts, vals); err != nil {
					return nil, fmt.Errorf("clickhouse: decode cached samples of series %d: %w", fp, err)
				}
			}
			res.cached[fp] = floatSeg{ts: ts[n:len(ts):len(ts)], vals: vals[n:len(ts):len(ts)]}
			longest = max(longest, len(ts)-n)
		}
	}
	for _, sg := range res.head {
		longest = max(longest, len(sg.ts))
	}
	// Series from memory have no start timestamps: they share one slice
	// of zeros.
	zeros := make([]int64, longest)
	for _, m := range []map[uint64]floatSeg{res.cached, res.head} {
		for fp, sg := range m {
			sg.sts = zeros[:len(sg.ts):len(sg.ts)]
			m[fp] = sg
		}
	}

	if len(misses) > 0 && res.cols != nil {
		res.segs = make(map[uint64][]floatSeg, len(misses))
		var fills []*cacheEntry
		for _, fp := range misses {
			segs := res.cols.forSeries(fp)
			es, err := windowEntries(fp, segs, from, to)
			if err != nil {
				return nil, fmt.Errorf("clickhouse: cache samples of series %d: %w", fp, err)
			}
			fills = append(fills, es...)
			res.segs[fp] = trimSegs(segs, start, end)
		}
		c.fill(seq, fills)
	}
	return res, nil
}

// windowEntries encodes the samples of a series in each window of
// [from, to) as cache entries; an hour without samples is an empty one.
func windowEntries(fp uint64, segs []floatSeg, from, to int64) ([]*cacheEntry, error) {
	out := make([]*cacheEntry, 0, (to-from)/cacheWindow)
	si, i := 0, 0 // position in segs
	for w := from; w < to; w += cacheWindow {
		var ts []int64
		var vals []float64
		for si < len(segs) {
			sg := segs[si]
			for i < len(sg.ts) && sg.ts[i] < w {
				i++
			}
			j := i
			for j < len(sg.ts) && sg.ts[j] < w+cacheWindow {
				j++
			}
			ts = append(ts, sg.ts[i:j]...)
			vals = append(vals, sg.vals[i:j]...)
			i = j
			if i < len(sg.ts) {
				break // the rest is in later windows
			}
			si, i = si+1, 0
		}
		e, err := encodeWindow(fp, w, ts, vals)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// fingerprintList is the condition selecting the given fingerprints.
func fingerprintList(fps []uint64) string {
	var b strings.Builder
	b.Grow(16 + 22*len(fps))
	b.WriteString("fingerprint IN (")
	for i, fp := range fps {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.FormatUint(fp, 10))
	}
	b.WriteByte(')')
	return b.String()
}
