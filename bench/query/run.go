package query

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/prometheus/promql"
	promstorage "github.com/prometheus/prometheus/storage"
)

// Options say how each query runs: as a range query over the last Range
// of the data set at Step resolution, Runs times after one warm-up run.
type Options struct {
	Range time.Duration
	Step  time.Duration
	Runs  int
}

// DefaultOptions is a "last 6 hours" dashboard at 1-minute resolution
// (360 points per series), measured 5 times.
func DefaultOptions() Options {
	return Options{Range: 6 * time.Hour, Step: time.Minute, Runs: 5}
}

// Result is one query's measurements.
type Result struct {
	Query Query
	// Series is how many series the query returned.
	Series int
	// Durations holds one entry per measured run, in run order.
	Durations []time.Duration
	// First is how long the warm-up run took: the query on a store that
	// has not answered it before (cold caches).
	First time.Duration
}

// Median is the median of the measured runs.
func (r Result) Median() time.Duration {
	if len(r.Durations) == 0 {
		return 0
	}
	d := slices.Clone(r.Durations)
	slices.Sort(d)
	if len(d)%2 == 1 {
		return d[len(d)/2]
	}
	return (d[len(d)/2-1] + d[len(d)/2]) / 2
}

// Run measures every query of Queries on q through engine, over data
// loaded from d.
func Run(ctx context.Context, engine promql.QueryEngine, q promstorage.Queryable, d Dataset, opts Options) ([]Result, error) {
	if opts.Runs <= 0 || opts.Step <= 0 || opts.Range < 0 {
		return nil, fmt.Errorf("query: need runs > 0, step > 0 and range >= 0, got %+v", opts)
	}
	end := d.End
	start := end.Add(-opts.Range)
	var results []Result
	for _, query := range Queries() {
		res := Result{Query: query}
		for i := 0; i <= opts.Runs; i++ {
			took, n, err := RangeQuery(ctx, engine, q, query.Expr, start, end, opts.Step)
			if err != nil {
				return results, fmt.Errorf("query: %s: %w", query.Name, err)
			}
			if i == 0 {
				res.Series, res.First = n, took // the warm-up run is not measured
				continue
			}
			res.Durations = append(res.Durations, took)
		}
		results = append(results, res)
	}
	return results, nil
}

// RangeQuery runs one range query and returns how long it took (building,
// evaluating and reading the result) and how many series it returned.
func RangeQuery(ctx context.Context, engine promql.QueryEngine, q promstorage.Queryable, expr string, start, end time.Time, step time.Duration) (time.Duration, int, error) {
	began := time.Now()
	qry, err := engine.NewRangeQuery(ctx, q, nil, expr, start, end, step)
	if err != nil {
		return 0, 0, err
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	if res.Err != nil {
		return 0, 0, res.Err
	}
	m, err := res.Matrix()
	if err != nil {
		return 0, 0, err
	}
	return time.Since(began), len(m), nil
}
