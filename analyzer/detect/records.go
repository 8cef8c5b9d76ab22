package detect

import (
	"math"
)

// records judges whether a value reaches a level the series has never
// reached, and how rare that is for this series. Values are quantised to
// a coarse grid; a point on a level above the highest (or below the
// lowest) level seen so far is a new level. Its surprise is -log10 of
// the (decayed) rate at which the series has reached new levels so far.
//
// The tracks judge a deviation by its size relative to the recent
// residuals; this judges the event by how often the series breaks new
// ground at all. The two disagree usefully: a series with heavy-tailed
// residuals (spikes every few hours) makes the tracks forgiving of the
// next spike, yet if it has sat within the same band for weeks, leaving
// it is rare; a trending or restless series sets new levels all the time,
// so each one is weak evidence. A rank argument backs the rate: in a
// stationary series the chance that point n is a record is about 1/n, so
// the rate of new levels falls as the series settles, and a settled
// series finds a new level more telling the longer it has been settled.
type records struct {
	// exp fixes the grid: levels are multiples of 2^exp. It is chosen
	// once, when warm-up ends, and kept so that levels keep their
	// meaning; set reports whether it has been chosen.
	exp int
	set bool
	// lo and hi are the lowest and highest levels reached.
	lo, hi int64
	// count is the decayed number of new levels, total of points.
	count, total float64
	decay        float64
}

// recordLevels is how many grid steps the normal range (1st to 99th
// percentile of the values window at the end of warm-up) spans at least:
// the step is the power of two at or above range/8, so the range covers
// 4 to 8 levels. Coarse enough that noise does not set a new level at
// every small excursion, fine enough that leaving the band is seen.
const recordLevels = 8

// recordPrior is the new-level count the rate starts from: half an event,
// so that before the series has set any level the rate is 1/(2n), the
// rank argument's 1/n halved for two tails.
const recordPrior = 0.5

func newRecords(history int) *records {
	// Rates are remembered over the seasonal history's span.
	return &records{decay: math.Pow(0.5, 1/float64(history))}
}

// setGrid chooses the grid from the values window once warm-up ends.
func (rc *records) setGrid(values *rollingQuantiles) {
	lo, hi, med := values.quantile(0.01), values.quantile(0.99), values.quantile(0.5)
	rng := hi - lo
	// A flat start (a constant series) still gets a grid: a thousandth
	// of the level, as for the residual scale.
	if floor := 1e-3 * math.Abs(med); rng < floor {
		rng = floor
	}
	if !(rng > 0) || math.IsInf(rng, 0) {
		rng = 1
	}
	rc.exp = gridExp(rng)
	rc.set = true
	rc.lo, rc.hi = rc.level(values.quantile(0)), rc.level(values.quantile(1))
}

// gridExp is the exponent of the power of two at or above rng/recordLevels,
// kept such that 2^e and v/2^e are representable for any finite v.
func gridExp(rng float64) int {
	e := int(math.Ceil(math.Log2(rng / recordLevels)))
	return max(min(e, 1000), -1000)
}

// coarsenAfter is how many powers of two finer than its design the grid
// may become before it is coarsened: 3, so the normal range spans more
// than 8 × recordLevels levels, an order of magnitude more than meant.
const coarsenAfter = 3

// coarsen widens the grid once the normal range of the values window has
// outgrown it by coarsenAfter powers of two. The grid is fixed when warm-up
// ends so that levels keep their meaning, but a warm-up over a flat
// stretch (a series idle at zero, a gauge not yet moving) fixes a grid far
// finer than the series' later range, and every new maximum, however
// slight, is then a new level. Levels already reached map exactly onto
// the coarser grid (a shift), so the record stays a record; a range that
// grows by less than that keeps its grid, and its levels their meaning.
func (rc *records) coarsen(values *rollingQuantiles) {
	rng := values.quantile(0.99) - values.quantile(0.01)
	if !(rng > 0) || math.IsInf(rng, 0) {
		return
	}
	e := gridExp(rng)
	if e < rc.exp+coarsenAfter {
		return
	}
	d := uint(min(e-rc.exp, 62))
	rc.lo >>= d
	rc.hi >>= d
	rc.exp = e
}

// level quantises v onto the grid; levels too far out for an int64
// saturate.
func (rc *records) level(v float64) int64 {
	q := math.Floor(math.Ldexp(v, -rc.exp))
	switch {
	case q >= math.MaxInt64/2:
		return math.MaxInt64 / 2
	case q <= math.MinInt64/2:
		return math.MinInt64 / 2
	}
	return int64(q)
}

// observe returns the surprise of v reaching a new level (0 when it does
// not) and learns it. Before the grid is set it returns 0.
func (rc *records) observe(v float64) float64 {
	if !rc.set {
		return 0
	}
	q := rc.level(v)
	isNew := q > rc.hi || q < rc.lo
	var s float64
	if isNew {
		s = -math.Log10((rc.count + recordPrior) / (rc.total + 1))
		rc.lo, rc.hi = min(rc.lo, q), max(rc.hi, q)
	}
	rc.count *= rc.decay
	rc.total = rc.total*rc.decay + 1
	if isNew {
		rc.count++
	}
	return math.Max(0, s)
}
