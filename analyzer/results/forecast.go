package results

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// Forecast is the newest capacity forecast of one usage series.
type Forecast struct {
	// Labels are the forecast series' labels without the metric name;
	// MetricLabel among them names the usage metric.
	Labels labels.Labels
	// Seconds is the time until the capacity is reached as of
	// EvaluatedAt: +Inf when not within the forecast's horizon. Lower and
	// Upper bound it; NaN when no bound was found.
	Seconds, Lower, Upper float64
	EvaluatedAt           time.Time
}

// ReadForecasts returns the newest forecast of every usage series with
// one in (at-lookback, at]: the last sample of each ExhaustionMetric
// series, with the bounds of the same labels. A series whose last sample
// is a stale marker has no forecast. Each selector (matchers on the
// forecast's labels, not on its metric name) adds the forecasts it
// matches; none selects all. The result is ordered by labels.
func ReadForecasts(ctx context.Context, qr promstorage.Queryable, at time.Time, lookback time.Duration, selectors ...[]*labels.Matcher) ([]Forecast, error) {
	maxt, mint := at.UnixMilli(), at.Add(-lookback).UnixMilli()
	q, err := qr.Querier(mint, maxt)
	if err != nil {
		return nil, fmt.Errorf("read forecasts: %w", err)
	}
	defer q.Close()
	if len(selectors) == 0 {
		selectors = [][]*labels.Matcher{nil}
	}
	name := labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName,
		ExhaustionMetric+"|"+ExhaustionLowerMetric+"|"+ExhaustionUpperMetric)
	byKey := map[string]*Forecast{}
	for _, sel := range selectors {
		ss := q.Select(ctx, false, &promstorage.SelectHints{Start: mint, End: maxt, Func: "last_over_time"}, append([]*labels.Matcher{name}, sel...)...)
		for ss.Next() {
			s := ss.At()
			t, v, ok := lastSample(s.Iterator(nil))
			if !ok {
				continue
			}
			lset := s.Labels()
			rest := labels.NewBuilder(lset).Del(labels.MetricName).Labels()
			key := rest.String()
			f := byKey[key]
			if f == nil {
				f = &Forecast{Labels: rest, Seconds: math.NaN(), Lower: math.NaN(), Upper: math.NaN()}
				byKey[key] = f
			}
			switch lset.Get(labels.MetricName) {
			case ExhaustionMetric:
				f.Seconds, f.EvaluatedAt = v, time.UnixMilli(t).UTC()
			case ExhaustionLowerMetric:
				f.Lower = v
			case ExhaustionUpperMetric:
				f.Upper = v
			}
		}
		if err := ss.Err(); err != nil {
			return nil, fmt.Errorf("read forecasts: %w", err)
		}
	}
	out := make([]Forecast, 0, len(byKey))
	for _, f := range byKey {
		if !f.EvaluatedAt.IsZero() { // bounds without the forecast itself are left out
			out = append(out, *f)
		}
	}
	slices.SortFunc(out, func(a, b Forecast) int { return labels.Compare(a.Labels, b.Labels) })
	return out, nil
}

// lastSample is the last float sample of a series; not ok when there is
// none, or the last is a stale marker (the series ended).
func lastSample(it chunkenc.Iterator) (int64, float64, bool) {
	var (
		t  int64
		v  float64
		ok bool
	)
	for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
		if vt == chunkenc.ValFloat {
			t, v = it.At()
			ok = !value.IsStaleNaN(v)
		}
	}
	return t, v, ok && it.Err() == nil
}
