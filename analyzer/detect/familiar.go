package detect

import (
	"math"
)

// familiarity keeps the values of the seasonal history (the last `history`
// points) in sorted order and answers two questions about a new value:
// has the series been near it before (and how often), and how rare is it
// for this series to go somewhere it has never been.
//
// "Near" is relative to how far the value is from the series' median: a
// value within near (Config.NearFraction, a quarter by default) of its
// distance from the median, and at least one new-level grid step, counts
// as the same place. Two nightly spikes to 1.40 and 1.53 over a baseline
// of 0.07 are the same kind of event; a value of 0.6 between that
// baseline and those spikes is somewhere new, although it lies inside the
// range the series has covered (which the new-level evidence cannot see).
//
// The counts answer both ways:
//   - never near (k = 0): the value is novel, and its surprise is -log10 of
//     the decayed rate at which this series produces novel values, exactly
//     as for new levels (records.go);
//   - near often (k >= familiarMin): a one-point excursion to a place the
//     series has visited k times in n points cannot be much rarer than
//     k/n, whatever the residuals' tail says. The tail model, fitted on a
//     two-day window, sees a spike that recurs every day or so (a nightly
//     job that wanders by half an hour) as extreme each time; the history
//     of values remembers that it keeps happening.
type familiarity struct {
	// sorted holds the finite values of the detector's seasonal history
	// (the last `history` points), kept in step with it by the detector.
	sorted       []float64
	count, total float64 // decayed numbers of novel values and of points
	decay        float64
	// near is the neighbourhood of a value as a fraction of its distance
	// from the median (Config.NearFraction).
	near float64
}

func newFamiliarity(history int, near float64) *familiarity {
	return &familiarity{sorted: make([]float64, 0, history), decay: math.Pow(0.5, 1/float64(history)), near: near}
}

// replace removes old (when not NaN; it must be present) and inserts v
// (when not NaN). When both are values, only those between their
// positions move.
func (f *familiarity) replace(old, v float64) {
	s := f.sorted
	oldOK, newOK := !math.IsNaN(old), !math.IsNaN(v)
	if oldOK {
		// Always present when the detector keeps the copy in step; a
		// missing one must not turn into an out-of-range slice.
		if i := lowerBound(s, old); i == len(s) || s[i] != old {
			oldOK = false
		}
	}
	switch {
	case oldOK && newOK:
		i := lowerBound(s, old)
		if v > old {
			j := i + lowerBound(s[i+1:], v)
			copy(s[i:j], s[i+1:j+1])
			s[j] = v
		} else {
			j := lowerBound(s[:i], v)
			copy(s[j+1:i+1], s[j:i])
			s[j] = v
		}
	case oldOK:
		i := lowerBound(s, old)
		f.sorted = append(s[:i], s[i+1:]...)
	case newOK:
		i := lowerBound(s, v)
		s = append(s, 0)
		copy(s[i+1:], s[i:])
		s[i] = v
		f.sorted = s
	}
}

// reset forgets every value (the seasonal history restarted).
func (f *familiarity) reset() { f.sorted = f.sorted[:0] }

// visits counts the remembered values in [lo, hi].
func (f *familiarity) visits(lo, hi float64) int {
	a := lowerBound(f.sorted, lo)
	return upperBound(f.sorted[a:], hi)
}

// linearNear counts the values near v on the linear scale.
func (f *familiarity) linearNear(v, med, step float64) int {
	lo, hi := f.linearPlace(v, med, step)
	return f.visits(lo, hi)
}

// linearPlace is the neighbourhood of v on the linear scale.
func (f *familiarity) linearPlace(v, med, step float64) (lo, hi float64) {
	w := math.Max(step, f.near*math.Abs(v-med))
	return v - w, v + w
}

// logNear counts the values near v on the log scale (v+off and med+off
// positive): within near of its log-distance from the median, so that
// a drop to a hundredth of the usual level is not "near" the values at a
// twentieth.
func (f *familiarity) logNear(v, med, off float64) int {
	lo, hi := f.logPlace(v, med, off)
	return f.visits(lo, hi)
}

// logPlace is the neighbourhood of v on the log scale.
func (f *familiarity) logPlace(v, med, off float64) (lo, hi float64) {
	w := f.near * math.Abs(math.Log((v+off)/(med+off)))
	return (v+off)*math.Exp(-w) - off, (v+off)*math.Exp(w) - off
}

// cap bounds the surprise of a one-point excursion to a place visited k
// times among the remembered values (see visitCap).
func (f *familiarity) cap(k int) float64 {
	return visitCap(k, len(f.sorted))
}

// visitCap bounds the surprise of a one-point excursion to a place visited
// k times in n points: -log10 of its empirical rate, (k + ½)/(n + 1).
// Below familiarMin visits there is no bound.
func visitCap(k, n int) float64 {
	if k < familiarMin {
		return math.Inf(1)
	}
	return math.Max(0, -math.Log10((float64(k)+0.5)/(float64(n)+1)))
}

// familiarMin is how many earlier visits make a place familiar. One or two
// earlier visits are as likely to be earlier anomalies as a habit; from
// three on, the rate k/n starts to mean something (its relative error is
// below 1/√3).
const familiarMin = 3

// novelty returns the surprise of a value with k neighbours (0 unless
// k = 0) and counts the point in the rate of novel values.
func (f *familiarity) novelty(k int) float64 {
	var s float64
	if k == 0 {
		s = math.Max(0, -math.Log10((f.count+recordPrior)/(f.total+1)))
	}
	f.count *= f.decay
	f.total = f.total*f.decay + 1
	if k == 0 {
		f.count++
	}
	return s
}
