package nab

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Category returns the category of a data file named as windows.json
// names it ("category/file.csv").
func Category(name string) string {
	cat, _, _ := strings.Cut(name, "/")
	return cat
}

// FoldCategories returns the categories of names that have at least one
// window, sorted: each is held out once in cross-validation. Categories
// without windows (NAB's artificialNoAnomaly) are never held out: scored
// alone they are worth nothing either way, but they always stay among
// the categories defaults are chosen on, where they make false positives
// cost.
func FoldCategories(names []string, windows map[string][]Window) []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range names {
		cat := Category(n)
		if len(windows[n]) > 0 && !seen[cat] {
			seen[cat] = true
			out = append(out, cat)
		}
	}
	sort.Strings(out)
	return out
}

// ScoresFunc returns candidate i's result files for the named data files,
// in the order given. Cross-validation asks for the files of the other
// categories while it chooses, and for the held-out category's only once
// it has chosen.
type ScoresFunc func(candidate int, names []string) ([]FileScores, error)

// Fold is one held-out category under leave-one-category-out.
type Fold struct {
	// Held is the held-out category.
	Held string
	// Choice is the candidate chosen on the other categories: the one
	// with the best score there under the first profile (ties: the
	// earlier candidate).
	Choice int
	// Train holds, per profile, the chosen candidate's result on the
	// other categories with the threshold swept there, as NAB sweeps it.
	Train []Result
	// Test holds, per profile, the held-out category scored at that
	// profile's threshold from Train, normalised over its own windows.
	Test []Result
	// Candidates holds every candidate's normalised score on the other
	// categories under the first profile: what the choice was made on.
	Candidates []float64
	// Margin holds, per candidate, its score's lead over candidate 0's on
	// the other categories, and StdErr the standard error of that lead
	// over files: how clearly the choice was made, reported beside it.
	Margin, StdErr []float64
}

// CV is the outcome of CrossValidate.
type CV struct {
	Profiles []Profile
	Folds    []Fold
	// Mean is, per profile, the mean of the folds' held-out scores.
	Mean []float64
	// Pooled is, per profile, the held-out results summed over the folds
	// and normalised over all their windows.
	Pooled []float64
}

// CrossValidate holds out each category with windows in turn (see
// FoldCategories). On the other categories — a category without windows
// is always among them — it scores each of n candidates (configurations
// of one detector, say; candidate 0 its defaults) with NAB's threshold
// sweep under the first profile, and chooses one; each profile's
// threshold is then swept on the other categories for the chosen one.
// Only then does it ask for the held-out category's files, of the chosen
// candidate only, and score them at those thresholds. What a fold reports
// was therefore decided without its held-out category: the score of a way
// of choosing defaults on data it was not tuned on.
//
// The choice is the candidate that scores best on the other categories
// (ties keep the earlier one). It does not favour candidate 0: the
// defaults were themselves settled while looking at every category, so
// preferring them within noise would let the held-out category back into
// the choice through the defaults. Margin and StdErr report how clear the
// choice was: a lead within one standard error of the lead over files is
// what one window more or less in one file makes.
func CrossValidate(names []string, windows map[string][]Window, profiles []Profile, n int, scores ScoresFunc) (CV, error) {
	if n < 1 {
		return CV{}, fmt.Errorf("cross-validate: no candidates")
	}
	if len(profiles) == 0 {
		return CV{}, fmt.Errorf("cross-validate: no profiles")
	}
	folds := FoldCategories(names, windows)
	if len(folds) < 2 {
		return CV{}, fmt.Errorf("cross-validate: %d categories with windows, need at least 2", len(folds))
	}
	cv := CV{Profiles: profiles, Mean: make([]float64, len(profiles)), Pooled: make([]float64, len(profiles))}
	raw := make([]float64, len(profiles))
	null := make([]float64, len(profiles))
	perfect := make([]float64, len(profiles))
	for _, held := range folds {
		var train, test []string
		for _, name := range names {
			if Category(name) == held {
				test = append(test, name)
			} else {
				train = append(train, name)
			}
		}
		f := Fold{Held: held, Candidates: make([]float64, n), Margin: make([]float64, n), StdErr: make([]float64, n)}
		var base []float64 // candidate 0's per-file raw scores
		var span float64   // perfect - null on the other categories
		for i := 0; i < n; i++ {
			files, err := scores(i, train)
			if err != nil {
				return CV{}, err
			}
			res, err := Score(files, windows, profiles)
			if err != nil {
				return CV{}, err
			}
			per, err := perFile(files, windows, profiles[0], res[0].Threshold)
			if err != nil {
				return CV{}, err
			}
			f.Candidates[i] = res[0].Normalized
			if i == 0 {
				f.Choice, f.Train, base = 0, res, per
				p := preparedWindows(files, windows)
				span = (profiles[0].Cost.TP + profiles[0].Cost.FN) * float64(p)
				continue
			}
			f.Margin[i] = res[0].Normalized - f.Candidates[0]
			f.StdErr[i] = 100 * pairedStdErr(per, base) / span
			if f.Candidates[i] > f.Candidates[f.Choice] {
				f.Choice, f.Train = i, res
			}
		}
		files, err := scores(f.Choice, test)
		if err != nil {
			return CV{}, err
		}
		for p, prof := range profiles {
			r, err := ScoreAt(files, windows, prof, f.Train[p].Threshold)
			if err != nil {
				return CV{}, err
			}
			f.Test = append(f.Test, r)
			cv.Mean[p] += r.Normalized / float64(len(folds))
			w := float64(r.TP + r.FN)
			raw[p] += r.Raw
			null[p] -= prof.Cost.FN * w
			perfect[p] += prof.Cost.TP * w
		}
		cv.Folds = append(cv.Folds, f)
	}
	for p := range profiles {
		cv.Pooled[p] = math.NaN()
		if perfect[p] != null[p] {
			cv.Pooled[p] = 100 * (raw[p] - null[p]) / (perfect[p] - null[p])
		}
	}
	return cv, nil
}

// perFile returns what each file's rows add to the raw score at threshold.
func perFile(files []FileScores, windows map[string][]Window, prof Profile, threshold float64) ([]float64, error) {
	out := make([]float64, len(files))
	for i, f := range files {
		r, err := ScoreAt([]FileScores{f}, windows, prof, threshold)
		if err != nil {
			return nil, err
		}
		// ScoreAt starts from the null score of the file's windows; its
		// share of the corpus's raw score is what it adds to that.
		out[i] = r.Raw + prof.Cost.FN*float64(r.TP+r.FN)
	}
	return out, nil
}

// preparedWindows counts the windows of files.
func preparedWindows(files []FileScores, windows map[string][]Window) int {
	n := 0
	for _, f := range files {
		n += len(windows[f.Name])
	}
	return n
}

// pairedStdErr is the standard error of sum(a) - sum(b) estimated from the
// spread of the pairwise differences a[i] - b[i]: sqrt(n) times their
// sample standard deviation.
func pairedStdErr(a, b []float64) float64 {
	n := len(a)
	if n < 2 {
		return math.Inf(1)
	}
	var mean float64
	for i := range a {
		mean += a[i] - b[i]
	}
	mean /= float64(n)
	var ss float64
	for i := range a {
		d := a[i] - b[i] - mean
		ss += d * d
	}
	return math.Sqrt(float64(n) * ss / float64(n-1))
}

// Lead compares two detectors on the same files, each at its own
// threshold, under prof: the normalised score of a minus that of b, and
// the standard error of that lead estimated from the file-by-file
// differences (each file's share of the raw score). NAB's categories hold
// a few dozen windows, so one window more or less moves a category's
// score by several points; the standard error says how many.
func Lead(a, b []FileScores, windows map[string][]Window, prof Profile, ta, tb float64) (lead, stdErr float64, err error) {
	if len(a) != len(b) {
		return 0, 0, fmt.Errorf("lead: %d files against %d", len(a), len(b))
	}
	ra, err := ScoreAt(a, windows, prof, ta)
	if err != nil {
		return 0, 0, err
	}
	rb, err := ScoreAt(b, windows, prof, tb)
	if err != nil {
		return 0, 0, err
	}
	pa, err := perFile(a, windows, prof, ta)
	if err != nil {
		return 0, 0, err
	}
	pb, err := perFile(b, windows, prof, tb)
	if err != nil {
		return 0, 0, err
	}
	span := (prof.Cost.TP + prof.Cost.FN) * float64(preparedWindows(a, windows))
	return ra.Normalized - rb.Normalized, 100 * pairedStdErr(pa, pb) / span, nil
}
