package nab

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
)

// cvCorpus is a small corpus for cross-validation tests: three categories
// with one window per file and one without windows, 400 rows per file.
type cvCorpus struct {
	names   []string
	windows map[string][]Window
	times   []time.Time
	// winRow is the first row of each file's window (-1: none).
	winRow map[string]int
}

const cvRows, cvWidth = 400, 20

func newCVCorpus() cvCorpus {
	c := cvCorpus{windows: map[string][]Window{}, winRow: map[string]int{}}
	start := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < cvRows; i++ {
		c.times = append(c.times, start.Add(time.Duration(i)*time.Minute))
	}
	for _, cat := range []string{"alpha", "beta", "gamma", "quiet"} {
		for f := 0; f < 2; f++ {
			name := fmt.Sprintf("%s/f%d.csv", cat, f)
			c.names = append(c.names, name)
			c.winRow[name] = -1
			c.windows[name] = nil
			if cat == "quiet" {
				continue
			}
			l := 200 + 50*f
			c.winRow[name] = l
			c.windows[name] = []Window{{Start: c.times[l], End: c.times[l+cvWidth-1]}}
		}
	}
	return c
}

// files builds result files: at(name, row) gives each row's score.
func (c cvCorpus) files(names []string, at func(name string, row int) float64) []FileScores {
	var out []FileScores
	for _, n := range names {
		f := FileScores{Name: n, Times: c.times, Scores: make([]float64, cvRows)}
		for i := range f.Scores {
			f.Scores[i] = at(n, i)
		}
		out = append(out, f)
	}
	return out
}

// TestCrossValidateHoldsOut checks the protocol's order from the calls it
// makes: per fold, every candidate is asked only about the other
// categories (the one without windows always among them), and only then
// is the chosen candidate asked about the held-out category.
func TestCrossValidateHoldsOut(t *testing.T) {
	c := newCVCorpus()
	type call struct {
		cand  int
		names []string
	}
	var calls []call
	const n = 3
	scores := func(cand int, names []string) ([]FileScores, error) {
		calls = append(calls, call{cand, append([]string(nil), names...)})
		return c.files(names, func(name string, row int) float64 {
			// Candidates differ in how early they fire in the window.
			if r := c.winRow[name]; r >= 0 && row == r+cand {
				return 0.9
			}
			return 0.1
		}), nil
	}
	cv, err := CrossValidate(c.names, c.windows, Profiles, n, scores)
	if err != nil {
		t.Fatal(err)
	}
	wantFolds := []string{"alpha", "beta", "gamma"}
	if got := FoldCategories(c.names, c.windows); !slices.Equal(got, wantFolds) {
		t.Fatalf("fold categories %v, want %v", got, wantFolds)
	}
	if len(calls) != len(wantFolds)*(n+1) {
		t.Fatalf("%d calls, want %d", len(calls), len(wantFolds)*(n+1))
	}
	for k, held := range wantFolds {
		sel, eval := calls[k*(n+1):k*(n+1)+n], calls[k*(n+1)+n]
		for i, cl := range sel {
			if cl.cand != i {
				t.Errorf("fold %s: selection call %d asks candidate %d", held, i, cl.cand)
			}
			quiet := false
			for _, name := range cl.names {
				if Category(name) == held {
					t.Errorf("fold %s: choosing, candidate %d was asked about %s", held, cl.cand, name)
				}
				quiet = quiet || Category(name) == "quiet"
			}
			if !quiet || len(cl.names) != len(c.names)-2 {
				t.Errorf("fold %s: chose on %v, want every file but the held-out category's", held, cl.names)
			}
		}
		if eval.cand != cv.Folds[k].Choice {
			t.Errorf("fold %s: evaluated candidate %d, chose %d", held, eval.cand, cv.Folds[k].Choice)
		}
		for _, name := range eval.names {
			if Category(name) != held {
				t.Errorf("fold %s: evaluation asked about %s", held, name)
			}
		}
		if cv.Folds[k].Held != held {
			t.Errorf("fold %d holds out %s, want %s", k, cv.Folds[k].Held, held)
		}
		// Firing on a window's first row is perfect.
		if cv.Folds[k].Choice != 0 || math.Abs(cv.Folds[k].Test[0].Normalized-100) > 1e-9 {
			t.Errorf("fold %s: chose %d scoring %v, want candidate 0 scoring 100", held, cv.Folds[k].Choice, cv.Folds[k].Test[0].Normalized)
		}
	}
	if math.Abs(cv.Mean[0]-100) > 1e-9 || math.Abs(cv.Pooled[0]-100) > 1e-9 {
		t.Errorf("mean %v, pooled %v, want 100", cv.Mean[0], cv.Pooled[0])
	}
}

// TestCrossValidateChoiceIgnoresHeldOut changes what candidates score on
// one category only: the fold holding it out must choose exactly as
// before (same candidate, thresholds and training scores), while the
// folds that train on it see the change.
func TestCrossValidateChoiceIgnoresHeldOut(t *testing.T) {
	c := newCVCorpus()
	base := func(cand int, name string, row int) float64 {
		r := c.winRow[name]
		switch {
		case cand == 0 && r >= 0 && row == r+5:
			return 0.8 // late in the window
		case cand == 1 && row == 100:
			return 0.95 // a false positive, then
		case cand == 1 && r >= 0 && row == r+15:
			return 0.7 // later still
		}
		return 0.05
	}
	// On beta, candidate 1 becomes perfect.
	changed := func(cand int, name string, row int) float64 {
		if cand == 1 && Category(name) == "beta" {
			if r := c.winRow[name]; r >= 0 && row == r {
				return 0.99
			}
			return 0.05
		}
		return base(cand, name, row)
	}
	run := func(f func(int, string, int) float64) CV {
		cv, err := CrossValidate(c.names, c.windows, Profiles, 2, func(cand int, names []string) ([]FileScores, error) {
			return c.files(names, func(n string, r int) float64 { return f(cand, n, r) }), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return cv
	}
	before, after := run(base), run(changed)
	for k, f := range before.Folds {
		g := after.Folds[k]
		if f.Held != "beta" {
			continue
		}
		if f.Choice != g.Choice || !slices.Equal(f.Candidates, g.Candidates) {
			t.Errorf("holding out beta: chose %d from %v, after changing beta only %d from %v", f.Choice, f.Candidates, g.Choice, g.Candidates)
		}
		for p := range f.Train {
			if f.Train[p] != g.Train[p] {
				t.Errorf("holding out beta, %s: trained %+v, after changing beta only %+v", f.Train[p].Profile, f.Train[p], g.Train[p])
			}
		}
	}
	// The others train on beta: the better candidate there moves them.
	moved := 0
	for k, f := range before.Folds {
		if f.Held != "beta" && !slices.Equal(f.Candidates, after.Folds[k].Candidates) {
			moved++
		}
	}
	if moved != 2 {
		t.Errorf("%d of the folds training on beta saw it change, want 2", moved)
	}
}

func TestCrossValidateNeedsFolds(t *testing.T) {
	c := newCVCorpus()
	none := func(int, []string) ([]FileScores, error) { return nil, nil }
	var one []string
	for _, n := range c.names {
		if Category(n) == "alpha" || Category(n) == "quiet" {
			one = append(one, n)
		}
	}
	if _, err := CrossValidate(one, c.windows, Profiles, 1, none); err == nil {
		t.Error("one category with windows: want an error")
	}
	if _, err := CrossValidate(c.names, c.windows, Profiles, 0, none); err == nil {
		t.Error("no candidates: want an error")
	}
}

// TestCrossValidateChoosesBestOnTraining: a candidate that detects every
// window earlier than the defaults is chosen; one that does better on a
// single file only is chosen too, in the folds that train on that file
// (its lead then equals its standard error, which is reported), and not
// in the fold that holds that file out, where it ties with the defaults
// and the earlier candidate is kept.
func TestCrossValidateChoosesBestOnTraining(t *testing.T) {
	c := newCVCorpus()
	score := func(cand int, name string, row int) float64 {
		r := c.winRow[name]
		if r < 0 {
			return 0.05
		}
		late := r + 12 // the defaults fire late in every window
		switch {
		case cand == 1:
			late = r // early everywhere
		case cand == 2 && name == "alpha/f0.csv":
			late = r + 10 // a little earlier, in one file
		}
		if row == late {
			return 0.9
		}
		return 0.05
	}
	cv, err := CrossValidate(c.names, c.windows, Profiles, 3, func(cand int, names []string) ([]FileScores, error) {
		return c.files(names, func(n string, r int) float64 { return score(cand, n, r) }), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range cv.Folds {
		if f.Choice != 1 || !(f.Margin[1] > f.StdErr[1]) {
			t.Errorf("fold %s: chose %d (lead %.2f ± %.2f), want 1", f.Held, f.Choice, f.Margin[1], f.StdErr[1])
		}
	}
	two := func(cand int, name string, row int) float64 {
		if cand == 1 {
			cand = 0 // only the one-file improvement is on offer
		}
		return score(cand, name, row)
	}
	cv, err = CrossValidate(c.names, c.windows, Profiles, 3, func(cand int, names []string) ([]FileScores, error) {
		return c.files(names, func(n string, r int) float64 { return two(cand, n, r) }), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range cv.Folds {
		if f.Held == "alpha" {
			// alpha/f0.csv is held out: a tie on the rest, the
			// defaults kept.
			if f.Margin[2] != 0 || f.Choice != 0 {
				t.Errorf("fold alpha: candidate 2 leads by %.2f, chose %d, want a tie and the defaults", f.Margin[2], f.Choice)
			}
			continue
		}
		// One file carries the whole lead: it equals its standard error.
		if !(f.Margin[2] > 0) || math.Abs(f.Margin[2]-f.StdErr[2]) > 1e-9 || f.Choice != 2 {
			t.Errorf("fold %s: candidate 2 leads by %.2f ± %.2f, chose %d, want a lead of one standard error and candidate 2", f.Held, f.Margin[2], f.StdErr[2], f.Choice)
		}
	}
}
