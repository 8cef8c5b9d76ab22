package storetest

import (
	"context"
	"sync"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
)

// Blocking is a store whose selects of one metric name wait until Release
// (or the query's context ends): queries of it hold their engine slots for
// as long as a test needs, without burning CPU or depending on timing.
// Every other select goes straight to the store.
type Blocking struct {
	promstorage.SampleAndChunkQueryable
	name string

	mu      sync.Mutex
	waiting int
	release chan struct{}
}

// NewBlocking wraps s; selects with the matcher __name__="<name>" block.
func NewBlocking(s promstorage.SampleAndChunkQueryable, name string) *Blocking {
	return &Blocking{SampleAndChunkQueryable: s, name: name, release: make(chan struct{})}
}

// Waiting is how many selects are blocked now.
func (b *Blocking) Waiting() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waiting
}

// Release lets every blocked select, and all later ones, through.
func (b *Blocking) Release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-b.release:
	default:
		close(b.release)
	}
}

// Querier implements promstorage.Queryable.
func (b *Blocking) Querier(mint, maxt int64) (promstorage.Querier, error) {
	q, err := b.SampleAndChunkQueryable.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return &blockingQuerier{Querier: q, b: b}, nil
}

type blockingQuerier struct {
	promstorage.Querier
	b *Blocking
}

func (q *blockingQuerier) Select(ctx context.Context, sorted bool, hints *promstorage.SelectHints, ms ...*labels.Matcher) promstorage.SeriesSet {
	for _, m := range ms {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual && m.Value == q.b.name {
			q.b.mu.Lock()
			q.b.waiting++
			q.b.mu.Unlock()
			select {
			case <-q.b.release:
			case <-ctx.Done():
			}
			q.b.mu.Lock()
			q.b.waiting--
			q.b.mu.Unlock()
			if err := ctx.Err(); err != nil {
				return promstorage.ErrSeriesSet(err)
			}
		}
	}
	return q.Querier.Select(ctx, sorted, hints, ms...)
}
