package correlate

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/aiops-dev/aiops/analyzer/results"
	"github.com/aiops-dev/aiops/storage"
)

// StoreRanker ranks root causes from what is stored: the anomaly events
// the analyzer wrote to Events and the service graph of the spans in
// Spans. It keeps no state, so it answers the same in every process over
// the same store.
type StoreRanker struct {
	Events storage.EventStore
	// Spans may be nil: then there is no graph, and onset and strength
	// alone rank.
	Spans storage.SpanStore
	// Logger, if set, hears about anomaly events that cannot be decoded;
	// they are skipped, since one bad event must not hide the others.
	Logger *slog.Logger
}

// RootCauses ranks the probable root causes of the anomaly events
// recorded in [start, end], using the service graph built from the spans
// of the same window. Each anomaly's service is read from its series'
// labels (results.ServiceOf).
func (r StoreRanker) RootCauses(ctx context.Context, start, end time.Time) ([]Cause, *Graph, error) {
	var as []Anomaly
	q := storage.EventQuery{KindPrefix: results.AnomalyKind, Start: start, End: end, Limit: storage.DefaultQueryLimit}
	for {
		evs, err := r.Events.QueryEvents(ctx, q)
		if err != nil {
			return nil, nil, fmt.Errorf("correlate: read anomalies: %w", err)
		}
		for _, ev := range evs {
			if ev.Kind != results.AnomalyKind {
				continue
			}
			an, err := results.DecodeAnomaly(ev)
			if err != nil {
				if r.Logger != nil {
					r.Logger.Warn("Skipping undecodable anomaly event", "err", err)
				}
				continue
			}
			as = append(as, Anomaly{
				Service: results.ServiceOf(an.Series), Series: labels.FromMap(an.Series).String(),
				Onset: an.Time, Score: an.Score,
			})
		}
		if len(evs) < q.Limit {
			break
		}
		last := evs[len(evs)-1]
		q.AfterTime, q.AfterID = last.Time, last.ID
	}
	var g *Graph
	if r.Spans != nil {
		var err error
		if g, err = BuildGraph(ctx, r.Spans, start, end); err != nil {
			return nil, nil, err
		}
	}
	return RankRootCauses(g, as), g, nil
}
