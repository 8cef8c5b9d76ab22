package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/remediation/action"
	"github.com/aiops-dev/aiops/remediation/runbook"
)

// Causes of a runner's cancellation.
var (
	errCancelled = errors.New("cancelled")
	errKilled    = errors.New("kill switch engaged")
	errLeaseLost = errors.New("lease lost")
)

// launch starts the runner of an execution, once Run has started; before
// that, Run resumes it.
func (e *Engine) launch(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ctx == nil || e.runners[id] != nil {
		return
	}
	ctx, cancel := context.WithCancelCause(e.ctx)
	r := &runner{cancel: cancel, wake: make(chan struct{}, 1)}
	e.runners[id] = r
	e.wg.Add(1)
	e.busy.Add(1)
	go func() {
		defer e.wg.Done()
		defer e.busy.Add(-1)
		defer func() {
			e.mu.Lock()
			delete(e.runners, id)
			e.mu.Unlock()
			cancel(nil)
		}()
		e.run(ctx, id, r)
	}()
}

func (e *Engine) snapshot(id string) (Execution, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	x := e.execs[id]
	if x == nil {
		return Execution{}, false
	}
	return x.clone(), true
}

// run drives one execution to its end. It returns early, leaving the
// execution where it is, when the engine stops: the next start resumes it.
func (e *Engine) run(ctx context.Context, id string, r *runner) {
	x, ok := e.snapshot(id)
	if !ok {
		return
	}
	rb := e.runbooks[x.Runbook]
	if rb == nil {
		e.finish(ctx, x, nil, StateEscalated, fmt.Sprintf("runbook %q is no longer configured", x.Runbook), nil)
		return
	}
	rn := &execRun{e: e, id: id, rb: rb, r: r}
	if x.Mode == runbook.ModeLive && !x.State.Terminal() {
		sec, err := e.deps.Secrets.Resolve(rb.Secrets)
		if err != nil {
			e.finish(ctx, x, rb, StateEscalated, "secrets: "+err.Error(), nil)
			return
		}
		rn.secrets = sec
	}
	for {
		x, ok = e.snapshot(id)
		if !ok || x.State.Terminal() {
			return
		}
		if cause := context.Cause(ctx); errors.Is(cause, errCancelled) || errors.Is(cause, errKilled) || errors.Is(cause, errLeaseLost) {
			rn.stopped(x, cause)
			return
		}
		if err := rn.step(ctx, x); err != nil {
			switch cause := context.Cause(ctx); {
			case errors.Is(cause, errCancelled), errors.Is(cause, errKilled), errors.Is(cause, errLeaseLost):
				rn.stopped(x, cause)
				return
			case ctx.Err() != nil:
				return // the engine stops; resumed on the next start
			}
			e.logger.Error("Execution stalled; retrying", "execution", id, "err", err)
			if !rn.sleep(ctx, time.Second) {
				continue
			}
		}
	}
}

// execRun is one runner's view of its execution.
type execRun struct {
	e       *Engine
	id      string
	rb      *runbook.Runbook
	r       *runner
	secrets *runbook.Secrets
}

// step advances the execution by one transition.
func (rn *execRun) step(ctx context.Context, x Execution) error {
	if err := rn.renewLease(ctx, x); err != nil {
		return err
	}
	if x.Mode == runbook.ModeShadow {
		return rn.shadow(ctx, x)
	}
	switch x.State {
	case StatePendingApproval:
		return rn.awaitApproval(ctx, x)
	case StateRunning:
		return rn.runStep(ctx, x, PhaseSteps)
	case StateVerifying:
		return rn.verify(ctx, x)
	case StateRollingBack:
		return rn.runStep(ctx, x, PhaseRollback)
	}
	return fmt.Errorf("execution %s: unexpected state %s", x.ID, x.State)
}

// renewLease extends the lease when a third of its TTL is left. A lease
// that lapsed while the target was taken by another run is lost: this
// run stops.
func (rn *execRun) renewLease(ctx context.Context, x Execution) error {
	e := rn.e
	now := e.clock.Now()
	ttl := rn.rb.Lease()
	if x.LeaseExpires.Sub(now) > ttl*2/3 {
		return nil
	}
	if !now.Before(x.LeaseExpires) {
		e.mu.RLock()
		var holder string
		for _, o := range e.execs {
			if o.ID != x.ID && o.holdsLease(now) && runbook.Overlaps(o.Target, x.Target) {
				holder = o.ID
			}
		}
		e.mu.RUnlock()
		if holder != "" {
			rn.r.cancel(errLeaseLost)
			return fmt.Errorf("%w: %s took the target", errLeaseLost, holder)
		}
	}
	_, err := e.appendEvent(ctx, rn.id, Event{Type: EvLeaseRenewed, LeaseExpires: now.Add(ttl)})
	return err
}

// sleep waits d on the engine's clock, or until woken (an approval, a
// cancellation) or ctx ends. It reports whether the full time passed.
func (rn *execRun) sleep(ctx context.Context, d time.Duration) bool {
	return rn.e.sleep(ctx, d, rn.r.wake)
}

// waitFor is the longest a runner sleeps at once: it renews its lease in
// between.
func (rn *execRun) waitFor(until time.Time) time.Duration {
	d := until.Sub(rn.e.clock.Now())
	return max(min(d, rn.rb.Lease()/3), 0)
}

func (rn *execRun) data(x Execution) runbook.Data {
	t := x.Trigger
	return runbook.Data{Labels: t.Labels, Annotations: t.Annotations, Target: x.Target, Value: t.Value,
		IncidentID: t.IncidentID, Runbook: x.Runbook, ExecutionID: x.ID}
}

func (rn *execRun) awaitApproval(ctx context.Context, x Execution) error {
	e := rn.e
	if x.Approval == nil {
		return fmt.Errorf("execution %s waits for an approval it has no request for", x.ID)
	}
	if x.DeniedBy != "" {
		return rn.e.finish(ctx, x, rn.rb, StateDenied, x.Reason, nil)
	}
	if !e.clock.Now().Before(x.Approval.Deadline) {
		reason := fmt.Sprintf("nobody approved within %s", rn.rb.ApprovalWait())
		x2, err := e.appendEventIf(ctx, x.ID, Event{Type: EvDenied, Actor: e.cfg.Actor, Reason: reason}, stillPending)
		if errors.Is(err, ErrConflict) {
			return nil // decided at the deadline by someone: the loop reads which way
		}
		if err != nil {
			return err
		}
		return e.finish(ctx, x2, rn.rb, StateDenied, reason, nil)
	}
	rn.sleep(ctx, rn.waitFor(x.Approval.Deadline))
	return ctx.Err()
}

// runStep runs the current step (or rollback step): resumes what a crash
// interrupted, tries the action with retries, then verifies or moves on.
func (rn *execRun) runStep(ctx context.Context, x Execution, phase string) error {
	e := rn.e
	steps := rn.rb.Steps
	if phase == PhaseRollback {
		steps = rn.rb.Rollback
	}
	if x.Step >= len(steps) {
		if phase == PhaseRollback {
			return e.finish(ctx, x, rn.rb, StateRolledBack, x.Reason, nil)
		}
		return e.finish(ctx, x, rn.rb, StateEscalated, "no step fixed it: "+x.Reason, nil)
	}
	s := steps[x.Step]
	if len(x.Steps) >= maxAttempts {
		// Retries are bounded per step and steps per runbook; this only
		// stops a run that a bug would keep going.
		return e.finish(ctx, x, rn.rb, StateEscalated, fmt.Sprintf("%d action attempts: stopped", len(x.Steps)), nil)
	}
	if x.InFlight {
		// A crash interrupted the action: it may or may not have acted.
		if !s.Idempotent {
			reason := fmt.Sprintf("step %s (%s) was interrupted by a restart and is not idempotent; not run again", stepLabel(s, x.Step), s.Action)
			x, err := e.appendEvent(ctx, x.ID, Event{Type: EvInterrupted, Actor: e.cfg.Actor, Reason: reason})
			if err != nil {
				return err
			}
			return e.finish(ctx, x, rn.rb, StateEscalated, reason, nil)
		}
		var err error
		x, err = e.appendEvent(ctx, x.ID, Event{Type: EvInterrupted, Actor: e.cfg.Actor,
			Reason: fmt.Sprintf("step %s was interrupted by a restart; it is idempotent and runs again", stepLabel(s, x.Step))})
		if err != nil {
			return err
		}
	}
	if !x.StepDone {
		return rn.attempt(ctx, x, phase, s)
	}
	if !x.StepOK {
		last := x.Steps[len(x.Steps)-1]
		if last.TimedOut && !s.Idempotent {
			// Like an action a crash interrupted: the call may have
			// reached the target, which may still carry it out. Sending
			// it again, or the next step's action, could act twice (a
			// target that comes back runs both queued calls); a person
			// decides.
			return e.finish(ctx, x, rn.rb, StateEscalated, fmt.Sprintf(
				"step %s (%s) timed out after %s and is not idempotent: it may have acted; neither it nor a later step is run",
				stepLabel(s, x.Step), s.Action, s.StepTimeout()), nil)
		}
		if !last.Permanent && x.Attempt <= s.Retries {
			// Back off on the clock, then try again.
			if !rn.sleep(ctx, backoffFor(x.Attempt)) && ctx.Err() != nil {
				return ctx.Err()
			}
			return rn.attempt(ctx, x, phase, s)
		}
		if phase == PhaseRollback {
			return rn.advance(ctx, x, phase, x.Step+1, x.Reason)
		}
		return rn.fail(ctx, x, fmt.Sprintf("step %s failed: %s", stepLabel(s, x.Step), x.Reason))
	}
	if phase == PhaseSteps && s.Verify != nil {
		d := rn.data(x)
		expr, err := e.render.RenderGuard(ctx, fmt.Sprintf("steps[%d].verify.expr", x.Step), s.Verify.Expr, d, e.clock.Now())
		if err != nil {
			return rn.fail(ctx, x, "verify: "+err.Error())
		}
		_, err = e.appendEvent(ctx, x.ID, Event{Type: EvVerifyStarted, Verify: &VerifyState{
			Index: x.Step, Expr: expr, For: time.Duration(s.Verify.For), Deadline: e.clock.Now().Add(time.Duration(s.Verify.Within))}})
		return err
	}
	return rn.advance(ctx, x, phase, x.Step+1, "")
}

func stepLabel(s runbook.Step, i int) string {
	if s.Name != "" {
		return fmt.Sprintf("%d (%s)", i+1, s.Name)
	}
	return fmt.Sprint(i + 1)
}

// maxAttempts bounds the action attempts of one execution.
const maxAttempts = 100

// backoffFor is the wait before attempt n+1: 1s, 2s, 4s, … up to 30s.
func backoffFor(n int) time.Duration {
	return min(time.Second<<max(n-1, 0), 30*time.Second)
}

func (rn *execRun) advance(ctx context.Context, x Execution, phase string, to int, reason string) error {
	if phase == PhaseRollback || to < len(rn.rb.Steps) {
		_, err := rn.e.appendEvent(ctx, x.ID, Event{Type: EvAdvanced, To: &to, Reason: reason})
		return err
	}
	return rn.e.finish(ctx, x, rn.rb, StateEscalated, "no step's verification held: "+x.Reason, nil)
}

// fail goes where the current step's on_failure says.
func (rn *execRun) fail(ctx context.Context, x Execution, reason string) error {
	e := rn.e
	switch rn.rb.FailureMode(x.Step) {
	case runbook.OnFailureNext:
		if x.Step+1 < len(rn.rb.Steps) {
			return rn.advance(ctx, x, PhaseSteps, x.Step+1, reason)
		}
	case runbook.OnFailureRollback:
		_, err := e.appendEvent(ctx, x.ID, Event{Type: EvRollback, Reason: reason})
		return err
	}
	return e.finish(ctx, x, rn.rb, StateEscalated, reason, nil)
}

// attempt runs one attempt of the step's action: recorded before and
// after, so that a crash in between is seen on restart.
func (rn *execRun) attempt(ctx context.Context, x Execution, phase string, s runbook.Step) error {
	e := rn.e
	spec := action.Catalogue()[s.Action]
	if phase == PhaseSteps && spec.Mutating {
		if mh := rn.rb.Safety.BlastRadius.MinHealthy; mh != "" {
			qctx, cancel := context.WithTimeout(ctx, guardTimeout)
			ok, detail, err := e.guard(qctx, "safety.blast_radius.min_healthy", mh, rn.data(x), e.clock.Now())
			cancel()
			if err != nil || !ok {
				return e.finish(ctx, x, rn.rb, StateEscalated, "min_healthy does not hold before step "+stepLabel(s, x.Step)+": "+errOr(err, detail), nil)
			}
		}
	}
	field := fmt.Sprintf("%s[%d]", phase, x.Step)
	rs, err := e.render.RenderStep(ctx, rn.rb, s, field, rn.data(x), e.clock.Now(), rn.secrets)
	if err != nil {
		return rn.fail(ctx, x, rn.redact(err.Error()))
	}
	attempt := 1
	if x.StepDone || x.InFlight || x.Attempt > 0 {
		attempt = x.Attempt + 1
	}
	rec := StepRecord{Phase: phase, Index: x.Step, Name: s.Name, Attempt: attempt, Action: s.Action,
		Params: runbook.FormatParams(rs.Masked), Key: fmt.Sprintf("%s/%s", x.ID, field), Idempotent: s.Idempotent}
	if _, err := e.appendEvent(ctx, x.ID, Event{Type: EvStepStarted, Actor: actorOf(x.Trigger, e.cfg.Actor), Step: &rec}); err != nil {
		return err
	}
	// The action runs to its timeout even when the engine stops, so that
	// a graceful shutdown does not interrupt it; a cancellation or the
	// kill switch stops it at once.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.StepTimeout())
	stop := context.AfterFunc(ctx, func() {
		if c := context.Cause(ctx); errors.Is(c, errCancelled) || errors.Is(c, errKilled) || errors.Is(c, errLeaseLost) {
			cancel()
		}
	})
	res, err := e.deps.Actions.Do(actx, action.Call{Action: s.Action, Params: rs.Params, Target: x.Target, Key: rec.Key})
	timedOut := errors.Is(actx.Err(), context.DeadlineExceeded)
	stop()
	cancel()
	rec.OK = err == nil
	if err != nil {
		rec.Error, rec.Permanent = rn.redact(err.Error()), errors.Is(err, action.ErrPermanent)
		rec.TimedOut = timedOut
		e.m.actions.WithLabelValues(s.Action, "error").Inc()
	} else {
		res.Detail = rn.redact(res.Detail)
		rec.Result = &res
		e.m.actions.WithLabelValues(s.Action, "ok").Inc()
	}
	x, err = e.appendEvent(context.WithoutCancel(ctx), x.ID, Event{Type: EvStepFinished, Step: &rec})
	if err != nil {
		return err
	}
	e.logger.Info("Runbook step", "execution", x.ID, "runbook", x.Runbook, "step", field, "action", s.Action,
		"params", rec.Params, "attempt", attempt, "ok", rec.OK, "error", rec.Error)
	rn.recordStep(ctx, x, rec)
	return nil
}

func (rn *execRun) redact(s string) string {
	if rn.secrets != nil {
		s = rn.secrets.Redact(s)
	}
	return rn.e.deps.Redact(s)
}

// verify evaluates the step's verification every interval until it has
// held for its duration (the fix worked) or the deadline passes.
func (rn *execRun) verify(ctx context.Context, x Execution) error {
	e := rn.e
	v := x.Verify
	if v == nil {
		return fmt.Errorf("execution %s verifies without a verification", x.ID)
	}
	s := rn.rb.Steps[v.Index]
	interval := time.Duration(s.Verify.Interval)
	if interval <= 0 {
		interval = runbook.DefaultVerifyInterval
	}
	var since time.Time
	detail := ""
	for {
		now := e.clock.Now()
		qctx, cancel := context.WithTimeout(ctx, guardTimeout)
		ok, d, err := e.holds(qctx, v.Expr, now)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		detail = errOr(err, d)
		if ok {
			if since.IsZero() {
				since = now
			}
			if now.Sub(since) >= v.For {
				done := *v
				done.OK, done.Detail = true, fmt.Sprintf("held for %s (value %s)", now.Sub(since), d)
				x, err := e.appendEvent(ctx, x.ID, Event{Type: EvVerifyFinished, Verify: &done})
				if err != nil {
					return err
				}
				rec := now.Sub(x.CreatedAt).Seconds()
				return e.finish(ctx, x, rn.rb, StateSucceeded, "", &rec)
			}
		} else {
			since = time.Time{}
		}
		if !now.Before(v.Deadline) {
			done := *v
			done.Detail = fmt.Sprintf("did not hold for %s within the deadline (last: %s)", v.For, detail)
			x, err := e.appendEvent(ctx, x.ID, Event{Type: EvVerifyFinished, Verify: &done})
			if err != nil {
				return err
			}
			return rn.fail(ctx, x, fmt.Sprintf("step %s's verification %s", stepLabel(s, v.Index), done.Detail))
		}
		wait := min(interval, v.Deadline.Sub(now))
		if !since.IsZero() {
			wait = min(wait, max(v.For-now.Sub(since), time.Millisecond))
		}
		if _, err := e.appendLeaseIfDue(ctx, x); err != nil {
			return err
		}
		if !rn.sleep(ctx, max(wait, time.Millisecond)) && ctx.Err() != nil {
			return ctx.Err()
		}
		if x2, ok := e.snapshot(x.ID); ok {
			x = x2
		}
	}
}

// appendLeaseIfDue renews the lease from inside a long wait.
func (e *Engine) appendLeaseIfDue(ctx context.Context, x Execution) (bool, error) {
	rb := e.runbooks[x.Runbook]
	now := e.clock.Now()
	if rb == nil || x.LeaseExpires.Sub(now) > rb.Lease()*2/3 {
		return false, nil
	}
	_, err := e.appendEvent(ctx, x.ID, Event{Type: EvLeaseRenewed, LeaseExpires: now.Add(rb.Lease())})
	return err == nil, err
}

// shadow records what the run would do and ends it.
func (rn *execRun) shadow(ctx context.Context, x Execution) error {
	e := rn.e
	if len(x.Plan) == 0 {
		steps, rollback, err := e.renderPlan(ctx, rn.rb, rn.data(x), e.clock.Now())
		if err != nil {
			return e.finish(ctx, x, rn.rb, StateShadowed, "plan: "+err.Error(), nil)
		}
		var err2 error
		x, err2 = e.appendEvent(ctx, x.ID, Event{Type: EvPlanned, Plan: append(steps, rollback...)})
		if err2 != nil {
			return err2
		}
	}
	return e.finish(ctx, x, rn.rb, StateShadowed, "shadow mode: decided and recorded, not run", nil)
}

// stopped ends an execution a person or the kill switch stopped.
func (rn *execRun) stopped(x Execution, cause error) {
	e := rn.e
	ctx, cancel := context.WithTimeout(context.WithoutCancel(e.ctxOrBackground()), 30*time.Second)
	defer cancel()
	if x2, ok := e.snapshot(x.ID); ok {
		x = x2
	}
	if x.State.Terminal() {
		return
	}
	reason := "cancelled by " + x.CancelRequested
	state := StateCancelled
	switch {
	case errors.Is(cause, errKilled):
		e.mu.RLock()
		k := e.kill
		e.mu.RUnlock()
		reason = fmt.Sprintf("stopped by the kill switch (engaged by %s: %s)", k.By, k.Reason)
	case errors.Is(cause, errLeaseLost):
		state, reason = StateEscalated, "its lease lapsed and another run took the target"
	}
	if err := e.finish(ctx, x, rn.rb, state, reason, nil); err != nil {
		e.logger.Error("Stopped execution not recorded", "execution", x.ID, "err", err)
	}
}

func (e *Engine) ctxOrBackground() context.Context {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ctx != nil {
		return e.ctx
	}
	return context.Background()
}

// finish records the end of an execution and tells the incident: the run
// finished; on success the incident resolves once its alerts have; on
// escalation it is escalated and people are told.
func (e *Engine) finish(ctx context.Context, x Execution, rb *runbook.Runbook, state State, reason string, recoverSeconds *float64) error {
	ev := Event{Type: EvFinished, Actor: e.cfg.Actor, Outcome: string(state), Reason: reason}
	if recoverSeconds != nil {
		ev.RecoverSeconds = *recoverSeconds
	}
	x, err := e.appendEvent(ctx, x.ID, ev)
	if err != nil {
		return err
	}
	e.logger.Info("Runbook finished", "execution", x.ID, "runbook", x.Runbook, "target", runbook.TargetKey(x.Target), "outcome", state, "reason", reason)
	ictx := context.WithoutCancel(ctx)
	msg := reason
	if state == StateSucceeded {
		msg = fmt.Sprintf("verified after %.0fs", x.RecoverSeconds)
	}
	e.incidentCall(ictx, x, "finished", func(ictx context.Context, inc Incidents, id string) error {
		_, err := inc.RecordRunbook(ictx, id, incident.RunbookFinished,
			incident.RunbookEvent{RunID: x.ID, Runbook: x.Runbook, Outcome: string(state), Message: msg}, incident.Action{Actor: e.cfg.Actor})
		return err
	})
	switch state {
	case StateSucceeded:
		e.tryResolve(ictx, x.Trigger.IncidentID)
	case StateEscalated, StateRolledBack, StateDenied:
		e.escalate(ictx, x, rb, state, reason)
	}
	return nil
}

// escalate hands the problem to people: the incident is escalated and
// noted, and the runbook's escalation message goes to its channels.
func (e *Engine) escalate(ctx context.Context, x Execution, rb *runbook.Runbook, state State, reason string) {
	e.m.escalations.WithLabelValues(x.Runbook).Inc()
	text := fmt.Sprintf("Runbook %s on %s ended %s: %s", x.Runbook, runbook.TargetKey(x.Target), state, reason)
	var notify []string
	if rb != nil {
		if rb.Escalate.Message != "" {
			d := runbook.Data{Labels: x.Trigger.Labels, Annotations: x.Trigger.Annotations, Target: x.Target,
				IncidentID: x.Trigger.IncidentID, Runbook: x.Runbook, ExecutionID: x.ID}
			if out, err := e.render.Render(ctx, "escalate.message", rb.Escalate.Message, d, e.clock.Now(), nil); err == nil {
				text = strings.TrimSpace(out.Masked) + "\n" + text
			}
		}
		notify = rb.Escalate.Notify
	}
	e.incidentCall(ctx, x, "escalate", func(ctx context.Context, inc Incidents, id string) error {
		if _, err := inc.AddNote(ctx, id, text, incident.Action{Actor: e.cfg.Actor}); err != nil {
			return err
		}
		_, err := inc.Escalate(ctx, id, incident.Action{Actor: e.cfg.Actor, Comment: "runbook " + x.Runbook + " did not fix it"})
		if errors.Is(err, incident.ErrResolved) {
			return nil
		}
		return err
	})
	if len(notify) > 0 || x.Trigger.IncidentID == "" {
		p := action.Params{"message": action.Value{Str: text}}
		if len(notify) > 0 {
			p["channels"] = action.Value{List: notify}
		}
		nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := e.deps.Actions.Do(nctx, action.Call{Action: "notify", Params: p, Target: x.Target, Key: x.ID + "/escalate"}); err != nil {
			e.logger.Warn("Escalation not sent", "execution", x.ID, "err", e.deps.Redact(err.Error()))
		}
	}
}

// recordStep puts one attempt on the incident's timeline.
func (rn *execRun) recordStep(ctx context.Context, x Execution, rec StepRecord) {
	st := &incident.RunbookStep{Key: fmt.Sprintf("%s[%d]#%d", rec.Phase, rec.Index, rec.Attempt), Name: rec.Name, Action: rec.Action,
		Params: rec.Params, Error: rec.Error}
	if rec.Result != nil {
		st.Result = rec.Result.Outcome
		if rec.Result.Detail != "" {
			st.Result += ": " + rec.Result.Detail
		}
	}
	rn.e.incidentCall(ctx, x, "step", func(ctx context.Context, inc Incidents, id string) error {
		_, err := inc.RecordRunbook(ctx, id, incident.RunbookStepDone, incident.RunbookEvent{RunID: x.ID, Runbook: x.Runbook, Step: st},
			incident.Action{Actor: actorOf(x.Trigger, rn.e.cfg.Actor)})
		return err
	})
}

// incidentCall calls the incident service for an execution's incident, a
// few times if it fails: its writes are idempotent.
func (e *Engine) incidentCall(ctx context.Context, x Execution, what string, f func(context.Context, Incidents, string) error) {
	id := x.Trigger.IncidentID
	if e.deps.Incidents == nil || id == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var err error
	for i := range 3 {
		if err = f(ctx, e.deps.Incidents, id); err == nil || errors.Is(err, incident.ErrNotFound) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(i+1) * 200 * time.Millisecond):
		}
	}
	e.logger.Warn("Incident not updated", "incident", id, "execution", x.ID, "what", what, "err", err)
}
