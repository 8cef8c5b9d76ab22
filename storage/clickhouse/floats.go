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
// ClickHouse and, with the sample cache, decoded cached hours.
type floatResult struct {
	start, end int64
	cols       *sampleColumns
	// cached holds the decoded closed hours of the series the cache
	// had; their rows from ClickHouse start after those hours.
	cached map[uint64]floatSeg
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
		return append([]floatSeg{c}, segs...)
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
// [start, end]: from the sample cache what it holds of closed hours, the
// rest from ClickHouse. Series the cache lacks are read from the start of
// the first hour to the end of the last, so that their closed hours can be
// cached whole.
func (s *Store) loadFloatSeries(ctx context.Context, infos []seriesInfo, where string, start, end, now int64, matchers []*labels.Matcher) (*floatResult, error) {
	cond := s.fingerprintCond(infos, kindFloat, where)
	if cond == "" {
		return nil, nil
	}
	withST := slices.ContainsFunc(infos, func(info seriesInfo) bool { return info.kinds&kindFloatST != 0 })
	res := &floatResult{start: start, end: end}
	var from, to int64
	if s.cache != nil && !strings.HasPrefix(cond, "fingerprint IN (SELECT") {
		from, to = closedWindows(start, end, now)
	}
	if from == to {
		cols, err := s.loadFloats(ctx, []floatRead{{cond, start, end}}, start, end, withST, matchers)
		res.cols = cols
		return res, err
	}

	c := s.cache
	seq := c.sequence()
	var (
		hits, misses []uint64
		fillable     []uint64
		entries      = map[uint64][]*cacheEntry{}
		cachedN      int
	)
	for _, info := range infos {
		if info.kinds&kindFloat == 0 {
			continue
		}
		if info.kinds&kindFloatST != 0 {
			misses = append(misses, info.fp)
			continue
		}
		es, ok := c.lookup(info.fp, from, to, nil)
		if !ok {
			misses = append(misses, info.fp)
			fillable = append(fillable, info.fp)
			continue
		}
		hits = append(hits, info.fp)
		entries[info.fp] = es
		for _, e := range es {
			cachedN += e.n
		}
	}
	if s.cfg.MaxSamples > 0 && cachedN > 2*s.cfg.MaxSamples {
		return nil, s.tooManySamples(matchers, start, end)
	}
	var reads []floatRead
	if len(hits) > 0 && to <= end {
		reads = append(reads, floatRead{fingerprintList(hits), to, end})
	}
	if len(misses) > 0 {
		// The last window may end after end.
		reads = append(reads, floatRead{fingerprintList(misses), from, max(end, to-1)})
	}
	if len(reads) > 0 {
		cols, err := s.loadFloats(ctx, reads, start, end, withST, matchers)
		if err != nil {
			return nil, err
		}
		res.cols = cols
	}

	if len(hits) > 0 {
		res.cached = make(map[uint64]floatSeg, len(hits))
		ts := make([]int64, 0, cachedN)
		vals := make([]float64, 0, cachedN)
		longest := 0
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
		// No cached series has start timestamps: they share one slice
		// of zeros.
		zeros := make([]int64, longest)
		for fp, sg := range res.cached {
			sg.sts = zeros[:len(sg.ts):len(sg.ts)]
			res.cached[fp] = sg
		}
	}

	if len(fillable) > 0 && res.cols != nil {
		res.segs = make(map[uint64][]floatSeg, len(fillable))
		var fills []*cacheEntry
		for _, fp := range fillable {
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
