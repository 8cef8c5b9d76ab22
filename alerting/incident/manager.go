// Package incident turns alert groups into incidents.
//
// The Manager is a group sink of the embedded Alertmanager
// (alerting.Deps.GroupSinks): it sees every alert group the dispatcher
// flushes, firing and resolved, and keeps one incident per group episode.
// Each incident is an append-only log of events in the event store (Kind
// "incident.<type>", Subject = the incident id, one sequence number per
// event), and its current state is the fold of that log: rebuilt from the
// store when the Manager starts, kept current as events are appended.
//
// Lifecycle: open → acknowledged → resolved. An incident resolves by hand
// or by itself once all its alerts have resolved and none has fired again
// for Config.AutoResolveAfter. A new firing alert in the group of a
// resolved incident reopens it when it resolved less than
// Config.ReopenWindow ago, and opens a new incident otherwise. See
// docs/API.md for the rules in full.
//
// The Manager's actions (Acknowledge, Resolve, Assign, AddNote, Escalate,
// RecordRunbook, ResolveByRunbook, RefreshRootCauses) and the Silencer's are the service
// the REST API, the Slack app and remediation all call; what is valid and
// what gets recorded is decided here. Feed reads every incident's events
// in the order they were committed, after a cursor that survives
// restarts, so that consumers follow incidents without polling an API.
package incident

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/notify"

	"github.com/aiops-dev/aiops/storage"
)

// Errors of the Manager's actions; the REST API maps them to 404 and 409.
var (
	ErrNotFound = errors.New("incident not found")
	// ErrResolved refuses an action that needs an unresolved incident
	// (acknowledge, escalate).
	ErrResolved = errors.New("incident is resolved")
	// ErrStale refuses an action whose expected version is not the
	// incident's current one.
	ErrStale = errors.New("incident has changed")
	// ErrInvalid marks an action with invalid arguments.
	ErrInvalid = errors.New("invalid")
	// ErrFiring refuses to resolve an incident as fixed while some of its
	// alerts still fire (ResolveByRunbook).
	ErrFiring = errors.New("incident has firing alerts")
	// ErrNoRootCauser refuses a root-cause refresh when the Manager has
	// no RootCauser.
	ErrNoRootCauser = errors.New("incident: no root-cause ranking configured")
)

// Deps are what the Manager runs on.
type Deps struct {
	// Events keeps the incident logs (a storage.Store).
	Events storage.EventStore
	// RootCauses ranks root causes when an incident opens and when asked;
	// nil leaves incidents without a ranking.
	RootCauses RootCauser
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Standby starts the Manager as a follower of the replica holding
	// the lease: it writes only while Lead runs (see ErrNotLeader).
	Standby bool
}

// Manager keeps the incidents.
type Manager struct {
	cfg    Config
	events storage.EventStore
	rc     RootCauser
	logger *slog.Logger
	now    func() time.Time
	m      metrics

	// writeMu orders every change: one writer decides, appends to the
	// store and installs the new state at a time, so the sequence numbers
	// of an incident never fork and checks (is it resolved? which version
	// is it?) hold until the write is done. Readers only take mu.
	writeMu sync.Mutex
	// dirty holds incidents whose last append failed: the store may or may
	// not have the events, so they are read back before the next write.
	dirty map[string]bool
	// lastTime is the time of the last change's events (eventTime).
	lastTime time.Time
	// written is the feed position of the last event known to be stored,
	// and feedDirty says an append failed since: the feed's tail is read
	// back before the next write, so that sequence numbers follow what
	// the store holds.
	written   position
	feedDirty bool

	mu        sync.RWMutex
	incidents map[string]*state
	// byGroup is the latest incident of each receiver+group key.
	byGroup map[string]string
	// order holds all incidents sorted by (OpenedAt, ID), for listing with
	// a cursor.
	order []*state
	// active holds the incidents not resolved, for the deadline checks.
	active map[string]bool
	// head is written as readers see it; changed is closed (and replaced)
	// whenever events are stored, to wake the feed's readers.
	head    position
	changed chan struct{}

	// loaded is set once every incident has been read from the store;
	// until then changes fail retryably (see New).
	loaded atomic.Bool
	// standby is Deps.Standby; leading is set while Lead runs.
	standby bool
	leading atomic.Bool
	// term is the context Lead was given: its Err may report the term
	// over (the lease's deadline passed while the process was paused)
	// before leading is cleared.
	term atomic.Pointer[context.Context]

	// testHookPrepared, when set, runs in HandleGroup once the group is
	// prepared, before the write lock is taken.
	testHookPrepared func()
}

type metrics struct {
	incidents   *prometheus.GaugeVec
	events      *prometheus.CounterVec
	storeErrors prometheus.Counter
}

// New checks cfg, reads every incident event from the store and folds
// them into the current state of every incident. A store that is
// unavailable (storage.ErrUnavailable: ClickHouse down when aiops starts)
// is read again by Run until it answers; meanwhile the Manager lists no
// incidents and its changes fail retryably, so that the Alertmanager
// hands the groups again.
func New(ctx context.Context, cfg Config, deps Deps) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Events == nil {
		return nil, errors.New("incident: Deps.Events is required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	mg := &Manager{
		cfg: cfg, events: deps.Events, rc: deps.RootCauses, logger: deps.Logger, now: deps.Now, standby: deps.Standby,
		dirty: map[string]bool{}, incidents: map[string]*state{}, byGroup: map[string]string{}, active: map[string]bool{},
		changed: make(chan struct{}),
		m: metrics{
			incidents: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "aiops_incidents", Help: "Incidents by status."}, []string{"status"}),
			events:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aiops_incident_events_total", Help: "Incident events appended, by type."}, []string{"type"}),
			storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "aiops_incident_store_errors_total", Help: "Incident events the store did not take.",
			}),
		},
	}
	if deps.Registerer != nil {
		for _, c := range []prometheus.Collector{mg.m.incidents, mg.m.events, mg.m.storeErrors} {
			if err := deps.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("incident: register metrics: %w", err)
			}
		}
	}
	if err := mg.rebuild(ctx); err != nil {
		if !errors.Is(err, storage.ErrUnavailable) {
			return nil, err
		}
		mg.logger.Warn("Incidents not loaded: the store is unavailable; retrying", "err", err)
		return mg, nil
	}
	mg.loaded.Store(true)
	return mg, nil
}

// load reads the incidents after New could not, or again when this
// replica takes the lease (Lead), holding every lock, as New's own
// reading is the only goroutine.
func (mg *Manager) load(ctx context.Context) error {
	mg.writeMu.Lock()
	defer mg.writeMu.Unlock()
	mg.mu.Lock()
	defer mg.mu.Unlock()
	mg.incidents, mg.byGroup, mg.active, mg.order = map[string]*state{}, map[string]string{}, map[string]bool{}, nil
	mg.dirty, mg.feedDirty = map[string]bool{}, false
	mg.m.incidents.Reset()
	if err := mg.rebuild(ctx); err != nil {
		return err
	}
	mg.loaded.Store(true)
	close(mg.changed) // the feed's readers waiting
	mg.changed = make(chan struct{})
	return nil
}

// checkLoaded refuses changes until the incidents have been read.
func (mg *Manager) checkLoaded() error {
	if mg.loaded.Load() {
		return nil
	}
	return fmt.Errorf("incidents not loaded yet: %w", storage.ErrUnavailable)
}

// rebuild folds every incident event in the store.
func (mg *Manager) rebuild(ctx context.Context) error {
	logs := map[string][]Event{}
	mg.written = position{}
	q := storage.EventQuery{KindPrefix: KindPrefix, Limit: storage.DefaultQueryLimit}
	for {
		evs, err := mg.events.QueryEvents(ctx, q)
		if err != nil {
			return fmt.Errorf("incident: read incident events: %w", err)
		}
		for _, se := range evs {
			mg.written = mg.written.after(se)
			e, err := DecodeEvent(se)
			if err != nil {
				mg.logger.Warn("Skipping undecodable incident event", "err", err)
				continue
			}
			logs[se.Subject] = append(logs[se.Subject], e)
		}
		if len(evs) < q.Limit {
			break
		}
		last := evs[len(evs)-1]
		q.AfterTime, q.AfterID = last.Time, last.ID
	}
	// Events are read in (Time, ID) order, so the last one read holds the
	// latest time: every change from now on is written after it.
	mg.lastTime, mg.head = mg.written.t, mg.written
	for id, evs := range logs {
		st, ok := mg.fold(id, evs)
		if ok {
			mg.install(st)
		}
	}
	mg.logger.Info("Incidents loaded", "incidents", len(mg.incidents), "active", len(mg.active))
	return nil
}

// fold orders an incident's events by sequence number and folds them. An
// incident whose log does not start with "opened" (its first events fell
// out of the store's retention) is left out.
func (mg *Manager) fold(id string, evs []Event) (*state, bool) {
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Seq < evs[j].Seq })
	if len(evs) == 0 || evs[0].Seq != 1 || evs[0].Type != EventOpened {
		mg.logger.Warn("Skipping incident whose log does not start with its opening", "incident", id)
		return nil, false
	}
	st := newState(id, mg.cfg.ServiceLabels)
	for i, e := range evs {
		if i > 0 && e.Seq == evs[i-1].Seq {
			continue // the same event read twice
		}
		if e.Seq != st.inc.Version+1 {
			mg.logger.Warn("Incident log has a gap", "incident", id, "after", st.inc.Version, "next", e.Seq)
		}
		st.apply(e)
	}
	st.materialize()
	return st, true
}

// install makes st the current state of its incident. Callers hold mu
// for writing, or are the only goroutine (rebuild).
func (mg *Manager) install(st *state) {
	st.materialize() // done before taking mu, where it is costly
	id := st.inc.ID
	if old := mg.incidents[id]; old != nil {
		mg.m.incidents.WithLabelValues(string(old.inc.Status)).Dec()
		i := mg.orderIndex(old.inc.OpenedAt, id)
		if i < len(mg.order) && mg.order[i].inc.ID == id {
			mg.order[i] = st
		}
	} else {
		i := mg.orderIndex(st.inc.OpenedAt, id)
		mg.order = slices.Insert(mg.order, i, st)
	}
	mg.incidents[id] = st
	mg.m.incidents.WithLabelValues(string(st.inc.Status)).Inc()
	if st.inc.Status == StatusResolved {
		delete(mg.active, id)
	} else {
		mg.active[id] = true
	}
	gk := groupIndexKey(st.inc.Receiver, st.inc.GroupKey)
	if cur := mg.incidents[mg.byGroup[gk]]; cur == nil || !before(st.inc.OpenedAt, id, cur.inc.OpenedAt, cur.inc.ID) {
		mg.byGroup[gk] = id
	}
}

// orderIndex is the position of (t, id) in order.
func (mg *Manager) orderIndex(t time.Time, id string) int {
	return sort.Search(len(mg.order), func(i int) bool {
		return !before(mg.order[i].inc.OpenedAt, mg.order[i].inc.ID, t, id)
	})
}

func before(t1 time.Time, id1 string, t2 time.Time, id2 string) bool {
	if !t1.Equal(t2) {
		return t1.Before(t2)
	}
	return id1 < id2
}

func groupIndexKey(receiver, groupKey string) string { return receiver + "\x00" + groupKey }

// tx is one change being prepared: events folded into a private copy of
// the incident, installed only once the store has them.
type tx struct {
	mg  *Manager
	st  *state
	evs []Event
	// now is the clock's time when the change was decided; at is the time
	// of its events (eventTime), taken with the first one.
	now, at time.Time
}

// newTx starts a change of st decided at now. Callers hold writeMu.
func (mg *Manager) newTx(st *state, now time.Time) *tx {
	return &tx{mg: mg, st: st, now: now}
}

// add appends an event to the change: the incident's next sequence
// number, the change's time.
func (t *tx) add(e Event) {
	if t.at.IsZero() {
		t.at = t.mg.eventTime(t.now)
	}
	e.Seq = t.st.inc.Version + 1
	e.Time = t.at
	t.st.apply(e)
	t.evs = append(t.evs, e)
}

// eventTime is the time of a change's events: the clock's, but always
// after the previous change's, so that the store's (Time, ID) order is the
// order of the changes even when the clock goes backwards or two changes
// fall in the same nanosecond (the events of one change share their time
// and are ordered by their IDs). A time taken for a change that is then
// not written is skipped. Callers hold writeMu.
func (mg *Manager) eventTime(now time.Time) time.Time {
	t := now.UTC()
	if !t.After(mg.lastTime) {
		t = mg.lastTime.Add(time.Nanosecond)
	}
	mg.lastTime = t
	return t
}

// copyState returns a deep enough copy of st for a tx to fold into.
func copyState(st *state) *state {
	c := &state{inc: st.inc, alerts: make(map[string]*Alert, len(st.alerts)), serviceLabels: st.serviceLabels,
		stale: st.stale, overLimitStart: st.overLimitStart, steps: maps.Clone(st.steps)}
	for k, a := range st.alerts {
		a2 := *a
		c.alerts[k] = &a2
	}
	c.inc.Alerts = slices.Clone(st.inc.Alerts)
	c.inc.Links = slices.Clone(st.inc.Links)
	c.inc.Runbooks = slices.Clone(st.inc.Runbooks)
	c.inc.Services = slices.Clone(st.inc.Services)
	return c
}

// commit appends the tx's events and installs its state. Callers hold
// writeMu.
func (mg *Manager) commit(ctx context.Context, t *tx) error {
	if len(t.evs) == 0 {
		return nil
	}
	if mg.standby && !mg.leading.Load() {
		// The term ended while the change was decided.
		return ErrNotLeader
	}
	id := t.st.inc.ID
	out := make([]storage.Event, len(t.evs))
	for i, e := range t.evs {
		se, err := encodeEvent(id, mg.written.seq+uint64(i)+1, e)
		if err != nil {
			return err
		}
		out[i] = se
	}
	if err := mg.events.AppendEvents(ctx, out); err != nil {
		mg.m.storeErrors.Inc()
		mg.dirty[id] = true
		mg.feedDirty = true
		return fmt.Errorf("incident %s: store events: %w", id, err)
	}
	for _, se := range out {
		mg.written = mg.written.after(se)
	}
	t.st.materialize()
	mg.mu.Lock()
	mg.install(t.st)
	mg.advanceHead()
	mg.mu.Unlock()
	for _, e := range t.evs {
		mg.m.events.WithLabelValues(string(e.Type)).Inc()
	}
	return nil
}

// advanceHead publishes written to the feed's readers and wakes those
// waiting. Callers hold writeMu and mu.
func (mg *Manager) advanceHead() {
	if mg.head == mg.written {
		return
	}
	mg.head = mg.written
	close(mg.changed)
	mg.changed = make(chan struct{})
}

// resyncDirty reads back the incidents whose last append failed, so that
// the next sequence numbers (the incident's and the feed's) follow what
// the store really holds. Callers hold writeMu.
func (mg *Manager) resyncDirty(ctx context.Context) error {
	if mg.feedDirty {
		// Whatever the failed appends stored follows the last event known
		// to be stored.
		q := storage.EventQuery{KindPrefix: KindPrefix, AfterTime: mg.written.t, AfterID: mg.written.id, Limit: storage.DefaultQueryLimit}
		for {
			evs, err := mg.events.QueryEvents(ctx, q)
			if err != nil {
				return fmt.Errorf("incident: read back the feed after a failed write: %w", err)
			}
			for _, se := range evs {
				mg.written = mg.written.after(se)
			}
			if len(evs) < q.Limit {
				break
			}
			q.AfterTime, q.AfterID = mg.written.t, mg.written.id
		}
		mg.feedDirty = false
		mg.mu.Lock()
		mg.advanceHead()
		mg.mu.Unlock()
	}
	for id := range mg.dirty {
		evs, err := mg.readLog(ctx, id)
		if err != nil {
			return fmt.Errorf("incident %s: read back after a failed write: %w", id, err)
		}
		delete(mg.dirty, id)
		if st, ok := mg.fold(id, evs); ok {
			mg.mu.Lock()
			mg.install(st)
			mg.mu.Unlock()
		}
	}
	return nil
}

// readLog reads one incident's events from the store, in sequence order.
func (mg *Manager) readLog(ctx context.Context, id string) ([]Event, error) {
	var out []Event
	q := storage.EventQuery{KindPrefix: KindPrefix, Subject: id, Limit: storage.DefaultQueryLimit}
	for {
		evs, err := mg.events.QueryEvents(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, se := range evs {
			e, err := DecodeEvent(se)
			if err != nil {
				mg.logger.Warn("Skipping undecodable incident event", "err", err)
				continue
			}
			out = append(out, e)
		}
		if len(evs) < q.Limit {
			break
		}
		last := evs[len(evs)-1]
		q.AfterTime, q.AfterID = last.Time, last.ID
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return slices.CompactFunc(out, func(a, b Event) bool { return a.Seq == b.Seq }), nil
}

// Group is one alert group as the Alertmanager dispatcher flushes it.
type Group struct {
	Key      string
	Receiver string
	Labels   model.LabelSet
	Alerts   []*alert.Alert
}

// Notify implements notify.Notifier: the Manager is a group sink. A group
// it cannot store is retried by the notification pipeline.
func (mg *Manager) Notify(ctx context.Context, alerts ...*alert.Alert) notify.NotifyVerdict {
	key, ok := notify.GroupKey(ctx)
	if !ok || key == "" {
		return notify.Unrecoverable(errors.New("incident: no group key in the notification context"), notify.MissingContextReason)
	}
	receiver, _ := notify.ReceiverName(ctx)
	gl, _ := notify.GroupLabels(ctx)
	if err := mg.HandleGroup(ctx, Group{Key: key, Receiver: receiver, Labels: gl, Alerts: alerts}); err != nil {
		return notify.Retry(0, err, notify.DefaultReason)
	}
	return notify.Success()
}

// HandleGroup records what an alert group says:
//
//   - no incident for the group yet: a firing alert opens one; a group with
//     only resolved alerts is ignored;
//   - an open or acknowledged incident: alerts that fire for the first
//     time, or again, are recorded as firing; alerts Alertmanager reports
//     resolved, and firing alerts missing from the group (silenced or
//     inhibited since) as resolved; with AutoResolveAfter 0 the incident
//     resolves as soon as nothing fires;
//   - a resolved incident: a new firing alert (one the incident does not
//     have as firing with the same start) reopens it within ReopenWindow
//     of its resolution, else opens a new incident; repeats of alerts it
//     already has change nothing, so resolving while an alert still fires
//     sticks.
//
// An incident records at most Config.MaxAlerts alerts (firing or
// resolved), the earliest started first; it counts the group's other
// firing alerts (AlertsOverLimit) without recording them, and does not
// resolve by itself while any of them fires.
//
// Replaying a group changes nothing: every event follows from a
// difference between the group and the incident's state.
//
// The group's alerts are read and sorted before the write lock is taken,
// which is held only to compare them with the incident and store the
// (at most MaxAlerts and a few) events, so that a storm of alerts holds
// up other changes for little time.
func (mg *Manager) HandleGroup(ctx context.Context, g Group) error {
	if len(mg.cfg.Receivers) > 0 && !slices.Contains(mg.cfg.Receivers, g.Receiver) {
		return nil
	}
	if err := mg.checkWritable(); err != nil {
		return err
	}
	p, err := prepareGroup(ctx, g, mg.now())
	if err != nil {
		return err
	}
	if mg.testHookPrepared != nil {
		mg.testHookPrepared()
	}
	var (
		rc       *RootCauses
		computed bool
	)
	for {
		mg.writeMu.Lock()
		if err := mg.resyncDirty(ctx); err != nil {
			mg.writeMu.Unlock()
			return err
		}
		now := mg.now()
		t, opens, rcStart := mg.planGroup(p, now, rc)
		if opens && !computed && mg.rc != nil && mg.cfg.MaxRootCauses > 0 {
			// Ranking reads the store; do it without holding up every
			// other change, then plan again: the group may have been
			// handled meanwhile.
			mg.writeMu.Unlock()
			rc = rankRootCauses(ctx, mg.rc, rcStart, now, mg.cfg.MaxRootCauses, time.Duration(mg.cfg.RootCauseTimeout), now)
			computed = true
			continue
		}
		var err error
		if t != nil {
			err = mg.commit(ctx, t)
		}
		mg.writeMu.Unlock()
		return err
	}
}

// preparedGroup is a group's alerts as incidents see them, firing and
// resolved, each ordered by start, then fingerprint.
type preparedGroup struct {
	key, receiver string
	labels        model.LabelSet
	firing        []Alert
	resolved      []Alert
}

func prepareGroup(ctx context.Context, g Group, now time.Time) (*preparedGroup, error) {
	p := &preparedGroup{key: g.Key, receiver: g.Receiver, labels: g.Labels}
	for i, a := range g.Alerts {
		if i%1024 == 1023 && ctx.Err() != nil {
			return nil, fmt.Errorf("incident: group %s: %w", g.Key, ctx.Err())
		}
		if a.ResolvedAt(now) {
			p.resolved = append(p.resolved, alertOf(a, AlertResolved))
		} else {
			p.firing = append(p.firing, alertOf(a, AlertFiring))
		}
	}
	byStart := func(a, b Alert) int {
		if c := a.StartsAt.Compare(b.StartsAt); c != 0 {
			return c
		}
		return strings.Compare(a.Fingerprint, b.Fingerprint)
	}
	slices.SortFunc(p.firing, byStart)
	slices.SortFunc(p.resolved, byStart)
	return p, nil
}

// planGroup decides the events a group brings. It returns a nil tx when
// there is nothing to record; opens reports a new incident, for which
// root causes ranked from rcStart are wanted. Callers hold writeMu.
func (mg *Manager) planGroup(g *preparedGroup, now time.Time, rc *RootCauses) (t *tx, opens bool, rcStart time.Time) {
	gk := groupIndexKey(g.receiver, g.key)
	mg.mu.RLock()
	cur := mg.incidents[mg.byGroup[gk]]
	mg.mu.RUnlock()

	isNew := func(a Alert) bool {
		if cur == nil {
			return true
		}
		old := cur.alerts[a.Fingerprint]
		if old == nil {
			// One over the limit when last seen is not new.
			return a.StartsAt.After(cur.overLimitStart)
		}
		return old.Status != AlertFiring || !old.StartsAt.Equal(a.StartsAt)
	}
	var fresh []Alert
	for _, a := range g.firing {
		if isNew(a) {
			fresh = append(fresh, a)
		}
	}
	limit := mg.cfg.MaxAlerts
	if limit <= 0 {
		limit = math.MaxInt
	}

	reopen := cur != nil && cur.inc.Status == StatusResolved && len(fresh) > 0 &&
		mg.cfg.ReopenWindow > 0 && now.Sub(*cur.inc.ResolvedAt) <= time.Duration(mg.cfg.ReopenWindow)
	if cur == nil || cur.inc.Status == StatusResolved && len(fresh) > 0 && !reopen {
		if len(fresh) == 0 {
			return nil, false, time.Time{}
		}
		first := fresh[0] // the earliest started
		rcStart = first.StartsAt.Add(-time.Duration(mg.cfg.RootCauseLookback))
		t = mg.newTx(newState(mg.newID(gk, first), mg.cfg.ServiceLabels), now)
		t.add(Event{Type: EventOpened, Actor: SystemActor, RootCauses: rc, Opened: &Opened{
			GroupKey: g.key, Receiver: g.receiver, GroupLabels: labelMap(g.labels),
		}})
		for i := range g.firing[:min(len(g.firing), limit)] {
			t.add(Event{Type: EventAlertFiring, Alert: &g.firing[i]})
		}
		mg.noteOverLimit(t, g.firing)
		return t, true, rcStart
	}

	t = mg.newTx(copyState(cur), now)
	if reopen {
		t.add(Event{Type: EventReopened, Actor: SystemActor, Reason: fmt.Sprintf(
			"new firing alert within the reopen window (%s) of the resolution", mg.cfg.ReopenWindow)})
	}
	unresolved := t.st.inc.Status != StatusResolved
	room := limit - len(t.st.alerts)
	seen := make(map[string]bool, len(g.firing)+len(g.resolved))
	for i := range g.firing {
		a := &g.firing[i]
		seen[a.Fingerprint] = true
		if !isNew(*a) {
			continue
		}
		if t.st.alerts[a.Fingerprint] == nil {
			if room <= 0 {
				continue // counted by noteOverLimit
			}
			room--
		}
		t.add(Event{Type: EventAlertFiring, Alert: a})
	}
	for _, a := range g.resolved {
		seen[a.Fingerprint] = true
		old := t.st.alerts[a.Fingerprint]
		switch {
		case old != nil && old.Status == AlertFiring:
			a.Reason = "resolved"
			t.add(Event{Type: EventAlertResolved, Alert: &a})
		case old == nil && unresolved && room > 0:
			// It fired and resolved between two notifications: it still
			// belongs to the incident's story.
			room--
			f := a
			f.Status, f.EndsAt = AlertFiring, nil
			t.add(Event{Type: EventAlertFiring, Alert: &f})
			a.Reason = "resolved"
			t.add(Event{Type: EventAlertResolved, Alert: &a})
		}
	}
	// Alertmanager sends every alert of a group in each notification,
	// except those muted since: a firing alert that is missing stopped
	// being reported.
	for _, fp := range slices.Sorted(maps.Keys(t.st.alerts)) {
		old := t.st.alerts[fp]
		if seen[fp] || old.Status != AlertFiring {
			continue
		}
		a := *old
		end := now.UTC()
		a.Status, a.EndsAt, a.Reason = AlertResolved, &end, "muted"
		t.add(Event{Type: EventAlertResolved, Alert: &a})
	}
	if t.st.inc.Status != StatusResolved {
		mg.noteOverLimit(t, g.firing)
	}
	if mg.cfg.AutoResolveAfter == 0 {
		mg.autoResolve(t, now)
	}
	if len(t.evs) == 0 {
		return nil, false, time.Time{}
	}
	return t, false, time.Time{}
}

// noteOverLimit records how many of the group's firing alerts the
// incident does not record, when that changes or a later one is left
// out.
func (mg *Manager) noteOverLimit(t *tx, firing []Alert) {
	n := 0
	var latest time.Time
	for _, a := range firing {
		if t.st.alerts[a.Fingerprint] == nil {
			n++
			if a.StartsAt.After(latest) {
				latest = a.StartsAt
			}
		}
	}
	st := t.st
	if n > 0 && st.overLimitStart.After(latest) {
		latest = st.overLimitStart
	}
	if n == 0 {
		latest = time.Time{}
	}
	if n == st.inc.AlertsOverLimit && latest.Equal(st.overLimitStart) {
		return
	}
	t.add(Event{Type: EventAlertsOverLimit, Actor: SystemActor, OverLimit: &OverLimit{Alerts: n, LatestStart: latest}})
	if n > 0 {
		mg.logger.Warn("Incident records at most incidents.max_alerts alerts; the rest of its group's firing alerts are counted, not recorded",
			"incident", st.inc.ID, "max_alerts", mg.cfg.MaxAlerts, "over_limit", n)
	}
}

// autoResolve adds the resolution when the incident's quiet period is
// over.
func (mg *Manager) autoResolve(t *tx, now time.Time) {
	inc := &t.st.inc
	if inc.Status == StatusResolved || inc.FiringAlerts > 0 || inc.AlertsOverLimit > 0 || inc.AlertsResolvedAt == nil {
		return
	}
	if now.Sub(*inc.AlertsResolvedAt) < time.Duration(mg.cfg.AutoResolveAfter) {
		return
	}
	reason := "all alerts resolved"
	if mg.cfg.AutoResolveAfter > 0 {
		reason += " and quiet for " + mg.cfg.AutoResolveAfter.String()
	}
	t.add(Event{Type: EventResolved, Actor: SystemActor, Reason: reason})
}

// newID derives an incident id from its group and the alert that opened
// it, so that the same notification replayed names the same incident.
func (mg *Manager) newID(gk string, first Alert) string {
	sum := sha256.Sum256([]byte(gk + "\x00" + first.Fingerprint + "\x00" + strconv.FormatInt(first.StartsAt.UnixNano(), 10)))
	id := "inc-" + hex.EncodeToString(sum[:8])
	mg.mu.RLock()
	defer mg.mu.RUnlock()
	for n := 2; mg.incidents[id] != nil || mg.dirty[id]; n++ {
		id = fmt.Sprintf("inc-%s-%d", hex.EncodeToString(sum[:8]), n)
	}
	return id
}

func alertOf(a *alert.Alert, status string) Alert {
	out := Alert{
		Fingerprint:  a.Fingerprint().String(),
		Status:       status,
		Labels:       labelMap(a.Labels),
		Annotations:  labelMap(a.Annotations),
		StartsAt:     a.StartsAt.UTC(),
		GeneratorURL: a.GeneratorURL,
		Expr:         exprOf(a.GeneratorURL),
	}
	if status == AlertResolved {
		end := a.EndsAt.UTC()
		out.EndsAt = &end
	}
	return out
}

func labelMap(ls model.LabelSet) map[string]string {
	m := make(map[string]string, len(ls))
	for k, v := range ls {
		m[string(k)] = string(v)
	}
	return m
}

// Run reads the incidents if New could not, then checks the
// auto-resolve and escalation deadlines every CheckInterval until ctx is
// done.
func (mg *Manager) Run(ctx context.Context) error {
	wait := time.Second
	for !mg.loaded.Load() {
		err := mg.load(ctx)
		if err == nil {
			mg.logger.Info("Incidents loaded after the store became available")
			break
		}
		mg.logger.Warn("Incidents not loaded: the store is unavailable; retrying", "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
	tick := time.NewTicker(time.Duration(mg.cfg.CheckInterval))
	defer tick.Stop()
	// A follower reads what the leader stores; never fires without
	// Standby.
	var follow <-chan time.Time
	if mg.standby {
		ft := time.NewTicker(followInterval)
		defer ft.Stop()
		follow = ft.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-follow:
			if err := mg.follow(ctx); err != nil {
				mg.logger.Warn("Incidents not brought up to date", "err", err)
			}
		case <-tick.C:
			if !mg.Leading() {
				continue
			}
			if err := mg.CheckDeadlines(ctx); err != nil {
				mg.logger.Warn("Incident deadlines not checked", "err", err)
			}
		}
	}
}

// CheckDeadlines resolves the incidents whose quiet period is over and
// escalates those unacknowledged for EscalateAfter, once.
func (mg *Manager) CheckDeadlines(ctx context.Context) error {
	if err := mg.checkWritable(); err != nil {
		return err
	}
	mg.writeMu.Lock()
	defer mg.writeMu.Unlock()
	if err := mg.resyncDirty(ctx); err != nil {
		return err
	}
	now := mg.now()
	mg.mu.RLock()
	ids := slices.Sorted(maps.Keys(mg.active))
	mg.mu.RUnlock()
	var errs []error
	for _, id := range ids {
		mg.mu.RLock()
		cur := mg.incidents[id]
		mg.mu.RUnlock()
		if cur.inc.FiringAlerts > 0 && (mg.cfg.EscalateAfter == 0 || cur.inc.EscalationLevel > 0 || cur.inc.Status != StatusOpen) {
			continue // no deadline can have passed
		}
		t := mg.newTx(copyState(cur), now)
		mg.autoResolve(t, now)
		inc := &t.st.inc
		if after := time.Duration(mg.cfg.EscalateAfter); after > 0 && inc.Status == StatusOpen &&
			inc.EscalationLevel == 0 && now.Sub(inc.OpenedAt) >= after {
			t.add(Event{Type: EventEscalated, Actor: SystemActor, Level: 1,
				Reason: "not acknowledged within " + mg.cfg.EscalateAfter.String()})
		}
		if err := mg.commit(ctx, t); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Action is who does something to an incident, and on which version.
type Action struct {
	Actor string
	// Comment goes with the action; at most MaxCommentBytes.
	Comment string
	// IfVersion, when not 0, must be the incident's current version
	// (the REST API's If-Match), or the action fails with ErrStale.
	IfVersion uint64
}

// change runs one human (or remediation) action under the write lock:
// decide returns the events to add to t, or an error.
func (mg *Manager) change(ctx context.Context, id string, a Action, decide func(t *tx) error) (Incident, error) {
	if len(a.Comment) > MaxCommentBytes {
		return Incident{}, fmt.Errorf("%w: comment: longer than %d bytes", ErrInvalid, MaxCommentBytes)
	}
	if err := mg.checkWritable(); err != nil {
		return Incident{}, err
	}
	mg.writeMu.Lock()
	defer mg.writeMu.Unlock()
	if err := mg.resyncDirty(ctx); err != nil {
		return Incident{}, err
	}
	mg.mu.RLock()
	cur := mg.incidents[id]
	mg.mu.RUnlock()
	if cur == nil {
		return Incident{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if a.IfVersion != 0 && a.IfVersion != cur.inc.Version {
		return cur.clone(), fmt.Errorf("%w: %s is at version %d, not %d", ErrStale, id, cur.inc.Version, a.IfVersion)
	}
	t := mg.newTx(copyState(cur), mg.now())
	if err := decide(t); err != nil {
		return cur.clone(), err
	}
	if err := mg.commit(ctx, t); err != nil {
		return cur.clone(), err
	}
	if len(t.evs) == 0 {
		return cur.clone(), nil
	}
	return t.st.clone(), nil
}

// Acknowledge moves an open incident to acknowledged. Acknowledging an
// acknowledged incident changes nothing; a resolved one is refused with
// ErrResolved, so an acknowledgement racing a resolution never undoes it.
func (mg *Manager) Acknowledge(ctx context.Context, id string, a Action) (Incident, error) {
	return mg.change(ctx, id, a, func(t *tx) error {
		switch t.st.inc.Status {
		case StatusResolved:
			return fmt.Errorf("%w: %s cannot be acknowledged", ErrResolved, id)
		case StatusAcknowledged:
			return nil
		}
		t.add(Event{Type: EventAcknowledged, Actor: a.Actor, Comment: a.Comment})
		return nil
	})
}

// Resolve resolves an incident by hand, whatever its alerts say; it stays
// resolved until a new alert fires in its group (HandleGroup). Resolving
// a resolved incident changes nothing.
func (mg *Manager) Resolve(ctx context.Context, id string, a Action) (Incident, error) {
	return mg.change(ctx, id, a, func(t *tx) error {
		if t.st.inc.Status == StatusResolved {
			return nil
		}
		t.add(Event{Type: EventResolved, Actor: a.Actor, Comment: a.Comment})
		return nil
	})
}

// Assign sets who is responsible (surrounding space trimmed); an empty
// assignee unassigns. It is allowed in every status (a resolved incident
// may get an owner for its postmortem) and never changes the status.
func (mg *Manager) Assign(ctx context.Context, id, assignee string, a Action) (Incident, error) {
	assignee = strings.TrimSpace(assignee)
	if len(assignee) > 256 {
		return Incident{}, fmt.Errorf("%w: assignee: longer than 256 bytes", ErrInvalid)
	}
	return mg.change(ctx, id, a, func(t *tx) error {
		if t.st.inc.Assignee == assignee {
			return nil
		}
		t.add(Event{Type: EventAssigned, Actor: a.Actor, Comment: a.Comment, Assignee: &assignee})
		return nil
	})
}

// MaxNoteBytes bounds a note's text.
const MaxNoteBytes = 16 << 10

// AddNote appends a note (a.Comment is ignored). Notes are allowed in
// every status and never change it.
func (mg *Manager) AddNote(ctx context.Context, id, text string, a Action) (Incident, error) {
	switch {
	case strings.TrimSpace(text) == "":
		return Incident{}, fmt.Errorf("%w: text: required, and not blank", ErrInvalid)
	case len(text) > MaxNoteBytes:
		return Incident{}, fmt.Errorf("%w: text: longer than %d bytes", ErrInvalid, MaxNoteBytes)
	}
	return mg.change(ctx, id, a, func(t *tx) error {
		t.add(Event{Type: EventNote, Actor: a.Actor, Comment: text})
		return nil
	})
}

// Escalate raises the escalation level by one. A resolved incident is
// refused with ErrResolved.
func (mg *Manager) Escalate(ctx context.Context, id string, a Action) (Incident, error) {
	return mg.change(ctx, id, a, func(t *tx) error {
		if t.st.inc.Status == StatusResolved {
			return fmt.Errorf("%w: %s cannot be escalated", ErrResolved, id)
		}
		t.add(Event{Type: EventEscalated, Actor: a.Actor, Comment: a.Comment, Level: t.st.inc.EscalationLevel + 1})
		return nil
	})
}

// RunbookPhase is which end of a runbook run an event reports.
type RunbookPhase string

// The phases of a runbook run.
const (
	RunbookStarted  RunbookPhase = "started"
	RunbookFinished RunbookPhase = "finished"
	// RunbookStepDone records one attempt of one action (rb.Step).
	RunbookStepDone RunbookPhase = "step"
)

// RecordRunbook appends a runbook_started, runbook_finished or
// runbook_step event; it is what remediation calls. A run's phase (or
// step key) recorded before is not recorded again, so retries are safe.
// It is allowed in every status: a verification may finish after the
// incident resolved.
func (mg *Manager) RecordRunbook(ctx context.Context, id string, phase RunbookPhase, rb RunbookEvent, a Action) (Incident, error) {
	var typ EventType
	switch phase {
	case RunbookStarted:
		typ = EventRunbookStarted
	case RunbookFinished:
		typ = EventRunbookFinished
	case RunbookStepDone:
		typ = EventRunbookStep
		if rb.Step == nil || rb.Step.Key == "" || rb.Step.Action == "" {
			return Incident{}, fmt.Errorf("%w: step: a step event needs the step's key and action", ErrInvalid)
		}
	default:
		return Incident{}, fmt.Errorf("%w: phase: must be %q, %q or %q, got %q", ErrInvalid, RunbookStarted, RunbookFinished, RunbookStepDone, phase)
	}
	if rb.RunID == "" {
		return Incident{}, fmt.Errorf("%w: run_id: must not be empty", ErrInvalid)
	}
	if typ != EventRunbookStep {
		rb.Step = nil
	}
	return mg.change(ctx, id, a, func(t *tx) error {
		if t.st.runbookSeen(rb.RunID, typ, rb.Step) {
			return nil
		}
		ev := rb
		if rb.Step != nil {
			st := *rb.Step
			st.Params = maps.Clone(st.Params)
			ev.Step = &st
		}
		t.add(Event{Type: typ, Actor: a.Actor, Comment: a.Comment, Runbook: &ev})
		return nil
	})
}

// ResolveByRunbook resolves an incident that a runbook run fixed: its
// verification held and all of the incident's alerts have resolved. The
// incident records the run as what fixed it (Incident.FixedBy). An
// incident with a firing alert is refused with ErrFiring: the fix has not
// shown in the alerts yet, or something else is wrong too. A resolved
// incident changes nothing, so remediation may call it again safely.
func (mg *Manager) ResolveByRunbook(ctx context.Context, id string, rb RunbookEvent, a Action) (Incident, error) {
	if rb.RunID == "" || rb.Runbook == "" {
		return Incident{}, fmt.Errorf("%w: runbook: run_id and runbook must not be empty", ErrInvalid)
	}
	return mg.change(ctx, id, a, func(t *tx) error {
		inc := &t.st.inc
		switch {
		case inc.Status == StatusResolved:
			return nil
		case inc.FiringAlerts > 0:
			return fmt.Errorf("%w: %s has %d", ErrFiring, id, inc.FiringAlerts)
		}
		ev := RunbookEvent{RunID: rb.RunID, Runbook: rb.Runbook, Outcome: rb.Outcome, Message: rb.Message}
		t.add(Event{Type: EventResolved, Actor: a.Actor, Comment: a.Comment, Runbook: &ev,
			Reason: fmt.Sprintf("auto-resolved: runbook %s (run %s) fixed it and all alerts resolved", rb.Runbook, rb.RunID)})
		return nil
	})
}

// RefreshRootCauses ranks the root causes again over the incident's time
// range (from RootCauseLookback before its first alert to its resolution,
// or now) and records the ranking.
func (mg *Manager) RefreshRootCauses(ctx context.Context, id string, a Action) (Incident, error) {
	if mg.rc == nil {
		return Incident{}, ErrNoRootCauser
	}
	cur, err := mg.Get(id)
	if err != nil {
		return Incident{}, err
	}
	start := cur.OpenedAt
	for _, al := range cur.Alerts {
		if al.StartsAt.Before(start) {
			start = al.StartsAt
		}
	}
	start = start.Add(-time.Duration(mg.cfg.RootCauseLookback))
	now := mg.now()
	end := now
	if cur.ResolvedAt != nil {
		end = *cur.ResolvedAt
	}
	rc := rankRootCauses(ctx, mg.rc, start, end, mg.cfg.MaxRootCauses, time.Duration(mg.cfg.RootCauseTimeout), now)
	return mg.change(ctx, id, a, func(t *tx) error {
		t.add(Event{Type: EventRootCauses, Actor: a.Actor, RootCauses: rc})
		return nil
	})
}

// Get returns an incident's current state.
func (mg *Manager) Get(id string) (Incident, error) {
	mg.mu.RLock()
	defer mg.mu.RUnlock()
	st := mg.incidents[id]
	if st == nil {
		return Incident{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return st.clone(), nil
}

// Timeline returns an incident's events, oldest first, read from the
// store.
func (mg *Manager) Timeline(ctx context.Context, id string) ([]Event, error) {
	if _, err := mg.Get(id); err != nil {
		return nil, err
	}
	evs, err := mg.readLog(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("incident %s: read timeline: %w", id, err)
	}
	return evs, nil
}

// Query selects incidents for List. Zero fields do not filter.
type Query struct {
	Statuses   []Status
	Services   []string // matches an incident any of whose services is listed
	Severities []string
	// Start and End keep incidents active at some time in [Start, End]:
	// opened at or before End and not resolved before Start.
	Start, End time.Time
	// Selectors keep incidents with an alert whose labels match every
	// matcher of at least one selector.
	Selectors [][]*labels.Matcher
	// Limit is the page size; 0 means 100.
	Limit int
	// After continues a listing after the incident it names.
	After *Cursor
}

// Cursor is a position in the listing order: newest first, by OpenedAt
// then ID. Incidents opened later sort before every cursor taken earlier,
// so paging is stable while incidents are being opened.
type Cursor struct {
	OpenedAt time.Time
	ID       string
}

// List returns the incidents matching q, newest first, and the cursor of
// the next page (nil on the last page).
func (mg *Manager) List(q Query) ([]Incident, *Cursor) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	mg.mu.RLock()
	defer mg.mu.RUnlock()
	i := len(mg.order)
	if q.After != nil {
		i = mg.orderIndex(q.After.OpenedAt, q.After.ID)
	}
	var out []Incident
	for i--; i >= 0; i-- {
		st := mg.order[i]
		if !q.matches(st) {
			continue
		}
		if len(out) == limit {
			last := out[len(out)-1]
			return out, &Cursor{OpenedAt: last.OpenedAt, ID: last.ID}
		}
		out = append(out, st.clone())
	}
	return out, nil
}

func (q *Query) matches(st *state) bool {
	inc := &st.inc
	if len(q.Statuses) > 0 && !slices.Contains(q.Statuses, inc.Status) {
		return false
	}
	if len(q.Severities) > 0 && !slices.Contains(q.Severities, inc.Severity) {
		return false
	}
	if len(q.Services) > 0 && !slices.ContainsFunc(inc.Services, func(s string) bool { return slices.Contains(q.Services, s) }) {
		return false
	}
	if !q.End.IsZero() && inc.OpenedAt.After(q.End) {
		return false
	}
	if !q.Start.IsZero() && inc.ResolvedAt != nil && inc.ResolvedAt.Before(q.Start) {
		return false
	}
	if len(q.Selectors) == 0 {
		return true
	}
	for _, a := range st.alerts {
		for _, sel := range q.Selectors {
			if matchAll(sel, a.Labels) {
				return true
			}
		}
	}
	return false
}

func matchAll(ms []*labels.Matcher, ls map[string]string) bool {
	for _, m := range ms {
		if !m.Matches(ls[m.Name]) {
			return false
		}
	}
	return true
}
