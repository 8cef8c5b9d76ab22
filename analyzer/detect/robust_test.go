package detect

import (
	"bytes"
	"encoding/gob"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestFamiliarSpikeNotRepeatedByLongerTracks: a spike to a place the
// series visits every few hours is bounded by its familiarity on the point
// track; the longer tracks, whose means it dominates for a span, must not
// bring it back, neither at the spike nor at the calm points after it. A
// sustained excursion to the same place is not explained by one familiar
// point and is still reported.
func TestFamiliarSpikeNotRepeatedByLongerTracks(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 21))
	d := New(Config{})
	next := 40
	const sustained = 3500
	var late []int // reports at or after a spike once the spike is familiar
	var atSustained float64
	for i := 0; i < 3600; i++ {
		v := 2 + 0.1*rng.NormFloat64()
		spike := i == next
		if spike {
			v = 20 + rng.NormFloat64()
			// Irregularly, so that no period explains the spikes.
			next += 60 + rng.IntN(120)
		}
		if i >= sustained && i < sustained+20 {
			v = 20 + rng.NormFloat64()
		}
		r := d.Observe(at(i), v)
		switch {
		case i >= sustained && i < sustained+20:
			atSustained = math.Max(atSustained, r.Score)
		case i > 1500 && r.Score >= 0.5:
			late = append(late, i)
		}
	}
	if len(late) > 0 {
		t.Errorf("familiar spikes (or the points after them) reported at %v", late)
	}
	if atSustained < 0.5 {
		t.Errorf("twenty points in a row at the spikes' level scored at most %.3f, want >= 0.5", atSustained)
	}
}

// TestContextualSpikeOnDailyCycle: a value the series reaches every day,
// but at another time of day, is news at this time of day. Familiarity is
// counted at the phase, so the value's daily visits elsewhere do not bound
// it.
func TestContextualSpikeOnDailyCycle(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		rng := rand.New(rand.NewPCG(seed, 22))
		d := New(Config{})
		// In the daily trough, where the cycle is below 40: +20 stays
		// inside the range the cycle covers every day.
		spike := 15*288 + 200 + rng.IntN(30)
		var got, maxNormal float64
		for i := 0; i < 16*288; i++ {
			v := daily(rng, i)
			if i == spike {
				v += 20
			}
			r := d.Observe(at(i), v)
			switch {
			case i == spike:
				got = r.Score
			case i > 4*288:
				maxNormal = math.Max(maxNormal, r.Score)
			}
		}
		if got < 0.6 || got <= maxNormal {
			t.Errorf("seed %d: a spike to the daily peak's level in the trough scored %.3f (other points up to %.3f), want >= 0.6 and above them", seed, got, maxNormal)
		}
	}
}

// TestFlatStartThenNoise: a series flat for two days, then noisy. The
// onset is news, reported as one event, however many of the first noisy
// points are as far from the flat value as the cap allows; after it the
// detector settles instead of finding every new maximum a new level on a
// grid fixed over the flat start.
func TestFlatStartThenNoise(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		rng := rand.New(rand.NewPCG(seed, 23))
		d := New(Config{})
		crossings := make([]int, 20) // per day, rises to >= 0.8
		prev := false
		for i := 0; i < 20*288; i++ {
			v := 5.0
			if i >= 2*288 {
				v += rng.NormFloat64()
			}
			high := d.Observe(at(i), v).Score >= 0.8
			if high && !prev {
				crossings[i/288]++
			}
			prev = high
		}
		if crossings[2] != 1 {
			t.Errorf("seed %d: the onset's day crossed 0.8 %d times, want once", seed, crossings[2])
		}
		total := 0
		for day, c := range crossings[3:] {
			total += c
			if c > 1 {
				t.Errorf("seed %d: day %d crossed 0.8 %d times", seed, day+3, c)
			}
		}
		// A point of the noise that is also a record low or high is
		// rare news; more than that is the grid or the scale still
		// remembering the flat start.
		if total > 2 {
			t.Errorf("seed %d: %d crossings of 0.8 in the 17 days after the onset's (%v)", seed, total, crossings)
		}
		if step := math.Ldexp(1, d.rec.exp); step < 0.25 {
			t.Errorf("seed %d: new-level grid step %g after 18 days of noise with σ = 1, want it coarsened", seed, step)
		}
	}
}

// TestCoarsenKeepsRecords: coarsening the grid maps the levels reached
// onto the coarser grid, so a value at the old record is no new level and
// one beyond the coarser record is.
func TestCoarsenKeepsRecords(t *testing.T) {
	w := newRollingQuantiles(576)
	for i := 0; i < 576; i++ {
		w.add(5)
	}
	rc := newRecords(4096)
	rc.setGrid(w)
	fine := rc.exp
	if s := rc.observe(-3); s == 0 {
		t.Fatal("a value far below a flat start is no new level")
	}
	for i := 0; i < 576; i++ {
		w.add(5 + 4*math.Sin(float64(i))) // range about 8
	}
	rc.coarsen(w)
	if rc.exp < fine+coarsenAfter || math.Ldexp(1, rc.exp) < 1 {
		t.Fatalf("grid exponent %d after a range of 8 (was %d)", rc.exp, fine)
	}
	if s := rc.observe(-3); s != 0 {
		t.Errorf("the old record scored %v after coarsening, want 0", s)
	}
	if s := rc.observe(-20); s == 0 {
		t.Error("a value beyond the old record is no new level after coarsening")
	}
	// A range that grows by less does not move the grid.
	before := rc.exp
	for i := 0; i < 576; i++ {
		w.add(5 + 8*math.Sin(float64(i)))
	}
	rc.coarsen(w)
	if rc.exp != before {
		t.Errorf("grid exponent moved from %d to %d for a range twice as wide", before, rc.exp)
	}
}

// weekly is a 5-minute series with a daily cycle on weekdays and a flatter,
// lower one at weekends.
func weekly(rng *rand.Rand, i int) float64 {
	w := 1.0
	if (i/288)%7 >= 5 {
		w = 0.4
	}
	return 10 + w*(40+30*math.Sin(2*math.Pi*float64(i)/288)) + 2*rng.NormFloat64()
}

// TestWeeklyPeriodReplacesDaily: the daily cycle is found within days;
// once the history holds two weeks, the weekly cycle, which is more alike
// from one week to the next than one day to the next, replaces it; a
// weekday that looks like a weekend day is then news, and the weekends,
// which the daily cycle found surprising every week, are not.
func TestWeeklyPeriodReplacesDaily(t *testing.T) {
	rng := rand.New(rand.NewPCG(24, 24))
	d := New(Config{})
	var period3, period21 int
	var maxNormal float64 // over the last week, weekend included
	for i := 0; i < 28*288; i++ {
		r := d.Observe(at(i), weekly(rng, i))
		switch {
		case i == 3*288:
			period3 = r.Period
		case i == 21*288:
			period21 = r.Period
		case i > 21*288:
			maxNormal = math.Max(maxNormal, r.Score)
		}
	}
	if period3 < 286 || period3 > 290 {
		t.Errorf("period after 3 days %d, want about 288", period3)
	}
	if period21 < 2010 || period21 > 2022 {
		t.Errorf("period after 21 days %d, want about 2016", period21)
	}
	// Day 28 is a Monday (day 0 is one too); make it look like a Sunday.
	var best float64
	for i := 28 * 288; i < 29*288; i++ {
		v := 10 + 0.4*(40+30*math.Sin(2*math.Pi*float64(i)/288)) + 2*rng.NormFloat64()
		best = math.Max(best, d.Observe(at(i), v).Score)
	}
	// The onset is news; the rest of the day is absorbed within hours
	// (the tails are fitted on the last two days: docs/ANALYZER.md).
	if best < 0.4 || best <= maxNormal {
		t.Errorf("a Monday shaped like a Sunday scored at most %.3f (the week before up to %.3f), want >= 0.4 and above it", best, maxNormal)
	}
}

// TestEarlyPeriodPutToCalendar: on series with a daily cycle whose
// autocorrelation is noisy (bursty counts, a wandering gauge, quantised
// values), the first search, with two days of history or less, finds a
// period a tenth or so off the day (247, 252, 277, 271, 320, 262 points
// for 288). It used to be kept for good, while it held at all; the
// seasonal prediction then compared each point with the wrong time of day.
// Searches on the longer history put it to the day.
func TestEarlyPeriodPutToCalendar(t *testing.T) {
	for _, kind := range []string{"bursty counts", "autocorrelated", "quantised"} {
		for seed := uint64(1); seed <= 3; seed++ {
			vals := healthy[kind](rand.New(rand.NewPCG(seed, 42)), 10*288)
			d := New(Config{})
			var first, last int
			for i, v := range vals {
				r := d.Observe(at(i), v)
				if first == 0 {
					first = r.Period
				}
				last = r.Period
			}
			if last != 288 {
				t.Errorf("%s, seed %d: period %d after ten days (first found: %d), want 288", kind, seed, last, first)
			}
		}
	}
}

func TestIsMultiple(t *testing.T) {
	for _, c := range []struct {
		q, p int
		want bool
	}{
		{2016, 288, true}, {2016, 286, true}, {2100, 288, false}, {288, 288, false},
		{576, 288, true}, {869, 276, false}, {98, 48, true}, {100, 48, false},
	} {
		if got := isMultiple(c.q, c.p); got != c.want {
			t.Errorf("isMultiple(%d, %d) = %v, want %v", c.q, c.p, got, c.want)
		}
	}
}

// stateV3 is the snapshot layout of version 3, as that release wrote it
// (the tracks without their familiarity bounds, no search counter).
type stateV3 struct {
	Version       int
	Config        Config
	N             int
	LastT         int64
	Step          int64
	Deltas        []float64
	Hist          []float64
	Period        int
	SinceSeasonal int
	Values        []float64
	Residuals     []float64
	Tracks        []trackStateV3
	Hold          float64
	Run           float64
	Records       recordsState
	LogResiduals  []float64
	LogTracks     []trackStateV3
	NovelCount    float64
	NovelTotal    float64
}

type trackStateV3 struct {
	Ring []float64
	Win  []float64
}

// asVersion3 rewrites a snapshot in version 3's layout.
func asVersion3(t *testing.T, snap []byte) []byte {
	t.Helper()
	var st state
	if err := gob.NewDecoder(bytes.NewReader(snap)).Decode(&st); err != nil {
		t.Fatal(err)
	}
	v3 := stateV3{
		Version: 3, Config: st.Config, N: st.N, LastT: st.LastT, Step: st.Step, Deltas: st.Deltas,
		Hist: st.Hist, Period: st.Period, SinceSeasonal: st.SinceSeasonal, Values: st.Values,
		Residuals: st.Residuals, Hold: st.Hold, Run: st.Run, Records: st.Records,
		LogResiduals: st.LogResiduals, NovelCount: st.NovelCount, NovelTotal: st.NovelTotal,
	}
	for _, tr := range st.Tracks {
		v3.Tracks = append(v3.Tracks, trackStateV3{Ring: tr.Ring, Win: tr.Win})
	}
	for _, tr := range st.LogTracks {
		v3.LogTracks = append(v3.LogTracks, trackStateV3{Ring: tr.Ring, Win: tr.Win})
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&v3); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// stateV4 is the snapshot layout of version 4 (the tracks without their
// tails' memory).
type stateV4 struct {
	Version       int
	Config        Config
	N             int
	LastT         int64
	Step          int64
	Deltas        []float64
	Hist          []float64
	Period        int
	SinceSeasonal int
	Values        []float64
	Residuals     []float64
	Tracks        []trackStateV4
	Hold          float64
	Run           float64
	Records       recordsState
	LogResiduals  []float64
	LogTracks     []trackStateV4
	NovelCount    float64
	NovelTotal    float64
	SinceSearch   int
}

type trackStateV4 struct {
	Ring []float64
	Caps []float64
	Win  []float64
}

// asVersion4 rewrites a snapshot in version 4's layout.
func asVersion4(t *testing.T, snap []byte) []byte {
	t.Helper()
	var st state
	if err := gob.NewDecoder(bytes.NewReader(snap)).Decode(&st); err != nil {
		t.Fatal(err)
	}
	v4 := stateV4{
		Version: 4, Config: st.Config, N: st.N, LastT: st.LastT, Step: st.Step, Deltas: st.Deltas,
		Hist: st.Hist, Period: st.Period, SinceSeasonal: st.SinceSeasonal, Values: st.Values,
		Residuals: st.Residuals, Hold: st.Hold, Run: st.Run, Records: st.Records,
		LogResiduals: st.LogResiduals, NovelCount: st.NovelCount, NovelTotal: st.NovelTotal,
		SinceSearch: st.SinceSearch,
	}
	for _, tr := range st.Tracks {
		v4.Tracks = append(v4.Tracks, trackStateV4{Ring: tr.Ring, Caps: tr.Caps, Win: tr.Win})
	}
	for _, tr := range st.LogTracks {
		v4.LogTracks = append(v4.LogTracks, trackStateV4{Ring: tr.Ring, Caps: tr.Caps, Win: tr.Win})
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&v4); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// forgetTails empties the tracks' memories of their tails, as a migration
// from a snapshot older than version 5 leaves them, and rebuilds the
// sustained track from the seasonal history, as one older than version 6
// does.
func forgetTails(d *Detector) {
	for _, tr := range append(append([]*track(nil), d.tracks...), d.logTracks...) {
		tr.exN, tr.exS, tr.exS2 = [2]float64{}, [2]float64{}, [2]float64{}
	}
	d.rebuildSustained(d.historyOnly())
}

// TestRestoreMigratesVersion3: version 3 and 4 snapshots restore. The
// migrated detector knows nothing of its tracks' tails (version 5) and,
// from version 3, nothing of the bounds of the residuals in the tracks'
// spans: once a span has passed it scores every point as a detector that
// never stopped but forgot its tails at the restore, and its scores stay
// close to the original's while the tails are learnt again.
func TestRestoreMigratesVersion3(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 25))
	vals := make([]float64, 4000)
	for i := range vals {
		vals[i] = daily(rng, i)
		if i%300 == 150 {
			vals[i] += 25 // a spike that becomes familiar
		}
	}
	a := New(Config{})
	for i := 0; i < 2500; i++ {
		a.Observe(at(i), vals[i])
	}
	snap, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Restore(asVersion3(t, snap))
	if err != nil {
		t.Fatalf("restore a version 3 snapshot: %v", err)
	}
	c, err := Restore(asVersion4(t, snap))
	if err != nil {
		t.Fatalf("restore a version 4 snapshot: %v", err)
	}
	ref, err := Restore(snap)
	if err != nil {
		t.Fatal(err)
	}
	forgetTails(ref)
	longest := spans[len(spans)-1]
	var maxDiff float64
	for i := 2500; i < len(vals); i++ {
		ra, rb, rc, rr := a.Observe(at(i), vals[i]), b.Observe(at(i), vals[i]), c.Observe(at(i), vals[i]), ref.Observe(at(i), vals[i])
		if math.IsNaN(rb.Score) || rb.Score < 0 || rb.Score > 1 {
			t.Fatalf("point %d: migrated detector scored %v", i, rb.Score)
		}
		if rc.Score != rr.Score {
			t.Fatalf("point %d: detector migrated from version 4 scored %v, one that forgot its tails %v", i, rc.Score, rr.Score)
		}
		if i >= 2500+longest && rb.Score != rr.Score {
			t.Fatalf("point %d, a span after the restore: detector migrated from version 3 scored %v, one that forgot its tails %v", i, rb.Score, rr.Score)
		}
		maxDiff = math.Max(maxDiff, math.Abs(ra.Score-rb.Score))
	}
	if maxDiff > 0.1 {
		t.Errorf("migrated detector's scores differ from the original's by up to %.3f", maxDiff)
	}
	t.Logf("migrated detector's scores differ from the original's by up to %.3f", maxDiff)
	// Older layouts are refused, naming the versions.
	var st state
	if err := gob.NewDecoder(bytes.NewReader(snap)).Decode(&st); err != nil {
		t.Fatal(err)
	}
	st.Version = 2
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&st); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(buf.Bytes()); err == nil || !strings.Contains(err.Error(), "version 2, want 3 to 6") {
		t.Errorf("restore a version 2 snapshot: %v", err)
	}
}
