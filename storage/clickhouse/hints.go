package clickhouse

import (
	"context"
	"fmt"
	"math"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/value"
)

// Counter reset hints of native histograms, as Prometheus's TSDB reports
// them.
//
// The TSDB does not return the hint a histogram was appended with. It
// stores histograms in chunks, starting a new chunk wherever a sample does
// not continue the previous one (counter reset, schema change, stale
// marker, gauge/counter or integer/float switch, explicit reset hint), and
// reports the first sample of a chunk as UnknownCounterReset, every later
// one as NotCounterReset, and gauge histograms as GaugeType. PromQL
// results carry these hints (sum of counters is "not_reset"), so the store
// reproduces them from the samples themselves: a sample gets
// NotCounterReset when it continues the sample before it, else Unknown.
// The TSDB also cuts chunks when they are full (about 120 samples), which
// the store does not mimic: a sample there reads NotCounterReset rather
// than Unknown, which only tells the engine what it would have found by
// comparing.

// prevSample is the last sample of a series before the selected range,
// which decides the hint of the first histogram in the range.
type prevSample struct {
	histTS   int64
	hist     []byte
	floatTS  int64
	hasHist  bool
	hasFloat bool
}

// prevLookback bounds the search for the sample before a range. A series
// silent for longer has been marked stale by any scraper, which starts a
// new chunk anyway.
const prevLookback = msPerDay

// loadPrevious finds, for each histogram series (histCond), its last
// histogram and, for those that also have floats (floatCond), its last
// float sample before start.
func (s *Store) loadPrevious(ctx context.Context, histCond, floatCond string, start int64) (map[uint64]*prevSample, error) {
	out := map[uint64]*prevSample{}
	get := func(fp uint64) *prevSample {
		p := out[fp]
		if p == nil {
			p = &prevSample{}
			out[fp] = p
		}
		return p
	}
	// One round trip: the last histogram of each histogram series, and
	// the last float of those that also have floats.
	q := fmt.Sprintf(`SELECT 1 AS is_hist, fingerprint, max(timestamp), argMax(histogram, timestamp) FROM %s
WHERE %s AND timestamp < %d AND timestamp >= %d GROUP BY fingerprint`,
		s.t.histograms, histCond, start, start-prevLookback)
	if floatCond != "" {
		q += fmt.Sprintf(`
UNION ALL
SELECT 0 AS is_hist, fingerprint, max(timestamp), '' FROM %s
WHERE %s AND %s AND timestamp < %d AND timestamp >= %d GROUP BY fingerprint`,
			s.t.samples, histCond, floatCond, start, start-prevLookback)
	}
	rows, err := s.conn.Query(ctx, q)
	if err != nil {
		return nil, s.wrap("select previous samples", err)
	}
	defer rows.Close()
	var (
		isHist uint8
		fp     uint64
		ts     int64
		data   []byte
	)
	dest := []any{&isHist, &fp, &ts, &data}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, s.wrap("select previous samples", err)
		}
		p := get(fp)
		if isHist == 1 {
			p.histTS, p.hist, p.hasHist = ts, data, true
		} else {
			p.floatTS, p.hasFloat = ts, true
		}
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("select previous samples", err)
	}
	return out, nil
}

// computeHints sets sr.hints from the histogram samples, the float
// samples in between and the sample before the range.
func computeHints(sr *series, prev *prevSample) error {
	n := len(sr.hts)
	if n == 0 {
		return nil
	}
	sr.hints = make([]histogram.CounterResetHint, n)
	var (
		cur, last histogram.FloatHistogram
		lastInt   bool
		haveLast  bool
	)
	decode := func(b []byte, fh *histogram.FloatHistogram) (bool, error) {
		isInt := histogramFormat(b) == formatIntHistogram
		return isInt, decodeFloatHistogram(b, fh)
	}
	// The sample before the range counts only if no float sample came
	// after it.
	if prev != nil && prev.hasHist && !(prev.hasFloat && prev.floatTS > prev.histTS) {
		var err error
		if lastInt, err = decode(prev.hist, &last); err != nil {
			return err
		}
		haveLast = true
	}
	for i := 0; i < n; i++ {
		isInt, err := decode(sr.hdata[i], &cur)
		if err != nil {
			return fmt.Errorf("series %s at %d: %w", sr.ls, sr.hts[i], err)
		}
		// A float sample between the previous histogram (or the range
		// start) and this one breaks the chunk.
		prevTS := int64(math.MinInt64)
		if i > 0 {
			prevTS = sr.hts[i-1]
		}
		floatBetween := sr.floatBetween(prevTS, sr.hts[i])
		switch {
		case cur.CounterResetHint == histogram.GaugeType:
			sr.hints[i] = histogram.GaugeType
		case haveLast && !floatBetween && continues(&last, &cur, lastInt, isInt):
			sr.hints[i] = histogram.NotCounterReset
		default:
			sr.hints[i] = histogram.UnknownCounterReset
		}
		cur, last = last, cur
		lastInt, haveLast = isInt, true
	}
	return nil
}

// continues reports whether the TSDB would append cur to the chunk that
// ends with prev (see chunkenc's appendable).
func continues(prev, cur *histogram.FloatHistogram, prevInt, curInt bool) bool {
	switch {
	case prevInt != curInt,
		prev.CounterResetHint == histogram.GaugeType,
		cur.CounterResetHint == histogram.CounterReset:
		return false
	case value.IsStaleNaN(cur.Sum):
		return true
	case value.IsStaleNaN(prev.Sum),
		cur.Schema != prev.Schema,
		cur.ZeroThreshold != prev.ZeroThreshold,
		histogram.IsCustomBucketsSchema(cur.Schema) && !histogram.CustomBucketBoundsMatch(cur.CustomValues, prev.CustomValues):
		return false
	}
	// The appended hint must not short-cut the comparison: the TSDB
	// ignores every hint but CounterReset here.
	hint := cur.CounterResetHint
	cur.CounterResetHint = histogram.UnknownCounterReset
	reset := cur.DetectReset(prev)
	cur.CounterResetHint = hint
	return !reset
}
