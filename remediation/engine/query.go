package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/prometheus/promql"
	promstorage "github.com/prometheus/prometheus/storage"
)

// PromQuerier evaluates instant queries with a PromQL engine over a
// store: the engine the query API and the rules use (promapi.NewEngine).
type PromQuerier struct {
	Engine    promql.QueryEngine
	Queryable promstorage.Queryable
}

// Query implements Querier. A scalar result is a vector of one sample
// without labels; a string or a matrix is an error.
func (q PromQuerier) Query(ctx context.Context, expr string, at time.Time) (promql.Vector, error) {
	qry, err := q.Engine.NewInstantQuery(ctx, q.Queryable, nil, expr, at)
	if err != nil {
		return nil, err
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	if res.Err != nil {
		return nil, res.Err
	}
	switch v := res.Value.(type) {
	case promql.Vector:
		// Close gives the result's memory back to the engine: copy it.
		return append(promql.Vector(nil), v...), nil
	case promql.Scalar:
		return promql.Vector{{T: v.T, F: v.V}}, nil
	}
	return nil, fmt.Errorf("%s: a condition must return a vector or a scalar, not a %s", expr, res.Value.Type())
}
