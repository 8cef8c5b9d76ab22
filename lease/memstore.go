package lease

import (
	"context"
	"sync"
	"time"

	"github.com/aiops-dev/aiops/storage"
)

// MemStore is a Store in memory, for a single process: the embedded
// store's node, which has no other replica, and tests of several electors
// in one process.
type MemStore struct {
	now func() time.Time

	mu   sync.Mutex
	recs map[memKey]*storage.LeaseRecord
}

type memKey struct {
	name, holder string
	term         int64
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty store on the clock now (nil: time.Now).
func NewMemStore(now func() time.Time) *MemStore {
	if now == nil {
		now = time.Now
	}
	return &MemStore{now: now, recs: map[memKey]*storage.LeaseRecord{}}
}

// LeaseBeat implements Store.
func (m *MemStore) LeaseBeat(_ context.Context, b storage.LeaseBeat) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	k := memKey{b.Name, b.Holder, b.Term}
	r := m.recs[k]
	if r == nil {
		r = &storage.LeaseRecord{Holder: b.Holder, Term: b.Term, First: now}
		m.recs[k] = r
	}
	r.Last = now
	r.Released = r.Released || b.Released
	return nil
}

// LeaseBeats implements Store.
func (m *MemStore) LeaseBeats(_ context.Context, name string) ([]storage.LeaseRecord, time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []storage.LeaseRecord
	for k, r := range m.recs {
		if k.name == name {
			out = append(out, *r)
		}
	}
	return out, m.now(), nil
}
