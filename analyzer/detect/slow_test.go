package detect

import (
	"math"
	"math/rand/v2"
	"testing"
)

// slowEvents generates 24 days of a daily cycle at 5 minutes (50 + 20·sin,
// noise σ 2) with three events that last or build up for hours, for none
// of which any single point is unusual: a sensor stuck for six hours at
// the value it had (through the cycle's fall), a day whose cycle is
// flattened to its mean, and a drift that accelerates over twelve hours
// to 3σ. It returns the values and the events' [start, end) ranges.
func slowEvents(rng *rand.Rand) ([]float64, [][2]int) {
	const day = 288
	ev := [][2]int{{12*day + 200, 12*day + 272}, {16 * day, 17 * day}, {20*day + 100, 20*day + 244}}
	stuck := 0.0
	return fill(24*day, func(i int) float64 {
		v := 50 + 20*sinDay(i) + 2*rng.NormFloat64()
		switch {
		case i == ev[0][0]:
			stuck = v
		case i > ev[0][0] && i < ev[0][1]:
			return stuck
		case i >= ev[1][0] && i < ev[1][1]:
			return 50 + 2*rng.NormFloat64()
		case i >= ev[2][0] && i < ev[2][1]:
			x := float64(i-ev[2][0]) / float64(ev[2][1]-ev[2][0])
			return v + 6*x*x
		}
		return v
	}), ev
}

// TestSlowEventsReports: events of hours on a daily cycle (slowEvents,
// five seeds) are found — the highest score within the event or the six
// hours after it at least 0.5 — by the sustained track (sustained.go): a
// sensor stuck for six hours and a flattened day in at least four seeds
// each (before it, none and three), with at most 0.05 rises to 0.5 a day
// elsewhere from day 3 (0.022 before, 0.011 with it). It logs besides the
// highest score anywhere in the day held at ×2.5 on the mention counts of
// bursty_test.go (TestMentionCountsRobustness looks at its first two hours
// only), which no variant finds. These are the figures quoted for longer
// events in docs/ANALYZER.md (ninth round, longer events): a check of a
// capability, not a tuning target; the accelerating drift is logged, not
// asserted, as no variant found it.
func TestSlowEventsReports(t *testing.T) {
	names := []string{"stuck six hours", "flattened day", "accelerating drift"}
	var found [3]int
	falses, days := 0, 0.0
	for seed := uint64(1); seed <= 5; seed++ {
		vals, ev := slowEvents(rand.New(rand.NewPCG(seed, 18)))
		d := New(Config{})
		var best [3]float64
		prev := 0.0
		counted := 0
		for i, v := range vals {
			s := d.Observe(at(i), v).Score
			if math.IsNaN(s) || s < 0 || s > 1 {
				t.Fatalf("seed %d point %d: score %v", seed, i, s)
			}
			in := false
			for k, e := range ev {
				if i >= e[0] && i < e[1]+72 {
					in = true
					best[k] = math.Max(best[k], s)
				}
			}
			if i >= 3*288 && !in {
				counted++
				if s >= 0.5 && prev < 0.5 {
					falses++
				}
			}
			prev = s
		}
		days += float64(counted) / 288
		for k := range best {
			if best[k] >= 0.5 {
				found[k]++
			}
		}
		t.Logf("seed %d: %s %.3f, %s %.3f, %s %.3f", seed, names[0], best[0], names[1], best[1], names[2], best[2])
	}
	t.Logf("found at 0.5 in 5 seeds: %s %d, %s %d, %s %d; %.3f reports a day at 0.5 elsewhere",
		names[0], found[0], names[1], found[1], names[2], found[2], float64(falses)/days)
	if found[0] < 4 || found[1] < 4 {
		t.Errorf("found a sensor stuck for six hours in %d of 5 seeds and a flattened day in %d, want at least 4 each", found[0], found[1])
	}
	if r := float64(falses) / days; r > 0.05 {
		t.Errorf("%.3f reports a day at 0.5 outside the events of a daily cycle, want at most 0.05", r)
	}

	doubled := 0
	for _, level := range []float64{5, 40, 300} {
		for seed := uint64(1); seed <= 2; seed++ {
			vals, an := mentions(rand.New(rand.NewPCG(seed, uint64(level))), 16000, level)
			d := New(Config{})
			best, when := 0.0, 0
			for i, v := range vals {
				s := d.Observe(at(i), v).Score
				if i >= an[1] && i < an[1]+288 && s > best {
					best, when = s, i-an[1]
				}
			}
			if best >= 0.5 {
				doubled++
			}
			t.Logf("mention counts level %3.0f seed %d: the day at ×2.5 scored %.3f, %d points in", level, seed, best, when)
		}
	}
	t.Logf("the day at ×2.5 found at 0.5 in %d of 6", doubled)
}
