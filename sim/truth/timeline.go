package truth

import (
	"time"

	"github.com/aiops-dev/aiops/sim/chaos"
)

// Event kinds of the timeline.
const (
	FaultInjected   = "fault_injected"
	FaultEnded      = "fault_ended"
	HealthyLost     = "healthy_lost"
	HealthyRegained = "healthy_regained"
	ActionReceived  = "action_received"
)

// Event is one entry of the timeline.
type Event struct {
	Time time.Time `json:"time"`
	// Offset is the time since the simulation started.
	Offset chaos.Duration `json:"offset"`
	Step   int            `json:"step"`
	Kind   string         `json:"kind"`
	Fault  *FaultRef      `json:"fault,omitempty"`
	Action *ActionRef     `json:"action,omitempty"`
	// Checks are the failing checks when health is lost, and all checks
	// when it is regained.
	Checks []Check `json:"checks,omitempty"`
}

// FaultRef describes the fault of a fault event.
type FaultRef struct {
	ID        string    `json:"id"`
	Fault     string    `json:"fault"`
	Target    string    `json:"target"`
	Intensity float64   `json:"intensity"`
	Duration  string    `json:"duration"`
	Fix       chaos.Fix `json:"fix"`
	Reason    string    `json:"reason,omitempty"`
}

// ActionRef describes a control action as received.
type ActionRef struct {
	chaos.Action
	// Outcome is what the action did ("started", "changed", ...), or
	// empty when it was refused.
	Outcome string `json:"outcome,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Timeline is the ground truth of one run.
type Timeline struct {
	Start   time.Time `json:"start"`
	Seed    uint64    `json:"seed"`
	Healthy bool      `json:"healthy"`
	Events  []Event   `json:"events"`
}

// MaxEvents bounds the timeline; the oldest events go first.
const MaxEvents = 100000

// Recorder builds the timeline.
type Recorder struct {
	tl    Timeline
	known bool // whether health was judged yet
}

// NewRecorder starts a timeline for a run starting at start.
func NewRecorder(start time.Time, seed uint64) *Recorder {
	return &Recorder{tl: Timeline{Start: start, Seed: seed, Healthy: true}}
}

func (r *Recorder) add(e Event) {
	e.Offset = chaos.Duration(e.Time.Sub(r.tl.Start))
	if len(r.tl.Events) >= MaxEvents {
		r.tl.Events = append(r.tl.Events[:0], r.tl.Events[len(r.tl.Events)-MaxEvents/2:]...)
	}
	r.tl.Events = append(r.tl.Events, e)
}

func ref(f *chaos.Fault) *FaultRef {
	return &FaultRef{ID: f.ID, Fault: f.Fault, Target: f.Target, Intensity: f.Intensity,
		Duration: f.Duration.String(), Fix: f.Fix}
}

// FaultStarted records a fault taking effect.
func (r *Recorder) FaultStarted(at time.Time, step int, f *chaos.Fault) {
	r.add(Event{Time: at, Step: step, Kind: FaultInjected, Fault: ref(f)})
}

// FaultEnded records a fault ending (expired, stopped, or unable to start).
func (r *Recorder) FaultEnded(at time.Time, step int, f *chaos.Fault) {
	fr := ref(f)
	fr.Reason = f.EndReason
	r.add(Event{Time: at, Step: step, Kind: FaultEnded, Fault: fr})
}

// Action records a control action as received, with its outcome or the
// reason it was refused.
func (r *Recorder) Action(at time.Time, step int, a chaos.Action, outcome string, err error) {
	ar := &ActionRef{Action: a, Outcome: outcome}
	if err != nil {
		ar.Error = err.Error()
	}
	r.add(Event{Time: at, Step: step, Kind: ActionReceived, Action: ar})
}

// Health records a judgement; only changes make events.
func (r *Recorder) Health(at time.Time, step int, h Health) {
	if r.known && h.Healthy == r.tl.Healthy {
		return
	}
	first := !r.known
	r.known = true
	if first && h.Healthy {
		return
	}
	r.tl.Healthy = h.Healthy
	if h.Healthy {
		r.add(Event{Time: at, Step: step, Kind: HealthyRegained, Checks: h.Checks})
		return
	}
	var failing []Check
	for _, c := range h.Checks {
		if !c.OK {
			failing = append(failing, c)
		}
	}
	r.add(Event{Time: at, Step: step, Kind: HealthyLost, Checks: failing})
}

// Timeline returns a copy of the timeline so far.
func (r *Recorder) Timeline() Timeline {
	t := r.tl
	t.Events = append([]Event(nil), r.tl.Events...)
	return t
}
