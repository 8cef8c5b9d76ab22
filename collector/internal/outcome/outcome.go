// Package outcome carries what became of one OTLP request's data points
// from the components that refuse some of them back to the receiver,
// which tells the client in the OTLP partial success (rejected data
// points and a message) of its answer.
//
// The receiver puts an Outcome into the request's context; the ingress
// processor records what the limits refused, the store exporter what the
// store refused, both while the receiver waits for them. What a
// component records after the receiver answered (a write from the queue)
// reaches no client: it is counted and logged where it happens.
package outcome

import (
	"context"
	"sync"

	"github.com/aiops-dev/aiops/collector/limits"
)

// Outcome collects the refusals of one request. Its methods are safe for
// concurrent use and do nothing on a nil Outcome, so components need not
// know whether their caller asked.
type Outcome struct {
	mu      sync.Mutex
	refused limits.Refusals
}

type ctxKey struct{}

// NewContext returns ctx carrying a new Outcome.
func NewContext(ctx context.Context) (context.Context, *Outcome) {
	o := &Outcome{}
	return context.WithValue(ctx, ctxKey{}, o), o
}

// From returns the Outcome in ctx, nil if there is none.
func From(ctx context.Context) *Outcome {
	o, _ := ctx.Value(ctxKey{}).(*Outcome)
	return o
}

// Refuse records refused data points.
func (o *Outcome) Refuse(r limits.Refusals) {
	if o == nil || r.Points == 0 {
		return
	}
	o.mu.Lock()
	o.refused.Merge(r)
	o.mu.Unlock()
}

// Refused returns what was refused so far.
func (o *Outcome) Refused() limits.Refusals {
	if o == nil {
		return limits.Refusals{}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	var r limits.Refusals
	r.Merge(o.refused)
	return r
}
