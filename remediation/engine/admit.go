package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/prometheus/promql/parser"

	"github.com/aiops-dev/aiops/remediation/match"
	"github.com/aiops-dev/aiops/remediation/runbook"
	"github.com/aiops-dev/aiops/storage"
)

// Rails: the names refusals carry.
const (
	RailKillSwitch    = "kill_switch"
	RailTarget        = "target"
	RailMaintenance   = "maintenance"
	RailLease         = "lease"
	RailCooldown      = "cooldown"
	RailMaxRuns       = "max_runs"
	RailGlobalMaxRuns = "global_max_runs"
	RailBlastRadius   = "blast_radius"
	RailPrecondition  = "precondition"
	RailMinHealthy    = "min_healthy"
)

// RefusedError is a run a rail refused.
type RefusedError struct {
	Rail   string
	Reason string
}

func (r *RefusedError) Error() string { return fmt.Sprintf("refused by %s: %s", r.Rail, r.Reason) }
func (r *RefusedError) Unwrap() error { return ErrRefused }

// guardTimeout bounds the queries of one decision.
const guardTimeout = 15 * time.Second

// Plan is what a run would do: its target and every step rendered, with
// secrets masked.
type Plan struct {
	Runbook  string            `json:"runbook"`
	Target   map[string]string `json:"target"`
	Mode     string            `json:"mode"`
	Approval *ApprovalRequest  `json:"approval,omitempty"`
	Steps    []StepRecord      `json:"steps"`
	Rollback []StepRecord      `json:"rollback,omitempty"`
}

// signal is one thing that may start runs.
type signal struct {
	match   match.Signal
	trigger Trigger
	// key identifies the signal's episode for execution ids.
	key string
}

// consider tries the runbooks that match a signal, the better record
// first, until one starts. A rail that concerns the signal as a whole
// (kill switch, maintenance, a lease on the target: another run handles
// it) stops the search; one that concerns a runbook (its target does not
// render, a guard, cooldown, run limits, blast radius) moves on to the
// next.
func (e *Engine) consider(ctx context.Context, sig signal) {
	cands := e.set.Match(sig.match)
	if len(cands) == 0 {
		return
	}
	name := sig.trigger.Alertname
	if name == "" {
		name = sig.trigger.Kind
	}
	for _, rb := range match.Rank(cands, name, e.stats) {
		_, err := e.start(ctx, rb, sig.trigger, nil, sig.key)
		var re *RefusedError
		switch {
		case err == nil:
			return
		case errors.As(err, &re):
			switch re.Rail {
			case RailKillSwitch, RailMaintenance, RailLease:
				return
			}
		case errors.Is(err, errExists):
			return
		default:
			e.logger.Warn("Runbook not started", "runbook", rb.Name, "err", err)
		}
	}
}

var errExists = errors.New("execution exists")

// start decides whether rb runs for trig and, if so, records the new
// execution and starts running it. target, when not nil, is given (a
// manual run); else it is rendered from the trigger. key makes the
// execution's id; empty for a random one.
func (e *Engine) start(ctx context.Context, rb *runbook.Runbook, trig Trigger, target map[string]string, key string) (Execution, error) {
	e.admitMu.Lock()
	defer e.admitMu.Unlock()
	plan, id, err := e.decide(ctx, rb, trig, target, key)
	if err != nil {
		var re *RefusedError
		if errors.As(err, &re) {
			e.refuse(ctx, rb, plan.Target, trig, re)
		}
		return Execution{}, err
	}
	now := e.clock.Now()
	c := &Created{Runbook: rb.Name, Mode: plan.Mode, Trigger: trig, Target: plan.Target}
	if rb.Safety.Approval.Required && plan.Mode == runbook.ModeLive {
		c.Approval = &ApprovalRequest{Approvers: rb.Safety.Approval.Approvers, Deadline: now.Add(rb.ApprovalWait())}
	}
	x, err := e.appendEvent(ctx, id, Event{Type: EvCreated, Actor: actorOf(trig, e.cfg.Actor), Created: c, LeaseExpires: now.Add(rb.Lease())})
	if err != nil {
		return Execution{}, err
	}
	e.m.decisions.WithLabelValues(rb.Name, "started", "").Inc()
	e.logger.Info("Runbook started", "execution", id, "runbook", rb.Name, "target", runbook.TargetKey(plan.Target), "mode", plan.Mode,
		"trigger", trig.Kind, "alert", trig.Alertname, "incident", trig.IncidentID, "approval", c.Approval != nil)
	e.launch(id)
	return x, nil
}

func actorOf(t Trigger, engine string) string {
	if t.RequestedBy != "" {
		return t.RequestedBy
	}
	return engine
}

// decide runs the rails in order and renders the plan. It returns the
// execution id to create.
func (e *Engine) decide(ctx context.Context, rb *runbook.Runbook, trig Trigger, target map[string]string, key string) (Plan, string, error) {
	now := e.clock.Now()
	plan := Plan{Runbook: rb.Name, Mode: runbook.ModeLive}
	if rb.Shadow() || e.cfg.Shadow {
		plan.Mode = runbook.ModeShadow
	}
	e.mu.RLock()
	kill := e.kill
	e.mu.RUnlock()
	if kill.Engaged {
		return plan, "", &RefusedError{RailKillSwitch, fmt.Sprintf("the kill switch is engaged (by %s: %s)", kill.By, kill.Reason)}
	}
	data := runbook.Data{Labels: trig.Labels, Annotations: trig.Annotations, Value: trig.Value, IncidentID: trig.IncidentID, Runbook: rb.Name}
	qctx, cancel := context.WithTimeout(ctx, guardTimeout)
	defer cancel()
	if target == nil {
		t, err := e.render.RenderTarget(qctx, rb, data, now)
		if err != nil {
			return plan, "", &RefusedError{RailTarget, err.Error()}
		}
		target = t
	} else if err := runbook.CheckTarget(target); err != nil {
		return plan, "", &RefusedError{RailTarget, err.Error()}
	}
	plan.Target = target
	data.Target = target
	tkey := runbook.TargetKey(target)
	id := execID()
	if key != "" {
		id = execID(rb.Name, tkey, key)
		e.mu.RLock()
		_, exists := e.execs[id]
		e.mu.RUnlock()
		if exists {
			return plan, "", errExists
		}
	}
	ws := append(append([]runbook.Window{}, e.cfg.MaintenanceWindows...), rb.Safety.MaintenanceWindows...)
	if w, in := runbook.InMaintenance(ws, now); in {
		return plan, "", &RefusedError{RailMaintenance, fmt.Sprintf("maintenance window %q", windowName(w))}
	}
	if err := e.checkHistory(rb, target, now); err != nil {
		return plan, "", err
	}
	if err := e.checkBlastRadius(qctx, rb, data, now); err != nil {
		return plan, "", err
	}
	for i, g := range rb.Preconditions {
		ok, detail, err := e.guard(qctx, fmt.Sprintf("preconditions[%d]", i), g.Expr, data, now)
		if err != nil || !ok {
			name := g.Name
			if name == "" {
				name = fmt.Sprintf("#%d", i+1)
			}
			return plan, "", &RefusedError{RailPrecondition, fmt.Sprintf("precondition %s does not hold: %s", name, errOr(err, detail))}
		}
	}
	if mh := rb.Safety.BlastRadius.MinHealthy; mh != "" {
		ok, detail, err := e.guard(qctx, "safety.blast_radius.min_healthy", mh, data, now)
		if err != nil || !ok {
			return plan, "", &RefusedError{RailMinHealthy, "min_healthy does not hold: " + errOr(err, detail)}
		}
	}
	steps, rollback, err := e.renderPlan(qctx, rb, data, now)
	if err != nil {
		return plan, "", &RefusedError{RailTarget, err.Error()}
	}
	plan.Steps, plan.Rollback = steps, rollback
	if rb.Safety.Approval.Required && plan.Mode == runbook.ModeLive {
		plan.Approval = &ApprovalRequest{Approvers: rb.Safety.Approval.Approvers, Deadline: now.Add(rb.ApprovalWait())}
	}
	return plan, id, nil
}

func errOr(err error, detail string) string {
	if err != nil {
		return err.Error()
	}
	return detail
}

func windowName(w runbook.Window) string {
	if w.Name != "" {
		return w.Name
	}
	if w.Weekly() {
		return strings.Join(w.Days, ",") + " " + w.Start + " for " + w.Duration.String()
	}
	return w.Start + " to " + w.End
}

// checkHistory applies the rails that look at other executions: the
// lease (one execution per target), the cooldown per target (after any
// runbook's run that acted on it: two runbooks do not take turns on one
// target), and the run limits. Callers hold admitMu.
func (e *Engine) checkHistory(rb *runbook.Runbook, target map[string]string, now time.Time) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	cooldown := time.Duration(rb.Safety.Cooldown)
	var (
		lastEnd   time.Time
		lastBy    string
		runs, all int
	)
	for _, x := range e.execs {
		if x.holdsLease(now) && runbook.Overlaps(x.Target, target) {
			return &RefusedError{RailLease, fmt.Sprintf("execution %s of %s holds %s until it ends (lease until %s)",
				x.ID, x.Runbook, runbook.TargetKey(x.Target), x.LeaseExpires.UTC().Format(time.RFC3339))}
		}
		if x.EndedAt != nil && x.acted() && runbook.Overlaps(x.Target, target) && x.EndedAt.After(lastEnd) {
			lastEnd, lastBy = *x.EndedAt, x.Runbook
		}
		if w := rb.Safety.MaxRuns.Window; x.Runbook == rb.Name && w > 0 && now.Sub(x.CreatedAt) < time.Duration(w) {
			runs++
		}
		if w := e.cfg.MaxRuns.Window; w > 0 && now.Sub(x.CreatedAt) < time.Duration(w) {
			all++
		}
	}
	if cooldown > 0 && !lastEnd.IsZero() && now.Sub(lastEnd) < cooldown {
		return &RefusedError{RailCooldown, fmt.Sprintf("%s acted on %s until %s; cooldown %s",
			lastBy, runbook.TargetKey(target), lastEnd.UTC().Format(time.RFC3339), rb.Safety.Cooldown)}
	}
	if n := rb.Safety.MaxRuns.Count; n > 0 && runs >= n {
		return &RefusedError{RailMaxRuns, fmt.Sprintf("%s started %d times within %s (max_runs %d)", rb.Name, runs, rb.Safety.MaxRuns.Window, n)}
	}
	if n := e.cfg.MaxRuns.Count; n > 0 && all >= n {
		return &RefusedError{RailGlobalMaxRuns, fmt.Sprintf("runbooks started %d times within %s (remediation.max_runs %d)", all, e.cfg.MaxRuns.Window, n)}
	}
	return nil
}

// checkBlastRadius bounds the targets one runbook touches at once, in
// number and as a share of their fleet; a run that would touch the whole
// fleet is refused.
func (e *Engine) checkBlastRadius(ctx context.Context, rb *runbook.Runbook, data runbook.Data, now time.Time) error {
	b := rb.Safety.BlastRadius
	if b.MaxTargets == 0 && b.Population == "" {
		return nil
	}
	e.mu.RLock()
	active := 0
	for _, x := range e.execs {
		if x.Runbook == rb.Name && x.holdsLease(now) {
			active++
		}
	}
	e.mu.RUnlock()
	if b.MaxTargets > 0 && active+1 > b.MaxTargets {
		return &RefusedError{RailBlastRadius, fmt.Sprintf("%d targets already in progress; max_targets %d", active, b.MaxTargets)}
	}
	if b.Population == "" {
		return nil
	}
	expr, err := e.render.RenderGuard(ctx, "safety.blast_radius.population", b.Population, data, now)
	if err != nil {
		return &RefusedError{RailBlastRadius, err.Error()}
	}
	v, err := e.deps.Query.Query(ctx, expr, now)
	if err != nil {
		return &RefusedError{RailBlastRadius, "population: " + err.Error()}
	}
	if len(v) == 0 {
		return &RefusedError{RailBlastRadius, "population: the query returns nothing; the fleet's size is unknown"}
	}
	pop := v[0].F
	touched := float64(active + 1)
	switch {
	case touched >= pop:
		return &RefusedError{RailBlastRadius, fmt.Sprintf("%g of %g targets would be touched: never the whole fleet", touched, pop)}
	case b.MaxFraction > 0 && touched/pop > b.MaxFraction:
		return &RefusedError{RailBlastRadius, fmt.Sprintf("%g of %g targets (%.0f%%) would be touched; max_fraction %g", touched, pop, 100*touched/pop, b.MaxFraction)}
	}
	return nil
}

// guard renders and evaluates a PromQL condition: it holds when the
// query returns a series (a scalar: a value other than 0).
func (e *Engine) guard(ctx context.Context, field, expr string, data runbook.Data, now time.Time) (bool, string, error) {
	q, err := e.render.RenderGuard(ctx, field, expr, data, now)
	if err != nil {
		return false, "", err
	}
	return e.holds(ctx, q, now)
}

func (e *Engine) holds(ctx context.Context, expr string, at time.Time) (bool, string, error) {
	v, err := e.deps.Query.Query(ctx, expr, at)
	if err != nil {
		return false, "", fmt.Errorf("query %s: %w", expr, err)
	}
	if len(v) == 0 {
		return false, "no result", nil
	}
	value := strconv.FormatFloat(v[0].F, 'g', 4, 64)
	// A scalar (`x > bool 1`) holds when it is not 0; a vector when it
	// has a series, whatever its value (`ratio < 0.01` may keep a 0).
	if x, err := e.parser.ParseExpr(expr); err == nil && x.Type() == parser.ValueTypeScalar && v[0].F == 0 {
		return false, value, nil
	}
	return true, value, nil
}

// renderPlan renders every step and rollback step with secrets masked.
func (e *Engine) renderPlan(ctx context.Context, rb *runbook.Runbook, data runbook.Data, now time.Time) (steps, rollback []StepRecord, err error) {
	// Secrets are only masked here: the plan never holds a value.
	masked := maskingSecrets(rb)
	for i, s := range rb.Steps {
		rs, err := e.render.RenderStep(ctx, rb, s, fmt.Sprintf("steps[%d]", i), data, now, masked)
		if err != nil {
			return nil, nil, err
		}
		steps = append(steps, StepRecord{Phase: PhaseSteps, Index: i, Name: s.Name, Action: s.Action,
			Params: runbook.FormatParams(rs.Masked), Idempotent: s.Idempotent, Verify: rs.Verify})
	}
	for i, s := range rb.Rollback {
		rs, err := e.render.RenderStep(ctx, rb, s, fmt.Sprintf("rollback[%d]", i), data, now, masked)
		if err != nil {
			return nil, nil, err
		}
		rollback = append(rollback, StepRecord{Phase: PhaseRollback, Index: i, Name: s.Name, Action: s.Action,
			Params: runbook.FormatParams(rs.Masked), Idempotent: s.Idempotent})
	}
	return steps, rollback, nil
}

// maskingSecrets stands in for a runbook's secrets where only the masked
// rendering matters: every declared secret renders as its mask.
func maskingSecrets(rb *runbook.Runbook) *runbook.Secrets {
	vals := map[string]string{}
	for name := range rb.Secrets {
		vals[name] = runbook.MaskedSecret(name)
	}
	return runbook.NewSecrets(vals)
}

// refuse counts and records a refusal. The same refusal (runbook,
// target, rail) is recorded at most once every refusalQuiet.
func (e *Engine) refuse(ctx context.Context, rb *runbook.Runbook, target map[string]string, trig Trigger, re *RefusedError) {
	e.m.decisions.WithLabelValues(rb.Name, "refused", re.Rail).Inc()
	now := e.clock.Now()
	key := rb.Name + "\x00" + runbook.TargetKey(target) + "\x00" + re.Rail
	e.mu.Lock()
	last, seen := e.refused[key]
	if !seen || now.Sub(last) >= refusalQuiet {
		e.refused[key] = now
	}
	for k, t := range e.refused {
		if now.Sub(t) >= refusalQuiet {
			delete(e.refused, k)
		}
	}
	e.mu.Unlock()
	if seen && now.Sub(last) < refusalQuiet {
		return
	}
	level := "Runbook refused by a safety rail"
	if re.Rail == RailPrecondition {
		level = "Runbook does not apply"
	}
	e.logger.Info(level, "runbook", rb.Name, "target", runbook.TargetKey(target), "rail", re.Rail, "reason", re.Reason,
		"alert", trig.Alertname, "incident", trig.IncidentID)
	r := Refusal{Time: now.UTC(), Runbook: rb.Name, Target: maps.Clone(target), Rail: re.Rail, Reason: re.Reason, Trigger: trig}
	payload, _ := json.Marshal(r)
	se := storage.Event{ID: fmt.Sprintf("refusal-%d-%s", now.UnixNano(), execID()[3:]), Time: r.Time, Kind: DecisionKind,
		Subject: rb.Name, Labels: map[string]string{"rail": re.Rail}, Payload: payload}
	if e.writable() != nil {
		return
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := e.deps.Events.AppendEvents(wctx, []storage.Event{se}); err != nil {
		e.logger.Warn("Refusal not recorded", "runbook", rb.Name, "err", err)
	}
}

// refusalQuiet is how long the same refusal is not recorded again.
const refusalQuiet = 5 * time.Minute

// Refusals returns the refusals recorded since from, newest first.
func (e *Engine) Refusals(ctx context.Context, from time.Time, limit int) ([]Refusal, error) {
	var out []Refusal
	err := e.scan(ctx, storage.EventQuery{KindPrefix: DecisionKind, Start: from}, func(se storage.Event) {
		var r Refusal
		if json.Unmarshal(se.Payload, &r) == nil {
			out = append(out, r)
		}
	})
	if err != nil {
		return nil, err
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func decodeJSON(b []byte, v any) error { return json.Unmarshal(b, v) }

// DryRun decides and renders a manual run without recording or doing
// anything: which rail would refuse it, or the plan.
func (e *Engine) DryRun(ctx context.Context, name string, target map[string]string) (Plan, error) {
	rb, ok := e.runbooks[name]
	if !ok {
		return Plan{}, fmt.Errorf("%w: runbook %q", ErrNotFound, name)
	}
	plan, _, err := e.decide(ctx, rb, Trigger{Kind: "manual"}, target, "")
	return plan, err
}

// RunManual runs a runbook by hand on a target. The rails apply as to
// automatic runs; approval too.
func (e *Engine) RunManual(ctx context.Context, name string, target map[string]string, by string) (Execution, error) {
	return e.RunManualFor(ctx, "", name, target, by)
}

// RunManualFor runs a runbook by hand on a target for an incident (the
// incident message's "Run runbook…" button): its steps land in the
// incident's timeline and, when it succeeds, the incident resolves as
// fixed by it, as for a run an alert started. An empty incidentID is
// RunManual.
func (e *Engine) RunManualFor(ctx context.Context, incidentID, name string, target map[string]string, by string) (Execution, error) {
	rb, ok := e.runbooks[name]
	if !ok {
		return Execution{}, fmt.Errorf("%w: runbook %q", ErrNotFound, name)
	}
	if by == "" {
		return Execution{}, fmt.Errorf("%w: a manual run needs who asks for it", ErrInvalid)
	}
	return e.start(ctx, rb, Trigger{Kind: "manual", RequestedBy: by, IncidentID: incidentID, Labels: maps.Clone(target)}, target, "")
}
