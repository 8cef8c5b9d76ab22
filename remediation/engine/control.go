package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aiops-dev/aiops/storage"
)

// Principal is who acts through the API or the CLI.
type Principal struct {
	// ID is the credential's id (a token id, "bootstrap-admin", a JWT
	// subject); Name its human-readable name.
	ID, Name string
}

func (p Principal) String() string {
	if p.Name != "" && p.Name != p.ID {
		return p.Name + " (" + p.ID + ")"
	}
	return p.ID
}

// Approve lets a run waiting for approval go on. Only a listed approver
// may approve (by id or name; anyone when the runbook lists none), and
// never the person who asked for the run.
func (e *Engine) Approve(ctx context.Context, id string, by Principal, comment string) (Execution, error) {
	// A follower's state may lack the execution: say it is a follower,
	// not that the execution does not exist.
	if err := e.writable(); err != nil {
		return Execution{}, err
	}
	x, err := e.pending(id, by)
	if err != nil {
		return x, err
	}
	x, err = e.appendEventIf(ctx, id, Event{Type: EvApproved, Actor: by.String(), Reason: comment}, stillPending)
	if err != nil {
		return x, err
	}
	e.logger.Info("Runbook run approved", "execution", id, "by", by.String())
	e.incidentNote(ctx, x, fmt.Sprintf("Runbook %s on its target was approved by %s", x.Runbook, by))
	e.wake(id)
	return x, nil
}

// Deny refuses a run waiting for approval; it ends denied and escalates.
func (e *Engine) Deny(ctx context.Context, id string, by Principal, reason string) (Execution, error) {
	if err := e.writable(); err != nil {
		return Execution{}, err
	}
	x, err := e.pending(id, by)
	if err != nil {
		return x, err
	}
	if strings.TrimSpace(reason) == "" {
		reason = "denied by " + by.String()
	}
	x, err = e.appendEventIf(ctx, id, Event{Type: EvDenied, Actor: by.String(), Reason: reason}, stillPending)
	if err != nil {
		return x, err
	}
	e.logger.Info("Runbook run denied", "execution", id, "by", by.String(), "reason", reason)
	e.wake(id)
	return x, nil
}

// stillPending refuses a decision on an execution that another decision
// (or the approval's timeout, or a cancellation) settled since pending
// looked at it.
func stillPending(x Execution) error {
	if x.State != StatePendingApproval || x.DeniedBy != "" {
		return fmt.Errorf("%w: execution %s is %s, not waiting for approval", ErrConflict, x.ID, describeDecided(x))
	}
	return nil
}

// describeDecided names what settled an execution that no longer waits.
func describeDecided(x Execution) string {
	if x.State == StatePendingApproval && x.DeniedBy != "" {
		return "denied by " + x.DeniedBy
	}
	return string(x.State)
}

// pending checks that id waits for approval and that by may decide.
func (e *Engine) pending(id string, by Principal) (Execution, error) {
	x, ok := e.snapshot(id)
	if !ok {
		return Execution{}, fmt.Errorf("%w: execution %s", ErrNotFound, id)
	}
	if err := stillPending(x); err != nil {
		return x, err
	}
	if by.ID == "" {
		return x, fmt.Errorf("%w: an approval needs who gives it", ErrInvalid)
	}
	if rq := x.Trigger.RequestedBy; rq != "" && (rq == by.ID || rq == by.String()) {
		return x, fmt.Errorf("%w: %s asked for this run and cannot also approve it", ErrForbidden, by)
	}
	if a := x.Approval; a != nil && len(a.Approvers) > 0 && !slices.Contains(a.Approvers, by.ID) && !slices.Contains(a.Approvers, by.Name) {
		return x, fmt.Errorf("%w: %s is not an approver of %s (approvers: %s)", ErrForbidden, by, x.Runbook, strings.Join(a.Approvers, ", "))
	}
	return x, nil
}

// Cancel stops an execution: the action in flight is cancelled, nothing
// more runs (no rollback: stop means stop), and it ends cancelled.
func (e *Engine) Cancel(ctx context.Context, id string, by Principal, reason string) (Execution, error) {
	if err := e.writable(); err != nil {
		return Execution{}, err
	}
	x, ok := e.snapshot(id)
	if !ok {
		return Execution{}, fmt.Errorf("%w: execution %s", ErrNotFound, id)
	}
	if x.State.Terminal() {
		return x, fmt.Errorf("%w: execution %s has ended (%s)", ErrConflict, id, x.State)
	}
	x, err := e.appendEvent(ctx, id, Event{Type: EvCancelAsked, Actor: by.String(), Reason: reason})
	if err != nil {
		return x, err
	}
	e.mu.RLock()
	r := e.runners[id]
	e.mu.RUnlock()
	if r != nil {
		r.cancel(errCancelled)
	} else if err := e.finish(ctx, x, e.runbooks[x.Runbook], StateCancelled, "cancelled by "+by.String(), nil); err != nil {
		return x, err
	}
	return x, nil
}

func (e *Engine) wake(id string) {
	e.mu.RLock()
	r := e.runners[id]
	e.mu.RUnlock()
	if r != nil {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// KillSwitch returns the kill switch's state.
func (e *Engine) KillSwitch() KillSwitch {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.kill
}

// Engage engages the kill switch: no run starts, and every run in
// progress is cancelled (the action in flight included), until Release.
func (e *Engine) Engage(ctx context.Context, by Principal, reason string) (KillSwitch, error) {
	if strings.TrimSpace(reason) == "" {
		return KillSwitch{}, fmt.Errorf("%w: reason: say why the kill switch is engaged", ErrInvalid)
	}
	k := KillSwitch{Engaged: true, By: by.String(), Reason: reason}
	if err := e.setKill(ctx, k); err != nil {
		return KillSwitch{}, err
	}
	e.mu.RLock()
	var stop []*runner
	for _, r := range e.runners {
		stop = append(stop, r)
	}
	e.mu.RUnlock()
	for _, r := range stop {
		r.cancel(errKilled)
	}
	e.logger.Warn("Remediation kill switch engaged", "by", k.By, "reason", reason, "stopped", len(stop))
	return e.KillSwitch(), nil
}

// Release releases the kill switch.
func (e *Engine) Release(ctx context.Context, by Principal, reason string) (KillSwitch, error) {
	if err := e.setKill(ctx, KillSwitch{Engaged: false, By: by.String(), Reason: reason}); err != nil {
		return KillSwitch{}, err
	}
	e.logger.Warn("Remediation kill switch released", "by", by.String(), "reason", reason)
	return e.KillSwitch(), nil
}

// setKill records the kill switch's new state; it takes effect once
// stored, and holds across restarts.
func (e *Engine) setKill(ctx context.Context, k KillSwitch) error {
	e.admitMu.Lock() // no decision is half-way while it changes
	defer e.admitMu.Unlock()
	e.writeMu.Lock()
	k.Since = e.eventTime()
	e.writeMu.Unlock()
	payload, _ := json.Marshal(k)
	se := storage.Event{ID: fmt.Sprintf("kill-switch-%020d", k.Since.UnixNano()), Time: k.Since, Kind: killSwitchKind,
		Subject: "kill_switch", Labels: map[string]string{"engaged": fmt.Sprint(k.Engaged)}, Payload: payload}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := e.store(wctx, []storage.Event{se}); err != nil {
		return fmt.Errorf("kill switch: %w", err)
	}
	e.mu.Lock()
	e.kill = k
	e.mu.Unlock()
	return nil
}

func (e *Engine) incidentNote(ctx context.Context, x Execution, text string) {
	e.incidentCall(ctx, x, "note", func(ctx context.Context, inc Incidents, id string) error {
		_, err := inc.AddNote(ctx, id, text, e.actionOf())
		return err
	})
}
