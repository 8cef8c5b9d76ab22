// Package nab scores anomaly detectors the way the Numenta Anomaly Benchmark
// does, and reads and writes corpora in NAB's layout.
//
// The rules (windows, scaled sigmoid, probationary period, corpus-wide
// threshold sweep, normalisation) follow NAB v1.1 as summarised in the
// README of the development split; Score reproduces the published scores
// of the reference detectors from their result files.
package nab

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"time"
)

// TimeLayout is how NAB data files write timestamps.
const TimeLayout = "2006-01-02 15:04:05"

// windowLayout is how windows.json writes window bounds.
const windowLayout = "2006-01-02 15:04:05.000000"

// CostMatrix weighs a profile's outcomes.
type CostMatrix struct {
	TP float64 `json:"tpWeight"`
	FP float64 `json:"fpWeight"`
	FN float64 `json:"fnWeight"`
	TN float64 `json:"tnWeight"`
}

// Profile is one named scoring profile.
type Profile struct {
	Name string
	Cost CostMatrix
}

// Profiles are NAB's three profiles, in the order NAB reports them.
var Profiles = []Profile{
	{Name: "standard", Cost: CostMatrix{TP: 1, FP: 0.11, FN: 1, TN: 1}},
	{Name: "reward_low_FP_rate", Cost: CostMatrix{TP: 1, FP: 0.22, FN: 1, TN: 1}},
	{Name: "reward_low_FN_rate", Cost: CostMatrix{TP: 1, FP: 0.11, FN: 2, TN: 1}},
}

// LoadProfiles reads a profiles.json in NAB's format and returns its
// profiles in NAB's reporting order, followed by any others sorted by name.
func LoadProfiles(path string) ([]Profile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read profiles: %w", err)
	}
	var raw map[string]struct {
		CostMatrix CostMatrix `json:"CostMatrix"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("parse profiles %s: %w", path, err)
	}
	var out []Profile
	for _, p := range Profiles {
		if r, ok := raw[p.Name]; ok {
			out = append(out, Profile{Name: p.Name, Cost: r.CostMatrix})
			delete(raw, p.Name)
		}
	}
	var rest []string
	for name := range raw {
		rest = append(rest, name)
	}
	sort.Strings(rest)
	for _, name := range rest {
		out = append(out, Profile{Name: name, Cost: raw[name].CostMatrix})
	}
	return out, nil
}

// Window is one labelled anomaly window, both bounds inclusive.
type Window struct {
	Start, End time.Time
}

// LoadWindows reads a windows.json: relative file path ("category/file.csv")
// to its windows.
func LoadWindows(path string) (map[string][]Window, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read windows: %w", err)
	}
	var raw map[string][][]string
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("parse windows %s: %w", path, err)
	}
	out := make(map[string][]Window, len(raw))
	for name, ws := range raw {
		for i, w := range ws {
			if len(w) != 2 {
				return nil, fmt.Errorf("windows %s: %s window %d: want [start, end], got %d values", path, name, i, len(w))
			}
			s, err := parseWindowTime(w[0])
			if err != nil {
				return nil, fmt.Errorf("windows %s: %s window %d start: %w", path, name, i, err)
			}
			e, err := parseWindowTime(w[1])
			if err != nil {
				return nil, fmt.Errorf("windows %s: %s window %d end: %w", path, name, i, err)
			}
			if e.Before(s) {
				return nil, fmt.Errorf("windows %s: %s window %d ends before it starts", path, name, i)
			}
			out[name] = append(out[name], Window{Start: s, End: e})
		}
		if _, ok := out[name]; !ok {
			out[name] = nil
		}
	}
	return out, nil
}

func parseWindowTime(s string) (time.Time, error) {
	if t, err := time.Parse(windowLayout, s); err == nil {
		return t, nil
	}
	return time.Parse(TimeLayout, s)
}

// FileScores is one detector's output for one data file.
type FileScores struct {
	// Name is the file's path relative to the corpus's data dir, as
	// windows.json names it.
	Name   string
	Times  []time.Time
	Scores []float64
}

// Result is a detector's score under one profile.
type Result struct {
	Profile   string
	Threshold float64
	// Raw is the summed score at Threshold; Normalized maps the null
	// detector to 0 and the perfect one to 100.
	Raw, Normalized float64
	TP, FP, FN      int
}

// ProbationaryLength is how many leading rows of an n-row file NAB ignores.
func ProbationaryLength(n int) int {
	return int(math.Min(math.Floor(0.15*float64(n)), 0.15*5000))
}

// scaledSigmoid is NAB's weighting of a position relative to a window.
func scaledSigmoid(x float64) float64 {
	if x > 3 {
		return -1
	}
	return 2/(1+math.Exp(5*x)) - 1
}

// point is one scored row after the probationary period.
type point struct {
	score  float64
	window int     // index into windows of the whole corpus, -1 outside
	worth  float64 // unweighted: sigmoid position, before tp/fp weights
}

// prepared is a corpus reduced to what the sweep needs.
type prepared struct {
	points  []point
	windows int
}

func prepare(files []FileScores, windows map[string][]Window) (prepared, error) {
	var p prepared
	for _, f := range files {
		if len(f.Times) != len(f.Scores) {
			return p, fmt.Errorf("%s: %d timestamps but %d scores", f.Name, len(f.Times), len(f.Scores))
		}
		ws, ok := windows[f.Name]
		if !ok {
			return p, fmt.Errorf("%s: no entry in windows", f.Name)
		}
		n := len(f.Times)
		// Window bounds as row indexes.
		type rows struct{ l, r int }
		var wr []rows
		for _, w := range ws {
			l, r := -1, -1
			for i, t := range f.Times {
				if !t.Before(w.Start) && !t.After(w.End) {
					if l < 0 {
						l = i
					}
					r = i
				}
			}
			if l >= 0 {
				wr = append(wr, rows{l, r})
			}
		}
		// A window with no rows cannot be detected; NAB still counts it.
		base := p.windows
		p.windows += len(ws)
		prob := ProbationaryLength(n)
		cur := 0
		prevR, prevW := -1, 0
		for i := 0; i < n; i++ {
			win := -1
			var worth float64
			if cur < len(wr) && i >= wr[cur].l && i <= wr[cur].r {
				w := wr[cur].r - wr[cur].l + 1
				win = base + cur
				worth = scaledSigmoid(-float64(wr[cur].r-i+1)/float64(w)) / scaledSigmoid(-1)
			} else if prevR < 0 {
				worth = -1
			} else {
				worth = scaledSigmoid(math.Abs(float64(prevR-i)) / float64(prevW-1))
			}
			if cur < len(wr) && i == wr[cur].r {
				prevR, prevW = i, wr[cur].r-wr[cur].l+1
				cur++
			}
			if i < prob {
				continue
			}
			s := f.Scores[i]
			if math.IsNaN(s) {
				continue
			}
			p.points = append(p.points, point{score: s, window: win, worth: worth})
		}
	}
	sort.SliceStable(p.points, func(i, j int) bool { return p.points[i].score > p.points[j].score })
	return p, nil
}

// Score sweeps the threshold over the whole corpus for each profile and
// returns the best result per profile. Every file must have an entry in
// windows (possibly empty).
func Score(files []FileScores, windows map[string][]Window, profiles []Profile) ([]Result, error) {
	p, err := prepare(files, windows)
	if err != nil {
		return nil, err
	}
	out := make([]Result, 0, len(profiles))
	for _, prof := range profiles {
		out = append(out, sweep(p, prof))
	}
	return out, nil
}

func sweep(p prepared, prof Profile) Result {
	c := prof.Cost
	nullRaw := -c.FN * float64(p.windows)
	best := Result{Profile: prof.Name, Threshold: math.Inf(1), Raw: nullRaw, FN: p.windows}
	// Windows' best (earliest) detected worth so far; NaN when undetected.
	winBest := make([]float64, p.windows)
	for i := range winBest {
		winBest[i] = math.NaN()
	}
	raw := nullRaw
	tp, fp := 0, 0
	for i := 0; i < len(p.points); {
		th := p.points[i].score
		for ; i < len(p.points) && p.points[i].score == th; i++ {
			pt := p.points[i]
			if pt.window < 0 {
				raw += c.FP * pt.worth
				fp++
				continue
			}
			prev := winBest[pt.window]
			if math.IsNaN(prev) {
				raw += c.FN + c.TP*pt.worth
				winBest[pt.window] = pt.worth
				tp++
			} else if pt.worth > prev {
				raw += c.TP * (pt.worth - prev)
				winBest[pt.window] = pt.worth
			}
		}
		// Ties keep the higher threshold, so only a strict gain moves it.
		if raw > best.Raw {
			best = Result{Profile: prof.Name, Threshold: th, Raw: raw, TP: tp, FP: fp, FN: p.windows - tp}
		}
	}
	perfect := c.TP * float64(p.windows)
	if perfect != nullRaw {
		best.Normalized = 100 * (best.Raw - nullRaw) / (perfect - nullRaw)
	}
	return best
}

// ScoreAt scores the corpus at a fixed threshold instead of sweeping for
// the best one: what a threshold chosen elsewhere (on other files, say)
// earns here. Normalized uses this corpus's windows.
func ScoreAt(files []FileScores, windows map[string][]Window, prof Profile, threshold float64) (Result, error) {
	p, err := prepare(files, windows)
	if err != nil {
		return Result{}, err
	}
	c := prof.Cost
	nullRaw := -c.FN * float64(p.windows)
	res := Result{Profile: prof.Name, Threshold: threshold}
	best := make([]float64, p.windows)
	hit := make([]bool, p.windows)
	raw := nullRaw
	for _, pt := range p.points {
		if pt.score < threshold {
			break // sorted by score, highest first
		}
		if pt.window < 0 {
			raw += c.FP * pt.worth
			res.FP++
			continue
		}
		switch {
		case !hit[pt.window]:
			raw += c.FN + c.TP*pt.worth
			best[pt.window], hit[pt.window] = pt.worth, true
			res.TP++
		case pt.worth > best[pt.window]:
			raw += c.TP * (pt.worth - best[pt.window])
			best[pt.window] = pt.worth
		}
	}
	res.Raw, res.FN = raw, p.windows-res.TP
	if perfect := c.TP * float64(p.windows); perfect != nullRaw {
		res.Normalized = 100 * (raw - nullRaw) / (perfect - nullRaw)
	}
	return res, nil
}
