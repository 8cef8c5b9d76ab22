package promapi

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
)

// Engine is Prometheus's PromQL engine behind query.max_subquery_steps.
//
// Prometheus's evaluator allocates two counters per step of every
// subquery it runs, before it reads any data and whatever the samples
// limit (promql's runSubquery, v0.316): `sum_over_time(x[100y:1ms])`
// asked for 25 TB, and the process died of it. How many steps a subquery
// is evaluated at depends on the range the query is evaluated over, so
// the check is made when a query is created, with its times.
type Engine struct {
	*promql.Engine
	parser   parser.Parser
	maxSteps int64
	// defaultStep is the step of a subquery that names none
	// (query.subquery_step), in milliseconds.
	defaultStep int64
}

// NewInstantQuery implements promql.QueryEngine.
func (e *Engine) NewInstantQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, ts time.Time) (promql.Query, error) {
	if err := e.checkSubqueries(qs, ts, ts, 0); err != nil {
		return nil, err
	}
	return e.Engine.NewInstantQuery(ctx, q, opts, qs, ts)
}

// NewRangeQuery implements promql.QueryEngine.
func (e *Engine) NewRangeQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, start, end time.Time, interval time.Duration) (promql.Query, error) {
	if err := e.checkSubqueries(qs, start, end, interval); err != nil {
		return nil, err
	}
	return e.Engine.NewRangeQuery(ctx, q, opts, qs, start, end, interval)
}

func (e *Engine) checkSubqueries(qs string, start, end time.Time, interval time.Duration) error {
	expr, err := e.parser.ParseExpr(qs)
	if err == nil {
		// Resolves duration expressions and @ start() / end(), as the
		// engine will.
		expr, err = promql.PreprocessExpr(expr, start, end, interval)
	}
	if err != nil {
		// The engine parses it again and reports the error as it always has.
		return nil
	}
	if n := subquerySteps(expr, start.UnixMilli(), end.UnixMilli(), e.defaultStep); n > e.maxSteps {
		return fmt.Errorf("a subquery would be evaluated at %d steps, at most %d allowed (query.max_subquery_steps): make its step coarser or its range shorter", n, e.maxSteps)
	}
	return nil
}

// subquerySteps returns the most steps any subquery in expr is evaluated
// at when expr is evaluated from start to end (Unix milliseconds): a
// subquery's expression is evaluated from its range (and offset) before
// the times it is evaluated at, to the last of them, at its step.
func subquerySteps(expr parser.Node, start, end, defaultStep int64) int64 {
	var most int64
	var walk func(n parser.Node, start, end int64)
	walk = func(n parser.Node, start, end int64) {
		if sq, ok := n.(*parser.SubqueryExpr); ok {
			step := sq.Step.Milliseconds()
			if step <= 0 {
				step = defaultStep
			}
			off := sq.OriginalOffset.Milliseconds()
			if sq.Timestamp != nil {
				start, end = *sq.Timestamp, *sq.Timestamp
			}
			start, end = start-off-sq.Range.Milliseconds(), end-off
			if step > 0 {
				most = max(most, (end-start)/step+1)
			}
		}
		for _, c := range parser.Children(n) {
			walk(c, start, end)
		}
	}
	walk(expr, start, end)
	return most
}
