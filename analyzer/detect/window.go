package detect

import (
	"math"
)

// rollingQuantiles keeps the last n finite values in arrival order (a
// ring) and in sorted order, so that any quantile of the window costs
// O(1) and an update costs one binary search plus a bounded memmove.
// n is fixed per detector (hundreds of values), so the work per point is
// constant in the length of the stream.
type rollingQuantiles struct {
	ring   []float64
	next   int
	full   bool
	sorted []float64
}

func newRollingQuantiles(n int) *rollingQuantiles {
	return &rollingQuantiles{ring: make([]float64, n), sorted: make([]float64, 0, n)}
}

func (w *rollingQuantiles) len() int { return len(w.sorted) }

// add inserts v, evicting the oldest value once the window is full.
// Callers pass only finite values.
func (w *rollingQuantiles) add(v float64) {
	if w.full {
		// Replace the oldest value in place: only the values between its
		// position and the new one's move, usually a few, instead of
		// two memmoves over the window's tail.
		old := w.ring[w.next]
		s := w.sorted
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
		w.ring[w.next] = v
		w.next = (w.next + 1) % len(w.ring)
		return
	}
	w.ring[w.next] = v
	w.next++
	if w.next == len(w.ring) {
		w.next = 0
		w.full = true
	}
	i := lowerBound(w.sorted, v)
	w.sorted = append(w.sorted, 0)
	copy(w.sorted[i+1:], w.sorted[i:])
	w.sorted[i] = v
}

// quantile returns the q-quantile by linear interpolation, NaN when empty.
func (w *rollingQuantiles) quantile(q float64) float64 {
	n := len(w.sorted)
	if n == 0 {
		return math.NaN()
	}
	pos := q * float64(n-1)
	lo := int(pos)
	if lo >= n-1 {
		return w.sorted[n-1]
	}
	f := pos - float64(lo)
	return w.sorted[lo]*(1-f) + w.sorted[lo+1]*f
}

// values returns the window's values oldest first, for snapshots.
func (w *rollingQuantiles) values() []float64 {
	if !w.full {
		return append([]float64(nil), w.ring[:w.next]...)
	}
	out := make([]float64, 0, len(w.ring))
	out = append(out, w.ring[w.next:]...)
	return append(out, w.ring[:w.next]...)
}

// lowerBound returns the first index i with s[i] >= x (len(s) if none) in
// sorted, NaN-free s. It is sort.SearchFloat64s without the closure and
// NaN ordering, which dominate its cost on the hot path.
func lowerBound(s []float64, x float64) int {
	lo, hi := 0, len(s)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s[m] < x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// upperBound returns the first index i with s[i] > x (len(s) if none).
func upperBound(s []float64, x float64) int {
	lo, hi := 0, len(s)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s[m] <= x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}
