package incident

import (
	"context"
	"time"

	"github.com/aiops-dev/aiops/analyzer/results/correlate"
)

// RootCauser ranks the probable root causes of what went wrong in a time
// range. correlate.StoreRanker satisfies it, ranking over the anomaly
// events and spans where the analyzer and the collector wrote them: the
// Manager never calls the analyzer, which may run in another process or
// not at all.
type RootCauser interface {
	RootCauses(ctx context.Context, start, end time.Time) ([]correlate.Cause, *correlate.Graph, error)
}

// RootCauses is the ranking attached to an incident.
type RootCauses struct {
	// Start and End bound the anomalies and spans the ranking read.
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	ComputedAt time.Time `json:"computed_at"`
	Causes     []Cause   `json:"causes"`
	// Error says why there is no ranking (the analyzer's store could not
	// be read in time, ...).
	Error string `json:"error,omitempty"`
}

// Cause is one ranked candidate, most likely first.
type Cause struct {
	Service   string    `json:"service"`
	Score     float64   `json:"score"`
	Onset     time.Time `json:"onset"`
	Anomalies int       `json:"anomalies"`
	Reasons   []string  `json:"reasons"`
}

// rankRootCauses asks rc for the ranking of [start, end], keeping at most
// max causes; a failure is recorded in the result rather than returned,
// because an incident must open even when the ranking cannot be had.
func rankRootCauses(ctx context.Context, rc RootCauser, start, end time.Time, max int, timeout time.Duration, now time.Time) *RootCauses {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := &RootCauses{Start: start.UTC(), End: end.UTC(), ComputedAt: now.UTC(), Causes: []Cause{}}
	causes, _, err := rc.RootCauses(ctx, start, end)
	if err != nil {
		out.Error = err.Error()
		return out
	}
	for _, c := range causes[:min(len(causes), max)] {
		reasons := c.Reasons
		if reasons == nil {
			reasons = []string{}
		}
		out.Causes = append(out.Causes, Cause{Service: c.Service, Score: c.Score, Onset: c.Onset.UTC(), Anomalies: c.Anomalies, Reasons: reasons})
	}
	return out
}
