package incident

import (
	"context"
	"fmt"
	"time"

	"github.com/aiops-dev/aiops/storage"
)

// Several replicas (an HA pair) share one store; one of them, the holder
// of a lease (package lease), writes incidents at a time. With
// Deps.Standby the Manager starts as a follower: it refuses changes with
// ErrNotLeader and keeps its view current by reading what the leader
// stores (Run). Lead makes it the writer for as long as its context
// lives: it first reads every incident again from the store, so that it
// continues from the previous leader's last event.

// ErrNotLeader refuses a change on a replica that does not hold the lease.
// It wraps storage.ErrUnavailable: the Alertmanager retries a group, and
// the REST API answers 503, until a leader takes it.
var ErrNotLeader = fmt.Errorf("incidents are written by the replica holding the lease: %w", storage.ErrUnavailable)

// followInterval is how often a follower reads the leader's events.
const followInterval = time.Second

// checkWritable refuses changes until the incidents have been read, and
// on a follower.
func (mg *Manager) checkWritable() error {
	if err := mg.checkLoaded(); err != nil {
		return err
	}
	if mg.standby && !mg.leading.Load() {
		return ErrNotLeader
	}
	if t := mg.term.Load(); mg.standby && t != nil && (*t).Err() != nil {
		return ErrNotLeader
	}
	return nil
}

// Leading reports whether this Manager writes incidents: always without
// Deps.Standby, else while Lead runs.
func (mg *Manager) Leading() bool { return !mg.standby || mg.leading.Load() }

// Lead reads every incident from the store again, then returns, and the
// Manager writes incidents until ctx is done; then, at once, it stops.
// The caller holds the lease for ctx's lifetime. It returns an error only
// if ctx ends before the incidents could be read.
func (mg *Manager) Lead(ctx context.Context) error {
	if !mg.standby {
		return fmt.Errorf("incident: Lead needs Deps.Standby")
	}
	for {
		err := mg.load(ctx)
		if err == nil {
			break
		}
		mg.logger.Warn("Incidents not loaded on taking the lease; retrying", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	mg.term.Store(&ctx)
	mg.leading.Store(true)
	// Stop writing the moment the term ends.
	context.AfterFunc(ctx, func() {
		mg.leading.Store(false)
		mg.logger.Info("Following incidents: the lease is gone")
	})
	mg.logger.Info("Writing incidents: this replica holds the lease", "incidents", mg.count())
	return nil
}

func (mg *Manager) count() int {
	mg.mu.RLock()
	defer mg.mu.RUnlock()
	return len(mg.incidents)
}

// follow reads the incident events stored since the last read (by the
// leader) and folds the incidents they touch again.
func (mg *Manager) follow(ctx context.Context) error {
	mg.writeMu.Lock()
	defer mg.writeMu.Unlock()
	if mg.leading.Load() {
		return nil
	}
	q := storage.EventQuery{KindPrefix: KindPrefix, AfterTime: mg.written.t, AfterID: mg.written.id, Limit: storage.DefaultQueryLimit}
	n := 0
	for {
		evs, err := mg.events.QueryEvents(ctx, q)
		if err != nil {
			return fmt.Errorf("incident: follow the leader's events: %w", err)
		}
		for _, se := range evs {
			mg.dirty[se.Subject] = true
			mg.written = mg.written.after(se)
		}
		n += len(evs)
		if len(evs) < q.Limit {
			break
		}
		q.AfterTime, q.AfterID = mg.written.t, mg.written.id
	}
	if n == 0 {
		return nil
	}
	mg.lastTime = mg.written.t
	mg.mu.Lock()
	mg.advanceHead()
	mg.mu.Unlock()
	return mg.resyncDirty(ctx)
}
