package model

import (
	"math"
	"math/rand/v2"
)

// rng is the model's only source of randomness: a PCG stream seeded from
// the configuration, consumed in a fixed order, so that a seed fixes the
// whole run.
type rng struct{ *rand.Rand }

func newRNG(seed uint64, stream uint64) rng {
	return rng{rand.New(rand.NewPCG(seed, stream))}
}

// poisson draws a Poisson count with the given mean; above 30 the normal
// approximation is close enough and costs one draw.
func (r rng) poisson(mean float64) int {
	switch {
	case mean <= 0:
		return 0
	case mean > 30:
		n := math.Round(mean + math.Sqrt(mean)*r.NormFloat64())
		if n < 0 {
			return 0
		}
		return int(n)
	}
	l := math.Exp(-mean)
	k, p := 0, 1.0
	for {
		p *= r.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// lognormal draws from the log-normal distribution with the given mean
// and log-scale spread sigma.
func (r rng) lognormal(mean, sigma float64) float64 {
	return mean * math.Exp(sigma*r.NormFloat64()-sigma*sigma/2)
}

// round rounds x up or down at random, in proportion to its fraction, so
// that fluid quantities become whole events without bias.
func (r rng) round(x float64) int {
	n := math.Floor(x)
	if r.Float64() < x-n {
		n++
	}
	return int(n)
}

// lognormalTail is P(X > x) for the log-normal with the given mean and
// sigma: the share of calls that outlast a timeout.
func lognormalTail(mean, sigma, x float64) float64 {
	switch {
	case mean <= 0:
		return 0
	case math.IsInf(mean, 1):
		return 1
	case sigma <= 0:
		if mean > x {
			return 1
		}
		return 0
	}
	mu := math.Log(mean) - sigma*sigma/2
	z := (math.Log(x) - mu) / sigma
	return 0.5 * math.Erfc(z/math.Sqrt2)
}
