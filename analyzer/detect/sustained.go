package detect

import (
	"math"

	"gonum.org/v1/gonum/mathext"
)

// sustained follows a robust level of the residuals over a longer span
// than the tracks' (sustainedSpan, 64 points: the tracks' ladder 1, 4, 16
// continued) and judges it against the same statistic of the earlier,
// non-overlapping blocks of that length in the history. The tracks' tails
// are fitted on a two-day window of overlapping span means; a sensor stuck
// for hours, a flattened cycle or a failure that builds up over a morning
// fills the 2% tail of that window within a few dozen points, and a track
// of span 64 judged the same way (the fifth round) does no better.
//
// Span means that overlap by all but one point are not 576 observations:
// the blocks are the independent ones, and there are at most
// history/span of them (64), so the current span is judged by the
// prediction interval of a new observation from the b earlier blocks:
// t = (m − mean)/(s·√(1 + 1/b)), Student's t with b − 1 degrees of
// freedom. Few blocks make the interval wide by themselves, with no
// warm-up constant: to reach p = 1e-4 a span must be thousands of the
// blocks' spreads out from two earlier blocks, 6.6 from ten, 4.1 from
// sixty-three.
//
// The statistic is the interquartile mean (the mean of the span's central
// half): a burst of a bursty count that lasts less than a quarter of the
// span is trimmed away, while an excursion of more than half of it moves
// the whole central half. A residual enters the span clipped to the
// residual window's 2nd and 98th percentiles, so that no single value
// dominates even a block's mean of its central half when the span is
// still filling with one. Work per point: constant (a sorted window of 64
// values and a sum over half of it; an incomplete beta function).
type sustained struct {
	span   int               // points per block; 0: inactive
	win    *rollingQuantiles // the clipped residuals of the current span
	blocks []float64         // the statistic of the completed blocks, oldest first
	max    int               // blocks kept: history/span
	period int               // the seasonal period the residuals were taken with
}

// sustainedSpan is the block length: four times the longest track's span
// (16), the ladder's own ratio, so that it looks at a scale the tracks do
// not (at 5 minutes, 5⅓ hours), and at most an eighth of the history, so
// that the reference holds at least eight blocks once the history is full.
func sustainedSpan(history int) int {
	return min(4*spans[len(spans)-1], history/8)
}

// reset empties the track and sets its span (0: inactive). The blocks
// are statistics of residuals of one model of the series; when the model
// changes (a period found or lost) they describe another one.
func (s *sustained) reset(span, history int) {
	s.span, s.win, s.max = span, nil, 0
	if span > 0 {
		s.win = newRollingQuantiles(span)
		s.max = history / span
	}
	s.blocks = s.blocks[:0]
}

// peek returns the span's statistic if r were the newest residual, and
// whether the span is full.
func (s *sustained) peek(r float64) (float64, bool) {
	if s.span == 0 || !s.win.full {
		return 0, false
	}
	return trimmedMean(s.win.sorted, s.win.ring[s.win.next], r), true
}

// trimmedMean is the mean of the central half (the interquartile mean) of
// the sorted values with one value old replaced by r.
func trimmedMean(sorted []float64, old, r float64) float64 {
	n := len(sorted)
	i := lowerBound(sorted, old)
	p := lowerBound(sorted, r) // r's rank among the values without old
	if old < r {
		p--
	}
	at := func(k int) float64 { // the k-th of the values without old
		if k >= i {
			k++
		}
		return sorted[k]
	}
	lo, hi := n/4, n-n/4
	var sum float64
	for k := lo; k < hi; k++ {
		switch {
		case k < p:
			sum += at(k)
		case k == p:
			sum += r
		default:
			sum += at(k - 1)
		}
	}
	return sum / float64(hi-lo)
}

// judge returns −log10 of the chance that a new block's statistic lies at
// least as far from the blocks' mean as the current span's (Student's t
// with the blocks' effective number less one degrees of freedom), with r as its
// newest (clipped) residual, on either side — one symmetric reference
// serves both sides, where the tracks fit a tail to each — and whether the
// track can judge at all (a full span and at least two earlier blocks
// that do not overlap it).
// scale is the residuals' scale: independent noise alone spreads a
// block's mean by scale/√span, or by the span's own standard deviation
// over √span when that is larger; the least spread the blocks are given.
func (s *sustained) judge(r, scale float64) (float64, bool) {
	m, ok := s.peek(r)
	b := len(s.blocks) - 1 // the newest block overlaps the current span
	if !ok || b < 2 {
		return 0, false
	}
	var mean float64
	for _, x := range s.blocks[:b] {
		mean += x
	}
	mean /= float64(b)
	var ss float64
	for _, x := range s.blocks[:b] {
		ss += (x - mean) * (x - mean)
	}
	// The span's own spread bounds its statistic's from below too: a
	// span of a few large values among many small ones (bursts on a
	// series mostly at zero, a quantised series alternating between two
	// levels) spreads far wider than scale, a robust spread that such a
	// distribution makes near zero, and its central half moves when a
	// quarter of the span happens to be bursts. When the reference blocks
	// are alike (a series quiet for days) their own spread is zero, and
	// the first busy span would otherwise be judged by the robust scale's
	// floor alone. A span made of one event (a sensor stuck, a
	// flattened cycle) spreads no wider than the noise, and is judged as
	// before.
	noise := math.Max(scale, math.Sqrt(replacedVariance(s.win.sorted, s.win.ring[s.win.next], r)))
	sd := math.Max(math.Sqrt(ss/float64(b-1)), noise/math.Sqrt(float64(s.span)))
	// Blocks that follow one another are not independent when the
	// series' level wanders over hours (lag-one correlation ρ of the
	// blocks' statistics): their mean is then known only as well as that
	// of b(1 − ρ)/(1 + ρ) independent blocks, which sets both the
	// interval's width for the mean and the degrees of freedom (the
	// effective sample size of an AR(1) sequence). A negative estimate
	// counts as none: it would claim more independent blocks than there
	// are, and from a few blocks the estimate leans negative by about 1/b
	// anyway. At least two blocks remain, the fewest the track judges by.
	eff := float64(b)
	if ss > 0 {
		var c float64
		for i := 1; i < b; i++ {
			c += (s.blocks[i] - mean) * (s.blocks[i-1] - mean)
		}
		if rho := c / ss; rho > 0 {
			eff = math.Max(2, eff*(1-rho)/(1+rho))
		}
	}
	t := math.Abs(m-mean) / (sd * math.Sqrt(1+1/eff))
	if !(t > 0) {
		return 0, true
	}
	nu := eff - 1
	p := mathext.RegIncBeta(nu/2, 0.5, nu/(nu+t*t))
	if !(p > 0) {
		return maxSurprise, true
	}
	return math.Min(-math.Log10(p), maxSurprise), true
}

// add appends the clipped residual r of the n-th point; when the span is
// full and n is a multiple of it, the span's statistic joins the blocks.
// Blocks end at fixed points of the stream, not of the track's life, so
// that a track rebuilt from the history (rebuildSustained) ends them where
// a detector that never stopped did.
func (s *sustained) add(r float64, n int) {
	if s.span == 0 {
		return
	}
	s.win.add(r)
	if !s.win.full || n%s.span != 0 {
		return
	}
	if len(s.blocks) == s.max {
		copy(s.blocks, s.blocks[1:])
		s.blocks = s.blocks[:len(s.blocks)-1]
	}
	old := s.win.ring[s.win.next]
	s.blocks = append(s.blocks, trimmedMean(s.win.sorted, old, old))
}

// clipResid clips a residual to the residual window's tail thresholds, as
// it enters the sustained track.
func (d *Detector) clipResid(r float64) float64 {
	if d.residuals.len() == 0 {
		return r
	}
	return math.Min(math.Max(r, d.residuals.quantile(1-tailQ)), d.residuals.quantile(tailQ))
}

// syncSustained restarts the sustained track when the seasonal model its
// residuals come from has changed (or on first use).
func (d *Detector) syncSustained() {
	if d.long.span == 0 || d.period != d.long.period {
		d.long.reset(sustainedSpan(d.cfg.History), d.cfg.History)
		d.long.period = d.period
	}
}

// rebuildSustained fills the sustained track from the seasonal history
// (values oldest first, NaN for gaps, the newest being point d.n), as a
// restore from a snapshot that did not keep it does: the residuals the
// detector had — against the median of the same phase (±1) of the last
// three cycles, from the point where the history holds three of them —,
// clipped to the residual window's tails as they are now. A detector that
// never stopped began its blocks when it found the period, which the
// snapshot does not say; the history's three cycles are the earliest it
// can have. Work: once per restore, the history times nine.
func (d *Detector) rebuildSustained(hist []float64) {
	d.long.reset(sustainedSpan(d.cfg.History), d.cfg.History)
	d.long.period = d.period
	p := d.period
	if p <= 0 {
		return // the residuals against the values' median are not kept
	}
	for j := 3*p + 1; j < len(hist); j++ {
		v := hist[j]
		if math.IsNaN(v) {
			continue
		}
		pred, ok := phaseMedian(p, func(back int) float64 { return hist[j-back] })
		if !ok {
			continue
		}
		d.long.add(d.clipResid(v-pred), d.n-(len(hist)-1-j))
	}
}

// replacedVariance is the sample variance of the values with one value,
// old, replaced by r: the spread of the span's clipped residuals were r
// its newest. Work: two passes over the span.
func replacedVariance(x []float64, old, r float64) float64 {
	n := float64(len(x))
	if n < 2 {
		return 0
	}
	var mean float64
	for _, v := range x {
		mean += v
	}
	mean = (mean - old + r) / n
	var ss float64
	for _, v := range x {
		ss += (v - mean) * (v - mean)
	}
	ss += (r-mean)*(r-mean) - (old-mean)*(old-mean)
	return math.Max(ss, 0) / (n - 1)
}
