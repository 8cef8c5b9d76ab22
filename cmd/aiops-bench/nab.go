package main

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	cmd     *kingpin.CmdClause
	corpus  string
	out     string
	verbose bool
	scores  string
	cv      bool
}

func newNABCommand(app *kingpin.Application) *nabCommand {
	c := &nabCommand{}
	c.cmd = app.Command("nab", "Run the anomaly detector over a corpus in NAB's layout (DIR/data/<category>/<file>.csv) and score it when DIR has windows.json.")
	c.cmd.Flag("corpus", "Corpus directory holding data/ (and optionally windows.json, profiles.json).").Required().StringVar(&c.corpus)
	c.cmd.Flag("out", "Directory for <category>/<name>.csv result files (required unless --scores).").StringVar(&c.out)
	c.cmd.Flag("verbose", "Print per-file detections and misses.").BoolVar(&c.verbose)
	c.cmd.Flag("scores", "Score existing result files from this directory (<category>/<name>.csv or NAB's <category>/<detector>_<name>.csv) instead of running the detector; --out is then not written.").StringVar(&c.scores)
	c.cmd.Flag("cv", "Also cross-validate, leaving one category out: for each category with windows, the detector's defaults (searched over a small grid) and the threshold are chosen on the other categories and the held-out one is scored with them; the reference detectors in CORPUS/results are scored the same way.").BoolVar(&c.cv)
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
		series  []nab.Series // the data, kept for --cv's search
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
		if c.cv {
			series = append(series, s)
		}
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
	if c.cv {
		if err := c.crossValidate(ctx, stdout, names, files, series, windows, profiles); err != nil {
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
