package forecast

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

const minute = int64(60_000)

func gen(n int, f func(i int) float64) []Sample {
	out := make([]Sample, n)
	for i := range out {
		out[i] = Sample{T: int64(i) * 5 * minute, V: f(i)}
	}
	return out
}

func TestLinear(t *testing.T) {
	// 1 unit per 5 minutes from 0: reaches 100 at sample 100.
	xs := gen(60, func(i int) float64 { return float64(i) })
	now := xs[len(xs)-1].T
	f, err := Predict(xs, 100, now, Config{})
	if err != nil {
		t.Fatal(err)
	}
	want := 41 * 5 * 60.0
	if math.Abs(f.Seconds-want) > 1 {
		t.Fatalf("seconds: got %v, want %v (%+v)", f.Seconds, want, f)
	}
	if !(f.Lower <= f.Seconds && f.Seconds <= f.Upper) {
		t.Fatalf("bounds do not bracket: %+v", f)
	}
}

func TestSawtoothIgnoresCleanups(t *testing.T) {
	// Fills 20 per 6h cycle from a base that rises 2 per cycle.
	const cycle = 72 // samples of 5 minutes
	xs := gen(12*cycle, func(i int) float64 {
		k := i / cycle
		return 10 + 2*float64(k) + 20*float64(i%cycle)/cycle
	})
	now := xs[len(xs)-1].T
	f, err := Predict(xs, 100, now, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if f.Resets < 10 || f.Method != "sawtooth_peaks" {
		t.Fatalf("want sawtooth_peaks with >=10 resets, got %+v", f)
	}
	// Peaks reach 100 when 10+2k+20 >= 100, k = 35; last cycle index 11.
	want := float64((35-11)*cycle*5*60) - 0 // about 24 cycles of 6h
	if math.Abs(f.Seconds-want) > 6*3600 {
		t.Fatalf("seconds: got %v, want about %v (%+v)", f.Seconds, want, f)
	}
}

func TestFlatNeverFills(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	xs := gen(500, func(i int) float64 { return 50 + rng.NormFloat64() })
	f, err := Predict(xs, 100, xs[len(xs)-1].T, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if f.Seconds < 30*86400 {
		t.Fatalf("a flat series should not fill within a month, got %+v", f)
	}
}

func TestBadInput(t *testing.T) {
	xs := gen(20, func(i int) float64 {
		switch i % 4 {
		case 1:
			return math.NaN()
		case 2:
			return math.Inf(1)
		}
		return float64(i)
	})
	// Duplicates and out-of-order samples are dropped, not fatal.
	xs = append(xs, Sample{T: 0, V: 1000})
	_, err := Predict(xs, 100, xs[len(xs)-1].T, Config{})
	if !errors.Is(err, ErrTooFewSamples) {
		t.Fatalf("want ErrTooFewSamples for 10 finite samples, got %v", err)
	}
	if _, err := Predict(gen(50, func(i int) float64 { return float64(i) }), math.NaN(), 0, Config{}); err == nil {
		t.Fatal("want an error for a NaN capacity")
	}
	if err := (Config{MinSamples: 2}).Validate("analyzer.forecast."); err == nil || err.Error() != "analyzer.forecast.min_samples: must be >= 4, got 2" {
		t.Fatalf("validate: %v", err)
	}
}
