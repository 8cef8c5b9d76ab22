package detect

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// mentions generates n points of a social-media mention count sampled
// every 5 minutes, the kind of series NAB's realTweets holds (and that the
// shared split does not): a daily and a weekly rhythm, overdispersed
// counts (a gamma-mixed Poisson, i.e. negative binomial), and bursts of
// heavy-tailed size (Pareto, α = 1.5, up to 20 times the level) about twice a day that decay within
// the hour or two. On top, three anomalies at known points: a surge of
// sixty times the level that lasts hours (news), the level doubled for a
// day (sustained interest), and the count at zero for three hours (the
// collector stopped). level sets the typical count per step.
func mentions(rng *rand.Rand, n int, level float64) (values []float64, anomalies []int) {
	day := 288
	anomalies = []int{n * 2 / 5, n * 3 / 5, n * 4 / 5}
	burst, decay := 0.0, 0.0
	values = fill(n, func(i int) float64 {
		if rng.Float64() < 2.0/float64(day) {
			burst += math.Min(math.Pow(rng.Float64(), -1/1.5)-1, 20)
			decay = 0.7 + 0.25*rng.Float64()
		}
		burst *= decay
		w := 1.0
		if (i/day)%7 >= 5 {
			w = 0.7
		}
		m := level * w * (1 + 0.5*sinDay(i)) * (1 + burst)
		switch {
		case i >= anomalies[0] && i < anomalies[0]+72:
			m *= 1 + 60*math.Exp(-float64(i-anomalies[0])/24)
		case i >= anomalies[1] && i < anomalies[1]+day:
			m *= 2.5
		case i >= anomalies[2] && i < anomalies[2]+36:
			return 0
		}
		// Negative binomial with shape 5: a Poisson whose rate is gamma
		// distributed around m.
		return count(rng, m*gamma(rng, 5)/5)
	})
	return values, anomalies
}

// count draws from a Poisson distribution of mean lambda: by counting
// (poisson) while e^-λ is far from underflow, else from its normal
// approximation, which is within a fraction of a percent there.
func count(rng *rand.Rand, lambda float64) float64 {
	if lambda < 100 {
		return poisson(rng, lambda)
	}
	return math.Max(0, math.Round(lambda+math.Sqrt(lambda)*rng.NormFloat64()))
}

// gamma draws from a gamma distribution of the given shape (≥ 1) and unit
// scale (Marsaglia and Tsang).
func gamma(rng *rand.Rand, shape float64) float64 {
	d := shape - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := rng.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := rng.Float64()
		if math.Log(u) < 0.5*x*x+d-d*v+d*math.Log(v) {
			return d * v
		}
	}
}

// burstyOutcome is what the detector did on one mentions series: the
// largest score within two hours of each anomaly's onset, the score of
// every false report (a rise to a new alarm outside the anomalies, from
// the third day on) and the number of days counted.
type burstyOutcome struct {
	hits   []float64
	falses []float64
	days   float64
}

func runMentions(values []float64, anomalies []int) burstyOutcome {
	d := New(Config{})
	var out burstyOutcome
	out.hits = make([]float64, len(anomalies))
	const start = 3 * 288
	counted := 0
	// A report is a local rise: a point scoring above every point of the
	// previous hour, as NAB counts one detection per window and a
	// threshold crossing per event.
	var recent [12]float64
	for i, v := range values {
		s := d.Observe(at(i), v).Score
		in := false
		for k, a := range anomalies {
			if i >= a-12 && i < a+24*12+36 {
				in = true
				if i >= a && i < a+24 {
					out.hits[k] = math.Max(out.hits[k], s)
				}
			}
		}
		prevMax := 0.0
		for _, x := range recent {
			prevMax = math.Max(prevMax, x)
		}
		recent[i%len(recent)] = s
		if i < start || in {
			continue
		}
		counted++
		if s > prevMax && s > 0 {
			out.falses = append(out.falses, s)
		}
	}
	out.days = float64(counted) / 288
	return out
}

// TestMentionCountsRobustness runs the detector over long (55-day) mention
// counts at three count levels (5, 40 and 300 a step), two seeds each, and
// checks that the anomalies are found and outrank the series' own bursts:
// NAB sweeps one threshold over all files of a category, so what counts
// is whether, at a threshold that finds them, the ordinary bursts of every
// file stay below it. It is a robustness check, not a tuning target: the
// detector's constants are chosen by NAB's cross-validation or a stated
// reason (docs/ANALYZER.md), never by this generator.
func TestMentionCountsRobustness(t *testing.T) {
	const n = 16000
	var all []burstyOutcome
	var days float64
	var falses []float64
	for _, level := range []float64{5, 40, 300} {
		for seed := uint64(1); seed <= 2; seed++ {
			vals, an := mentions(rand.New(rand.NewPCG(seed, uint64(level))), n, level)
			o := runMentions(vals, an)
			all = append(all, o)
			days += o.days
			falses = append(falses, o.falses...)
			t.Logf("level %3.0f seed %d: anomalies %.2f %.2f %.2f, false reports a day at 0.45/0.5/0.6: %.2f %.2f %.2f",
				level, seed, o.hits[0], o.hits[1], o.hits[2], perDay(o.falses, 0.45, o.days), perDay(o.falses, 0.5, o.days), perDay(o.falses, 0.6, o.days))
		}
	}
	sort.Float64s(falses)
	found := [3]int{}
	var minSurge float64 = 1
	for _, o := range all {
		for k, h := range o.hits {
			if h >= 0.5 {
				found[k]++
			}
		}
		minSurge = math.Min(minSurge, o.hits[0])
	}
	// Across files: how many false reports a day outrank the weakest surge.
	above := len(falses) - sort.SearchFloat64s(falses, minSurge)
	t.Logf("false reports a day at 0.45/0.5/0.6/0.7/0.8: %.3f %.3f %.3f %.3f %.3f; found at 0.5: surge %d/%d, doubled day %d/%d, zero %d/%d; weakest surge %.3f, outranked by %.3f false reports a day",
		perDay(falses, 0.45, days), perDay(falses, 0.5, days), perDay(falses, 0.6, days), perDay(falses, 0.7, days), perDay(falses, 0.8, days),
		found[0], len(all), found[1], len(all), found[2], len(all), minSurge, float64(above)/days)
	if found[0] < len(all) {
		t.Errorf("a surge sixty times the level was found in %d of %d series", found[0], len(all))
	}
	if 2*found[2] < len(all) {
		t.Errorf("three hours at zero were found in %d of %d series", found[2], len(all))
	}
	// 0.166 a day before the longer tracks learnt their tails (seventh
	// round), 0.109 after.
	if r := perDay(falses, 0.5, days); r > 0.12 {
		t.Errorf("%.3f false reports a day at score 0.5, want at most 0.12", r)
	}
	if minSurge < 0.9 {
		t.Errorf("the weakest surge scored %.3f, want at least 0.9", minSurge)
	}
}

func perDay(scores []float64, th, days float64) float64 {
	c := 0
	for _, s := range scores {
		if s >= th {
			c++
		}
	}
	return float64(c) / days
}

// TestHealthyLongSeriesReports logs the false reports a day of the healthy
// kinds over days 31–60 of 60-day series (three seeds): the figures quoted
// for long series in docs/ANALYZER.md, where NAB's two-week files do not
// reach. The bound is loose; the log is the measurement.
func TestHealthyLongSeriesReports(t *testing.T) {
	ths := []float64{0.45, 0.5, 0.6}
	var total [3]int
	var days float64
	for _, name := range sortedKinds() {
		var c [3]int
		var kd float64
		for seed := uint64(1); seed <= 3; seed++ {
			vals := healthy[name](rand.New(rand.NewPCG(seed, 42)), 60*288)
			d := New(Config{})
			prev := 0.0
			for i, v := range vals {
				s := d.Observe(at(i), v).Score
				if i >= 30*288 {
					for k, th := range ths {
						if s >= th && prev < th {
							c[k]++
						}
					}
				}
				prev = s
			}
			kd += 30
		}
		for k := range c {
			total[k] += c[k]
		}
		days += kd
		t.Logf("%-24s reports a day at 0.45/0.5/0.6: %.3f %.3f %.3f", name, float64(c[0])/kd, float64(c[1])/kd, float64(c[2])/kd)
	}
	t.Logf("%-24s reports a day at 0.45/0.5/0.6: %.3f %.3f %.3f", "all kinds", float64(total[0])/days, float64(total[1])/days, float64(total[2])/days)
	if r := float64(total[2]) / days; r > 0.1 {
		t.Errorf("%.3f reports a day at score 0.6 over all healthy kinds, want at most 0.1", r)
	}
}

func sortedKinds() []string {
	var out []string
	for k := range healthy {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestSnapshotKeepsTails: on a bursty series, where the longer tracks'
// tails are far from exponential, a restored detector continues bit for
// bit, and the tails' memory it restores matters (one that forgot it
// scores some points differently).
func TestSnapshotKeepsTails(t *testing.T) {
	vals, _ := mentions(rand.New(rand.NewPCG(7, 40)), 9000, 40)
	a := New(Config{})
	for i := 0; i < 6000; i++ {
		a.Observe(at(i), vals[i])
	}
	heavy := false
	for _, tr := range a.tracks[1:] {
		heavy = heavy || tr.shape(0) > 0.1
	}
	if !heavy {
		t.Errorf("no longer track found its upper tail heavy on bursty counts")
	}
	snap, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Restore(snap)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Restore(snap)
	if err != nil {
		t.Fatal(err)
	}
	forgetTails(c)
	differ := 0
	for i := 6000; i < len(vals); i++ {
		ra, rb, rc := a.Observe(at(i), vals[i]), b.Observe(at(i), vals[i]), c.Observe(at(i), vals[i])
		if ra != rb && !(math.IsNaN(ra.Expected) && math.IsNaN(rb.Expected)) {
			t.Fatalf("point %d: restored detector says %+v, original %+v", i, rb, ra)
		}
		if ra.Surprise != rc.Surprise {
			differ++
		}
	}
	if differ == 0 {
		t.Errorf("forgetting the tails' memory changed no surprise")
	}
	t.Logf("%d of %d surprises differ without the tails' memory", differ, len(vals)-6000)
}

// TestAbsurdValueLeavesTailsLight: one absurd value (1e300 in a series of
// unit noise) does not make the longer tracks' tails heavy for the rest of
// the history, so a later shift of a few units is still news.
func TestAbsurdValueLeavesTailsLight(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	d := New(Config{})
	var atShift float64
	for i := 0; i < 6000; i++ {
		v := 10 + rng.NormFloat64()
		switch {
		case i == 3000:
			v = 1e300
		case i >= 5000 && i < 5030:
			v += 4
		}
		r := d.Observe(at(i), v)
		if math.IsNaN(r.Score) || r.Score < 0 || r.Score > 1 {
			t.Fatalf("point %d: score %v", i, r.Score)
		}
		if i >= 5000 && i < 5030 {
			atShift = math.Max(atShift, r.Score)
		}
	}
	for i, tr := range d.tracks[1:] {
		// 0.21 for span 16, whose mean the value holds for sixteen points;
		// 0.39 when an excess was only capped at the surprise cap's.
		if xi := tr.shape(0); xi > 0.3 {
			t.Errorf("track of span %d: upper tail shape %.3f after one absurd value, want at most 0.3", spans[i+1], xi)
		}
	}
	if atShift < 0.7 {
		t.Errorf("a shift of four standard deviations for 30 points scored %.3f, want at least 0.7", atShift)
	}
	t.Logf("shift scored %.3f", atShift)
}
