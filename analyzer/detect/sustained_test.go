package detect

import (
	"math"
	"sort"
	"testing"
)

func TestReplacedVariance(t *testing.T) {
	vals := []float64{3, -1, 4, 1, -5, 9, 2, 6}
	sorted := append([]float64(nil), vals...)
	sort.Float64s(sorted)
	for _, old := range vals {
		for _, r := range []float64{-7, 0, 2.5, 30} {
			want := make([]float64, 0, len(vals))
			replaced := false
			for _, v := range vals {
				if v == old && !replaced {
					v, replaced = r, true
				}
				want = append(want, v)
			}
			var mean, ss float64
			for _, v := range want {
				mean += v
			}
			mean /= float64(len(want))
			for _, v := range want {
				ss += (v - mean) * (v - mean)
			}
			w := ss / float64(len(want)-1)
			if got := replacedVariance(sorted, old, r); math.Abs(got-w) > 1e-9*math.Max(1, w) {
				t.Errorf("replacing %v by %v: variance %v, want %v", old, r, got, w)
			}
		}
	}
}

// A series at zero for days whose first busy span has a quarter of its
// points in bursts: the reference blocks are all exactly zero and the
// robust scale is near zero, but the span's own spread says its
// interquartile mean moving off zero is no rare event.
func TestSustainedFirstBusySpan(t *testing.T) {
	const span, history = 64, 512
	var s sustained
	s.reset(span, history)
	n := 0
	for ; n < 8*span; n++ {
		s.add(0, n+1)
	}
	for i := 0; i < span-1; i++ {
		v := 0.0
		if i%4 == 0 {
			v = 100 // a burst every fourth point: 16 of the 63
		}
		s.add(v, n+1)
		n++
	}
	got, ok := s.judge(100, 1e-12) // the 17th burst: just over a quarter
	if !ok {
		t.Fatal("the track does not judge after eight blocks")
	}
	if got >= alarmLevel {
		t.Errorf("first busy span after quiet blocks: surprise %.2f, want below the alarm level %d", got, alarmLevel)
	}
	// A stuck sensor: the whole span away from the blocks, spreading no
	// wider than the noise, is still found.
	s.reset(span, history)
	for n = 0; n < 8*span; n++ {
		s.add(float64(n%3-1), n+1)
	}
	for i := 0; i < span-1; i++ {
		s.add(10, n+1)
		n++
	}
	if got, _ := s.judge(10, 1); got < alarmLevel {
		t.Errorf("span stuck 10 scales away: surprise %.2f, want at least %d", got, alarmLevel)
	}
}

// Blocks whose level wanders slowly are worth fewer independent ones
// than as many that alternate: the same span judged against the same
// block values, in a wandering order and in an alternating one, is less
// surprising against the wandering ones.
func TestSustainedWanderingBlocks(t *testing.T) {
	const span, blocks = 64, 40
	level := make([]float64, blocks)
	for k := range level {
		level[k] = math.Sin(2 * math.Pi * float64(k) / blocks)
	}
	alternating := make([]float64, 0, blocks)
	for k := 0; k < blocks/2; k++ {
		alternating = append(alternating, level[k], level[k+blocks/2])
	}
	judge := func(order []float64) float64 {
		var s sustained
		s.reset(span, span*(blocks+1))
		n := 0
		for _, x := range order {
			for i := 0; i < span; i++ {
				n++
				s.add(x, n)
			}
		}
		for i := 0; i < span-1; i++ {
			n++
			s.add(3, n)
		}
		got, ok := s.judge(3, 1e-3)
		if !ok {
			t.Fatal("the track does not judge")
		}
		return got
	}
	wander, alt := judge(level), judge(alternating)
	if !(wander < alt-1) {
		t.Errorf("surprise against wandering blocks %.2f, against the same blocks alternating %.2f: want the first lower by more than 1", wander, alt)
	}
}
