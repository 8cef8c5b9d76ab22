package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Summary are the figures the targets are stated in.
type Summary struct {
	Scenarios int `json:"scenarios"`
	Fixable   int `json:"fixable"`
	// AutoResolved counts fixable scenarios healed with no person.
	AutoResolved      int     `json:"auto_resolved"`
	AutoResolvedShare float64 `json:"auto_resolved_share"`
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

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

func summarize(rep *Report) Summary {
	var s Summary
	var detect, first, recover, unhealthy, detectToRecover []float64
	for _, r := range rep.Scenarios {
		s.Scenarios++
		if r.Fixable {
			s.Fixable++
		} else {
			s.Unfixable++
		}
		switch r.Outcome {
		case AutoResolved:
			s.AutoResolved++
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
	s.MedianDetectSeconds = median(detect)
	s.MedianFirstActionSeconds = median(first)
	s.MedianRecoverSeconds = median(recover)
	s.P90RecoverSeconds = quantile(recover, 0.9)
	s.MedianUnhealthySeconds = median(unhealthy)
	s.MedianDetectToRecoverSeconds = median(detectToRecover)
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

// Markdown writes the report as markdown.
func (rep *Report) Markdown(w io.Writer, command string) {
	s := rep.Summary
	fmt.Fprintf(w, "# Closed-loop chaos benchmark\n\n")
	if command != "" {
		fmt.Fprintf(w, "`%s` (simulated time, %gs steps, seed %d)\n\n", command, rep.StepSec, rep.Seed)
	}
	fmt.Fprintf(w, "| figure | value |\n| --- | --- |\n")
	fmt.Fprintf(w, "| scenarios | %d (%d with a fix, %d without) |\n", s.Scenarios, s.Fixable, s.Unfixable)
	fmt.Fprintf(w, "| auto-resolved (of those with a fix) | %d / %d = %.0f %% |\n", s.AutoResolved, s.Fixable, 100*s.AutoResolvedShare)
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
	fmt.Fprintf(w, "| scenario | fix known | outcome | correct | detect | first action | recovered | escalated | unhealthy | actions |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rep.Scenarios {
		fmt.Fprintf(w, "| %s | %v | %s | %v | %s | %s | %s | %s | %.0f | %s |\n", r.Name, r.Fixable, r.Outcome, r.Correct,
			opt(r.DetectSeconds), opt(r.FirstActionSeconds), opt(r.RecoverSeconds), opt(r.EscalateSeconds), r.UnhealthySeconds, strings.Join(r.ActionList, "; "))
	}
	fmt.Fprintf(w, "\nTimelines: ")
	for i, r := range rep.Scenarios {
		if i > 0 {
			fmt.Fprint(w, ", ")
		}
		fmt.Fprintf(w, "[%s](%s)", r.Name, pictureName(r.Name))
	}
	fmt.Fprintln(w)
}
