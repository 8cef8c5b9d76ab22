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
	"github.com/aiops-dev/aiops/analyzer/nab"
)

type nabCommand struct {
	cmd     *kingpin.CmdClause
	corpus  string
	out     string
	verbose bool
}

func newNABCommand(app *kingpin.Application) *nabCommand {
	c := &nabCommand{}
	c.cmd = app.Command("nab", "Run the anomaly detector over a corpus in NAB's layout (DIR/data/<category>/<file>.csv) and score it when DIR has windows.json.")
	c.cmd.Flag("corpus", "Corpus directory holding data/ (and optionally windows.json, profiles.json).").Required().StringVar(&c.corpus)
	c.cmd.Flag("out", "Directory for <category>/<name>.csv result files.").Required().StringVar(&c.out)
	c.cmd.Flag("verbose", "Print per-file detections and misses.").BoolVar(&c.verbose)
	return c
}

func (c *nabCommand) fullCommand() string { return c.cmd.FullCommand() }

func (c *nabCommand) run(ctx context.Context, stdout, stderr io.Writer) error {
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
	pps := float64(points) / cpu.Seconds()
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
