package detect

import (
	"math"

	"gonum.org/v1/gonum/dsp/fourier"
)

// detectPeriod returns the dominant seasonal period of xs in points, or 0
// when the series shows none. xs may hold NaN for missing points.
//
// It computes the autocorrelation of the linearly detrended series with an
// FFT and takes the first lag whose autocorrelation is a local peak
// reaching minACF and standing at least minProminence above the trough
// before it. Requiring a peak (not just a high value) is what keeps
// random walks and trends, whose autocorrelation decays smoothly, from
// looking seasonal; taking the first strong peak rather than the highest
// keeps multiples of the period (2 days for a daily pattern) from winning.
func detectPeriod(xs []float64, med float64, minLag, maxLag int, minACF float64) int {
	p, _ := searchPeriod(xs, med, minLag, maxLag, minACF)
	return p
}

// searchPeriod is detectPeriod that also returns the autocorrelation
// (nil when it could not be computed), so that a caller can compare the
// period found with one it has.
func searchPeriod(xs []float64, med float64, minLag, maxLag int, minACF float64) (int, []float64) {
	n := len(xs)
	if maxLag > n/2-1 {
		maxLag = n/2 - 1
	}
	if minLag < 2 {
		minLag = 2
	}
	if maxLag <= minLag+2 {
		return 0, nil
	}
	acf := autocorrelation(xs, med)
	if acf == nil {
		return 0, nil
	}
	best, bestLag := math.Inf(-1), 0
	for lag := minLag; lag < maxLag; lag++ {
		a := acf[lag]
		if a < minACF || a < acf[lag-1] || a < acf[lag+1] {
			continue
		}
		// A real cycle swings: somewhere between half a period and a full
		// one the series must be clearly less like itself than at the
		// period. Slowly varying (autocorrelated) noise has small bumps
		// on a smooth decay and fails this.
		trough := a
		for k := lag / 2; k < lag; k++ {
			if acf[k] < trough {
				trough = acf[k]
			}
		}
		if a-trough < minSwing {
			continue
		}
		if bestLag == 0 || a > best+minGain {
			best, bestLag = a, lag
		}
	}
	return bestLag, acf
}

// minGain is how much more alike a longer period must make the series
// (in autocorrelation) to be preferred to a shorter one: two days must not
// win over one, a week that is clearly more regular than its days does.
const minGain = 0.1

// acfNear is the largest autocorrelation within a lag of p (-Inf when
// none is known).
func acfNear(acf []float64, p int) float64 {
	best := math.Inf(-1)
	for lag := p - 1; lag <= p+1; lag++ {
		if lag >= 0 && lag < len(acf) {
			best = math.Max(best, acf[lag])
		}
	}
	return best
}

// minSwing is how far the autocorrelation must fall between half a period
// and the period for the period to count.
const minSwing = 0.2

// periodHolds reports whether a period found earlier is still present, with
// a lower bar than finding it so the detector does not flap between
// seasonal and non-seasonal as the evidence wobbles. It computes only the
// lags around the period, directly, which is much cheaper than an FFT.
func periodHolds(xs []float64, med float64, period int, minACF float64) bool {
	n := len(xs)
	if 2*period > n {
		return false
	}
	ys := detrend(xs, med)
	if ys == nil {
		return false
	}
	var ss float64
	for _, y := range ys {
		ss += y * y
	}
	if ss <= 0 {
		return false
	}
	for lag := period - 1; lag <= period+1; lag++ {
		var c float64
		for i := 0; i+lag < n; i++ {
			c += ys[i] * ys[i+lag]
		}
		if c/ss*float64(n)/float64(n-lag) >= minACF {
			return true
		}
	}
	return false
}

// detrend returns xs minus its least-squares line, with missing points set
// to the line (med stands in for them in the fit), or nil when too little
// of xs is present.
func detrend(xs []float64, med float64) []float64 {
	n := len(xs)
	var sx, sy, sxx, sxy, m float64
	for i, v := range xs {
		if math.IsNaN(v) {
			continue
		}
		x := float64(i)
		sx += x
		sy += v
		sxx += x * x
		sxy += x * v
		m++
	}
	if m < float64(n)/2 || m < 8 {
		return nil
	}
	slope := (m*sxy - sx*sy) / (m*sxx - sx*sx)
	icept := (sy - slope*sx) / m
	out := make([]float64, n)
	for i, v := range xs {
		if math.IsNaN(v) {
			v = med
		}
		out[i] = v - (icept + slope*float64(i))
	}
	return out
}

// autocorrelation returns the normalised autocorrelation of the detrended
// series (missing points filled with med) for lags 0..n/2, or nil for a
// constant or mostly missing series.
func autocorrelation(xs []float64, med float64) []float64 {
	n := len(xs)
	ys := detrend(xs, med)
	if ys == nil {
		return nil
	}
	// Zero-padding to n + n/2 makes the circular correlation a linear one
	// for every lag up to n/2, the longest a period search looks at (2n
	// would make every lag exact, for a third more work). The size is
	// rounded up to 2^k or 3·2^k, which the FFT handles quickly.
	size := 1
	for size < n+n/2+1 {
		size <<= 1
	}
	if s3 := size / 4 * 3; s3 >= n+n/2+1 {
		size = s3
	}
	buf := make([]float64, size)
	copy(buf, ys)
	fft := fourier.NewFFT(size)
	coef := fft.Coefficients(nil, buf)
	for i, c := range coef {
		coef[i] = complex(real(c)*real(c)+imag(c)*imag(c), 0)
	}
	ac := fft.Sequence(buf, coef)
	if ac[0] <= 0 || math.IsNaN(ac[0]) {
		return nil
	}
	out := make([]float64, n/2+1)
	for i := range out {
		// Divide by the overlap so long lags are not biased to zero.
		out[i] = ac[i] / ac[0] * float64(n) / float64(n-i)
	}
	return out
}
