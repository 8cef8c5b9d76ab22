package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/aiops-dev/aiops/internal/stats"
)

// Summary are the figures the targets are stated in.
type Summary struct {
	Scenarios int `json:"scenarios"`
	Fixable   int `json:"fixable"`
	// AutoResolved counts fixable scenarios healed with no person.
	AutoResolved      int     `json:"auto_resolved"`
	AutoResolvedShare float64 `json:"auto_resolved_share"`
	// ResolvedByRunbook counts incidents that resolved themselves as
	// fixed by the run.
	ResolvedByRunbook int `json:"resolved_by_runbook"`
	// Unfixable counts scenarios with a fault without a fix;
	// CorrectlyEscalated those escalated within 2 minutes of detection
	// with at most one action.
	Unfixable          int `json:"unfixable"`
	CorrectlyEscalated int `json:"correctly_escalated"`
	WrongAction        int `json:"wrong_action"`
	Missed             int `json:"missed"`
	// ManualShare is the share of scenarios a person had to handle:
	// escalated, missed or wrongly acted.
	ManualShare float64 `json:"manual_share"`
	// Medians (and the 90th percentile of recovery) over the scenarios
	// where the event happened; recovery over the auto-resolved ones.
	MedianDetectSeconds      float64 `json:"median_detect_seconds"`
	MedianFirstActionSeconds float64 `json:"median_first_action_seconds"`
	MedianRecoverSeconds     float64 `json:"median_recover_seconds"`
	P90RecoverSeconds        float64 `json:"p90_recover_seconds"`
	MaxRecoverSeconds        float64 `json:"max_recover_seconds"`
	// MedianUnhealthySeconds is over the auto-resolved scenarios: how
	// long users felt a fault that was healed.
	MedianUnhealthySeconds float64 `json:"median_unhealthy_seconds"`
	// MedianDetectToRecoverSeconds is over the auto-resolved scenarios:
	// from the first alert to the simulator's recovery, what remediation
	// itself takes.
	MedianDetectToRecoverSeconds float64 `json:"median_detect_to_recover_seconds"`
}

func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	// Nearest rank.
	i := int(q*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

// summarizeRuns sets the report's summaries and compares the later runs
// with the first.
func (rep *Report) summarizeRuns(step time.Duration) {
	byRun := map[int][]Result{}
	n := 0
	for _, r := range rep.Scenarios {
		byRun[r.Run] = append(byRun[r.Run], r)
		n = max(n, r.Run)
	}
	rep.Runs = nil
	for run := 1; run <= n; run++ {
		rep.Runs = append(rep.Runs, summarize(byRun[run]))
	}
	if len(rep.Runs) > 0 {
		rep.Summary = rep.Runs[0]
	}
	rep.NoSlower, rep.Slower = true, nil
	first := map[string]Result{}
	for _, r := range byRun[1] {
		first[r.Name] = r
	}
	for run := 2; run <= n; run++ {
		if rep.Runs[run-1].MedianRecoverSeconds > rep.Summary.MedianRecoverSeconds {
			rep.NoSlower = false
			rep.Slower = append(rep.Slower, fmt.Sprintf("run %d: median time to recover %.0f s, first run %.0f s", run, rep.Runs[run-1].MedianRecoverSeconds, rep.Summary.MedianRecoverSeconds))
		}
		for _, r := range byRun[run] {
			f, ok := first[r.Name]
			switch {
			case !ok:
			case f.Outcome == AutoResolved && r.Outcome != AutoResolved:
				rep.NoSlower = false
				rep.Slower = append(rep.Slower, fmt.Sprintf("run %d: %s %s, first run auto_resolved", run, r.Name, r.Outcome))
			case f.RecoverSeconds != nil && r.RecoverSeconds != nil && *r.RecoverSeconds > *f.RecoverSeconds+step.Seconds():
				rep.NoSlower = false
				rep.Slower = append(rep.Slower, fmt.Sprintf("run %d: %s recovered in %.0f s, first run %.0f s", run, r.Name, *r.RecoverSeconds, *f.RecoverSeconds))
			}
		}
	}
}

func summarize(results []Result) Summary {
	var s Summary
	var detect, first, recover, unhealthy, detectToRecover []float64
	for _, r := range results {
		s.Scenarios++
		if r.Fixable {
			s.Fixable++
		} else {
			s.Unfixable++
		}
		switch r.Outcome {
		case AutoResolved:
			s.AutoResolved++
			if r.ResolvedByRunbook {
				s.ResolvedByRunbook++
			}
			if r.RecoverSeconds != nil {
				recover = append(recover, *r.RecoverSeconds)
			}
			unhealthy = append(unhealthy, r.UnhealthySeconds)
			if r.RecoverSeconds != nil && r.DetectSeconds != nil {
				detectToRecover = append(detectToRecover, *r.RecoverSeconds-*r.DetectSeconds)
			}
		case WrongAction:
			s.WrongAction++
		case Missed:
			s.Missed++
		}
		if !r.Fixable && r.Correct {
			s.CorrectlyEscalated++
		}
		if r.DetectSeconds != nil {
			detect = append(detect, *r.DetectSeconds)
		}
		if r.FirstActionSeconds != nil {
			first = append(first, *r.FirstActionSeconds)
		}
	}
	if s.Fixable > 0 {
		s.AutoResolvedShare = float64(s.AutoResolved) / float64(s.Fixable)
	}
	if s.Scenarios > 0 {
		s.ManualShare = float64(s.Scenarios-s.AutoResolved) / float64(s.Scenarios)
	}
	s.MedianDetectSeconds = stats.Median(detect)
	s.MedianFirstActionSeconds = stats.Median(first)
	s.MedianRecoverSeconds = stats.Median(recover)
	s.P90RecoverSeconds = quantile(recover, 0.9)
	s.MedianUnhealthySeconds = stats.Median(unhealthy)
	s.MedianDetectToRecoverSeconds = stats.Median(detectToRecover)
	if len(recover) > 0 {
		s.MaxRecoverSeconds = slices.Max(recover)
	}
	return s
}

// Write writes report.json, report.md and a timeline picture per
// scenario (PNG) into dir.
func (rep *Report) Write(dir, command string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	var md strings.Builder
	rep.Markdown(&md, command)
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(md.String()), 0o644); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	return rep.writePictures(dir)
}

func opt(v *float64) string {
	if v == nil {
		return "–"
	}
	return fmt.Sprintf("%.0f", *v)
}

// escalatedCell is when the scenario was escalated and, for a fault
// without a fix that started after another, when it was first seen.
func escalatedCell(r Result) string {
	if r.EscalateSeconds != nil && r.UnfixableDetectSeconds != nil {
		return fmt.Sprintf("%s (its fault seen at %s)", opt(r.EscalateSeconds), opt(r.UnfixableDetectSeconds))
	}
	return opt(r.EscalateSeconds)
}

// Markdown writes the report as markdown.
func (rep *Report) Markdown(w io.Writer, command string) {
	s := rep.Summary
	fmt.Fprintf(w, "# Closed-loop chaos benchmark\n\n")
	if command != "" {
		fmt.Fprintf(w, "`%s` (simulated time, %gs steps, seed %d)\n\n", command, rep.StepSec, rep.Seed)
	}
	if len(rep.Runs) > 1 {
		fmt.Fprintf(w, "%d runs of the scenarios against one aiops (its learning record carried over); the figures below are the first run's.\n\n", len(rep.Runs))
		fmt.Fprintf(w, "| run | auto-resolved | correctly escalated | wrong / missed | recover median / p90 | detect median | first action median |\n| --- | --- | --- | --- | --- | --- | --- |\n")
		for i, r := range rep.Runs {
			fmt.Fprintf(w, "| %d | %d / %d | %d / %d | %d / %d | %.0f s / %.0f s | %.0f s | %.0f s |\n", i+1, r.AutoResolved, r.Fixable, r.CorrectlyEscalated, r.Unfixable,
				r.WrongAction, r.Missed, r.MedianRecoverSeconds, r.P90RecoverSeconds, r.MedianDetectSeconds, r.MedianFirstActionSeconds)
		}
		if rep.NoSlower {
			fmt.Fprintf(w, "\nThe later runs recovered no slower than the first.\n\n")
		} else {
			fmt.Fprintf(w, "\nSlower than the first run: %s.\n\n", strings.Join(rep.Slower, "; "))
		}
	}
	fmt.Fprintf(w, "| figure | value |\n| --- | --- |\n")
	fmt.Fprintf(w, "| scenarios | %d (%d with a fix, %d without) |\n", s.Scenarios, s.Fixable, s.Unfixable)
	fmt.Fprintf(w, "| auto-resolved (of those with a fix) | %d / %d = %.0f %% |\n", s.AutoResolved, s.Fixable, 100*s.AutoResolvedShare)
	fmt.Fprintf(w, "| incidents resolved as fixed by the run (of the auto-resolved) | %d / %d |\n", s.ResolvedByRunbook, s.AutoResolved)
	fmt.Fprintf(w, "| correctly escalated (of those without) | %d / %d |\n", s.CorrectlyEscalated, s.Unfixable)
	fmt.Fprintf(w, "| manual (escalated, missed or wrong action) | %.0f %% of scenarios |\n", 100*s.ManualShare)
	fmt.Fprintf(w, "| wrong action / missed | %d / %d |\n", s.WrongAction, s.Missed)
	fmt.Fprintf(w, "| time to recover (auto-resolved): median / p90 / max | %.0f s / %.0f s / %.0f s |\n", s.MedianRecoverSeconds, s.P90RecoverSeconds, s.MaxRecoverSeconds)
	fmt.Fprintf(w, "| from the first alert to recovery (auto-resolved), median | %.0f s |\n", s.MedianDetectToRecoverSeconds)
	fmt.Fprintf(w, "| time the simulator was unhealthy (auto-resolved), median | %.0f s |\n", s.MedianUnhealthySeconds)
	fmt.Fprintf(w, "| time to detect, median | %.0f s |\n", s.MedianDetectSeconds)
	fmt.Fprintf(w, "| time to first action, median | %.0f s |\n", s.MedianFirstActionSeconds)
	if b := rep.Baseline; b != nil {
		fmt.Fprintf(w, "| healthy baseline | %.0f min, %d actions, alerts %v |\n", b.Seconds/60, b.Actions, b.Alerts)
	}
	fmt.Fprintf(w, "\nSeconds from the first fault's injection, by the simulator's clock and ground truth.\n\n")
	fmt.Fprintf(w, "| run | scenario | fix known | outcome | correct | detect | first action | recovered | incident resolved by the run | escalated | unhealthy | actions |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rep.Scenarios {
		fmt.Fprintf(w, "| %d | %s | %v | %s | %v | %s | %s | %s | %s | %s | %.0f | %s |\n", r.Run, r.Name, r.Fixable, r.Outcome, r.Correct,
			opt(r.DetectSeconds), opt(r.FirstActionSeconds), opt(r.RecoverSeconds), opt(r.ResolvedSeconds), escalatedCell(r), r.UnhealthySeconds, strings.Join(r.ActionList, "; "))
	}
	fmt.Fprintf(w, "\nTimelines: ")
	for i, r := range rep.Scenarios {
		if i > 0 {
			fmt.Fprint(w, ", ")
		}
		name := r.Name
		if r.Run > 1 {
			name = fmt.Sprintf("%s (run %d)", r.Name, r.Run)
		}
		fmt.Fprintf(w, "[%s](%s)", name, pictureName(r))
	}
	fmt.Fprintln(w)
}
