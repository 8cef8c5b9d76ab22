// Package forecast predicts when a growing resource reaches its capacity.
//
// A straight line through the last hours (Prometheus's predict_linear) is
// thrown off by three things real usage series do: noise and outliers
// (least squares is not robust), cleanups (log rotation, GC, compaction
// drop the series and a line fit across the drop sees no growth), and daily
// cycles (a fit over part of a cycle sees the cycle's slope, not the
// trend). This package answers each: growth rates are medians of slopes
// between pairs of points (robust, Theil–Sen style), pairs never span a
// cleanup, and when the series has a daily cycle the pairs are exactly one
// cycle apart, so the cycle cancels out. For a sawtooth it also asks when
// the peaks, not the current segment, will reach capacity.
package forecast

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"time"
)

// Sample is one observation; T is in milliseconds since the epoch, as in
// Prometheus.
type Sample struct {
	T int64
	V float64
}

// Config tunes Predict. Zero values mean the defaults.
type Config struct {
	// Period is the seasonal cycle to test for. Default (0) 24h; negative
	// means the series has no cycle.
	Period time.Duration
	// MinSamples is the fewest finite samples Predict works with. Default 12.
	MinSamples int
	// ResetDrop is how many robust standard deviations of the
	// point-to-point change a drop must exceed to count as a cleanup.
	// Default 8.
	ResetDrop float64
}

func (c Config) withDefaults() Config {
	if c.Period == 0 {
		c.Period = 24 * time.Hour
	}
	if c.MinSamples <= 0 {
		c.MinSamples = 12
	}
	if c.ResetDrop <= 0 {
		c.ResetDrop = 8
	}
	return c
}

// Validate reports the first invalid field; prefix names the config key.
func (c Config) Validate(prefix string) error {
	switch {
	case c.MinSamples < 0 || (c.MinSamples > 0 && c.MinSamples < 4):
		return fmt.Errorf("%smin_samples: must be >= 4, got %d", prefix, c.MinSamples)
	case c.ResetDrop < 0 || math.IsNaN(c.ResetDrop):
		return fmt.Errorf("%sreset_drop: must be > 0, got %v", prefix, c.ResetDrop)
	}
	return nil
}

// Forecast is a prediction of time to exhaustion. Durations are in
// seconds from the prediction time; +Inf means the resource is not
// expected to run out (no growth), 0 that it already has.
type Forecast struct {
	Seconds      float64
	Lower, Upper float64
	// Rate is the growth per second used (in the series' unit).
	Rate float64
	// Level is the usage now, with the top of the daily cycle when
	// Seasonal, that the projection starts from.
	Level    float64
	Seasonal bool
	// Resets is how many cleanups were seen in the window.
	Resets int
	// Method names the projection: "trend", "sawtooth_segment",
	// "sawtooth_peaks" or "none".
	Method string
}

// ErrTooFewSamples is returned when the window holds fewer finite samples
// than Config.MinSamples.
var ErrTooFewSamples = errors.New("too few samples")

// Predict forecasts when the series in samples (ascending time; NaN and
// ±Inf values are ignored) reaches capacity, as seen at time now (ms).
func Predict(samples []Sample, capacity float64, now int64, cfg Config) (Forecast, error) {
	cfg = cfg.withDefaults()
	if math.IsNaN(capacity) || math.IsInf(capacity, 0) {
		return Forecast{}, fmt.Errorf("capacity must be finite, got %v", capacity)
	}
	xs := make([]Sample, 0, len(samples))
	for _, s := range samples {
		if math.IsNaN(s.V) || math.IsInf(s.V, 0) {
			continue
		}
		if len(xs) > 0 && s.T <= xs[len(xs)-1].T {
			continue // out of order or duplicate: the first wins
		}
		xs = append(xs, s)
	}
	if len(xs) < cfg.MinSamples {
		return Forecast{}, fmt.Errorf("%w: %d finite samples, need %d", ErrTooFewSamples, len(xs), cfg.MinSamples)
	}
	segs := segments(xs, cfg.ResetDrop)
	f := Forecast{Resets: len(segs) - 1, Seconds: math.Inf(1), Lower: math.Inf(1), Upper: math.Inf(1), Method: "none"}

	step := medianStep(xs)
	lag := int(math.Round(float64(cfg.Period.Milliseconds()) / step))
	span := float64(xs[len(xs)-1].T - xs[0].T)
	seasonal := false
	if cfg.Period > 0 && lag >= 4 && float64(cfg.Period.Milliseconds()) <= span/2 {
		seasonal = isSeasonal(xs, segs, lag)
	}
	if !seasonal {
		lag = 0 // each segment uses half its length
	}
	f.Seasonal = seasonal
	slopes := pairSlopes(xs, segs, lag)
	if len(slopes) == 0 {
		return f, nil
	}
	sort.Float64s(slopes)
	g := quantile(slopes, 0.5)
	gLo, gHi := quantile(slopes, 0.1), quantile(slopes, 0.9)
	f.Rate = g

	if seasonal {
		f.Seconds, f.Level = seasonalCrossing(xs, segs[len(segs)-1], lag, g, capacity, now, step)
		f.Lower, _ = seasonalCrossing(xs, segs[len(segs)-1], lag, gHi, capacity, now, step)
		f.Upper, _ = seasonalCrossing(xs, segs[len(segs)-1], lag, gLo, capacity, now, step)
	} else {
		// Project the recent points of the current segment to now.
		cur := segs[len(segs)-1]
		recent := (cur.end - cur.start) / 4
		if recent < 3 {
			recent = 3
		}
		from := cur.end - recent
		if from < cur.start {
			from = cur.start
		}
		proj := make([]float64, 0, cur.end-from)
		for i := from; i < cur.end; i++ {
			proj = append(proj, xs[i].V+g*float64(now-xs[i].T)/1000)
		}
		sort.Float64s(proj)
		level := quantile(proj, 0.5)
		f.Level = level
		tte := func(rate float64) float64 {
			if level >= capacity {
				return 0
			}
			if rate <= 0 {
				return math.Inf(1)
			}
			return (capacity - level) / rate
		}
		f.Seconds, f.Lower, f.Upper = tte(g), tte(gHi), tte(gLo)
	}
	f.Method = "trend"
	if g <= 0 {
		f.Method = "none"
	}
	if f.Resets >= 2 {
		sawtooth(&f, xs, segs, capacity, now, g)
	}
	return f, nil
}

// seasonalCrossing finds when a cycling, growing series first reaches
// capacity. The daily shape is taken from the last cycles (the median over
// up to three of them of each phase, projected to now at rate g), and each
// phase is carried forward cycle by cycle until its value reaches capacity;
// the earliest phase to get there wins. It returns the seconds until then
// and the highest point of the projected cycle.
func seasonalCrossing(xs []Sample, cur segment, lag int, g, capacity float64, now int64, stepMS float64) (float64, float64) {
	n := cur.end
	periodS := float64(lag) * stepMS / 1000
	best, top := math.Inf(1), math.Inf(-1)
	var buf [3]float64
	for j := 0; j < lag; j++ {
		vals := buf[:0]
		for c := 1; c <= 3; c++ {
			i := n - c*lag + j
			if i < cur.start || i >= n {
				continue
			}
			vals = append(vals, xs[i].V+g*float64(now-xs[i].T)/1000)
		}
		if len(vals) == 0 {
			continue
		}
		sort.Float64s(vals)
		proj := vals[len(vals)/2]
		top = math.Max(top, proj)
		// Point n-lag+j was lag-j-1 steps before the newest, so its phase
		// comes round again j+1 steps from now, then every period.
		ahead := math.Mod(float64(j+1)*stepMS/1000, periodS)
		at := proj + g*ahead
		var t float64
		switch {
		case at >= capacity:
			t = ahead
		case g <= 0:
			continue
		default:
			cycles := math.Ceil((capacity - at) / (g * periodS))
			t = ahead + cycles*periodS
		}
		best = math.Min(best, t)
	}
	if top >= capacity {
		best = 0
	}
	return best, top
}

// segment is a half-open index range [start, end) between cleanups.
type segment struct{ start, end int }

// segments splits the series at cleanups: drops far larger than the
// series' ordinary point-to-point changes.
func segments(xs []Sample, k float64) []segment {
	d := make([]float64, 0, len(xs)-1)
	for i := 1; i < len(xs); i++ {
		d = append(d, xs[i].V-xs[i-1].V)
	}
	sorted := append([]float64(nil), d...)
	sort.Float64s(sorted)
	med := quantile(sorted, 0.5)
	abs := make([]float64, len(d))
	for i, v := range d {
		abs[i] = math.Abs(v - med)
	}
	sort.Float64s(abs)
	mad := 1.4826 * quantile(abs, 0.5)
	// A floor relative to the range keeps a perfectly smooth series (MAD
	// 0) from calling every tiny dip a cleanup.
	lo, hi := xs[0].V, xs[0].V
	for _, s := range xs {
		lo, hi = math.Min(lo, s.V), math.Max(hi, s.V)
	}
	limit := math.Max(k*mad, 0.05*(hi-lo))
	var out []segment
	start := 0
	for i, v := range d {
		if v < med-limit {
			out = append(out, segment{start, i + 1})
			start = i + 1
		}
	}
	return append(out, segment{start, len(xs)})
}

// isSeasonal reports whether the series correlates with itself one cycle
// (lag points) later, after removing the trend within each segment.
func isSeasonal(xs []Sample, segs []segment, lag int) bool {
	var sxy, sxx, syy float64
	n := 0
	for _, s := range segs {
		if s.end-s.start < 2*lag {
			continue
		}
		// Detrend with the segment's own line so growth alone does not
		// look like self-similarity.
		a, b := lineFit(xs[s.start:s.end])
		t0 := xs[s.start].T
		for i := s.start; i+lag < s.end; i++ {
			x := xs[i].V - (a + b*float64(xs[i].T-t0))
			y := xs[i+lag].V - (a + b*float64(xs[i+lag].T-t0))
			sxy += x * y
			sxx += x * x
			syy += y * y
			n++
		}
	}
	if n < lag || sxx == 0 || syy == 0 {
		return false
	}
	return sxy/math.Sqrt(sxx*syy) >= 0.5
}

// pairSlopes returns slopes (per second) between points lag apart within
// each segment; lag 0 means half the segment's length.
func pairSlopes(xs []Sample, segs []segment, lag int) []float64 {
	var out []float64
	for _, s := range segs {
		m := s.end - s.start
		l := lag
		if l == 0 || l > m-1 {
			l = m / 2
		}
		if l < 1 {
			continue
		}
		for i := s.start; i+l < s.end; i++ {
			dt := float64(xs[i+l].T-xs[i].T) / 1000
			if dt > 0 {
				out = append(out, (xs[i+l].V-xs[i].V)/dt)
			}
		}
	}
	return out
}

// sawtooth refines f for a series with repeated cleanups: the current
// segment may reach capacity before its next cleanup, or else the peaks
// creep up cycle after cycle until one reaches it.
func sawtooth(f *Forecast, xs []Sample, segs []segment, capacity float64, now int64, g float64) {
	var resetTimes []float64
	var peakT, peakV []float64
	for _, s := range segs[:len(segs)-1] {
		top := s.start
		for i := s.start; i < s.end; i++ {
			if xs[i].V >= xs[top].V {
				top = i
			}
		}
		peakT = append(peakT, float64(xs[top].T)/1000)
		peakV = append(peakV, xs[top].V)
		resetTimes = append(resetTimes, float64(xs[s.end].T)/1000)
	}
	var gaps []float64
	for i := 1; i < len(resetTimes); i++ {
		gaps = append(gaps, resetTimes[i]-resetTimes[i-1])
	}
	sort.Float64s(gaps)
	cycle := quantile(gaps, 0.5)
	nowS := float64(now) / 1000
	nextReset := resetTimes[len(resetTimes)-1] + cycle
	for nextReset < nowS {
		nextReset += cycle
	}
	if f.Seconds <= nextReset-nowS {
		f.Method = "sawtooth_segment"
		return
	}
	// Peaks trend: median slope over all pairs of peaks.
	var ps []float64
	for i := range peakT {
		for j := i + 1; j < len(peakT); j++ {
			if dt := peakT[j] - peakT[i]; dt > 0 {
				ps = append(ps, (peakV[j]-peakV[i])/dt)
			}
		}
	}
	sort.Float64s(ps)
	h := quantile(ps, 0.5)
	f.Method = "sawtooth_peaks"
	if h <= 0 || len(ps) == 0 {
		f.Seconds, f.Lower, f.Upper = math.Inf(1), f.Seconds, math.Inf(1)
		return
	}
	// Level of the peaks, projected to the cycle ending at each future
	// reset, from the median of the peaks' projections.
	proj := make([]float64, len(peakT))
	lastPeak := peakT[len(peakT)-1]
	for i := range peakT {
		proj[i] = peakV[i] + h*(lastPeak-peakT[i])
	}
	sort.Float64s(proj)
	base := quantile(proj, 0.5)
	for k := 0; k < 10000; k++ {
		t := nextReset + float64(k)*cycle
		peak := base + h*(t-lastPeak)
		if peak >= capacity {
			// Within that cycle usage reaches capacity shortly before the
			// peak, at the in-segment rate.
			at := t
			if g > 0 {
				at = t - (peak-capacity)/g
			}
			if at < nowS {
				at = nowS
			}
			f.Seconds = at - nowS
			f.Lower = math.Max(0, f.Seconds-cycle)
			f.Upper = f.Seconds + cycle
			return
		}
	}
	f.Seconds, f.Upper = math.Inf(1), math.Inf(1)
}

// lineFit is the least-squares line v = a + b*(T - xs[0].T).
func lineFit(xs []Sample) (a, b float64) {
	var sx, sy, sxx, sxy float64
	n := float64(len(xs))
	for _, s := range xs {
		x := float64(s.T - xs[0].T)
		sx += x
		sy += s.V
		sxx += x * x
		sxy += x * s.V
	}
	den := n*sxx - sx*sx
	if den == 0 {
		return sy / n, 0
	}
	b = (n*sxy - sx*sy) / den
	return (sy - b*sx) / n, b
}

func medianStep(xs []Sample) float64 {
	d := make([]float64, 0, len(xs)-1)
	for i := 1; i < len(xs); i++ {
		d = append(d, float64(xs[i].T-xs[i-1].T))
	}
	sort.Float64s(d)
	return quantile(d, 0.5)
}

// quantile of sorted values by linear interpolation; NaN when empty.
func quantile(sorted []float64, q float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	pos := q * float64(n-1)
	lo := int(pos)
	if lo >= n-1 {
		return sorted[n-1]
	}
	f := pos - float64(lo)
	return sorted[lo]*(1-f) + sorted[lo+1]*f
}
