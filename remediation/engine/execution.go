package engine

import (
	"maps"
	"slices"
	"time"
)

// State is where an execution is:
//
//	pending_approval → running (step i) → verifying → succeeded
//	                      ↑         ↓ (failed: on_failure next)
//	                      └── running (step i+1)
//	                    failed, on_failure rollback → rolling_back → rolled_back
//	                    failed, on_failure escalate → escalated
//
// and, from any state before the end: denied (a person said no, or the
// approval timed out), cancelled (a person, or the kill switch),
// escalated (a step interrupted by a crash and not idempotent; the lease
// lost). Shadow executions go from created to shadowed: decided and
// recorded, never acted on.
type State string

// The states.
const (
	StatePendingApproval State = "pending_approval"
	StateRunning         State = "running"
	StateVerifying       State = "verifying"
	StateRollingBack     State = "rolling_back"
	StateSucceeded       State = "succeeded"
	StateRolledBack      State = "rolled_back"
	StateEscalated       State = "escalated"
	StateCancelled       State = "cancelled"
	StateDenied          State = "denied"
	StateShadowed        State = "shadowed"
)

// Terminal reports whether s is an end state.
func (s State) Terminal() bool {
	switch s {
	case StateSucceeded, StateRolledBack, StateEscalated, StateCancelled, StateDenied, StateShadowed:
		return true
	}
	return false
}

// Execution is the current state of one run of a runbook, folded from its
// events.
type Execution struct {
	ID      string            `json:"id"`
	Runbook string            `json:"runbook"`
	Mode    string            `json:"mode"`
	State   State             `json:"state"`
	Trigger Trigger           `json:"trigger"`
	Target  map[string]string `json:"target"`
	// Version is the Seq of the last event.
	Version   uint64     `json:"version"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	// Reason says why the execution is where it is (the last failure,
	// refusal of a guard, who cancelled).
	Reason string `json:"reason,omitempty"`

	Approval   *ApprovalRequest `json:"approval,omitempty"`
	ApprovedBy string           `json:"approved_by,omitempty"`
	DeniedBy   string           `json:"denied_by,omitempty"`

	// Step is the current step of the ladder (or of the rollback while
	// rolling back); Attempt its last attempt.
	Step    int `json:"step"`
	Attempt int `json:"attempt"`
	// InFlight: the step's last attempt started and has not finished
	// (after a restart: it was interrupted).
	InFlight bool `json:"in_flight,omitempty"`
	// StepDone: the current step's last attempt finished; StepOK: well.
	StepDone bool         `json:"-"`
	StepOK   bool         `json:"-"`
	Verify   *VerifyState `json:"verify,omitempty"`
	// Steps are every attempt, oldest first.
	Steps []StepRecord `json:"steps"`
	Plan  []StepRecord `json:"plan,omitempty"`

	LeaseExpires    time.Time `json:"lease_expires,omitzero"`
	CancelRequested string    `json:"cancel_requested_by,omitempty"`
	RecoverSeconds  float64   `json:"recover_seconds,omitempty"`
}

// apply folds one event into the execution. Like the incident log, it
// never refuses: what may be written is decided before writing.
func (x *Execution) apply(id string, e Event) {
	x.Version, x.UpdatedAt = e.Seq, e.Time
	switch e.Type {
	case EvCreated:
		c := e.Created
		if c == nil {
			return
		}
		x.ID, x.Runbook, x.Mode, x.Trigger, x.Target = id, c.Runbook, c.Mode, c.Trigger, maps.Clone(c.Target)
		x.CreatedAt, x.LeaseExpires = e.Time, e.LeaseExpires
		x.State = StateRunning
		if c.Approval != nil {
			a := *c.Approval
			x.Approval, x.State = &a, StatePendingApproval
		}
	case EvApproved:
		x.ApprovedBy, x.State = e.Actor, StateRunning
	case EvDenied:
		x.DeniedBy, x.Reason = e.Actor, e.Reason
	case EvPlanned:
		x.Plan = slices.Clone(e.Plan)
	case EvStepStarted:
		if s := e.Step; s != nil {
			x.Step, x.Attempt, x.InFlight, x.StepDone, x.StepOK = s.Index, s.Attempt, true, false, false
			x.Steps = append(x.Steps, *s)
		}
	case EvStepFinished:
		if s := e.Step; s != nil {
			x.InFlight, x.StepDone, x.StepOK = false, true, s.OK
			// Replace the started record of this attempt with its outcome.
			for i := len(x.Steps) - 1; i >= 0; i-- {
				r := x.Steps[i]
				if r.Phase == s.Phase && r.Index == s.Index && r.Attempt == s.Attempt {
					x.Steps[i] = *s
					break
				}
			}
			if !s.OK {
				x.Reason = s.Error
			}
		}
	case EvVerifyStarted:
		if v := e.Verify; v != nil {
			vs := *v
			x.Verify, x.State = &vs, StateVerifying
		}
	case EvVerifyFinished:
		if v := e.Verify; v != nil {
			vs := *v
			x.Verify = &vs
			if !v.OK {
				x.Reason = v.Detail
			}
		}
	case EvAdvanced:
		if e.To != nil {
			// The ladder's next step, or the rollback's: the phase stays.
			if x.State != StateRollingBack {
				x.State = StateRunning
			}
			x.Step, x.Attempt, x.StepDone, x.StepOK, x.Verify = *e.To, 0, false, false, nil
		}
		x.Reason = e.Reason
	case EvRollback:
		x.State, x.Step, x.Attempt, x.StepDone, x.StepOK, x.Verify = StateRollingBack, 0, 0, false, false, nil
		x.Reason = e.Reason
	case EvLeaseRenewed:
		x.LeaseExpires = e.LeaseExpires
	case EvCancelAsked:
		x.CancelRequested = e.Actor
	case EvInterrupted:
		x.InFlight = false
		x.Reason = e.Reason
	case EvFinished:
		t := e.Time
		x.State, x.EndedAt, x.RecoverSeconds = State(e.Outcome), &t, e.RecoverSeconds
		if e.Reason != "" {
			x.Reason = e.Reason
		}
	}
}

// clone returns a copy sharing nothing mutable.
func (x *Execution) clone() Execution {
	c := *x
	c.Target = maps.Clone(x.Target)
	c.Steps = slices.Clone(x.Steps)
	if c.Steps == nil {
		c.Steps = []StepRecord{}
	}
	c.Plan = slices.Clone(x.Plan)
	if x.Verify != nil {
		v := *x.Verify
		c.Verify = &v
	}
	if x.Approval != nil {
		a := *x.Approval
		c.Approval = &a
	}
	if x.EndedAt != nil {
		t := *x.EndedAt
		c.EndedAt = &t
	}
	return c
}

// holdsLease reports whether the execution holds its target at now: it
// has not ended and its lease has not lapsed.
func (x *Execution) holdsLease(now time.Time) bool {
	return !x.State.Terminal() && now.Before(x.LeaseExpires)
}

// acted reports whether the execution ran an action (for the record).
func (x *Execution) acted() bool {
	return x.Mode == "live" && len(x.Steps) > 0
}
