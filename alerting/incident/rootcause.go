package incident

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/aiops-dev/aiops/analyzer"
	"github.com/aiops-dev/aiops/analyzer/correlate"
	"github.com/aiops-dev/aiops/storage"
)

// RootCauser ranks the probable root causes of what went wrong in a time
// range. *analyzer.Analyzer satisfies it; so does StoreRootCauser, for
// processes that run no analyzer but read the events it wrote.
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

// StoreRootCauser ranks root causes from the anomaly events in Events and
// the service graph of the spans in Spans (nil: no graph), the way the
// analyzer does.
type StoreRootCauser struct {
	Events storage.EventStore
	Spans  storage.SpanStore
}

// RootCauses implements RootCauser.
func (s StoreRootCauser) RootCauses(ctx context.Context, start, end time.Time) ([]correlate.Cause, *correlate.Graph, error) {
	var as []correlate.Anomaly
	q := storage.EventQuery{KindPrefix: analyzer.AnomalyKind, Start: start, End: end, Limit: storage.DefaultQueryLimit}
	for {
		evs, err := s.Events.QueryEvents(ctx, q)
		if err != nil {
			return nil, nil, fmt.Errorf("read anomalies: %w", err)
		}
		for _, ev := range evs {
			if ev.Kind != analyzer.AnomalyKind {
				continue
			}
			an, err := analyzer.DecodeAnomaly(ev)
			if err != nil {
				continue // one bad event must not hide the others
			}
			as = append(as, correlate.Anomaly{
				Service: correlate.ServiceOf(an.Series), Series: labels.FromMap(an.Series).String(),
				Onset: an.Time, Score: an.Score,
			})
		}
		if len(evs) < q.Limit {
			break
		}
		last := evs[len(evs)-1]
		q.AfterTime, q.AfterID = last.Time, last.ID
	}
	var g *correlate.Graph
	if s.Spans != nil {
		var err error
		if g, err = correlate.BuildGraph(ctx, s.Spans, start, end); err != nil {
			return nil, nil, err
		}
	}
	return correlate.RankRootCauses(g, as), g, nil
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
