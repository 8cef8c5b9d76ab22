package detect

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(i int) time.Time { return t0.Add(time.Duration(i) * 5 * time.Minute) }

// daily is a noisy daily cycle sampled every 5 minutes.
func daily(rng *rand.Rand, i int) float64 {
	return 50 + 20*math.Sin(2*math.Pi*float64(i)/288) + rng.NormFloat64()
}

func TestSpikeScoresHighAndOnce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	d := New(Config{})
	const spike = 1500
	var maxNormal, atSpike float64
	var after int
	for i := 0; i < 2000; i++ {
		v := 10 + rng.NormFloat64()
		if i == spike || i == spike+1 {
			v = 40
		}
		r := d.Observe(at(i), v)
		if r.Score < 0 || r.Score > 1 || math.IsNaN(r.Score) {
			t.Fatalf("point %d: score %v outside [0, 1]", i, r.Score)
		}
		switch {
		case i == spike:
			atSpike = r.Score
		case i > spike && i < spike+50:
			if r.Score >= 0.5 {
				after++
			}
		case i > 600:
			maxNormal = math.Max(maxNormal, r.Score)
		}
	}
	if atSpike < 0.7 {
		t.Errorf("spike scored %.3f, want >= 0.7", atSpike)
	}
	if maxNormal >= atSpike/2 {
		t.Errorf("noise scored up to %.3f against the spike's %.3f", maxNormal, atSpike)
	}
	if after > 0 {
		t.Errorf("the same spike was reported %d more times", after)
	}
}

func TestLevelShift(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	d := New(Config{})
	best, bestAt := 0.0, -1
	for i := 0; i < 2000; i++ {
		v := 10 + rng.NormFloat64()
		if i >= 1500 {
			v += 3 // a shift of three standard deviations
		}
		r := d.Observe(at(i), v)
		if i > 600 && r.Score > best {
			best, bestAt = r.Score, i
		}
	}
	if bestAt < 1500 || bestAt > 1520 {
		t.Fatalf("highest score %.3f at %d, want within 20 points after the shift at 1500", best, bestAt)
	}
}

func TestSeasonalityFoundAndUsed(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	d := New(Config{})
	var r Result
	for i := 0; i < 288*6; i++ {
		r = d.Observe(at(i), daily(rng, i))
	}
	if r.Period < 286 || r.Period > 290 {
		t.Fatalf("period %d, want about 288", r.Period)
	}
	// A value normal for the day but wrong for this time of day: the
	// cycle's peak value at its trough.
	i := 288*6 + 216 // trough of the sine
	for j := 288 * 6; j < i; j++ {
		d.Observe(at(j), daily(rng, j))
	}
	r = d.Observe(at(i), 70)
	if r.Score < 0.7 {
		t.Fatalf("peak value at the trough scored %.3f (expected %.1f), want >= 0.7", r.Score, r.Expected)
	}
	if !(r.Lower < 35 && r.Upper > 25) {
		t.Fatalf("expected range [%.1f, %.1f] should be around the trough (30)", r.Lower, r.Upper)
	}
}

func TestAwkwardInput(t *testing.T) {
	d := New(Config{WarmUp: 16})
	for i := 0; i < 100; i++ {
		d.Observe(at(i), float64(i%7))
	}
	cases := []struct {
		t    time.Time
		v    float64
		want Status
	}{
		{at(100), math.NaN(), Missing},
		{at(101), math.Inf(1), Infinite},
		{at(102), math.Inf(-1), Infinite},
		{at(50), 3, OutOfOrder},
		{at(102), 3, Duplicate},
		{at(5000), 3, Scored}, // a long gap restarts seasonal history only
		{at(5001), 4, Scored},
	}
	for _, c := range cases {
		r := d.Observe(c.t, c.v)
		if r.Status != c.want {
			t.Errorf("Observe(%v, %v): status %v, want %v", c.t, c.v, r.Status, c.want)
		}
		if r.Status == Infinite && c.v > 0 && r.Score < 0.99 {
			t.Errorf("first infinite value scored %v, want ~1", r.Score)
		}
		if r.Status == Infinite && c.v < 0 && r.Score > 0.2 {
			t.Errorf("second infinite value in a row scored %v, want it held", r.Score)
		}
		if math.IsNaN(r.Score) || r.Score < 0 || r.Score > 1 {
			t.Errorf("score %v outside [0, 1]", r.Score)
		}
	}
	// Constant and then extreme values never panic or produce NaN.
	d = New(Config{})
	rng := rand.New(rand.NewPCG(4, 4))
	for i := 0; i < 3000; i++ {
		v := 5.0
		switch {
		case i > 1000 && rng.Float64() < 0.01:
			v = math.MaxFloat64 / 4
		case i > 2000 && rng.Float64() < 0.05:
			v = -1e300
		}
		if r := d.Observe(at(i), v); math.IsNaN(r.Score) || r.Score < 0 || r.Score > 1 {
			t.Fatalf("point %d: score %v", i, r.Score)
		}
	}
}

func TestSnapshotResumes(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	vals := make([]float64, 3000)
	for i := range vals {
		vals[i] = daily(rng, i)
		if i%500 == 499 {
			vals[i] += 30
		}
	}
	a := New(Config{})
	for i := 0; i < 1700; i++ {
		a.Observe(at(i), vals[i])
	}
	snap, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Restore(snap)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1700; i < len(vals); i++ {
		ra, rb := a.Observe(at(i), vals[i]), b.Observe(at(i), vals[i])
		if ra != rb && !(math.IsNaN(ra.Expected) && math.IsNaN(rb.Expected)) {
			t.Fatalf("point %d: restored detector says %+v, original %+v", i, rb, ra)
		}
	}
	if _, err := Restore([]byte("garbage")); err == nil {
		t.Fatal("want an error restoring garbage")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate("analyzer.selectors[0]."); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	for cfg, want := range map[*Config]string{
		{Sensitivity: -1}:    "analyzer.selectors[0].sensitivity: must be > 0, got -1",
		{NearFraction: 1}:    "analyzer.selectors[0].near_fraction: must be in [0, 1), got 1",
		{NearFraction: -0.1}: "analyzer.selectors[0].near_fraction: must be in [0, 1), got -0.1",
		{HoldHalfLife: -3}:   "analyzer.selectors[0].hold_half_life: must be >= 0, got -3",
	} {
		if err := cfg.Validate("analyzer.selectors[0]."); err == nil || err.Error() != want {
			t.Errorf("%+v: got %v, want %s", *cfg, err, want)
		}
	}
}

func BenchmarkObserve(b *testing.B) {
	rng := rand.New(rand.NewPCG(6, 6))
	vals := make([]float64, 8192)
	for i := range vals {
		vals[i] = daily(rng, i)
	}
	d := New(Config{})
	for i := 0; i < 2000; i++ {
		d.Observe(at(i), vals[i%len(vals)])
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := 2000 + i
		d.Observe(at(j), vals[j%len(vals)])
	}
}

func BenchmarkSnapshot(b *testing.B) {
	rng := rand.New(rand.NewPCG(7, 7))
	d := New(Config{})
	for i := 0; i < 5000; i++ {
		d.Observe(at(i), daily(rng, i))
	}
	b.ReportAllocs()
	var size int
	for i := 0; i < b.N; i++ {
		snap, err := d.MarshalBinary()
		if err != nil {
			b.Fatal(err)
		}
		size = len(snap)
	}
	b.ReportMetric(float64(size), "snapshot_bytes")
}

func TestSelectNth(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	for n := 1; n < 60; n++ {
		xs := make([]float64, n)
		for i := range xs {
			xs[i] = float64(rng.IntN(10)) // many ties
		}
		sorted := append([]float64(nil), xs...)
		slices.Sort(sorted)
		for k := 0; k < n; k++ {
			c := append([]float64(nil), xs...)
			if got := selectNth(c, k); got != sorted[k] {
				t.Fatalf("n=%d k=%d: got %v, want %v", n, k, got, sorted[k])
			}
		}
	}
}

// TestRecordsRateCalibrated checks that reaching a new level is judged by
// how often the series does so: a settled series finds it telling, a
// trending one (new levels all the time) does not.
func TestRecordsRateCalibrated(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	warm := newRollingQuantiles(576)
	for i := 0; i < 576; i++ {
		warm.add(10 + rng.NormFloat64())
	}
	settled, trending := newRecords(4096), newRecords(4096)
	settled.setGrid(warm)
	trending.setGrid(warm)
	for i := 0; i < 3000; i++ {
		settled.observe(10 + rng.NormFloat64())
		trending.observe(10 + float64(i)*0.01 + rng.NormFloat64())
	}
	s := settled.observe(30)
	tr := trending.observe(10 + 3000*0.01 + 20)
	if s < 2.5 {
		t.Errorf("settled series: a new level scored surprise %.2f, want >= 2.5", s)
	}
	// The trend reaches a new level about every 100 points: a rate of
	// 1e-2, against the settled series' ~1e-4.
	if tr > s-1 {
		t.Errorf("trending series: a new level scored surprise %.2f, want at least 1 below the settled series' %.2f", tr, s)
	}
	if got := settled.observe(10); got != 0 {
		t.Errorf("a familiar level scored %v, want 0", got)
	}
	if got := settled.observe(math.MaxFloat64); math.IsNaN(got) || math.IsInf(got, 0) {
		t.Errorf("a huge value scored %v", got)
	}
}

// TestRecurringSpikeBecomesFamiliar: a spike that comes back about once a
// day, wandering by more than an hour so no period captures it, stops
// being news after a few days; a value between the baseline and the
// spikes, where the series has never been, is news.
func TestRecurringSpikeBecomesFamiliar(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	d := New(Config{})
	var spikes []float64
	next := 150
	const novel = 4000
	var atNovel float64
	for i := 0; i < 4100; i++ {
		v := 0.066 + 0.002*math.Round(rng.NormFloat64())
		if i == next {
			v = 1.4 + 0.1*rng.NormFloat64()
			next += 288 + rng.IntN(31) - 15
		}
		if i == novel {
			v = 0.6
		}
		r := d.Observe(at(i), v)
		switch {
		case v > 1:
			spikes = append(spikes, r.Score)
		case i == novel:
			atNovel = r.Score
		}
	}
	if spikes[1] < 0.6 {
		t.Errorf("second spike scored %.3f, want >= 0.6 (spikes: %.2f)", spikes[1], spikes)
	}
	for k, s := range spikes[6:] {
		if s >= 0.5 {
			t.Errorf("spike %d scored %.3f after %d like it (spikes: %.2f)", k+6, s, k+6, spikes)
		}
	}
	if atNovel < 0.5 {
		t.Errorf("a value never seen between baseline and spikes scored %.3f, want >= 0.5", atNovel)
	}
}

// TestDropJudgedOnLogScale: a positive series that swings by a factor of
// two either way drops to a two-hundredth of its level. On the linear scale
// the drop is no larger than its usual swings; on the log scale it is.
func TestDropJudgedOnLogScale(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 10))
	d := New(Config{})
	const drop = 1500
	var maxNormal, atDrop float64
	for i := 0; i < 1700; i++ {
		v := 0.3 * math.Exp(0.3*rng.NormFloat64())
		if i == drop {
			v = 0.0015
		}
		r := d.Observe(at(i), v)
		switch {
		case i == drop:
			atDrop = r.Score
		case i > 600:
			maxNormal = math.Max(maxNormal, r.Score)
		}
	}
	if atDrop < 0.6 || atDrop <= maxNormal {
		t.Errorf("drop scored %.3f (normal points up to %.3f), want >= 0.6 and above them", atDrop, maxNormal)
	}
}

// TestBuildUpReportedOnce: an event that grows over consecutive points is
// reported once, not at each step of its growth.
func TestBuildUpReportedOnce(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 11))
	d := New(Config{})
	ramp := map[int]float64{1500: 15, 1501: 16, 1502: 17, 1503: 18, 1504: 19}
	var reported []int
	for i := 0; i < 1700; i++ {
		v := 10 + rng.NormFloat64()
		if r, ok := ramp[i]; ok {
			v = r
		}
		if s := d.Observe(at(i), v).Score; s >= 0.5 && i >= 1500 {
			reported = append(reported, i)
		}
	}
	if len(reported) != 1 || reported[0] < 1500 || reported[0] > 1504 {
		t.Errorf("points reported: %v, want one of the ramp 1500-1504", reported)
	}
}

// TestFamiliarityFollowsHistory checks the sorted copy of the seasonal
// history against the history itself through gaps, a long gap that
// restarts it, and a snapshot.
func TestFamiliarityFollowsHistory(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 12))
	d := New(Config{History: 256})
	check := func(d *Detector, when string) {
		t.Helper()
		var want []float64
		for k := 0; k < d.histLen; k++ {
			if v := d.histAt(k); !math.IsNaN(v) {
				want = append(want, v)
			}
		}
		slices.Sort(want)
		if !slices.Equal(want, d.fam.sorted) {
			t.Fatalf("%s: familiarity holds %d values, history %d finite ones", when, len(d.fam.sorted), len(want))
		}
	}
	ts := at(0)
	for i := 0; i < 3000; i++ {
		ts = ts.Add(5 * time.Minute)
		switch {
		case i == 1000:
			ts = ts.Add(5 * time.Minute * 300) // restarts the history
		case rng.IntN(50) == 0:
			ts = ts.Add(5 * time.Minute * time.Duration(1+rng.IntN(5))) // a short gap
		}
		v := math.Round(rng.NormFloat64() * 4) // many equal values
		if rng.IntN(100) == 0 {
			v = math.NaN()
		}
		d.Observe(ts, v)
		if i%97 == 0 || i == 1000 {
			check(d, fmt.Sprintf("point %d", i))
		}
	}
	snap, err := d.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	r, err := Restore(snap)
	if err != nil {
		t.Fatal(err)
	}
	check(r, "restored")
}
