package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/alerting/slacknotify"
	"github.com/aiops-dev/aiops/api/auth"
	"github.com/aiops-dev/aiops/api/slackapp"
	"github.com/aiops-dev/aiops/remediation/engine"
	"github.com/aiops-dev/aiops/remediation/runbook"
)

// slackRemediation is the remediation engine as the Slack app asks it
// (slackapp.Remediation).
type slackRemediation struct {
	eng *engine.Engine
}

// enginePrincipal is who acts in the engine's eyes. The aiops principal
// alone: a Slack user's display name is theirs to choose, and the engine
// matches approvers by name too.
func enginePrincipal(p auth.Principal) engine.Principal { return engine.Principal{ID: p.ID} }

func (r slackRemediation) Approve(ctx context.Context, id string, by auth.Principal) error {
	_, err := r.eng.Approve(ctx, id, enginePrincipal(by), "approved from Slack")
	return remediationErr(err)
}

func (r slackRemediation) Deny(ctx context.Context, id string, by auth.Principal, reason string) error {
	_, err := r.eng.Deny(ctx, id, enginePrincipal(by), reason)
	return remediationErr(err)
}

func (r slackRemediation) Run(ctx context.Context, name, target, incidentID string, by auth.Principal) (string, error) {
	t, err := parseTarget(target)
	if err != nil {
		return "", remediationErr(fmt.Errorf("%w: %w", engine.ErrInvalid, err))
	}
	x, err := r.eng.RunManualFor(ctx, incidentID, name, t, by.ID)
	if err != nil {
		return "", remediationErr(err)
	}
	return x.ID, nil
}

func (r slackRemediation) Pause(ctx context.Context, by auth.Principal) error {
	_, err := r.eng.Engage(ctx, enginePrincipal(by), "paused from Slack by "+by.ID)
	return remediationErr(err)
}

func (r slackRemediation) Resume(ctx context.Context, by auth.Principal) error {
	_, err := r.eng.Release(ctx, enginePrincipal(by), "resumed from Slack by "+by.ID)
	return remediationErr(err)
}

func (r slackRemediation) Runbooks(ctx context.Context, inc incident.Incident) ([]slackapp.RunbookMatch, error) {
	var out []slackapp.RunbookMatch
	for _, a := range r.eng.Applicable(ctx, inc) {
		m := slackapp.RunbookMatch{Runbook: a.Runbook, Trigger: a.Trigger, Problem: a.Problem}
		if a.Target != nil {
			// The selector form: a value with a comma or a space survives.
			m.Target = labels.FromMap(a.Target).String()
		}
		out = append(out, m)
	}
	return out, nil
}

var targetParser = parser.NewParser(parser.Options{})

// parseTarget reads a target as `aiops runbook run --target` takes it:
// labels, "service=api,instance=api-0" (commas or spaces between them),
// or a selector of equality matchers, {service="api", instance="api-0"},
// whose quoted values may hold anything.
func parseTarget(s string) (map[string]string, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "{") && strings.Contains(s, `"`) {
		ms, err := targetParser.ParseMetricSelector(s)
		if err != nil {
			return nil, fmt.Errorf("target: %v", err)
		}
		t := map[string]string{}
		for _, m := range ms {
			if m.Type != labels.MatchEqual || m.Name == labels.MetricName {
				return nil, fmt.Errorf("target: %s: a target names labels with =, not a metric or a pattern", m)
			}
			t[m.Name] = m.Value
		}
		return t, nil
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
	t := map[string]string{}
	for _, kv := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		k, v, ok := strings.Cut(kv, "=")
		v = strings.Trim(v, `"`)
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("target: %q is not label=value; give labels such as service=api,instance=api-0", kv)
		}
		t[k] = v
	}
	if len(t) == 0 {
		return nil, errors.New("target: give labels such as service=api,instance=api-0")
	}
	return t, nil
}

// engineError is an error of the engine with the status the REST API
// answers it with, which the Slack app audits.
type engineError struct{ err error }

// Error is the engine's message without the words of its sentinels that
// read as jargon in a chat ("conflict: ", "forbidden: "): what follows
// says it better.
func (e engineError) Error() string {
	msg := e.err.Error()
	for _, s := range []error{engine.ErrConflict, engine.ErrForbidden} {
		if errors.Is(e.err, s) {
			msg = strings.TrimPrefix(msg, s.Error()+": ")
		}
	}
	return msg
}
func (e engineError) Unwrap() error { return e.err }

func (e engineError) HTTPStatus() int {
	switch {
	case errors.Is(e.err, engine.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(e.err, engine.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(e.err, engine.ErrConflict), errors.Is(e.err, engine.ErrRefused):
		return http.StatusConflict
	case errors.Is(e.err, engine.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(e.err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func remediationErr(err error) error {
	if err == nil {
		return nil
	}
	return engineError{err}
}

// approvalRequests is where approval requests go (*slacknotify.Notifier):
// posted once per execution, and decided.
type approvalRequests interface {
	RequestApproval(ctx context.Context, req slacknotify.ApprovalRequest) error
	ApprovalDecided(ctx context.Context, executionID, outcome string) error
	PendingApprovals() []string
	MessageOf(incidentID string) (slacknotify.Message, bool)
}

// executions is what the watcher reads of the engine (*engine.Engine).
type executions interface {
	List(f engine.Filter) []engine.Execution
	Get(ctx context.Context, id string) (engine.Execution, []engine.Event, error)
	Runbook(name string) (*runbook.Runbook, bool)
}

// approvalWatcher follows the engine's executions and asks for approval
// in Slack when one waits for it, in the thread of its incident; when it
// no longer waits (approved or denied from Slack, the API or the CLI,
// timed out, cancelled) the request loses its buttons. The notifier
// journals the requests: a restart neither posts one twice nor leaves
// buttons on a request decided meanwhile.
//
// It polls the engine's executions in memory, which costs little; an
// approval is a person's decision, which a second's delay does not hurt.
type approvalWatcher struct {
	slack    approvalRequests
	execs    executions
	logger   *slog.Logger
	interval time.Duration
	// threadWait is how long a request waits for its incident's message
	// to be posted, to go in its thread, before it goes to the channel.
	threadWait time.Duration

	firstSeen map[string]time.Time
	gaveUp    map[string]bool
}

func newApprovalWatcher(slack approvalRequests, execs executions, logger *slog.Logger) *approvalWatcher {
	return &approvalWatcher{slack: slack, execs: execs, logger: logger, interval: time.Second, threadWait: 30 * time.Second,
		firstSeen: map[string]time.Time{}, gaveUp: map[string]bool{}}
}

// Run watches until ctx is done.
func (w *approvalWatcher) Run(ctx context.Context) error {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		w.sync(ctx, time.Now())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// sync posts the requests of executions newly waiting and takes the
// buttons from those decided.
func (w *approvalWatcher) sync(ctx context.Context, now time.Time) {
	waiting := map[string]bool{}
	for _, x := range w.execs.List(engine.Filter{States: []engine.State{engine.StatePendingApproval}}) {
		if x.DeniedBy != "" || x.Approval == nil {
			continue // denied: it ends in a moment
		}
		waiting[x.ID] = true
		if w.gaveUp[x.ID] {
			continue
		}
		if id := x.Trigger.IncidentID; id != "" {
			if _, ok := w.slack.MessageOf(id); !ok {
				first, seen := w.firstSeen[x.ID]
				if !seen {
					w.firstSeen[x.ID] = now
					continue
				}
				if now.Sub(first) < w.threadWait {
					continue // the incident's message is on its way
				}
			}
		}
		if err := w.slack.RequestApproval(ctx, w.request(x)); err != nil {
			if ctx.Err() != nil {
				return
			}
			w.logger.Error("Approval request not posted to Slack", "execution", x.ID, "err", err)
			if errors.Is(err, slacknotify.ErrUndeliverable) {
				w.gaveUp[x.ID] = true // counted and logged; the API and CLI still decide it
			}
		}
	}
	for id := range w.firstSeen {
		if !waiting[id] {
			delete(w.firstSeen, id)
			delete(w.gaveUp, id)
		}
	}
	for _, id := range w.slack.PendingApprovals() {
		if waiting[id] {
			continue
		}
		if err := w.slack.ApprovalDecided(ctx, id, w.outcome(ctx, id)); err != nil && ctx.Err() == nil {
			w.logger.Warn("A decided approval request not updated in Slack; trying again", "execution", id, "err", err)
		}
	}
}

func (w *approvalWatcher) request(x engine.Execution) slacknotify.ApprovalRequest {
	req := slacknotify.ApprovalRequest{IncidentID: x.Trigger.IncidentID, ExecutionID: x.ID, Runbook: x.Runbook,
		Target: runbook.TargetKey(x.Target), Approvers: x.Approval.Approvers, Deadline: x.Approval.Deadline}
	if rb, ok := w.execs.Runbook(x.Runbook); ok {
		for i, s := range rb.Steps {
			name := s.Name
			if name == "" {
				name = fmt.Sprintf("step %d", i+1)
			}
			// The action and its name, not its rendered parameters: those
			// are rendered when the step runs.
			req.Steps = append(req.Steps, name+" ("+s.Action+")")
		}
	}
	return req
}

// outcome says what became of a request no longer waiting.
func (w *approvalWatcher) outcome(ctx context.Context, id string) string {
	x, _, err := w.execs.Get(ctx, id)
	if err != nil {
		return fmt.Sprintf("Execution %s no longer waits for approval.", id)
	}
	what := fmt.Sprintf("runbook %s on %s (execution %s)", x.Runbook, runbook.TargetKey(x.Target), x.ID)
	switch {
	case x.ApprovedBy != "":
		return fmt.Sprintf("✅ Approved by %s: %s.", x.ApprovedBy, what)
	case x.DeniedBy != "":
		return fmt.Sprintf("🚫 Denied by %s: %s. %s", x.DeniedBy, what, x.Reason)
	}
	return fmt.Sprintf("%s no longer waits for approval: %s. %s", what, x.State, x.Reason)
}
