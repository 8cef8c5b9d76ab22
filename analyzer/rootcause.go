package analyzer

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/aiops-dev/aiops/analyzer/correlate"
	"github.com/aiops-dev/aiops/storage"
)

// RootCauses ranks the probable root causes of the anomaly events recorded
// in [start, end], using the service graph built from the spans of the
// same window (no graph when Deps.Spans is nil). Each anomaly's service is
// read from its series' labels (correlate.ServiceOf).
func (a *Analyzer) RootCauses(ctx context.Context, start, end time.Time) ([]correlate.Cause, *correlate.Graph, error) {
	return RankStoredRootCauses(ctx, a.deps.Events, a.deps.Spans, start, end, a.logger)
}

// RankStoredRootCauses is RootCauses over any event and span store, for
// processes that run no analyzer but read the events one wrote. Spans may
// be nil (no graph). Undecodable anomaly events are skipped, and logged
// when logger is not nil: one bad event must not hide the others.
func RankStoredRootCauses(ctx context.Context, events storage.EventStore, spans storage.SpanStore, start, end time.Time, logger *slog.Logger) ([]correlate.Cause, *correlate.Graph, error) {
	var as []correlate.Anomaly
	q := storage.EventQuery{KindPrefix: AnomalyKind, Start: start, End: end, Limit: storage.DefaultQueryLimit}
	for {
		evs, err := events.QueryEvents(ctx, q)
		if err != nil {
			return nil, nil, fmt.Errorf("analyzer: read anomalies: %w", err)
		}
		for _, ev := range evs {
			if ev.Kind != AnomalyKind {
				continue
			}
			an, err := DecodeAnomaly(ev)
			if err != nil {
				if logger != nil {
					logger.Warn("analyzer: skipping undecodable anomaly event", "err", err)
				}
				continue
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
	if spans != nil {
		var err error
		if g, err = correlate.BuildGraph(ctx, spans, start, end); err != nil {
			return nil, nil, err
		}
	}
	return correlate.RankRootCauses(g, as), g, nil
}
