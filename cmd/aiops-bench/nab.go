package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/aiops-dev/aiops/analyzer/detect"
	"github.com/aiops-dev/aiops/bench/nab"
)

type nabCommand struct {
	cmd      *kingpin.CmdClause
	corpus   string
	out      string
	verbose  bool
	scores   string
	loco     bool
	variants []string
}

func newNABCommand(app *kingpin.Application) *nabCommand {
	c := &nabCommand{}
	c.cmd = app.Command("nab", "Run the anomaly detector over a corpus in NAB's layout (DIR/data/<category>/<file>.csv) and score it when DIR has windows.json.")
	c.cmd.Flag("corpus", "Corpus directory holding data/ (and optionally windows.json, profiles.json).").Required().StringVar(&c.corpus)
	c.cmd.Flag("out", "Directory for <category>/<name>.csv result files (required unless --scores).").StringVar(&c.out)
	c.cmd.Flag("verbose", "Print per-file detections and misses.").BoolVar(&c.verbose)
	c.cmd.Flag("scores", "Score existing result files from this directory (<category>/<name>.csv or NAB's <category>/<detector>_<name>.csv) instead of running the detector; --out is then not written.").StringVar(&c.scores)
	c.cmd.Flag("loco", "Also report leave-one-category-out scores: each category scored at the threshold chosen on the other categories.").BoolVar(&c.loco)
	c.cmd.Flag("loco-variant", "With --loco, a directory of another configuration's result files (repeatable): the configuration is then chosen on the other categories too.").StringsVar(&c.variants)
	return c
}

func (c *nabCommand) fullCommand() string { return c.cmd.FullCommand() }

func (c *nabCommand) run(ctx context.Context, stdout, stderr io.Writer) error {
	if c.out == "" && c.scores == "" {
		return errors.New("nab: --out is required unless --scores is given")
	}
	names, err := nab.DataFiles(c.corpus)
	if err != nil {
		return err
	}
	var (
		files   []nab.FileScores
		points  int
		elapsed time.Duration
		cpu     time.Duration
	)
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		if c.scores != "" {
			f, err := readResultFile(c.scores, name)
			if err != nil {
				return err
			}
			files = append(files, f)
			points += len(f.Times)
			continue
		}
		s, err := nab.ReadSeries(filepath.Join(c.corpus, "data", filepath.FromSlash(name)))
		if err != nil {
			return err
		}
		scores := make([]float64, len(s.Values))
		start, cpuStart := time.Now(), cpuTime()
		d := detect.New(detect.Config{})
		for i := range s.Values {
			scores[i] = d.Observe(s.Times[i], s.Values[i]).Score
		}
		elapsed += time.Since(start)
		cpu += cpuTime() - cpuStart
		points += len(s.Values)
		if err := nab.WriteScores(filepath.Join(c.out, filepath.FromSlash(name)), s, scores); err != nil {
			return err
		}
		files = append(files, nab.FileScores{Name: name, Times: s.Times, Scores: scores})
	}
	// Throughput per CPU second of the detector, so that a busy machine
	// does not make the detector look slow.
	pps := 0.0
	if cpu > 0 {
		pps = float64(points) / cpu.Seconds()
	}
	fmt.Fprintf(stdout, "scored %d files, %d points: detector %v CPU, %v wall\n", len(files), points, cpu.Round(time.Millisecond), elapsed.Round(time.Millisecond))

	windows, err := nab.LoadWindows(filepath.Join(c.corpus, "windows.json"))
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stdout, "no windows.json in %s: not scoring; points_per_s=%.0f\n", c.corpus, pps)
		return nil
	}
	if err != nil {
		return err
	}
	profiles := nab.Profiles
	if p, err := nab.LoadProfiles(filepath.Join(c.corpus, "profiles.json")); err == nil {
		profiles = p
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	results, err := nab.Score(files, windows, profiles)
	if err != nil {
		return err
	}
	var parts []string
	for _, r := range results {
		fmt.Fprintf(stdout, "%-20s score=%8.4f raw=%9.4f threshold=%.6f tp=%d fp=%d fn=%d\n", r.Profile, r.Normalized, r.Raw, r.Threshold, r.TP, r.FP, r.FN)
		parts = append(parts, fmt.Sprintf("%s=%.4f", r.Profile, r.Normalized))
	}
	if c.verbose && len(results) > 0 {
		nab.Explain(stdout, files, windows, profiles[0], results[0].Threshold)
	}
	if c.loco {
		cands := []candidate{{name: "this", files: files}}
		for _, dir := range c.variants {
			var vf []nab.FileScores
			for _, name := range names {
				f, err := readResultFile(dir, name)
				if err != nil {
					return err
				}
				vf = append(vf, f)
			}
			cands = append(cands, candidate{name: filepath.Base(dir), files: vf})
		}
		if err := leaveOneCategoryOut(stdout, cands, windows, profiles); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "NAB %s points_per_s=%.0f\n", strings.Join(parts, " "), pps)
	return nil
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// readResultFile reads the scores for data file name (category/file.csv)
// from dir: dir/category/file.csv, or NAB's dir/category/<detector>_file.csv.
func readResultFile(dir, name string) (nab.FileScores, error) {
	path := filepath.Join(dir, filepath.FromSlash(name))
	if _, err := os.Stat(path); err != nil {
		cat, file := filepath.Split(filepath.FromSlash(name))
		m, _ := filepath.Glob(filepath.Join(dir, cat, "*_"+file))
		if len(m) != 1 {
			return nab.FileScores{}, fmt.Errorf("scores for %s: want %s or one %s, found %d", name, path, filepath.Join(dir, cat, "*_"+file), len(m))
		}
		path = m[0]
	}
	ts, sc, err := nab.ReadScores(path)
	if err != nil {
		return nab.FileScores{}, err
	}
	return nab.FileScores{Name: name, Times: ts, Scores: sc}, nil
}

// candidate is one configuration's scores for the whole corpus.
type candidate struct {
	name  string
	files []nab.FileScores
}

// leaveOneCategoryOut scores each category at the threshold chosen on the
// other categories and pools the held-out results: does a score mean the
// same in a kind of data the threshold was not chosen on? With more than
// one candidate (other configurations' result files), a second line
// chooses the configuration too on the other categories, which is what
// tuning a configuration on a benchmark amounts to.
func leaveOneCategoryOut(w io.Writer, cands []candidate, windows map[string][]nab.Window, profiles []nab.Profile) error {
	var cats []string
	seen := map[string]bool{}
	for _, f := range cands[0].files {
		cat, _, _ := strings.Cut(f.Name, "/")
		if !seen[cat] {
			seen[cat] = true
			cats = append(cats, cat)
		}
	}
	split := func(files []nab.FileScores, cat string) (in, rest []nab.FileScores) {
		for _, f := range files {
			if c, _, _ := strings.Cut(f.Name, "/"); c == cat {
				in = append(in, f)
			} else {
				rest = append(rest, f)
			}
		}
		return in, rest
	}
	pass := func(label string, pool []candidate) ([]string, error) {
		var parts []string
		for _, prof := range profiles {
			var raw, null, perfect float64
			var tp, fp, fn int
			for _, cat := range cats {
				// The candidate (and its threshold) doing best without cat.
				best, bestAt, bestNorm := -1, 0.0, math.Inf(-1)
				for i, c := range pool {
					_, rest := split(c.files, cat)
					res, err := nab.Score(rest, windows, []nab.Profile{prof})
					if err != nil {
						return nil, err
					}
					if res[0].Normalized > bestNorm {
						best, bestAt, bestNorm = i, res[0].Threshold, res[0].Normalized
					}
				}
				in, _ := split(pool[best].files, cat)
				r, err := nab.ScoreAt(in, windows, prof, bestAt)
				if err != nil {
					return nil, err
				}
				n := float64(r.TP + r.FN)
				raw += r.Raw
				null -= prof.Cost.FN * n
				perfect += prof.Cost.TP * n
				tp, fp, fn = tp+r.TP, fp+r.FP, fn+r.FN
				fmt.Fprintf(w, "%s %-20s %-22s %s threshold=%.6f raw=%8.4f tp=%d fp=%d fn=%d\n", label, prof.Name, cat, pool[best].name, bestAt, r.Raw, r.TP, r.FP, r.FN)
			}
			norm := 100 * (raw - null) / (perfect - null)
			fmt.Fprintf(w, "%s %-20s pooled score=%8.4f raw=%9.4f tp=%d fp=%d fn=%d\n", label, prof.Name, norm, raw, tp, fp, fn)
			parts = append(parts, fmt.Sprintf("%s=%.4f", prof.Name, norm))
		}
		return parts, nil
	}
	if len(cands) > 1 {
		parts, err := pass("loco-variant", cands)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "LOCO-VARIANT %s\n", strings.Join(parts, " "))
	}
	parts, err := pass("loco", cands[:1])
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "LOCO %s\n", strings.Join(parts, " "))
	return nil
}
