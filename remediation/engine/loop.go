package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/remediation/match"
	"github.com/aiops-dev/aiops/remediation/runbook"
)

func (e *Engine) actionOf() incident.Action { return incident.Action{Actor: e.cfg.Actor} }

// Run resumes the executions in progress, looks at the incidents open
// now, then follows the incident feed and evaluates condition triggers
// until ctx is done. It returns once every runner has stopped (an action
// in flight finishes first, within its timeout).
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	e.ctx = ctx
	var resume []string
	for id, x := range e.execs {
		if !x.State.Terminal() {
			resume = append(resume, id)
		}
	}
	e.mu.Unlock()
	slices.Sort(resume)
	for _, id := range resume {
		e.logger.Info("Resuming execution", "execution", id)
		e.launch(id)
	}
	defer e.wg.Wait()

	done := make(chan struct{})
	go func() {
		defer close(done)
		e.followIncidents(ctx)
	}()
	if e.hasConditions() {
		go e.pollConditions(ctx)
	}
	if e.cfg.EscalateUnhandled.After > 0 && e.deps.Incidents != nil {
		go e.escalateUnhandled(ctx)
	}
	<-done
	return nil
}

// followIncidents reads the feed from its current end after looking at
// every open incident's firing alerts: what fired while the engine was
// down is seen, and what it had seen is recognised by its execution id.
func (e *Engine) followIncidents(ctx context.Context) {
	if e.deps.Incidents == nil || e.deps.Feed == nil {
		<-ctx.Done()
		return
	}
	cursor := ""
	if e.deps.FeedHead != nil {
		cursor = e.deps.FeedHead()
	}
	e.busy.Add(1)
	defer e.busy.Add(-1)
	e.catchUp(ctx)
	handled := cursor
	e.handled.Store(&handled)
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	for ctx.Err() == nil {
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		e.busy.Add(-1) // waiting for events is not work
		evs, err := e.deps.Feed.Tail(tctx, cursor, 200)
		e.busy.Add(1)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !errors.Is(err, context.DeadlineExceeded):
			e.logger.Warn("Incident feed not read; retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
		}
		for _, fe := range evs {
			e.handle(ctx, fe)
			cursor = fe.Cursor
		}
		handled := cursor
		e.handled.Store(&handled)
		select {
		case <-sweep.C:
			e.sweepResolutions(ctx)
		default:
		}
	}
}

// catchUp treats every firing alert of every unresolved incident as if it
// had just fired, and resolves incidents that runs fixed.
func (e *Engine) catchUp(ctx context.Context) {
	var after *incident.Cursor
	for {
		incs, next := e.deps.Incidents.List(incident.Query{Statuses: []incident.Status{incident.StatusOpen, incident.StatusAcknowledged}, Limit: 500, After: after})
		for _, inc := range incs {
			for _, a := range inc.Alerts {
				if a.Status == incident.AlertFiring {
					e.onAlert(ctx, inc.ID, a)
				}
			}
		}
		if next == nil {
			break
		}
		after = next
	}
	e.sweepResolutions(ctx)
}

// handle reacts to one incident event.
func (e *Engine) handle(ctx context.Context, fe incident.FeedEvent) {
	switch fe.Type {
	case incident.EventAlertFiring:
		if fe.Alert == nil {
			return
		}
		// Act on what fires now, not on a feed replayed after a long
		// stop: the incident must still have the alert firing.
		inc, err := e.incidentAt(ctx, fe)
		if err != nil || inc.Status == incident.StatusResolved {
			return
		}
		for _, a := range inc.Alerts {
			if a.Fingerprint == fe.Alert.Fingerprint && a.Status == incident.AlertFiring && a.StartsAt.Equal(fe.Alert.StartsAt) {
				e.onAlert(ctx, inc.ID, a)
			}
		}
	case incident.EventOpened:
		inc, err := e.incidentAt(ctx, fe)
		if err != nil || inc.Status == incident.StatusResolved {
			return
		}
		labels := incidentLabels(inc)
		trig := Trigger{Kind: runbook.TriggerIncident, IncidentID: inc.ID, Labels: labels}
		e.consider(ctx, signal{match: match.Signal{Kind: runbook.TriggerIncident, Labels: labels, Severity: inc.Severity}, trigger: trig, key: "incident/" + inc.ID})
	case incident.EventAlertResolved, incident.EventResolved:
		// Wait until the incident shows the event: a run that succeeds
		// meanwhile finds the alert still firing, and this would find the
		// run not yet succeeded; the two would miss each other.
		if _, err := e.incidentAt(ctx, fe); err != nil {
			return
		}
		e.tryResolve(ctx, fe.IncidentID)
	}
}

// incidentAt returns the incident as of the feed event at least: the
// feed may hand out an event the store has before the incident manager
// has made it part of the incident's state.
func (e *Engine) incidentAt(ctx context.Context, fe incident.FeedEvent) (incident.Incident, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		inc, err := e.deps.Incidents.Get(fe.IncidentID)
		if err == nil && inc.Version >= fe.Event.Seq {
			return inc, nil
		}
		if err != nil && !errors.Is(err, incident.ErrNotFound) || time.Now().After(deadline) {
			e.logger.Warn("Incident event not reflected in its incident; skipped", "incident", fe.IncidentID, "seq", fe.Event.Seq, "err", err)
			return inc, fmt.Errorf("incident %s: event %d not in its state", fe.IncidentID, fe.Event.Seq)
		}
		select {
		case <-ctx.Done():
			return inc, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (e *Engine) onAlert(ctx context.Context, incidentID string, a incident.Alert) {
	e.watchUnhandled(incidentID, a)
	name := a.Labels["alertname"]
	trig := Trigger{Kind: runbook.TriggerAlert, Alertname: name, Fingerprint: a.Fingerprint, StartsAt: a.StartsAt,
		IncidentID: incidentID, Labels: maps.Clone(a.Labels), Annotations: maps.Clone(a.Annotations)}
	e.consider(ctx, signal{
		match:   match.Signal{Kind: runbook.TriggerAlert, Name: name, Labels: a.Labels},
		trigger: trig,
		key:     "alert/" + a.Fingerprint + "/" + strconv.FormatInt(a.StartsAt.UnixNano(), 10),
	})
}

// tryResolve resolves an incident that a run fixed once all its alerts
// have resolved.
func (e *Engine) tryResolve(ctx context.Context, incidentID string) {
	if e.deps.Incidents == nil || incidentID == "" {
		return
	}
	e.mu.RLock()
	var fixed *Execution
	for _, x := range e.execs {
		if x.Trigger.IncidentID == incidentID && x.State == StateSucceeded && (fixed == nil || x.EndedAt.After(*fixed.EndedAt)) {
			fixed = x
		}
	}
	done := e.resolved[incidentID]
	e.mu.RUnlock()
	if fixed == nil || done {
		return
	}
	inc, err := e.deps.Incidents.Get(incidentID)
	if err != nil {
		return
	}
	if inc.Status == incident.StatusResolved || inc.FiringAlerts > 0 {
		if inc.Status == incident.StatusResolved {
			e.markResolved(incidentID)
		}
		return
	}
	_, err = e.deps.Incidents.ResolveByRunbook(ctx, incidentID, incident.RunbookEvent{RunID: fixed.ID, Runbook: fixed.Runbook,
		Outcome: string(StateSucceeded), Message: fmt.Sprintf("verified after %.0fs", fixed.RecoverSeconds)}, e.actionOf())
	switch {
	case err == nil:
		e.markResolved(incidentID)
		e.logger.Info("Incident auto-resolved by a runbook", "incident", incidentID, "runbook", fixed.Runbook, "execution", fixed.ID)
	case errors.Is(err, incident.ErrFiring):
	default:
		e.logger.Warn("Incident not resolved", "incident", incidentID, "err", err)
	}
}

func (e *Engine) markResolved(id string) {
	e.mu.Lock()
	e.resolved[id] = true
	e.mu.Unlock()
}

// sweepResolutions tries every incident with a successful run that is
// not known resolved.
func (e *Engine) sweepResolutions(ctx context.Context) {
	e.mu.RLock()
	ids := map[string]bool{}
	for _, x := range e.execs {
		if id := x.Trigger.IncidentID; id != "" && x.State == StateSucceeded && !e.resolved[id] {
			ids[id] = true
		}
	}
	e.mu.RUnlock()
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		e.tryResolve(ctx, id)
	}
}

func (e *Engine) hasConditions() bool {
	for _, rb := range e.order {
		if rb.Trigger.Kind() == runbook.TriggerCondition {
			return true
		}
	}
	return false
}

// pollConditions evaluates the condition triggers every
// ConditionInterval. A series that has held for the trigger's `for` is a
// signal; its episode (and so its execution id) lasts until the series
// disappears.
func (e *Engine) pollConditions(ctx context.Context) {
	e.busy.Add(1)
	defer e.busy.Add(-1)
	since := map[string]time.Time{} // runbook + series → first seen
	for {
		now := e.clock.Now()
		seen := map[string]bool{}
		for _, rb := range e.order {
			if rb.Trigger.Kind() != runbook.TriggerCondition {
				continue
			}
			expr, hold := rb.Trigger.ConditionExpr()
			qctx, cancel := context.WithTimeout(ctx, guardTimeout)
			v, err := e.deps.Query.Query(qctx, expr, now)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				e.logger.Warn("Condition not evaluated", "runbook", rb.Name, "err", err)
				continue
			}
			for _, s := range v {
				ls := s.Metric.Map()
				key := rb.Name + "\x00" + s.Metric.String()
				seen[key] = true
				first, ok := since[key]
				if !ok {
					since[key], first = now, now
				}
				if now.Sub(first) < hold {
					continue
				}
				trig := Trigger{Kind: runbook.TriggerCondition, Labels: ls, Value: s.F, StartsAt: first}
				e.consider(ctx, signal{match: match.Signal{Kind: runbook.TriggerCondition, Name: rb.Name, Labels: ls}, trigger: trig,
					key: "condition/" + s.Metric.String() + "/" + strconv.FormatInt(first.UnixNano(), 10)})
			}
		}
		for k := range since {
			if !seen[k] {
				delete(since, k)
			}
		}
		if !e.sleep(ctx, e.cfg.ConditionInterval, nil) && ctx.Err() != nil {
			return
		}
	}
}

// pendingEscalation is an alert that is escalated at deadline unless a
// run handles it or it resolves.
type pendingEscalation struct {
	incidentID, fingerprint, alertname string
	labels                             map[string]string
	startsAt, deadline                 time.Time
}

// watchUnhandled remembers an alert the unhandled policy covers.
func (e *Engine) watchUnhandled(incidentID string, a incident.Alert) {
	p := e.cfg.EscalateUnhandled
	if p.After <= 0 {
		return
	}
	covered := len(e.unhandledMat) == 0
	for _, ms := range e.unhandledMat {
		all := true
		for _, m := range ms {
			all = all && m.Matches(a.Labels[m.Name])
		}
		covered = covered || all
	}
	if !covered {
		return
	}
	key := incidentID + "/" + a.Fingerprint
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.unhandled[key]; !ok {
		// From now, not from the alert's start: a rule's start is when it
		// went pending, maybe long before it fired.
		e.unhandled[key] = pendingEscalation{incidentID: incidentID, fingerprint: a.Fingerprint, alertname: a.Labels["alertname"],
			labels: maps.Clone(a.Labels), startsAt: a.StartsAt, deadline: e.clock.Now().Add(p.After)}
	}
}

// escalateUnhandled checks the pending escalations every few seconds of
// the clock.
func (e *Engine) escalateUnhandled(ctx context.Context) {
	e.busy.Add(1)
	defer e.busy.Add(-1)
	every := min(max(e.cfg.EscalateUnhandled.After/4, time.Second), 10*time.Second)
	for {
		now := e.clock.Now()
		e.mu.Lock()
		var due []pendingEscalation
		for k, p := range e.unhandled {
			if !now.Before(p.deadline) {
				due = append(due, p)
				delete(e.unhandled, k)
			}
		}
		e.mu.Unlock()
		slices.SortFunc(due, func(a, b pendingEscalation) int { return a.deadline.Compare(b.deadline) })
		for _, p := range due {
			if later, wait := e.escalateIfUnhandled(ctx, p, now); wait {
				p.deadline = later
				e.mu.Lock()
				e.unhandled[p.incidentID+"/"+p.fingerprint] = p
				e.mu.Unlock()
			}
		}
		if !e.sleep(ctx, every, nil) && ctx.Err() != nil {
			return
		}
	}
}

// settleAfterFix is how long an alert may outlive a run that verified
// its fix before it is taken as unhandled: symptoms downstream (a queue
// backlog) take a while to drain, and alerts over 5-minute rates take up
// to that long to clear.
const settleAfterFix = 5 * time.Minute

// mayConcern reports whether run x may be fixing what an alert with
// labels ls is a symptom of. Not when both name a service (job or
// service) and they differ, and no value of the run's target is among
// the alert's labels: a worker crash-looping is no symptom of what a
// rollback of the api fixes, and waiting for that run would keep it from
// people. Otherwise it may: symptoms travel along dependencies the engine
// does not know (a queue backs up behind a slow LLM).
func mayConcern(x *Execution, ls map[string]string) bool {
	svc := func(m map[string]string) string {
		if v := m["job"]; v != "" {
			return v
		}
		return m["service"]
	}
	alertSvc, runSvc := svc(ls), svc(x.Trigger.Labels)
	if alertSvc == "" || runSvc == "" || alertSvc == runSvc {
		return true
	}
	for _, v := range x.Target {
		for _, lv := range ls {
			if v != "" && v == lv {
				return true
			}
		}
	}
	return false
}

// escalateIfUnhandled escalates p's incident if its alert still fires
// and no run handles it. A live run started since shortly before the
// alert may be fixing what the alert is a symptom of: while one is in
// progress, and for the policy's delay after the last one ended, the
// escalation waits (wait true, until later); an alert that outlives the
// runs goes to people.
func (e *Engine) escalateIfUnhandled(ctx context.Context, p pendingEscalation, now time.Time) (later time.Time, wait bool) {
	inc, err := e.deps.Incidents.Get(p.incidentID)
	if err != nil || inc.Status == incident.StatusResolved || inc.EscalationLevel > 0 {
		return time.Time{}, false
	}
	firing := false
	for _, a := range inc.Alerts {
		firing = firing || a.Fingerprint == p.fingerprint && a.Status == incident.AlertFiring && a.StartsAt.Equal(p.startsAt)
	}
	if !firing {
		return time.Time{}, false
	}
	e.mu.RLock()
	var lastEnd time.Time
	running, fixed := false, false
	for _, x := range e.execs {
		if x.Mode != runbook.ModeLive || x.CreatedAt.Before(p.startsAt.Add(-relatedWindow)) || !mayConcern(x, p.labels) {
			continue
		}
		switch {
		case x.EndedAt == nil:
			running = true
		case x.EndedAt.After(lastEnd):
			lastEnd, fixed = *x.EndedAt, x.State == StateSucceeded
		}
	}
	e.mu.RUnlock()
	grace := e.cfg.EscalateUnhandled.After
	if fixed {
		grace = max(grace, settleAfterFix)
	}
	switch {
	case running:
		return now.Add(min(grace, time.Minute)), true
	case !lastEnd.IsZero() && now.Before(lastEnd.Add(grace)):
		return lastEnd.Add(grace), true
	}
	text := fmt.Sprintf("No runbook handles %s: none matches, none applies, or the safety rails refused them (see /api/v1/remediation/refusals); over to people.", p.alertname)
	act := e.actionOf()
	if _, err := e.deps.Incidents.AddNote(ctx, p.incidentID, text, act); err != nil {
		e.logger.Warn("Incident not noted", "incident", p.incidentID, "err", err)
	}
	act.Comment = "no runbook handles " + p.alertname
	if _, err := e.deps.Incidents.Escalate(ctx, p.incidentID, act); err != nil && !errors.Is(err, incident.ErrResolved) {
		e.logger.Warn("Incident not escalated", "incident", p.incidentID, "err", err)
		return time.Time{}, false
	}
	e.m.escalations.WithLabelValues("").Inc()
	e.logger.Info("Escalated an alert no runbook handles", "incident", p.incidentID, "alert", p.alertname)
	return time.Time{}, false
}

// incidentLabels are the labels an incident trigger matches on and
// renders with: the incident's group labels, its service (when the group
// has none) and its severity.
func incidentLabels(inc incident.Incident) map[string]string {
	labels := maps.Clone(inc.GroupLabels)
	if labels == nil {
		labels = map[string]string{}
	}
	if inc.Service != "" && labels["service"] == "" {
		labels["service"] = inc.Service
	}
	labels["severity"] = inc.Severity
	return labels
}
