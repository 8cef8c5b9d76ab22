package engine

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aiops-dev/aiops/remediation/action"
	"github.com/aiops-dev/aiops/storage"
)

// Kinds of the events the engine stores. An execution's events have
// Kind ExecKindPrefix+type and Subject = the execution's id; the kill
// switch's ControlKindPrefix+"kill_switch"; refusals DecisionKind.
// Rebuilding reads the first two; refusals are only read by the API.
const (
	ExecKindPrefix    = "remediation.exec."
	ControlKindPrefix = "remediation.control."
	DecisionKind      = "remediation.decision.refused"
	killSwitchKind    = ControlKindPrefix + "kill_switch"
)

// EventType names a transition of an execution.
type EventType string

// The events of an execution's log.
const (
	EvCreated        EventType = "created"
	EvApproved       EventType = "approved"
	EvDenied         EventType = "denied"
	EvPlanned        EventType = "planned"
	EvStepStarted    EventType = "step_started"
	EvStepFinished   EventType = "step_finished"
	EvVerifyStarted  EventType = "verify_started"
	EvVerifyFinished EventType = "verify_finished"
	EvAdvanced       EventType = "advanced"
	EvRollback       EventType = "rollback_started"
	EvLeaseRenewed   EventType = "lease_renewed"
	EvCancelAsked    EventType = "cancel_requested"
	EvInterrupted    EventType = "interrupted"
	EvFinished       EventType = "finished"
)

// Event is one entry of an execution's log.
type Event struct {
	Seq   uint64    `json:"seq"`
	Type  EventType `json:"type"`
	Time  time.Time `json:"time"`
	Actor string    `json:"actor,omitempty"`
	// Reason says why (a failed verification, a refusal, a timeout).
	Reason string `json:"reason,omitempty"`

	Created *Created     `json:"created,omitempty"`
	Step    *StepRecord  `json:"step,omitempty"`
	Verify  *VerifyState `json:"verify,omitempty"`
	// To is the step an "advanced" event moves to.
	To *int `json:"to,omitempty"`
	// LeaseExpires is set on "created" and "lease_renewed".
	LeaseExpires time.Time `json:"lease_expires,omitzero"`
	// Outcome is set on "finished".
	Outcome string `json:"outcome,omitempty"`
	// RecoverSeconds is set on "finished" when the fix held: from the
	// run's creation to its verification holding.
	RecoverSeconds float64 `json:"recover_seconds,omitempty"`
	// Plan is set on "planned" (shadow mode): every step rendered.
	Plan []StepRecord `json:"plan,omitempty"`
}

// Created is what an execution starts from.
type Created struct {
	Runbook string `json:"runbook"`
	// Mode is live or shadow.
	Mode    string            `json:"mode"`
	Trigger Trigger           `json:"trigger"`
	Target  map[string]string `json:"target"`
	// Approval, when required: who may approve and until when.
	Approval *ApprovalRequest `json:"approval,omitempty"`
}

// ApprovalRequest is an execution's wait for a person.
type ApprovalRequest struct {
	Approvers []string  `json:"approvers,omitempty"`
	Deadline  time.Time `json:"deadline"`
}

// Trigger is what started an execution.
type Trigger struct {
	// Kind is alert, condition, incident or manual.
	Kind string `json:"kind"`
	// Alertname is the alert's name (alerts).
	Alertname string `json:"alertname,omitempty"`
	// Fingerprint and StartsAt identify the alert's episode.
	Fingerprint string    `json:"fingerprint,omitempty"`
	StartsAt    time.Time `json:"starts_at,omitzero"`
	IncidentID  string    `json:"incident_id,omitempty"`
	// Labels of the alert, condition series or incident group.
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Value       float64           `json:"value,omitempty"`
	// RequestedBy is who ran it by hand (manual).
	RequestedBy string `json:"requested_by,omitempty"`
}

// StepRecord is one attempt of one step (or a step planned in shadow
// mode). Params have secrets masked; Result and Error are redacted.
type StepRecord struct {
	// Phase is "steps" or "rollback".
	Phase   string            `json:"phase"`
	Index   int               `json:"index"`
	Name    string            `json:"name,omitempty"`
	Attempt int               `json:"attempt,omitempty"`
	Action  string            `json:"action"`
	Params  map[string]string `json:"params,omitempty"`
	// Key is the idempotency key drivers receive, the same for every
	// attempt of the step.
	Key        string         `json:"key,omitempty"`
	Idempotent bool           `json:"idempotent,omitempty"`
	OK         bool           `json:"ok,omitempty"`
	Result     *action.Result `json:"result,omitempty"`
	Error      string         `json:"error,omitempty"`
	// Permanent marks an error that a retry would not change.
	Permanent bool `json:"permanent,omitempty"`
	// TimedOut marks an attempt cut off by the step's timeout: the call
	// may have reached the target and may yet take effect there.
	TimedOut bool `json:"timed_out,omitempty"`
	// Verify is the rendered verification (planned steps).
	Verify string `json:"verify,omitempty"`
}

// VerifyState is a step's verification.
type VerifyState struct {
	Index    int           `json:"index"`
	Expr     string        `json:"expr"`
	For      time.Duration `json:"for"`
	Deadline time.Time     `json:"deadline"`
	OK       bool          `json:"ok,omitempty"`
	Detail   string        `json:"detail,omitempty"`
}

// Phases of a step record.
const (
	PhaseSteps    = "steps"
	PhaseRollback = "rollback"
)

// eventID is deterministic: an execution's n-th event always has the
// same id, so a retried append never stores it twice.
func eventID(execID string, seq uint64) string { return fmt.Sprintf("%s.%06d", execID, seq) }

func encodeEvent(execID string, e Event) (storage.Event, error) {
	payload, err := json.Marshal(e)
	if err != nil {
		return storage.Event{}, fmt.Errorf("encode execution event: %w", err)
	}
	return storage.Event{
		ID: eventID(execID, e.Seq), Time: e.Time, Kind: ExecKindPrefix + string(e.Type), Subject: execID,
		Labels: map[string]string{"seq": strconv.FormatUint(e.Seq, 10)}, Payload: payload,
	}, nil
}

func decodeEvent(se storage.Event) (Event, error) {
	typ, ok := strings.CutPrefix(se.Kind, ExecKindPrefix)
	if !ok {
		return Event{}, fmt.Errorf("event %s: kind %q is not an execution event", se.ID, se.Kind)
	}
	var e Event
	if err := json.Unmarshal(se.Payload, &e); err != nil {
		return Event{}, fmt.Errorf("event %s: %w", se.ID, err)
	}
	if string(e.Type) != typ || e.Seq == 0 {
		return Event{}, fmt.Errorf("event %s: payload does not match its kind %q", se.ID, se.Kind)
	}
	return e, nil
}

// KillSwitch is the global stop: while engaged no run starts and every
// run in progress is cancelled.
type KillSwitch struct {
	Engaged bool      `json:"engaged"`
	By      string    `json:"by,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Since   time.Time `json:"since,omitzero"`
}

// Refusal is a decision not to run a runbook, kept for the record.
type Refusal struct {
	Time    time.Time         `json:"time"`
	Runbook string            `json:"runbook"`
	Target  map[string]string `json:"target,omitempty"`
	// Rail is the safety rail that refused: kill_switch, target,
	// maintenance, lease, cooldown, max_runs, global_max_runs,
	// blast_radius, precondition, min_healthy, secrets.
	Rail    string  `json:"rail"`
	Reason  string  `json:"reason"`
	Trigger Trigger `json:"trigger"`
}
