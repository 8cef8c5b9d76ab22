// Package engine runs runbooks: it follows incidents through their event
// feed (and its own conditions), decides which runbook to run on which
// target under the safety rails, and runs each execution as an
// event-sourced state machine persisted in the event store, so that a
// restart loses no pending approval, cooldown or lease, and never runs a
// step twice blindly.
//
// Alerting does not import remediation: the engine reads the incident
// feed and calls the incident service through interfaces it declares
// here (Feed, Incidents).
package engine

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/prometheus/alertmanager/matcher/parse"
	amlabels "github.com/prometheus/alertmanager/pkg/labels"

	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/remediation/action"
	"github.com/aiops-dev/aiops/remediation/match"
	"github.com/aiops-dev/aiops/remediation/runbook"
	"github.com/aiops-dev/aiops/storage"
)

// Querier answers PromQL instant queries (verifications, guards,
// conditions and templates' query function).
type Querier interface {
	Query(ctx context.Context, expr string, at time.Time) (promql.Vector, error)
}

// Incidents is what the engine does with incidents (*incident.Manager).
type Incidents interface {
	Get(id string) (incident.Incident, error)
	List(q incident.Query) ([]incident.Incident, *incident.Cursor)
	RecordRunbook(ctx context.Context, id string, phase incident.RunbookPhase, rb incident.RunbookEvent, a incident.Action) (incident.Incident, error)
	ResolveByRunbook(ctx context.Context, id string, rb incident.RunbookEvent, a incident.Action) (incident.Incident, error)
	Escalate(ctx context.Context, id string, a incident.Action) (incident.Incident, error)
	AddNote(ctx context.Context, id, text string, a incident.Action) (incident.Incident, error)
}

// Feed is the incident event feed (*incident.Feed) and where it ends now
// (*incident.Manager's FeedHead).
type Feed interface {
	Tail(ctx context.Context, cursor string, limit int) ([]incident.FeedEvent, error)
}

// Clock is the engine's time: Now, and After to wait on it.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Config configures the engine.
type Config struct {
	// Runbooks are the runbooks, validated.
	Runbooks []runbook.Runbook
	// Shadow makes every runbook a shadow: decide, record, never act.
	Shadow bool
	// MaintenanceWindows apply to every runbook.
	MaintenanceWindows []runbook.Window
	// MaxRuns bounds the runs of all runbooks together.
	MaxRuns runbook.MaxRuns
	// ConditionInterval is how often condition triggers are evaluated.
	ConditionInterval time.Duration
	// History is how far back executions are read when the engine starts
	// (cooldowns, run limits and the learning record look no further).
	History time.Duration
	// Actor names the engine in incident timelines.
	Actor string
	// EscalateUnhandled escalates incidents whose alerts no runbook
	// handles: see UnhandledPolicy.
	EscalateUnhandled UnhandledPolicy
	// ExternalURL is what templates' externalURL returns.
	ExternalURL *url.URL
	// Standby starts the engine as a follower of the replica holding the
	// lease: it acts only while Lead runs (see ErrNotLeader).
	Standby bool
}

// UnhandledPolicy escalates the incident of a firing alert that matches
// one of Alerts when, After the engine saw it fire, it still fires and no
// run handles it: no runbook applies, or the rails refused them all. A
// live run started since shortly before the alert (relatedWindow) may be
// fixing its cause: the escalation waits while one is in progress and,
// once the last one ended, for After (at least settleAfterFix when it
// verified its fix), so an alert that outlives the fixes still reaches
// people. A fault without a fix reaches people this way
// without a runbook of its own. After 0 turns it off.
type UnhandledPolicy struct {
	After time.Duration
	// Alerts are Alertmanager matcher groups (`{severity="critical"}`);
	// an alert is covered when it matches every matcher of one of them.
	// Empty covers every alert.
	Alerts []string
}

// relatedWindow is how long before an alert a run may have started and
// still count as handling it: the alert may be a symptom of what an
// earlier alert's run is fixing.
const relatedWindow = 15 * time.Minute

// Deps are what the engine runs on.
type Deps struct {
	// Events keeps the executions (a storage.Store).
	Events storage.EventStore
	Query  Querier
	// Actions runs steps (an action.Registry behind action.Breakers).
	Actions action.Driver
	// Incidents and Feed may be nil: the engine then runs on conditions
	// and manual runs only.
	Incidents Incidents
	Feed      Feed
	// FeedHead returns the feed's current end.
	FeedHead func() string
	// Parser parses conditions to tell scalars from vectors; nil uses
	// Prometheus's default options.
	Parser parser.Parser
	// Secrets reads runbooks' secret references.
	Secrets runbook.SecretSource
	// Redact removes the drivers' own secrets from what is recorded; nil
	// leaves text as is.
	Redact     func(string) string
	Clock      Clock
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Errors of the engine's operations; the API maps them to statuses.
var (
	ErrNotFound  = errors.New("not found")
	ErrConflict  = errors.New("conflict")
	ErrForbidden = errors.New("forbidden")
	ErrInvalid   = errors.New("invalid")
	// ErrRefused is a run a safety rail refused; the error says which.
	ErrRefused = errors.New("refused")
)

// Engine runs runbooks.
type Engine struct {
	cfg      Config
	deps     Deps
	logger   *slog.Logger
	clock    Clock
	runbooks map[string]*runbook.Runbook
	order    []*runbook.Runbook
	set      *match.Set
	render   *runbook.Renderer
	parser   parser.Parser
	m        metrics

	// admitMu serializes decisions to start executions, so that two
	// alerts on one target cannot both pass the lease check.
	admitMu sync.Mutex
	// writeMu orders appends: an execution's sequence numbers never fork
	// and event times only grow.
	writeMu  sync.Mutex
	lastTime time.Time

	mu    sync.RWMutex
	execs map[string]*Execution
	kill  KillSwitch
	// runners are the executions being run: their cancel and wake-up.
	runners map[string]*runner
	stats   *learning
	// refused remembers recent refusals, so that one repeated every
	// evaluation is recorded once.
	refused map[string]time.Time
	// resolved holds the incidents a run resolved or found resolved.
	resolved map[string]bool
	// unhandled are alerts to escalate unless handled, by incident and
	// fingerprint.
	unhandled    map[string]pendingEscalation
	unhandledMat []amlabels.Matchers
	// ctx is Run's context; nil before Run. wg counts the runners.
	ctx context.Context
	wg  sync.WaitGroup

	// busy counts goroutines at work (runners, the feed, the condition
	// poller), sleeping those waiting on the clock; handled is the feed
	// cursor handled last. See Activity.
	busy, sleeping atomic.Int64
	handled        atomic.Pointer[string]

	// leading is set while Lead runs (Config.Standby); term is the
	// context Lead was given, whose Err may report the term over before
	// leading is cleared (a lease's deadline, passed while the process
	// was paused).
	leading atomic.Bool
	term    atomic.Pointer[context.Context]
}

// Activity says what the engine is doing, for harnesses that move its
// clock by hand (a simulation's time): Busy goroutines are at work
// (deciding, acting, querying, writing), Sleeping ones wait on the clock,
// and FeedBehind says incident events wait to be handled. The engine has
// settled when nothing is busy, the feed is handled, and the clock has as
// many pending timers as there are sleepers.
type Activity struct {
	Busy, Sleeping int
	FeedBehind     bool
}

// Activity returns what the engine is doing now.
func (e *Engine) Activity() Activity {
	a := Activity{Busy: int(e.busy.Load()), Sleeping: int(e.sleeping.Load())}
	if e.deps.Feed != nil && e.deps.FeedHead != nil {
		h := e.handled.Load()
		a.FeedBehind = h == nil || *h != e.deps.FeedHead()
	}
	return a
}

// sleep waits d on the clock, or until wake or ctx fires, accounted for
// in Activity. It reports whether the time passed.
func (e *Engine) sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	ch := e.clock.After(d)
	e.sleeping.Add(1)
	e.busy.Add(-1)
	defer func() {
		e.busy.Add(1)
		e.sleeping.Add(-1)
	}()
	select {
	case <-ctx.Done():
		return false
	case <-wake:
		return false
	case <-ch:
		return true
	}
}

type runner struct {
	cancel context.CancelCauseFunc
	wake   chan struct{}
}

// New checks the configuration and rebuilds every execution, the kill
// switch and the learning record from the store. Executions in progress
// resume when Run is called.
func New(ctx context.Context, cfg Config, deps Deps) (*Engine, error) {
	if deps.Events == nil || deps.Query == nil || deps.Actions == nil {
		return nil, errors.New("remediation engine: Deps.Events, Deps.Query and Deps.Actions are required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Clock == nil {
		deps.Clock = realClock{}
	}
	if deps.Redact == nil {
		deps.Redact = func(s string) string { return s }
	}
	if cfg.ConditionInterval <= 0 {
		cfg.ConditionInterval = 30 * time.Second
	}
	if cfg.History <= 0 {
		cfg.History = 7 * 24 * time.Hour
	}
	if cfg.Actor == "" {
		cfg.Actor = "remediation"
	}
	e := &Engine{
		cfg: cfg, deps: deps, logger: deps.Logger, clock: deps.Clock,
		runbooks: map[string]*runbook.Runbook{}, execs: map[string]*Execution{}, runners: map[string]*runner{},
		refused: map[string]time.Time{}, resolved: map[string]bool{}, stats: newLearning(),
		unhandled: map[string]pendingEscalation{},
	}
	for i, m := range cfg.EscalateUnhandled.Alerts {
		ms, err := parse.Matchers(m)
		if err != nil {
			return nil, fmt.Errorf("escalate_unhandled.alerts[%d]: %w", i, err)
		}
		e.unhandledMat = append(e.unhandledMat, ms)
	}
	for i := range cfg.Runbooks {
		rb := &cfg.Runbooks[i]
		if _, dup := e.runbooks[rb.Name]; dup {
			return nil, fmt.Errorf("runbook %q is defined twice", rb.Name)
		}
		e.runbooks[rb.Name] = rb
		e.order = append(e.order, rb)
	}
	set, err := match.New(e.order)
	if err != nil {
		return nil, err
	}
	e.set = set
	e.render = &runbook.Renderer{Query: deps.Query.Query, ExternalURL: cfg.ExternalURL}
	e.parser = deps.Parser
	if e.parser == nil {
		e.parser = parser.NewParser(parser.Options{EnableExperimentalFunctions: true})
	}
	e.m = newMetrics(e)
	if deps.Registerer != nil {
		if err := e.m.register(deps.Registerer); err != nil {
			return nil, err
		}
	}
	if err := e.rebuild(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// rebuild folds the executions of the last History and every kill switch
// event.
func (e *Engine) rebuild(ctx context.Context) error {
	since := e.clock.Now().Add(-e.cfg.History)
	logs := map[string][]Event{}
	err := e.scan(ctx, storage.EventQuery{KindPrefix: ExecKindPrefix, Start: since}, func(se storage.Event) {
		ev, err := decodeEvent(se)
		if err != nil {
			e.logger.Warn("Skipping undecodable execution event", "err", err)
			return
		}
		logs[se.Subject] = append(logs[se.Subject], ev)
	})
	if err != nil {
		return fmt.Errorf("remediation: read executions: %w", err)
	}
	err = e.scan(ctx, storage.EventQuery{KindPrefix: killSwitchKind}, func(se storage.Event) {
		var k KillSwitch
		if err := decodeJSON(se.Payload, &k); err != nil {
			e.logger.Warn("Skipping undecodable kill switch event", "err", err)
			return
		}
		e.kill = k
	})
	if err != nil {
		return fmt.Errorf("remediation: read the kill switch: %w", err)
	}
	for id, evs := range logs {
		sort.SliceStable(evs, func(i, j int) bool { return evs[i].Seq < evs[j].Seq })
		if evs[0].Type != EvCreated || evs[0].Seq != 1 {
			continue // its start fell out of the history
		}
		x := &Execution{}
		for i, ev := range evs {
			if i > 0 && ev.Seq == evs[i-1].Seq {
				continue
			}
			x.apply(id, ev)
		}
		e.execs[id] = x
		e.stats.observe(x)
		if last := evs[len(evs)-1].Time; last.After(e.lastTime) {
			e.lastTime = last
		}
	}
	active := 0
	for _, x := range e.execs {
		if !x.State.Terminal() {
			active++
		}
	}
	e.logger.Info("Remediation state loaded", "executions", len(e.execs), "active", active, "kill_switch", e.kill.Engaged, "runbooks", len(e.order))
	return nil
}

func (e *Engine) scan(ctx context.Context, q storage.EventQuery, f func(storage.Event)) error {
	q.Limit = storage.DefaultQueryLimit
	for {
		evs, err := e.deps.Events.QueryEvents(ctx, q)
		if err != nil {
			return err
		}
		for _, se := range evs {
			f(se)
		}
		if len(evs) < q.Limit {
			return nil
		}
		last := evs[len(evs)-1]
		q.AfterTime, q.AfterID = last.Time, last.ID
	}
}

// eventTime is now, but after every time written before, so that the
// store's (Time, ID) order is the order of writing. Callers hold writeMu.
func (e *Engine) eventTime() time.Time {
	t := e.clock.Now().UTC()
	if !t.After(e.lastTime) {
		t = e.lastTime.Add(time.Nanosecond)
	}
	e.lastTime = t
	return t
}

// appendEvent writes the execution's next event and folds it. The store
// is tried again with backoff (an action is never taken on an unrecorded
// decision): it gives up when ctx ends.
func (e *Engine) appendEvent(ctx context.Context, id string, ev Event) (Execution, error) {
	return e.appendEventIf(ctx, id, ev, nil)
}

// appendEventIf appends ev only if check accepts the execution as it is
// when the event is written: every append holds writeMu, so no other
// event lands between the check and the write. Decisions use it, so two
// that race (a double click, Approve and Deny at once) make one.
func (e *Engine) appendEventIf(ctx context.Context, id string, ev Event, check func(Execution) error) (Execution, error) {
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	e.mu.RLock()
	x := e.execs[id]
	var next uint64 = 1
	if x != nil {
		next = x.Version + 1
	}
	var cur Execution
	if x != nil && check != nil {
		cur = x.clone()
	}
	e.mu.RUnlock()
	if check != nil {
		if err := check(cur); err != nil {
			return cur, err
		}
	}
	ev.Seq, ev.Time = next, e.eventTime()
	se, err := encodeEvent(id, ev)
	if err != nil {
		return Execution{}, err
	}
	if err := e.store(ctx, []storage.Event{se}); err != nil {
		return Execution{}, fmt.Errorf("execution %s: record %s: %w", id, ev.Type, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if x == nil {
		x = &Execution{}
		e.execs[id] = x
	}
	x.apply(id, ev)
	if ev.Type == EvFinished {
		e.stats.observe(x)
	}
	return x.clone(), nil
}

// store appends with retries: the ids are deterministic, so a write
// repeated after an ambiguous failure is stored once.
func (e *Engine) store(ctx context.Context, evs []storage.Event) error {
	wait := 100 * time.Millisecond
	for {
		// Checked before every attempt: a deposed leader stops writing
		// at once, even while it retries.
		if err := e.writable(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		err := e.deps.Events.AppendEvents(ctx, evs)
		if err == nil {
			return nil
		}
		e.m.storeErrors.Inc()
		e.logger.Warn("Remediation events not stored; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(wait*2, 10*time.Second)
	}
}

// Runbooks returns the runbooks in their configured order.
func (e *Engine) Runbooks() []*runbook.Runbook { return slices.Clone(e.order) }

// Runbook returns a runbook by name.
func (e *Engine) Runbook(name string) (*runbook.Runbook, bool) {
	rb, ok := e.runbooks[name]
	return rb, ok
}

// Get returns an execution and its log.
func (e *Engine) Get(ctx context.Context, id string) (Execution, []Event, error) {
	e.mu.RLock()
	x := e.execs[id]
	e.mu.RUnlock()
	if x == nil {
		return Execution{}, nil, fmt.Errorf("%w: execution %s", ErrNotFound, id)
	}
	var evs []Event
	err := e.scan(ctx, storage.EventQuery{KindPrefix: ExecKindPrefix, Subject: id}, func(se storage.Event) {
		if ev, err := decodeEvent(se); err == nil {
			evs = append(evs, ev)
		}
	})
	if err != nil {
		return Execution{}, nil, fmt.Errorf("execution %s: read its log: %w", id, err)
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Seq < evs[j].Seq })
	evs = slices.CompactFunc(evs, func(a, b Event) bool { return a.Seq == b.Seq })
	e.mu.RLock()
	defer e.mu.RUnlock()
	return x.clone(), evs, nil
}

// Filter selects executions for List. Zero fields do not filter.
type Filter struct {
	States     []State
	Runbook    string
	IncidentID string
	Limit      int
}

// List returns executions newest first.
func (e *Engine) List(f Filter) []Execution {
	e.mu.RLock()
	defer e.mu.RUnlock()
	var out []Execution
	for _, x := range e.execs {
		if len(f.States) > 0 && !slices.Contains(f.States, x.State) ||
			f.Runbook != "" && x.Runbook != f.Runbook ||
			f.IncidentID != "" && x.Trigger.IncidentID != f.IncidentID {
			continue
		}
		out = append(out, x.clone())
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.After(out[j].CreatedAt)
		}
		return out[i].ID > out[j].ID
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out
}

// execID names an execution: derived from what triggered it, so that the
// same alert seen twice (a replayed feed, a restart) names the same
// execution; random for manual runs.
func execID(parts ...string) string {
	if len(parts) == 0 {
		var b [8]byte
		rand.Read(b[:])
		return "ex-" + hex.EncodeToString(b[:])
	}
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return "ex-" + hex.EncodeToString(h.Sum(nil)[:8])
}
