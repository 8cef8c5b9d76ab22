package incident

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aiops-dev/aiops/storage"
)

// KindPrefix starts the storage.Event Kind of every incident event; the
// rest is the EventType ("incident.acknowledged").
const KindPrefix = "incident."

// EventType names what happened to an incident.
type EventType string

// The event types of an incident's log.
const (
	EventOpened          EventType = "opened"
	EventAlertFiring     EventType = "alert_firing"
	EventAlertResolved   EventType = "alert_resolved"
	EventAcknowledged    EventType = "acknowledged"
	EventAssigned        EventType = "assigned"
	EventNote            EventType = "note"
	EventEscalated       EventType = "escalated"
	EventRunbookStarted  EventType = "runbook_started"
	EventRunbookFinished EventType = "runbook_finished"
	EventRunbookStep     EventType = "runbook_step"
	EventResolved        EventType = "resolved"
	EventReopened        EventType = "reopened"
	EventRootCauses      EventType = "root_causes"
	EventSilenced        EventType = "silenced"
	// EventAlertsOverLimit records how many firing alerts of the group
	// the incident does not record (incidents.max_alerts).
	EventAlertsOverLimit EventType = "alerts_over_limit"
)

var eventTypes = map[EventType]bool{
	EventOpened: true, EventAlertFiring: true, EventAlertResolved: true, EventAcknowledged: true,
	EventAssigned: true, EventNote: true, EventEscalated: true, EventRunbookStarted: true,
	EventRunbookFinished: true, EventRunbookStep: true, EventResolved: true, EventReopened: true, EventRootCauses: true,
	EventSilenced: true, EventAlertsOverLimit: true,
}

// SystemActor is the actor of what aiops does by itself: opening,
// auto-resolving, reopening, escalating.
const SystemActor = "aiops"

// Event is one entry of an incident's log: what the timeline shows and
// what the state is folded from. It is stored as the JSON payload of a
// storage.Event with Kind KindPrefix+Type and Subject = the incident id.
type Event struct {
	// Seq numbers the incident's events from 1 without gaps; the
	// incident's version is the Seq of its last event.
	Seq   uint64    `json:"seq"`
	Type  EventType `json:"type"`
	Time  time.Time `json:"time"`
	Actor string    `json:"actor,omitempty"`
	// Comment is a note's text, or the comment given with an
	// acknowledgement, resolution, assignment or escalation.
	Comment string `json:"comment,omitempty"`
	// Reason says why aiops did something by itself ("all alerts
	// resolved", "new alert within the reopen window").
	Reason string `json:"reason,omitempty"`

	// Opened is set on "opened".
	Opened *Opened `json:"opened,omitempty"`
	// Alert is set on "alert_firing" and "alert_resolved".
	Alert *Alert `json:"alert,omitempty"`
	// Assignee is set on "assigned"; empty unassigns.
	Assignee *string `json:"assignee,omitempty"`
	// Level is set on "escalated".
	Level int `json:"level,omitempty"`
	// Runbook is set on "runbook_started" and "runbook_finished", and on
	// "resolved" when a runbook's fix resolved the incident.
	Runbook *RunbookEvent `json:"runbook,omitempty"`
	// RootCauses is set on "root_causes" (and may be on "opened").
	RootCauses *RootCauses `json:"root_causes,omitempty"`
	// Silence is set on "silenced".
	Silence *SilenceRef `json:"silence,omitempty"`
	// OverLimit is set on "alerts_over_limit".
	OverLimit *OverLimit `json:"over_limit,omitempty"`
}

// OverLimit is the part of an alert group an incident does not record.
type OverLimit struct {
	// Alerts counts the group's firing alerts not recorded.
	Alerts int `json:"alerts"`
	// LatestStart is the latest start among them (and those counted
	// before): an alert not recorded that started no later is one of
	// them, not a new one.
	LatestStart time.Time `json:"latest_start,omitempty"`
}

// SilenceRef names the Alertmanager silence created for an incident's
// alerts; the silence itself (expired early or not) is the Alertmanager's.
type SilenceRef struct {
	ID       string    `json:"id"`
	StartsAt time.Time `json:"starts_at"`
	EndsAt   time.Time `json:"ends_at"`
}

// Opened describes the alert group an incident was opened for.
type Opened struct {
	GroupKey    string            `json:"group_key"`
	Receiver    string            `json:"receiver"`
	GroupLabels map[string]string `json:"group_labels"`
}

// RunbookEvent is what remediation reports about one runbook run.
type RunbookEvent struct {
	// RunID identifies the run; a second event of the same phase for the
	// same run is ignored, so remediation may retry safely.
	RunID   string `json:"run_id"`
	Runbook string `json:"runbook"`
	// Outcome is set when finished: "succeeded", "failed", "rolled_back",
	// ... (remediation's words).
	Outcome string `json:"outcome,omitempty"`
	Message string `json:"message,omitempty"`
	// Step is set on "runbook_step": one action of the run and its result.
	Step *RunbookStep `json:"step,omitempty"`
}

// RunbookStep is one attempt of one action of a runbook run, as the
// timeline shows it. Params are rendered with secrets masked: remediation
// never hands a secret's value to the incident.
type RunbookStep struct {
	// Key identifies the attempt within the run ("steps[0]#1"); a second
	// event with the same key is ignored.
	Key    string            `json:"key"`
	Name   string            `json:"name,omitempty"`
	Action string            `json:"action"`
	Params map[string]string `json:"params,omitempty"`
	Result string            `json:"result,omitempty"`
	Error  string            `json:"error,omitempty"`
}

// eventID is deterministic: an incident's n-th event always has the same
// id, so writing it again (a retry after an ambiguous store error) never
// stores it twice.
func eventID(incidentID string, seq uint64) string {
	return fmt.Sprintf("%s.%08d", incidentID, seq)
}

// Labels of a stored incident event: its sequence numbers in the
// incident's log and in the feed.
const (
	seqLabel     = "seq"
	feedSeqLabel = "feed_seq"
)

func encodeEvent(incidentID string, feedSeq uint64, e Event) (storage.Event, error) {
	payload, err := json.Marshal(e)
	if err != nil {
		return storage.Event{}, fmt.Errorf("encode incident event: %w", err)
	}
	return storage.Event{
		ID:      eventID(incidentID, e.Seq),
		Time:    e.Time,
		Kind:    KindPrefix + string(e.Type),
		Subject: incidentID,
		Labels:  map[string]string{seqLabel: strconv.FormatUint(e.Seq, 10), feedSeqLabel: strconv.FormatUint(feedSeq, 10)},
		Payload: payload,
	}, nil
}

// feedSeqOf is a stored event's feed sequence number; 0 for events
// written before the feed numbered them.
func feedSeqOf(se storage.Event) uint64 {
	n, _ := strconv.ParseUint(se.Labels[feedSeqLabel], 10, 64)
	return n
}

// DecodeEvent reads an incident event from the store.
func DecodeEvent(se storage.Event) (Event, error) {
	typ, ok := strings.CutPrefix(se.Kind, KindPrefix)
	if !ok || !eventTypes[EventType(typ)] {
		return Event{}, fmt.Errorf("event %s: kind %q is not an incident event", se.ID, se.Kind)
	}
	var e Event
	if err := json.Unmarshal(se.Payload, &e); err != nil {
		return Event{}, fmt.Errorf("event %s: %w", se.ID, err)
	}
	if e.Type != EventType(typ) {
		return Event{}, fmt.Errorf("event %s: payload type %q does not match kind %q", se.ID, e.Type, se.Kind)
	}
	if e.Seq == 0 {
		return Event{}, fmt.Errorf("event %s: no sequence number", se.ID)
	}
	return e, nil
}
