package analyzer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/aiops-dev/aiops/analyzer/forecast"
	"github.com/aiops-dev/aiops/analyzer/results"
)

// forecastAll writes a time-to-exhaustion forecast, as of now, for every
// owned usage series of every capacity group.
func (a *Analyzer) forecastAll(ctx context.Context, now time.Time) error {
	var errs []error
	for i := range a.cfg.Capacities {
		if err := a.forecastGroup(ctx, i, now); err != nil {
			errs = append(errs, fmt.Errorf("analyzer.capacities[%d]: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

func (a *Analyzer) forecastGroup(ctx context.Context, i int, now time.Time) error {
	cc := a.cfg.Capacities[i]
	limits, single, err := a.capacityValues(ctx, cc, now)
	if err != nil {
		return err
	}
	maxt := now.UnixMilli()
	mint := now.Add(-time.Duration(cc.Window)).UnixMilli() + 1
	q, err := a.deps.Queryable.Querier(mint, maxt)
	if err != nil {
		return fmt.Errorf("querier: %w", err)
	}
	defer q.Close()
	app := a.deps.Appendable.Appender(ctx)
	committed := false
	defer func() {
		if !committed {
			// The store holds an appender's resources until it ends.
			_ = app.Rollback()
		}
	}()
	ss := q.Select(ctx, false, &promstorage.SelectHints{Start: mint, End: maxt}, cc.matchers...)
	var samples []forecast.Sample
	for ss.Next() {
		s := ss.At()
		lset := s.Labels()
		if !a.owns(lset) {
			continue
		}
		limit := single
		if limits != nil {
			v, ok := limits[matchKey(lset, cc.MatchOn)]
			if !ok {
				continue // no capacity known for this series
			}
			limit = v
		}
		samples = samples[:0]
		it := s.Iterator(nil)
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			if vt == chunkenc.ValFloat {
				t, v := it.At()
				samples = append(samples, forecast.Sample{T: t, V: v})
			}
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("read %s: %w", lset, err)
		}
		f, err := forecast.Predict(samples, limit, maxt, forecast.Config{Period: cc.period})
		if errors.Is(err, forecast.ErrTooFewSamples) {
			continue
		}
		if err != nil {
			return fmt.Errorf("forecast %s: %w", lset, err)
		}
		for _, out := range []struct {
			name string
			v    float64
		}{{results.ExhaustionMetric, f.Seconds}, {results.ExhaustionLowerMetric, f.Lower}, {results.ExhaustionUpperMetric, f.Upper}} {
			if _, err := app.Append(0, results.SeriesLabels(out.name, lset), maxt, out.v); err != nil {
				a.m.appendErrors.Inc()
				if !isBenignAppendError(err) {
					a.logger.Warn("analyzer: forecast not stored", "series", lset.String(), "err", err)
				}
			}
		}
		a.m.forecasts.Inc()
	}
	if err := ss.Err(); err != nil {
		return fmt.Errorf("select %s: %w", cc.Usage, err)
	}
	committed = true
	if err := app.Commit(); err != nil {
		return fmt.Errorf("commit forecasts: %w", err)
	}
	return nil
}

// capacityValues returns the capacity per match key, or (nil, v) when one
// value applies to every usage series.
func (a *Analyzer) capacityValues(ctx context.Context, cc CapacityConfig, now time.Time) (map[string]float64, float64, error) {
	if cc.CapacityQuery == "" {
		return nil, cc.Capacity, nil
	}
	qry, err := a.engine.NewInstantQuery(ctx, a.deps.Queryable, nil, cc.CapacityQuery, now)
	if err != nil {
		return nil, 0, fmt.Errorf("capacity_query: %w", err)
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	if res.Err != nil {
		return nil, 0, fmt.Errorf("capacity_query: %w", res.Err)
	}
	var vec promql.Vector
	switch v := res.Value.(type) {
	case promql.Vector:
		vec = v
	case promql.Scalar:
		return nil, v.V, nil
	default:
		return nil, 0, fmt.Errorf("capacity_query: want an instant vector, got %s", res.Value.Type())
	}
	if len(vec) == 1 && len(cc.MatchOn) == 0 {
		return nil, vec[0].F, nil
	}
	out := make(map[string]float64, len(vec))
	for _, s := range vec {
		if !math.IsNaN(s.F) {
			out[matchKey(s.Metric, cc.MatchOn)] = s.F
		}
	}
	return out, 0, nil
}

// matchKey is what pairs a usage series with its capacity: the labels in
// on, or every label but the metric name.
func matchKey(lset labels.Labels, on []string) string {
	if len(on) == 0 {
		return lset.DropMetricName().String()
	}
	return lset.MatchLabels(true, on...).String()
}
