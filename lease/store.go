package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aiops-dev/aiops/storage"
)

// Store keeps the candidates' heartbeats. Its inserts and reads must be
// linearizable (one server: the ClickHouse store writes them to one
// server, never through a Distributed table) and stamped with the
// store's own clock.
type Store interface {
	// LeaseBeat records a heartbeat at the store's current time.
	LeaseBeat(ctx context.Context, b storage.LeaseBeat) error
	// LeaseBeats returns a record of every (holder, term) of the lease
	// name, and the store's current time, read before the records.
	LeaseBeats(ctx context.Context, name string) (recs []storage.LeaseRecord, now time.Time, err error)
}

// StoreConfig configures a StoreElector.
type StoreConfig struct {
	// Name tells elections in one store apart.
	Name string `yaml:"name"`
	// TTL is how long a silent holder keeps the lease: a dead holder is
	// replaced after about TTL plus the settle time (see StoreElector).
	TTL time.Duration `yaml:"ttl"`
}

// DefaultStoreConfig is a 6 s TTL: a dead holder is replaced in about
// 10 s.
func DefaultStoreConfig() StoreConfig { return StoreConfig{Name: "aiops", TTL: 6 * time.Second} }

// Validate reports the first invalid key, under prefix.
func (c StoreConfig) Validate(prefix string) error {
	switch {
	case c.Name == "":
		return fmt.Errorf("%s.name: must not be empty", prefix)
	case c.TTL < 2*time.Second:
		// The ClickHouse store's clock counts seconds.
		return fmt.Errorf("%s.ttl: must be at least 2s, got %s", prefix, c.TTL)
	}
	return nil
}

// StoreElector elects through heartbeats in a Store.
//
// Every poll (TTL/4) a candidate writes a heartbeat (holder, term) and
// reads every record back. The current term is the largest term written;
// its holder is the candidate that claimed it first (earliest first beat,
// then lowest id). While that holder's last beat is younger than TTL on
// the store's clock, and it has not released the term, it holds the
// lease; otherwise every candidate that sees this claims the next term by
// beating with it, and the earliest claim wins. No replica's clock is
// compared with another's or with the store's: ages are differences of
// the store's times, and a holder's own deadline runs on its monotonic
// clock.
//
// A claimant starts leading only once its claim is settle old (a poll
// plus two seconds, for the store clock's one-second resolution): any
// other claim of the same term made before it is visible by then, so the
// earliest claim is known and a later one always loses. A holder stops
// when TTL less one poll has passed, on its own clock, since it last
// started a beat that the store confirmed: before any other candidate can
// see its beats as stale and let its own claim settle. The safety rests on
// the store making an insert visible within the settle time of stamping
// it, and on the replicas' clocks running at the same rate, not on their
// showing the same time.
type StoreElector struct {
	cfg          StoreConfig
	store        Store
	id           string
	logger       *slog.Logger
	poll, settle time.Duration
	// now is the replica's clock, for its own deadline only: never
	// compared with the store's or another replica's.
	now func() time.Time

	mu      sync.Mutex
	members []string
	known   bool
}

var _ Elector = (*StoreElector)(nil)

// StoreOption changes a StoreElector.
type StoreOption func(*StoreElector)

// WithClock makes the elector measure its own deadline on now instead of
// time.Now (tests give replicas skewed clocks).
func WithClock(now func() time.Time) StoreOption {
	return func(e *StoreElector) { e.now = now }
}

// NewStore returns an elector for the candidate id, which must be unique
// among the replicas and new for every process (a restarted replica is a
// new candidate).
func NewStore(cfg StoreConfig, store Store, id string, logger *slog.Logger, opts ...StoreOption) (*StoreElector, error) {
	if err := cfg.Validate("lease.store"); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("lease: a store is required")
	}
	if id == "" {
		return nil, errors.New("lease: the candidate id must not be empty")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	poll := max(cfg.TTL/4, 250*time.Millisecond)
	e := &StoreElector{cfg: cfg, store: store, id: id, logger: logger, poll: poll, settle: poll + 2*time.Second, now: time.Now}
	for _, o := range opts {
		o(e)
	}
	return e, nil
}

// ID is this candidate's id.
func (e *StoreElector) ID() string { return e.id }

// Members returns the candidates alive at the last successful poll,
// sorted, and whether a poll has succeeded yet.
func (e *StoreElector) Members() ([]string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.members, e.known
}

// Owns reports whether this candidate owns key among the members alive
// (Rendezvous); false until the members are known.
func (e *StoreElector) Owns(key uint64) bool {
	m, ok := e.Members()
	return ok && Rendezvous(m, key) == e.id
}

// RunMember beats without ever claiming the lease, until ctx is done:
// the replica counts among the Members while another elector (Kafka)
// decides the holder.
func (e *StoreElector) RunMember(ctx context.Context) error {
	return e.run(ctx, nil, false)
}

// view is one reading of the records.
type view struct {
	term        int64
	holder      string // "" while the term is vacant
	holderFirst time.Time
	members     []string
	// now is the store's time of the reading.
	now time.Time
}

func (e *StoreElector) judge(recs []storage.LeaseRecord, now time.Time) view {
	v := view{now: now}
	var first *storage.LeaseRecord
	alive := func(r *storage.LeaseRecord) bool { return !r.Released && now.Sub(r.Last) <= e.cfg.TTL }
	for i := range recs {
		r := &recs[i]
		if alive(r) && !slices.Contains(v.members, r.Holder) {
			v.members = append(v.members, r.Holder)
		}
		switch {
		case r.Term > v.term:
			v.term, first = r.Term, r
		case r.Term == v.term && first != nil &&
			(r.First.Before(first.First) || r.First.Equal(first.First) && r.Holder < first.Holder):
			first = r
		}
	}
	slices.Sort(v.members)
	if v.term > 0 && alive(first) {
		v.holder, v.holderFirst = first.Holder, first.First
	}
	return v
}

// Run implements Elector.
func (e *StoreElector) Run(ctx context.Context, lead func(ctx context.Context, t Term)) error {
	return e.run(ctx, lead, true)
}

func (e *StoreElector) run(ctx context.Context, lead func(ctx context.Context, t Term), claim bool) error {
	var (
		claimed  bool     // the last beat claimed a term
		term     int64    // claimed or held; 0 as a follower
		cur      *leading // the term being led; nil otherwise
		deadline time.Time
	)
	stop := func(why string) {
		if cur == nil {
			return
		}
		cur.cancel()
		<-cur.done
		cur = nil
		e.logger.Info("Lease lost", "lease", e.cfg.Name, "term", term, "why", why)
	}
	tick := time.NewTicker(e.poll)
	defer tick.Stop()
	for {
		start := e.now()
		v, err := e.beat(ctx, term)
		justClaimed := claimed
		claimed = false
		switch {
		case err != nil:
			if ctx.Err() == nil {
				e.logger.Warn("Lease heartbeat failed", "lease", e.cfg.Name, "err", err)
			}
		case v.holder == e.id && v.term == term:
			// Ours: lead once the claim has settled, and for another TTL
			// less a poll from the start of this confirmed beat.
			if cur != nil || !v.holderFirst.Add(e.settle).After(v.now) {
				deadline = start.Add(e.cfg.TTL - e.poll)
			}
			if cur == nil && !deadline.IsZero() && e.now().Before(deadline) {
				e.logger.Info("Lease acquired", "lease", e.cfg.Name, "term", term)
				cur = startLeading(ctx, lead, Term{Epoch: term, Holder: e.id}, e.now, deadline)
			} else if cur != nil {
				d := deadline // a copy: the loop reassigns deadline
				cur.until.Store(&d)
			}
		case v.holder != "":
			stop(fmt.Sprintf("term %d is held by %s", v.term, v.holder))
			term, deadline = 0, time.Time{}
		default:
			stop("the term is vacant")
			deadline = time.Time{}
			if claim && !justClaimed && ctx.Err() == nil {
				// Claim the next term now rather than a poll later (but
				// not again at once if the claim is not visible yet).
				term, claimed = v.term+1, true
				e.logger.Debug("Claiming the lease", "lease", e.cfg.Name, "term", term, "after", v.term)
				continue
			}
		}
		if cur != nil && e.now().After(deadline) {
			stop("the store has not confirmed the lease for TTL")
			term, deadline = 0, time.Time{}
		}
		var leadDone chan struct{}
		if cur != nil {
			leadDone = cur.done
		}
		select {
		case <-ctx.Done():
			stop("stopping")
			// Leave the members at once, and the term to the others.
			e.release(ctx, 0)
			if term != 0 {
				e.release(ctx, term)
			}
			return nil
		case <-leadDone:
			// lead returned before its term ended: give the lease up.
			cur.cancel()
			cur = nil
			e.release(ctx, term)
			e.logger.Info("Lease given up", "lease", e.cfg.Name, "term", term)
			term, deadline = 0, time.Time{}
		case <-tick.C:
		}
	}
}

// leading is a term being led.
type leading struct {
	cancel context.CancelFunc
	done   chan struct{}
	until  *atomic.Pointer[time.Time]
}

func startLeading(ctx context.Context, lead func(context.Context, Term), t Term, now func() time.Time, deadline time.Time) *leading {
	cctx, cancel := context.WithCancel(ctx)
	l := &leading{cancel: cancel, done: make(chan struct{}), until: &atomic.Pointer[time.Time]{}}
	l.until.Store(&deadline)
	tctx := &termContext{Context: cctx, now: now, until: l.until}
	go func() {
		defer close(l.done)
		lead(tctx, t)
	}()
	return l
}

// termContext is the context a term is led with. Its Err reports the end
// of the term as soon as the holder's deadline has passed on its own
// clock, before the election loop (which may be stuck in a heartbeat, or
// not yet scheduled after the process was paused) cancels it: a write
// guarded by Err is not made by a holder whose term may already be
// another's. Done is closed by the loop, as for any context.
type termContext struct {
	context.Context
	now   func() time.Time
	until *atomic.Pointer[time.Time]
}

func (c *termContext) Err() error {
	if u := c.until.Load(); u != nil && !c.now().Before(*u) {
		return context.DeadlineExceeded
	}
	return c.Context.Err()
}

// beat writes a heartbeat for term and reads the records back.
func (e *StoreElector) beat(ctx context.Context, term int64) (view, error) {
	ctx, cancel := context.WithTimeout(ctx, e.poll+e.cfg.TTL/2)
	defer cancel()
	if err := e.store.LeaseBeat(ctx, storage.LeaseBeat{Name: e.cfg.Name, Holder: e.id, Term: term}); err != nil {
		return view{}, fmt.Errorf("lease %s: beat: %w", e.cfg.Name, err)
	}
	recs, now, err := e.store.LeaseBeats(ctx, e.cfg.Name)
	if err != nil {
		return view{}, fmt.Errorf("lease %s: read: %w", e.cfg.Name, err)
	}
	v := e.judge(recs, now)
	e.mu.Lock()
	e.members, e.known = v.members, true
	e.mu.Unlock()
	return v, nil
}

// release marks term given up, so that the others claim the next one at
// once rather than after TTL.
func (e *StoreElector) release(ctx context.Context, term int64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.TTL)
	defer cancel()
	if err := e.store.LeaseBeat(ctx, storage.LeaseBeat{Name: e.cfg.Name, Holder: e.id, Term: term, Released: true}); err != nil {
		e.logger.Warn("Lease not released; the others take it over after the TTL", "lease", e.cfg.Name, "err", err)
	}
}
