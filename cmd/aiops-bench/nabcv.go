package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/aiops-dev/aiops/analyzer/detect"
	"github.com/aiops-dev/aiops/bench/nab"
)

// gridDim is one detector setting the cross-validation searches, over a
// few values around its default (the first value is the default).
type gridDim struct {
	name   string
	values []string
	set    func(c *detect.Config, i int)
}

// detectorGrid is the search space of --cv: what each fold chooses the
// detector's settings from, on the categories it does not hold out. It is
// deliberately small and coarse (docs/ANALYZER.md, "Cross-validation"):
// the three settings whose right value depends most on the data rather
// than on a reason, each at its default and a factor of two either way —
// how much of the past is "normal" (window), how alike two excursions must
// be to count as the same place (near), and how long one event keeps later
// points from being reported (hold, as a fraction of the window).
var detectorGrid = []gridDim{
	{"window", []string{"576", "288", "1152"}, func(c *detect.Config, i int) { c.Window = []int{576, 288, 1152}[i] }},
	{"near", []string{"1/4", "1/8", "1/2"}, func(c *detect.Config, i int) { c.NearFraction = []float64{0.25, 0.125, 0.5}[i] }},
	{"hold", []string{"window/8", "window/16", "window/4"}, func(c *detect.Config, i int) {
		w := c.Window
		if w == 0 {
			w = 576
		}
		c.HoldHalfLife = w / []int{8, 16, 4}[i]
	}},
}

// gridCandidate is one point of the grid.
type gridCandidate struct {
	name string
	cfg  detect.Config
}

// gridCandidates returns the defaults first (so that a tie keeps them)
// and then each setting moved on its own to each of its other values: 1 +
// Σ(values−1) candidates rather than the full product. Every candidate is
// one more chance for a fold to fit its other categories by luck, so the
// set is kept to the moves one would try by hand.
func gridCandidates(dims []gridDim) []gridCandidate {
	out := []gridCandidate{{name: "defaults"}}
	for _, dim := range dims {
		for i := 1; i < len(dim.values); i++ {
			var c gridCandidate
			dim.set(&c.cfg, i)
			c.name = dim.name + "=" + dim.values[i]
			out = append(out, c)
		}
	}
	return out
}

// crossValidate runs and prints the leave-one-category-out protocol of
// bench/nab.CrossValidate for this detector (searching detectorGrid when
// series are given, else scoring the given result files as they are) and,
// beside it, for every reference detector under CORPUS/results.
func (c *nabCommand) crossValidate(ctx context.Context, w io.Writer, names []string, files []nab.FileScores, series []nab.Series, windows map[string][]nab.Window, profiles []nab.Profile) error {
	type column struct {
		name  string
		cv    nab.CV
		files [][]nab.FileScores // per candidate, in names' order
	}
	var cols []column

	if n := len(nab.FoldCategories(names, windows)); n < 2 {
		return fmt.Errorf("cv: %d categories with windows in %s, need at least 2 to hold one out", n, c.corpus)
	}
	cands := []gridCandidate{{name: "as given"}}
	byCand := [][]nab.FileScores{files}
	if series != nil {
		cands = gridCandidates(detectorGrid)
		start, cpuStart := time.Now(), cpuTime()
		var err error
		if byCand, err = runGrid(ctx, cands, names, series); err != nil {
			return err
		}
		fmt.Fprintf(w, "cv search: %d configurations × %d files, %v CPU, %v wall\n", len(cands), len(names), (cpuTime() - cpuStart).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	}
	cv, err := nab.CrossValidate(names, windows, profiles, len(cands), lookup(names, byCand))
	if err != nil {
		return err
	}
	cols = append(cols, column{"this", cv, byCand})

	refs, _ := filepath.Glob(filepath.Join(c.corpus, "results", "*"))
	sort.Strings(refs)
	for _, dir := range refs {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue
		}
		var rf []nab.FileScores
		for _, name := range names {
			f, err := readResultFile(dir, name)
			if err != nil {
				return err
			}
			rf = append(rf, f)
		}
		rcv, err := nab.CrossValidate(names, windows, profiles, 1, lookup(names, [][]nab.FileScores{rf}))
		if err != nil {
			return err
		}
		cols = append(cols, column{filepath.Base(dir), rcv, [][]nab.FileScores{rf}})
	}

	// The folds of this detector: what was chosen and what it earned.
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "cv fold\tchosen\ttrain\tlead over defaults ± s.e. (or best other's)\tthreshold")
	for _, p := range profiles {
		fmt.Fprintf(tw, "\t%s", p.Name)
	}
	fmt.Fprintf(tw, "\ttp\tfp\tfn\n")
	for _, f := range cv.Folds {
		other := "-"
		if alt := f.Choice; alt > 0 {
			other = fmt.Sprintf("%+.2f ± %.2f", f.Margin[alt], f.StdErr[alt])
		} else if alt := bestOther(f); alt > 0 {
			other = fmt.Sprintf("%s %+.2f ± %.2f", cands[alt].name, f.Margin[alt], f.StdErr[alt])
		}
		fmt.Fprintf(tw, "cv %s\t%s\t%.2f\t%s\t%.6f", f.Held, cands[f.Choice].name, f.Train[0].Normalized, other, f.Train[0].Threshold)
		for _, r := range f.Test {
			fmt.Fprintf(tw, "\t%.2f", r.Normalized)
		}
		fmt.Fprintf(tw, "\t%d\t%d\t%d\n", f.Test[0].TP, f.Test[0].FP, f.Test[0].FN)
	}
	fmt.Fprintf(tw, "cv mean\t\t\t\t")
	for _, m := range cv.Mean {
		fmt.Fprintf(tw, "\t%.2f", m)
	}
	fmt.Fprintf(tw, "\n")
	if err := tw.Flush(); err != nil {
		return err
	}
	// What each fold chose from: every candidate's score on its other
	// categories.
	if len(cands) > 1 {
		for _, f := range cv.Folds {
			parts := make([]string, len(cands))
			for i, c := range cands {
				parts[i] = fmt.Sprintf("%s=%.2f", c.name, f.Candidates[i])
			}
			fmt.Fprintf(w, "cv candidates %s: %s\n", f.Held, strings.Join(parts, " "))
		}
	}

	// Every detector by the same protocol, one table per profile.
	for p, prof := range profiles {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "cv %s", prof.Name)
		for _, col := range cols {
			fmt.Fprintf(tw, "\t%s", col.name)
		}
		fmt.Fprintf(tw, "\n")
		for i, f := range cv.Folds {
			fmt.Fprintf(tw, "cv %s", f.Held)
			for _, col := range cols {
				fmt.Fprintf(tw, "\t%.2f", col.cv.Folds[i].Test[p].Normalized)
			}
			fmt.Fprintf(tw, "\n")
		}
		for _, row := range []struct {
			name string
			get  func(nab.CV) float64
		}{{"mean", func(cv nab.CV) float64 { return cv.Mean[p] }}, {"pooled", func(cv nab.CV) float64 { return cv.Pooled[p] }}} {
			fmt.Fprintf(tw, "cv %s", row.name)
			for _, col := range cols {
				fmt.Fprintf(tw, "\t%.2f", row.get(col.cv))
			}
			fmt.Fprintf(tw, "\n")
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	// How far each fold's lead over each reference detector is from
	// noise: a category holds a few dozen windows, and one window more or
	// less moves its score by several points.
	heldFiles := func(col column, fold int) []nab.FileScores {
		var out []nab.FileScores
		for i, n := range names {
			if nab.Category(n) == col.cv.Folds[fold].Held {
				out = append(out, col.files[col.cv.Folds[fold].Choice][i])
			}
		}
		return out
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "cv %s lead of this over", profiles[0].Name)
	for _, col := range cols[1:] {
		fmt.Fprintf(tw, "\t%s", col.name)
	}
	fmt.Fprintf(tw, "\n")
	for i, f := range cv.Folds {
		fmt.Fprintf(tw, "cv %s", f.Held)
		for _, col := range cols[1:] {
			lead, se, err := nab.Lead(heldFiles(cols[0], i), heldFiles(col, i), windows, profiles[0], f.Train[0].Threshold, col.cv.Folds[i].Train[0].Threshold)
			if err != nil {
				return err
			}
			fmt.Fprintf(tw, "\t%+.2f ± %.2f", lead, se)
		}
		fmt.Fprintf(tw, "\n")
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	// One summary line per detector, for scripts and tests.
	for _, col := range cols {
		var parts []string
		for p, prof := range profiles {
			parts = append(parts, fmt.Sprintf("%s=%.4f", prof.Name, col.cv.Mean[p]))
		}
		var folds []string
		for _, f := range col.cv.Folds {
			folds = append(folds, fmt.Sprintf("%s:%.4f", f.Held, f.Test[0].Normalized))
		}
		fmt.Fprintf(w, "CV %s %s folds=%s\n", col.name, strings.Join(parts, " "), strings.Join(folds, ","))
	}
	return nil
}

// bestOther returns the candidate other than the defaults with the largest
// lead on the fold's training categories (0 when there is none).
func bestOther(f nab.Fold) int {
	best := 0
	for i := 1; i < len(f.Margin); i++ {
		if best == 0 || f.Margin[i] > f.Margin[best] {
			best = i
		}
	}
	return best
}

// lookup serves a ScoresFunc from result files computed beforehand, one
// slice per candidate in names' order. Computing every file up front is
// only bookkeeping: CrossValidate decides from what it asks for.
func lookup(names []string, byCand [][]nab.FileScores) nab.ScoresFunc {
	idx := make(map[string]int, len(names))
	for i, n := range names {
		idx[n] = i
	}
	return func(cand int, want []string) ([]nab.FileScores, error) {
		out := make([]nab.FileScores, 0, len(want))
		for _, n := range want {
			i, ok := idx[n]
			if !ok {
				return nil, fmt.Errorf("cv: no scores for %s", n)
			}
			out = append(out, byCand[cand][i])
		}
		return out, nil
	}
}

// runGrid runs every candidate configuration over every series, a fresh
// detector per file as in the plain run, on as many goroutines as the
// process may use.
func runGrid(ctx context.Context, cands []gridCandidate, names []string, series []nab.Series) ([][]nab.FileScores, error) {
	out := make([][]nab.FileScores, len(cands))
	for i := range out {
		out[i] = make([]nab.FileScores, len(series))
	}
	type job struct{ cand, file int }
	jobs := make(chan job)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				s := series[j.file]
				d := detect.New(cands[j.cand].cfg)
				scores := make([]float64, len(s.Values))
				for i := range s.Values {
					scores[i] = d.Observe(s.Times[i], s.Values[i]).Score
				}
				out[j.cand][j.file] = nab.FileScores{Name: names[j.file], Times: s.Times, Scores: scores}
			}
		}()
	}
	var err error
feed:
	for c := range cands {
		for f := range series {
			select {
			case jobs <- job{c, f}:
			case <-ctx.Done():
				err = ctx.Err()
				break feed
			}
		}
	}
	close(jobs)
	wg.Wait()
	return out, err
}
