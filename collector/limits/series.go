package limits

import (
	"fmt"
	"sync"
	"time"
)

// Series counts the active series written through the collector and
// refuses new ones beyond MaxSeries (all series) or MaxSeriesPerTenant
// (the series of one value of the tenant label). Series that already
// exist are never refused: a limit stops growth, not the data of what is
// being monitored already.
//
// Activity is kept in two generations of SeriesIdle each, keyed by the
// hash of the series' labels: a series seen in the current generation is
// in cur; when a generation ends, cur becomes old and the old one is
// forgotten, and a series seen again moves back to cur. So a series is
// active from its first sample until it has had none for between one and
// two SeriesIdle, and memory is bounded by MaxSeries entries (about 40
// bytes each). Writers remember per series the generation in which they
// last reported it (Epoch), so that a series costs a map lookup once per
// generation, not per sample.
type Series struct {
	max, perTenant int
	idle           time.Duration

	mu       sync.Mutex
	epoch    uint64
	cur, old map[uint64]string // series hash → tenant
	tenants  map[string]int    // active series per tenant, with perTenant only
}

// NewSeries returns the active-series limiter of c, or nil when c sets no
// series limit.
func (c Config) NewSeries() *Series {
	if c.MaxSeries <= 0 && c.MaxSeriesPerTenant <= 0 {
		return nil
	}
	s := &Series{max: c.MaxSeries, perTenant: c.MaxSeriesPerTenant, idle: c.SeriesIdle, cur: map[uint64]string{}, old: map[uint64]string{}}
	if s.perTenant > 0 {
		s.tenants = map[string]int{}
	}
	return s
}

// Epoch returns the generation that t falls into. It is never 0, so a
// zero value means "never reported".
func (s *Series) Epoch(t time.Time) uint64 {
	return uint64(t.UnixNano()/int64(s.idle)) + 1
}

// Admit records a sample of the series with the given label hash and
// tenant in generation epoch, and returns the zero Violation if the
// series may be written; a series it refuses is not recorded.
func (s *Series) Admit(hash uint64, tenant string, epoch uint64) Violation {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rotate(epoch)
	if _, ok := s.cur[hash]; ok {
		return Violation{}
	}
	if t, ok := s.old[hash]; ok {
		delete(s.old, hash)
		s.cur[hash] = t
		return Violation{}
	}
	if s.max > 0 && len(s.cur)+len(s.old) >= s.max {
		return Violation{Reason: SeriesLimit, Where: "limit max_series", Limit: s.max}
	}
	if s.perTenant > 0 {
		if s.tenants[tenant] >= s.perTenant {
			return Violation{Reason: SeriesLimit, Where: fmt.Sprintf("limit max_series_per_tenant of tenant %q", prefix(tenant)), Limit: s.perTenant}
		}
		s.tenants[tenant]++
	}
	s.cur[hash] = tenant
	return Violation{}
}

// Active returns the number of active series.
func (s *Series) Active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.cur) + len(s.old)
}

// rotate moves to generation epoch. A clock that went back keeps the
// current generation.
func (s *Series) rotate(epoch uint64) {
	switch {
	case epoch <= s.epoch:
		return
	case epoch == s.epoch+1:
		s.forget(s.old)
		s.old, s.cur = s.cur, make(map[uint64]string, len(s.cur))
	default:
		s.forget(s.old)
		s.forget(s.cur)
		s.old, s.cur = map[uint64]string{}, map[uint64]string{}
	}
	s.epoch = epoch
}

func (s *Series) forget(m map[uint64]string) {
	if s.tenants == nil {
		return
	}
	for _, t := range m {
		if s.tenants[t]--; s.tenants[t] <= 0 {
			delete(s.tenants, t)
		}
	}
}
