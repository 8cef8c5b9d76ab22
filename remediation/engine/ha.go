package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aiops-dev/aiops/storage"
)

// Several replicas (an HA pair) share one store; the holder of a lease
// (package lease) runs remediation. With Config.Standby the engine
// starts as a follower: it records nothing and runs nothing, and
// refuses changes with ErrNotLeader. Lead makes it the one that acts for
// as long as its context lives: it first reads the executions, the kill
// switch and the learning record from the store again, as on a restart,
// so that pending approvals, cooldowns, run limits and executions in
// progress continue where the previous leader left them.

// ErrNotLeader refuses a change on a replica that does not hold the
// lease; it wraps storage.ErrUnavailable (the API answers 503).
var ErrNotLeader = fmt.Errorf("remediation runs on the replica holding the lease: %w", storage.ErrUnavailable)

// writable refuses writes on a follower.
func (e *Engine) writable() error {
	if !e.cfg.Standby {
		return nil
	}
	if !e.leading.Load() {
		return ErrNotLeader
	}
	if t := e.term.Load(); t != nil && (*t).Err() != nil {
		return ErrNotLeader
	}
	return nil
}

// Leading reports whether this engine acts: always without
// Config.Standby, else while Lead runs.
func (e *Engine) Leading() bool { return e.writable() == nil }

// Lead reloads the engine's state from the store and runs it (Run) until
// ctx is done; writing stops the moment ctx is done. It returns ctx's
// error if the state could not be read before then.
func (e *Engine) Lead(ctx context.Context) error {
	if !e.cfg.Standby {
		return errors.New("remediation engine: Lead needs Config.Standby")
	}
	for {
		err := e.reload(ctx)
		if err == nil {
			break
		}
		e.logger.Warn("Remediation state not loaded on taking the lease; retrying", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	e.term.Store(&ctx)
	e.leading.Store(true)
	stop := context.AfterFunc(ctx, func() { e.leading.Store(false) })
	defer stop()
	e.logger.Info("Running remediation: this replica holds the lease")
	err := e.Run(ctx)
	e.leading.Store(false)
	e.mu.Lock()
	e.ctx = nil
	e.mu.Unlock()
	e.logger.Info("Remediation stopped: the lease is gone")
	return err
}

// reload replaces the state with the store's.
func (e *Engine) reload(ctx context.Context) error {
	e.admitMu.Lock()
	defer e.admitMu.Unlock()
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.execs, e.kill, e.stats = map[string]*Execution{}, KillSwitch{}, newLearning()
	e.refused, e.resolved, e.unhandled = map[string]time.Time{}, map[string]bool{}, map[string]pendingEscalation{}
	e.lastTime = time.Time{}
	return e.rebuild(ctx)
}
