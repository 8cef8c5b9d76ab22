package nab

import (
	"fmt"
	"io"
)

// Explain writes, per file, what a detector's scores amount to at one
// threshold under one profile: each window hit or missed and each false
// positive with its cost. It is for understanding a detector, not scoring.
func Explain(w io.Writer, files []FileScores, windows map[string][]Window, prof Profile, threshold float64) {
	for _, f := range files {
		p, err := prepare([]FileScores{f}, windows)
		if err != nil {
			fmt.Fprintf(w, "%s: %v\n", f.Name, err)
			continue
		}
		// prepare sorts by score; re-derive per-window results.
		best := make([]float64, p.windows)
		hit := make([]bool, p.windows)
		var fpCost float64
		fps := 0
		for _, pt := range p.points {
			if pt.score < threshold {
				continue
			}
			if pt.window < 0 {
				fpCost += prof.Cost.FP * pt.worth
				fps++
				continue
			}
			if !hit[pt.window] || pt.worth > best[pt.window] {
				best[pt.window] = pt.worth
				hit[pt.window] = true
			}
		}
		total := fpCost
		desc := ""
		for i := range best {
			if hit[i] {
				total += prof.Cost.TP * best[i]
				desc += fmt.Sprintf(" hit(%.2f)", best[i])
			} else {
				total -= prof.Cost.FN
				desc += " MISS"
			}
		}
		fmt.Fprintf(w, "%-60s total=%7.3f fp=%d (%.3f)%s\n", f.Name, total, fps, fpCost, desc)
	}
}
