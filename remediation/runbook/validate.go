package runbook

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/prometheus/alertmanager/matcher/parse"

	"github.com/aiops-dev/aiops/remediation/action"
)

// ValidateOptions tune Validate.
type ValidateOptions struct {
	// Actions is the action catalogue; nil means action.Catalogue().
	Actions map[string]action.Spec
	// Parser parses PromQL; nil means Prometheus's default options.
	Parser parser.Parser
}

// Limits that are unsafe to exceed.
const (
	MaxRetries     = 5
	MinLeaseTTL    = 30 * time.Second
	MaxApproval    = 24 * time.Hour
	MaxVerifyWait  = 2 * time.Hour
	MaxStepTimeout = time.Hour
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// Validate checks loaded runbooks: every problem Lint reports, with the
// position of the offending value. Problems of class unsafe are settings
// that are valid but dangerous (no cooldown, no run limit, too many
// retries, a lease too short to renew); aiops refuses them as it refuses
// errors.
func Validate(rbs []Runbook, o ValidateOptions) Problems {
	if o.Actions == nil {
		o.Actions = action.Catalogue()
	}
	if o.Parser == nil {
		o.Parser = parser.NewParser(parser.Options{})
	}
	var ps Problems
	seen := map[string]Source{}
	for i := range rbs {
		rb := &rbs[i]
		v := &validator{rb: rb, o: o}
		v.check()
		if prev, dup := seen[rb.Name]; dup && rb.Name != "" {
			v.add("name", ClassDuplicate, fmt.Sprintf("runbook %q is also defined at %s:%d", rb.Name, prev.File, prev.Line))
		} else {
			seen[rb.Name] = rb.Source
		}
		ps = append(ps, v.probs...)
	}
	ps.Sort()
	return ps
}

type validator struct {
	rb    *Runbook
	o     ValidateOptions
	probs Problems
}

func (v *validator) add(field, class, msg string) {
	v.addAt(field, v.rb.Source.Pos(field), class, msg)
}

func (v *validator) addAt(field string, pos Position, class, msg string) {
	v.probs = append(v.probs, Problem{File: v.rb.Source.File, Line: pos.Line, Column: pos.Column,
		Runbook: v.rb.Name, Field: field, Class: class, Message: msg})
}

// automatic reports whether the runbook runs without a person asking.
func (rb *Runbook) automatic() bool {
	k := rb.Trigger.Kind()
	return k != "" && k != TriggerManual
}

func (v *validator) check() {
	rb := v.rb
	switch {
	case rb.Name == "":
		v.add("name", ClassRequired, "required")
	case !nameRE.MatchString(rb.Name):
		v.add("name", ClassValue, fmt.Sprintf("must match %s (it is used in URLs and metrics), got %q", nameRE, rb.Name))
	}
	v.checkTrigger()
	v.checkTarget()
	for i, g := range rb.Preconditions {
		f := fmt.Sprintf("preconditions[%d]", i)
		if g.Expr == "" {
			v.add(f+".expr", ClassRequired, "required")
			continue
		}
		v.checkExpr(f+".expr", g.Expr)
	}
	v.checkSteps()
	v.checkSafety()
	v.checkSecrets()
	if err := CheckTemplate("escalate.message", rb.Escalate.Message); err != nil {
		v.add("escalate.message", ClassTemplate, err.Error())
	} else {
		v.checkTargetRefs("escalate.message", rb.Escalate.Message)
	}
	for i, n := range rb.Escalate.Notify {
		if strings.TrimSpace(n) == "" {
			v.add(fmt.Sprintf("escalate.notify[%d]", i), ClassValue, "must not be empty")
		}
	}
}

func (v *validator) checkTrigger() {
	t := v.rb.Trigger
	switch t.Kind() {
	case "":
		v.add("trigger", ClassRequired, "set exactly one of alert, condition, anomaly, forecast, incident or manual")
		return
	case TriggerManual:
		if len(t.Matchers) > 0 {
			v.add("trigger.matchers", ClassValue, "a manual runbook has no matchers; targets are given when it is run")
		}
	case TriggerCondition:
		switch {
		case t.Condition != nil:
			if t.Condition.Expr == "" {
				v.add("trigger.condition.expr", ClassRequired, "required")
			} else {
				v.checkExpr("trigger.condition.expr", t.Condition.Expr)
			}
		case t.Anomaly != nil:
			if t.Anomaly.Metric == "" {
				v.add("trigger.anomaly.metric", ClassRequired, "required: the analysed metric (aiops_metric label)")
			}
			if !(t.Anomaly.Score > 0 && t.Anomaly.Score <= 1) {
				v.add("trigger.anomaly.score", ClassValue, fmt.Sprintf("must be in (0, 1], got %g", t.Anomaly.Score))
			}
		case t.Forecast != nil:
			if t.Forecast.Metric == "" {
				v.add("trigger.forecast.metric", ClassRequired, "required: the forecast metric (aiops_metric label)")
			}
			if t.Forecast.Within <= 0 {
				v.add("trigger.forecast.within", ClassRequired, "required: how soon exhaustion must be forecast, e.g. 4h")
			}
		}
	case TriggerIncident:
		if len(t.Incident.Severities) == 0 {
			v.add("trigger.incident.severities", ClassRequired, "name at least one severity")
		}
	}
	for i, m := range t.Matchers {
		if _, err := parse.Matcher(m); err != nil {
			v.add(fmt.Sprintf("trigger.matchers[%d]", i), ClassMatcher, fmt.Sprintf("bad matcher %q: %v", m, err))
		}
	}
}

func (v *validator) checkTarget() {
	rb := v.rb
	if len(rb.Target) == 0 {
		v.add("target", ClassRequired, "name at least one label of what the runbook acts on (an empty target is never \"everything\")")
		return
	}
	for _, k := range sortedKeys(rb.Target) {
		f := "target." + k
		if !model.LabelName(k).IsValid() {
			v.add(f, ClassValue, fmt.Sprintf("%q is not a valid label name", k))
		}
		if strings.TrimSpace(rb.Target[k]) == "" {
			v.add(f, ClassRequired, "must not be empty")
			continue
		}
		if err := CheckTemplate(f, rb.Target[k]); err != nil {
			v.add(f, ClassTemplate, err.Error())
		} else if refs := TargetRefs(rb.Target[k]); len(refs) > 0 {
			v.add(f, ClassTemplate, fmt.Sprintf("$target.%s: $target is empty while the target renders; use $labels", refs[0]))
		}
	}
}

// checkTargetRefs refuses a template that reads a target label the
// runbook's target does not define: it would render empty, and a step
// would act on that (an optional parameter left out, a query over all).
func (v *validator) checkTargetRefs(field, text string) {
	for _, k := range TargetRefs(text) {
		if _, ok := v.rb.Target[k]; !ok && len(v.rb.Target) > 0 {
			v.add(field, ClassTemplate, fmt.Sprintf("$target.%s: the target has no label %q (it has %s)", k, k, strings.Join(sortedKeys(v.rb.Target), ", ")))
			return
		}
	}
}

func (v *validator) checkSteps() {
	rb := v.rb
	if len(rb.Steps) == 0 {
		v.add("steps", ClassRequired, "a runbook needs at least one step")
		return
	}
	verifies, lastMutating := 0, -1
	for i, s := range rb.Steps {
		f := fmt.Sprintf("steps[%d]", i)
		spec, ok := v.checkStep(f, s)
		if s.Verify != nil {
			verifies++
			v.checkVerify(f+".verify", *s.Verify)
		}
		if ok && spec.Mutating {
			lastMutating = i
		}
		switch s.OnFailure {
		case "", OnFailureNext, OnFailureEscalate:
		case OnFailureRollback:
			if len(rb.Rollback) == 0 {
				v.add(f+".on_failure", ClassValue, "rollback needs rollback steps")
			}
		default:
			v.add(f+".on_failure", ClassValue, fmt.Sprintf("must be next, rollback or escalate, got %q", s.OnFailure))
		}
		if s.OnFailure == OnFailureNext && i == len(rb.Steps)-1 {
			v.add(f+".on_failure", ClassValue, "the last step has no next step; use escalate or rollback")
		}
	}
	switch {
	case verifies == 0:
		v.add("steps", ClassVerify, "no step has a verify: nothing would check that the fix worked")
	case lastMutating >= 0 && rb.Steps[lastMutating].Verify == nil:
		v.add(fmt.Sprintf("steps[%d]", lastMutating), ClassVerify,
			fmt.Sprintf("step %q changes the system and is the last to do so, but has no verify", stepName(rb.Steps[lastMutating], lastMutating)))
	}
	for i, s := range rb.Rollback {
		f := fmt.Sprintf("rollback[%d]", i)
		v.checkStep(f, s)
		if s.Verify != nil {
			v.add(f+".verify", ClassValue, "rollback steps are not verified; escalation follows a rollback")
		}
		if s.OnFailure != "" {
			v.add(f+".on_failure", ClassValue, "rollback steps run in order whatever happens")
		}
	}
}

func stepName(s Step, i int) string {
	if s.Name != "" {
		return s.Name
	}
	return fmt.Sprintf("#%d", i+1)
}

func (v *validator) checkStep(f string, s Step) (action.Spec, bool) {
	if s.Retries < 0 {
		v.add(f+".retries", ClassValue, fmt.Sprintf("must be >= 0, got %d", s.Retries))
	} else if s.Retries > MaxRetries {
		v.add(f+".retries", ClassUnsafe, fmt.Sprintf("%d retries hammer a failing system; at most %d", s.Retries, MaxRetries))
	}
	if s.Timeout < 0 {
		v.add(f+".timeout", ClassValue, "must be >= 0")
	} else if time.Duration(s.Timeout) > MaxStepTimeout {
		v.add(f+".timeout", ClassUnsafe, fmt.Sprintf("longer than %s: a stuck action would hold its target that long", MaxStepTimeout))
	}
	if s.Action == "" {
		v.add(f+".action", ClassRequired, "required; one of "+strings.Join(action.Names(), ", "))
		return action.Spec{}, false
	}
	spec, ok := v.o.Actions[s.Action]
	if !ok {
		v.add(f+".action", ClassAction, fmt.Sprintf("unknown action %q%s", s.Action, closest(s.Action, v.o.Actions)))
		return action.Spec{}, false
	}
	for _, name := range sortedKeys(s.Params) {
		pf := f + ".params." + name
		ps, ok := spec.Param(name)
		if !ok {
			var names []string
			for _, p := range spec.Params {
				names = append(names, p.Name)
			}
			v.add(pf, ClassAction, fmt.Sprintf("%s has no parameter %q; it takes %s", s.Action, name, strings.Join(names, ", ")))
			continue
		}
		p := s.Params[name]
		wantKind := KindString
		switch ps.Type {
		case action.TypeList:
			wantKind = KindList
		case action.TypeMap:
			wantKind = KindMap
		}
		if p.Kind != wantKind {
			v.add(pf, ClassType, fmt.Sprintf("must be a %s", map[string]string{KindString: "string", KindList: "list of strings", KindMap: "map of strings"}[wantKind]))
			continue
		}
		for _, str := range p.Strings() {
			if err := CheckTemplate(pf, str); err != nil {
				v.add(pf, ClassTemplate, err.Error())
			} else if v.checkTargetRefs(pf, str); wantKind == KindString && !strings.Contains(str, "{{") {
				if err := ps.CheckValue(str); err != nil {
					v.add(pf, ClassType, err.Error())
				}
			}
		}
	}
	for _, ps := range spec.Params {
		if _, ok := s.Params[ps.Name]; ps.Required && !ok {
			v.add(f+".params", ClassRequired, fmt.Sprintf("%s needs parameter %q (%s)", s.Action, ps.Name, ps.Doc))
		}
	}
	return spec, true
}

func (v *validator) checkVerify(f string, vr Verify) {
	if vr.Expr == "" {
		v.add(f+".expr", ClassRequired, "required: the PromQL condition that shows the fix worked")
	} else {
		v.checkExpr(f+".expr", vr.Expr)
	}
	switch {
	case vr.For < 0:
		v.add(f+".for", ClassValue, "must be >= 0")
	case vr.Within <= 0:
		v.add(f+".within", ClassRequired, "required: the deadline for the condition to hold, e.g. 5m")
	case vr.Within < vr.For:
		v.add(f+".within", ClassVerify, fmt.Sprintf("%s is shorter than for (%s): the condition could never hold long enough", vr.Within, vr.For))
	case time.Duration(vr.Within) > MaxVerifyWait:
		v.add(f+".within", ClassUnsafe, fmt.Sprintf("longer than %s: the target stays held and the problem unescalated that long", MaxVerifyWait))
	}
	if vr.Interval < 0 || vr.Interval > 0 && vr.Interval > vr.Within {
		v.add(f+".interval", ClassValue, "must be > 0 and at most within")
	}
}

func (v *validator) checkSafety() {
	rb := v.rb
	s := rb.Safety
	switch s.Mode {
	case "", ModeLive, ModeShadow:
	default:
		v.add("safety.mode", ClassValue, fmt.Sprintf("must be live or shadow, got %q", s.Mode))
	}
	a := s.Approval
	if len(a.Approvers) > 0 && !a.Required {
		v.add("safety.approval.approvers", ClassValue, "approvers without required: true would never be asked")
	}
	for i, who := range a.Approvers {
		if strings.TrimSpace(who) == "" {
			v.add(fmt.Sprintf("safety.approval.approvers[%d]", i), ClassValue, "must not be empty")
		}
	}
	if a.Timeout < 0 {
		v.add("safety.approval.timeout", ClassValue, "must be >= 0")
	} else if time.Duration(a.Timeout) > MaxApproval {
		v.add("safety.approval.timeout", ClassUnsafe, fmt.Sprintf("longer than %s: an approval that late acts on a stale picture", MaxApproval))
	}
	if s.Cooldown < 0 {
		v.add("safety.cooldown", ClassValue, "must be >= 0")
	}
	if s.MaxRuns.Count < 0 {
		v.add("safety.max_runs.count", ClassValue, "must be >= 0")
	} else if s.MaxRuns.Count > 0 && s.MaxRuns.Window <= 0 {
		v.add("safety.max_runs.window", ClassRequired, "required with count, e.g. 1h")
	}
	live := rb.automatic() && !rb.Shadow() && v.mutates()
	if live && s.Cooldown == 0 {
		v.add("safety", ClassUnsafe, "no cooldown: an alert that keeps firing would run it back to back; set safety.cooldown")
	}
	if live && s.MaxRuns.Count == 0 {
		v.add("safety", ClassUnsafe, "no run limit: set safety.max_runs (count and window) so that a loop stops")
	}
	if s.LeaseTTL < 0 {
		v.add("safety.lease_ttl", ClassValue, "must be >= 0")
	} else if s.LeaseTTL > 0 && time.Duration(s.LeaseTTL) < MinLeaseTTL {
		v.add("safety.lease_ttl", ClassUnsafe, fmt.Sprintf("shorter than %s: a busy engine could fail to renew it and two runs would share a target", MinLeaseTTL))
	}
	b := s.BlastRadius
	if b.MaxTargets < 0 {
		v.add("safety.blast_radius.max_targets", ClassValue, "must be >= 0")
	}
	if b.MaxFraction < 0 || b.MaxFraction > 1 {
		v.add("safety.blast_radius.max_fraction", ClassValue, fmt.Sprintf("must be in [0, 1], got %g", b.MaxFraction))
	}
	if b.MaxFraction > 0 && b.Population == "" {
		v.add("safety.blast_radius.population", ClassRequired, "required with max_fraction: a PromQL count of the fleet")
	}
	if b.Population != "" {
		v.checkExpr("safety.blast_radius.population", b.Population)
	}
	if b.MinHealthy != "" {
		v.checkExpr("safety.blast_radius.min_healthy", b.MinHealthy)
	}
	for i, w := range s.MaintenanceWindows {
		if err := w.Validate(); err != nil {
			var fe *fieldErr
			f := fmt.Sprintf("safety.maintenance_windows[%d]", i)
			if errors.As(err, &fe) {
				f += "." + fe.field
			}
			v.add(f, ClassValue, err.Error())
		}
	}
}

// mutates reports whether some step or rollback step changes the system.
func (v *validator) mutates() bool {
	for _, s := range append(slices.Clone(v.rb.Steps), v.rb.Rollback...) {
		if spec, ok := v.o.Actions[s.Action]; !ok || spec.Mutating {
			return true
		}
	}
	return false
}

func (v *validator) checkSecrets() {
	rb := v.rb
	for _, name := range sortedKeys(rb.Secrets) {
		ref := rb.Secrets[name]
		if (ref.Env == "") == (ref.File == "") {
			v.add("secrets."+name, ClassValue, "set exactly one of env or file")
		}
	}
	// Every secret a template reads must be declared.
	check := func(field, text string) {
		for _, n := range SecretNames(text) {
			if _, ok := rb.Secrets[n]; !ok {
				v.add(field, ClassTemplate, fmt.Sprintf("secret %q is not declared under secrets", n))
			}
		}
	}
	for i, list := range [][]Step{rb.Steps, rb.Rollback} {
		for j, s := range list {
			for _, name := range sortedKeys(s.Params) {
				for _, str := range s.Params[name].Strings() {
					check(fmt.Sprintf("%s[%d].params.%s", []string{"steps", "rollback"}[i], j, name), str)
				}
			}
		}
	}
	// Secrets belong in action parameters only: a secret in a target,
	// a query or a message would be shown.
	for k, t := range rb.Target {
		if len(SecretNames(t)) > 0 {
			v.add("target."+k, ClassUnsafe, "a target is recorded and shown; it must not read a secret")
		}
	}
	if len(SecretNames(rb.Escalate.Message)) > 0 {
		v.add("escalate.message", ClassUnsafe, "the message is shown to people; it must not read a secret")
	}
	for i, s := range rb.Steps {
		if p, ok := s.Params["message"]; ok && s.Action == "notify" && len(SecretNames(p.Str)) > 0 {
			v.add(fmt.Sprintf("steps[%d].params.message", i), ClassUnsafe, "a notification is shown to people; it must not read a secret")
		}
	}
}

// checkExpr checks a templated PromQL expression: the template parses,
// and the expression rendered with placeholder labels parses. Errors in
// an expression without template actions point into the expression.
func (v *validator) checkExpr(field, expr string) {
	if err := CheckTemplate(field, expr); err != nil {
		v.add(field, ClassTemplate, err.Error())
		return
	}
	v.checkTargetRefs(field, expr)
	if len(SecretNames(expr)) > 0 {
		v.add(field, ClassUnsafe, "a query is recorded and shown; it must not read a secret")
		return
	}
	text := expr
	if strings.Contains(expr, "{{") {
		r := Renderer{Query: func(context.Context, string, time.Time) (promql.Vector, error) { return nil, nil }}
		out, err := r.Render(context.Background(), field, expr, Data{}, time.Unix(0, 0), nil)
		if err != nil {
			return // needs real data; checked when it runs
		}
		text = out.Value
	}
	_, err := v.o.Parser.ParseExpr(text)
	if err == nil {
		return
	}
	pos := v.rb.Source.Pos(field)
	var pe parser.ParseErrors
	if errors.As(err, &pe) && len(pe) > 0 {
		msg := pe[0].Err.Error()
		if !strings.Contains(expr, "{{") {
			pos = pos.at(expr, int(pe[0].PositionRange.Start))
		}
		v.addAt(field, pos, ClassPromQL, "bad PromQL: "+msg)
		return
	}
	v.addAt(field, pos, ClassPromQL, "bad PromQL: "+err.Error())
}

// at is the position of byte offset off within the scalar value that
// starts at p.
func (p Position) at(value string, off int) Position {
	// The end of input is shown after the last character, not on the
	// empty line a block scalar's final newline starts.
	off = min(max(off, 0), len(strings.TrimRight(value, "\n")))
	if p.block > 0 {
		before := value[:off]
		nl := strings.Count(before, "\n")
		col := off - (strings.LastIndex(before, "\n") + 1)
		return Position{Line: p.Line + 1 + nl, Column: p.block + 1 + col}
	}
	return Position{Line: p.Line, Column: p.Column + p.quote + off}
}

func closest(name string, specs map[string]action.Spec) string {
	best, bestD := "", 4
	for _, k := range slices.Sorted(mapsKeys(specs)) {
		if d := editDistance(name, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return "; actions are " + strings.Join(action.Names(), ", ")
	}
	return fmt.Sprintf("; did you mean %q?", best)
}
