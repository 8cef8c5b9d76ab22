// Package stats holds the summary statistics several packages report
// (the remediation engine's learning record, the benchmarks).
package stats

import "slices"

// Median is the median of xs (the mean of the middle two when their
// number is even), 0 when xs is empty. xs is left as it was.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}
