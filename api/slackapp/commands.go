package slackapp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/slack-go/slack"

	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/alerting/slacknotify"
	"github.com/aiops-dev/aiops/api/auth"
	"github.com/aiops-dev/aiops/remediation/engine"
)

// command is one /aiops subcommand.
type command struct {
	name  string
	args  string
	help  string
	scope auth.Scope
	run   func(a *App, ctx context.Context, p auth.Principal, args string) (string, error)
}

// commands are the /aiops subcommands. usage and helpText, reached from
// the commands' own functions, call commandTable instead: reading the
// variable there would be an initialization cycle.
var commands = commandTable()

func commandTable() []command {
	return []command{
		{"help", "", "this list", auth.ScopeRead, nil}, // runCommand answers it
		{"incidents", "", "the incidents not resolved", auth.ScopeRead, (*App).cmdIncidents},
		{"incident", "ID", "one incident", auth.ScopeRead, (*App).cmdIncident},
		{"ack", "ID [COMMENT]", "acknowledge", auth.ScopeWrite, (*App).cmdAck},
		{"resolve", "ID [COMMENT]", "resolve", auth.ScopeWrite, (*App).cmdResolve},
		{"assign", "ID WHO", "assign (\"-\" unassigns)", auth.ScopeWrite, (*App).cmdAssign},
		{"note", "ID TEXT", "add a note to the timeline", auth.ScopeWrite, (*App).cmdNote},
		{"escalate", "ID [COMMENT]", "escalate one level", auth.ScopeWrite, (*App).cmdEscalate},
		{"silence", "ID|{MATCHERS} DURATION [COMMENT]", "silence an incident's alerts, or the alerts a selector matches", auth.ScopeWrite, (*App).cmdSilence},
		{"approve", "EXECUTION", "approve a remediation waiting for approval", auth.ScopeApprove, (*App).cmdApprove},
		{"deny", "EXECUTION [REASON]", "deny it", auth.ScopeApprove, (*App).cmdDeny},
		{"runbook", "run NAME TARGET", "start a runbook by hand", auth.ScopeExecute, (*App).cmdRunbook},
		{"query", "PROMQL [RANGE]", "evaluate a query now, with a chart of the last RANGE (1h)", auth.ScopeRead, (*App).cmdQuery},
		{"pause", "remediation", "stop all automatic remediation (kill switch)", auth.ScopeExecute, (*App).cmdPause},
		{"resume", "remediation", "let remediation act again", auth.ScopeAdmin, (*App).cmdResume},
	}
}

func helpText() string {
	var b strings.Builder
	b.WriteString("*/aiops* commands:\n")
	for _, c := range commandTable() {
		fmt.Fprintf(&b, "• `%s`", strings.TrimSpace(c.name+" "+c.args))
		fmt.Fprintf(&b, " — %s (%s)\n", c.help, c.scope)
	}
	return b.String()
}

// maxCommandBytes bounds the text of a command; Slack sends at most a few
// KB, and a larger text is not Slack's.
const maxCommandBytes = 8 << 10

// runCommand runs one /aiops command for p and returns the answer.
func (a *App) runCommand(ctx context.Context, p auth.Principal, text string) string {
	text = strings.TrimSpace(text)
	if len(text) > maxCommandBytes {
		return fmt.Sprintf("⚠️ The command is longer than %d bytes.", maxCommandBytes)
	}
	name, args, _ := strings.Cut(text, " ")
	name, args = strings.ToLower(name), strings.TrimSpace(args)
	if name == "" {
		name = "help"
	}
	for _, c := range commands {
		if c.name != name {
			continue
		}
		if c.run == nil {
			out, _ := a.perform(ctx, p, PathCommands, c.name, c.scope, func() (string, error) { return helpText(), nil })
			return out
		}
		out, _ := a.perform(ctx, p, PathCommands, c.name, c.scope, func() (string, error) { return c.run(a, ctx, p, args) })
		return out
	}
	a.commands.WithLabelValues("unknown", "error").Inc()
	return fmt.Sprintf("⚠️ Unknown command %q. `/aiops help` lists them.", esc(name))
}

// perform checks p's scope for an action, runs it, counts and audits it,
// and returns what to tell the user and whether it was done.
func (a *App) perform(ctx context.Context, p auth.Principal, path, action string, need auth.Scope, run func() (string, error)) (string, bool) {
	if !p.Has(need) {
		a.commands.WithLabelValues(action, "forbidden").Inc()
		a.audit(ctx, p, path, action, http.StatusForbidden, auth.ReasonForbidden)
		a.logger.Warn("Slack user refused", "principal", p.ID, "action", action, "needs", need)
		return fmt.Sprintf("⛔ You (%s) may not %s: it needs the %s scope. Ask an aiops admin to map your Slack user (slack.users).", esc(p.ID), action, need), false
	}
	out, err := run()
	status := http.StatusOK
	if err != nil {
		a.commands.WithLabelValues(action, "error").Inc()
		status = statusOf(err)
		out = "⚠️ " + esc(err.Error())
		if notLeader(err) {
			out = notLeaderText
		}
	} else {
		a.commands.WithLabelValues(action, "ok").Inc()
	}
	if need != auth.ScopeRead {
		a.audit(ctx, p, path, action, status, "")
	}
	return out, err == nil
}

// notLeaderText answers a change asked of the follower of an HA pair:
// Slack sent it to this replica, but the other one holds the lease and
// writes incidents and runs remediation. Reads answer on both.
const notLeaderText = "⚠️ This aiops replica is not the leader of its HA pair right now (the other one writes incidents and runs remediation): nothing was changed. Try again in a few seconds."

func notLeader(err error) bool {
	return errors.Is(err, incident.ErrNotLeader) || errors.Is(err, engine.ErrNotLeader)
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, incident.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, incident.ErrInvalid), errors.Is(err, errUsage):
		return http.StatusBadRequest
	case errors.Is(err, incident.ErrResolved), errors.Is(err, incident.ErrStale):
		return http.StatusConflict
	case errors.Is(err, ErrNoRemediation):
		return http.StatusNotImplemented
	}
	var se interface{ HTTPStatus() int }
	if errors.As(err, &se) {
		return se.HTTPStatus()
	}
	return http.StatusInternalServerError
}

var errUsage = errors.New("usage")

func usage(name string) error {
	for _, c := range commandTable() {
		if c.name == name {
			return fmt.Errorf("%w: /aiops %s %s", errUsage, c.name, c.args)
		}
	}
	return errUsage
}

// idAndRest splits "ID rest of it".
func idAndRest(args string) (id, rest string) {
	id, rest, _ = strings.Cut(args, " ")
	return id, strings.TrimSpace(rest)
}

func action(p auth.Principal, comment string) incident.Action {
	return incident.Action{Actor: p.ID, Comment: comment}
}

func (a *App) cmdIncidents(_ context.Context, _ auth.Principal, _ string) (string, error) {
	incs, next := a.o.Incidents.List(incident.Query{Statuses: []incident.Status{incident.StatusOpen, incident.StatusAcknowledged}, Limit: 20})
	if len(incs) == 0 {
		return "No incident is open. 🎉", nil
	}
	var b strings.Builder
	for _, inc := range incs {
		b.WriteString(summaryLine(inc) + "\n")
	}
	if next != nil {
		b.WriteString("… and more (the 20 newest are shown)\n")
	}
	return b.String(), nil
}

func summaryLine(inc incident.Incident) string {
	sev := inc.Severity
	if sev == "" {
		sev = "none"
	}
	return fmt.Sprintf("• `%s` [%s] %s — %s, %d firing", esc(inc.ID), esc(sev), esc(inc.Title), inc.Status, inc.FiringAlerts)
}

func (a *App) cmdIncident(_ context.Context, _ auth.Principal, args string) (string, error) {
	id, _ := idAndRest(args)
	if id == "" {
		return "", usage("incident")
	}
	inc, err := a.o.Incidents.Get(id)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(summaryLine(inc) + "\n")
	fmt.Fprintf(&b, "opened %s", inc.OpenedAt.UTC().Format(time.DateTime+" MST"))
	if inc.AcknowledgedBy != "" {
		fmt.Fprintf(&b, ", acknowledged by %s", esc(inc.AcknowledgedBy))
	}
	if inc.ResolvedBy != "" {
		fmt.Fprintf(&b, ", resolved by %s", esc(inc.ResolvedBy))
	}
	if inc.Assignee != "" {
		fmt.Fprintf(&b, ", assigned to %s", esc(inc.Assignee))
	}
	if inc.EscalationLevel > 0 {
		fmt.Fprintf(&b, ", escalation level %d", inc.EscalationLevel)
	}
	b.WriteString("\n")
	for i, al := range inc.Alerts {
		if i == 10 {
			fmt.Fprintf(&b, "… %d more alerts\n", len(inc.Alerts)-i)
			break
		}
		fmt.Fprintf(&b, "  – %s %s (%s)\n", esc(al.Labels["alertname"]), esc(al.Labels["instance"]), al.Status)
	}
	return b.String(), nil
}

func (a *App) cmdAck(ctx context.Context, p auth.Principal, args string) (string, error) {
	id, comment := idAndRest(args)
	if id == "" {
		return "", usage("ack")
	}
	inc, err := a.o.Incidents.Acknowledge(ctx, id, action(p, comment))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("🟠 %s is acknowledged by %s.", esc(inc.ID), esc(inc.AcknowledgedBy)), nil
}

func (a *App) cmdResolve(ctx context.Context, p auth.Principal, args string) (string, error) {
	id, comment := idAndRest(args)
	if id == "" {
		return "", usage("resolve")
	}
	inc, err := a.o.Incidents.Resolve(ctx, id, action(p, comment))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("✅ %s is resolved (by %s).", esc(inc.ID), esc(inc.ResolvedBy)), nil
}

func (a *App) cmdAssign(ctx context.Context, p auth.Principal, args string) (string, error) {
	id, who := idAndRest(args)
	if id == "" || who == "" {
		return "", usage("assign")
	}
	if who == "-" {
		who = ""
	}
	inc, err := a.o.Incidents.Assign(ctx, id, who, action(p, ""))
	if err != nil {
		return "", err
	}
	if inc.Assignee == "" {
		return fmt.Sprintf("%s is unassigned.", esc(inc.ID)), nil
	}
	return fmt.Sprintf("%s is assigned to %s.", esc(inc.ID), esc(inc.Assignee)), nil
}

func (a *App) cmdNote(ctx context.Context, p auth.Principal, args string) (string, error) {
	id, text := idAndRest(args)
	if id == "" || text == "" {
		return "", usage("note")
	}
	if _, err := a.o.Incidents.AddNote(ctx, id, text, action(p, "")); err != nil {
		return "", err
	}
	return fmt.Sprintf("📝 Noted in %s.", esc(id)), nil
}

func (a *App) cmdEscalate(ctx context.Context, p auth.Principal, args string) (string, error) {
	id, comment := idAndRest(args)
	if id == "" {
		return "", usage("escalate")
	}
	inc, err := a.o.Incidents.Escalate(ctx, id, action(p, comment))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("⏫ %s is escalated to level %d.", esc(inc.ID), inc.EscalationLevel), nil
}

var selectorParser = parser.NewParser(parser.Options{})

// cmdSilence silences an incident ("ID 2h why") or a selector
// ("{alertname=\"X\"} 2h why"; the comment is then required).
func (a *App) cmdSilence(ctx context.Context, p auth.Principal, args string) (string, error) {
	var target, rest string
	if strings.HasPrefix(args, "{") {
		end := strings.LastIndex(args, "}")
		if end < 0 {
			return "", fmt.Errorf("%w: matchers: no closing } in %q", incident.ErrInvalid, args)
		}
		target, rest = args[:end+1], strings.TrimSpace(args[end+1:])
	} else {
		target, rest = idAndRest(args)
	}
	durS, comment := idAndRest(rest)
	if target == "" || durS == "" {
		return "", usage("silence")
	}
	dur, err := model.ParseDuration(durS)
	if err != nil || dur <= 0 {
		return "", fmt.Errorf("%w: duration: %q is not a duration such as 30m or 2h", incident.ErrInvalid, durS)
	}
	spec := incident.SilenceSpec{Duration: time.Duration(dur), Comment: comment}
	if !strings.HasPrefix(target, "{") {
		if spec.Comment == "" {
			spec.Comment = "silenced from Slack by " + p.ID
		}
		inc, sil, err := a.o.Silences.SilenceIncident(ctx, target, spec, action(p, ""))
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("🔕 %s is silenced until %s (silence %s).", esc(inc.ID), sil.EndsAt.UTC().Format(time.DateTime+" MST"), esc(sil.ID)), nil
	}
	ms, err := selectorParser.ParseMetricSelector(target)
	if err != nil {
		return "", fmt.Errorf("%w: matchers: %v", incident.ErrInvalid, err)
	}
	spec.Matchers = ms
	sil, err := a.o.Silences.CreateSilence(ctx, spec, p.ID)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("🔕 Silence %s of %s until %s.", esc(sil.ID), esc(sil.Matchers), sil.EndsAt.UTC().Format(time.DateTime+" MST")), nil
}

func (a *App) cmdApprove(ctx context.Context, p auth.Principal, args string) (string, error) {
	id, _ := idAndRest(args)
	if id == "" {
		return "", usage("approve")
	}
	if err := a.rem.Approve(ctx, id, p); err != nil {
		return "", err
	}
	return fmt.Sprintf("👍 Execution %s approved by %s.", esc(id), esc(p.ID)), nil
}

func (a *App) cmdDeny(ctx context.Context, p auth.Principal, args string) (string, error) {
	id, reason := idAndRest(args)
	if id == "" {
		return "", usage("deny")
	}
	if err := a.rem.Deny(ctx, id, p, reason); err != nil {
		return "", err
	}
	return fmt.Sprintf("👎 Execution %s denied by %s.", esc(id), esc(p.ID)), nil
}

func (a *App) cmdRunbook(ctx context.Context, p auth.Principal, args string) (string, error) {
	return a.runRunbook(ctx, p, args, "")
}

// runRunbook is /aiops runbook run, for incidentID when chosen on an
// incident's message.
func (a *App) runRunbook(ctx context.Context, p auth.Principal, args, incidentID string) (string, error) {
	sub, rest := idAndRest(args)
	name, target := idAndRest(rest)
	if sub != "run" || name == "" || target == "" {
		return "", usage("runbook")
	}
	exec, err := a.rem.Run(ctx, name, target, incidentID, p)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("▶️ Runbook %s started on %s (execution %s).", esc(name), esc(target), esc(exec)), nil
}

func (a *App) cmdPause(ctx context.Context, p auth.Principal, args string) (string, error) {
	if args != "remediation" {
		return "", usage("pause")
	}
	if err := a.rem.Pause(ctx, p); err != nil {
		return "", err
	}
	return "⏸ Remediation is paused: no runbook acts until `/aiops resume remediation`.", nil
}

func (a *App) cmdResume(ctx context.Context, p auth.Principal, args string) (string, error) {
	if args != "remediation" {
		return "", usage("resume")
	}
	if err := a.rem.Resume(ctx, p); err != nil {
		return "", err
	}
	return "▶️ Remediation is resumed.", nil
}

// runAction runs a button press or a choice and returns what to tell
// the user and whether it was done.
func (a *App) runAction(ctx context.Context, p auth.Principal, actionID, value string) (answer, bool) {
	text := func(s string, ok bool) (answer, bool) { return answer{text: s}, ok }
	switch actionID {
	case slacknotify.ActionAcknowledge:
		return text(a.perform(ctx, p, PathInteractions, "ack", auth.ScopeWrite, func() (string, error) { return a.cmdAck(ctx, p, value) }))
	case slacknotify.ActionResolve:
		return text(a.perform(ctx, p, PathInteractions, "resolve", auth.ScopeWrite, func() (string, error) { return a.cmdResolve(ctx, p, value) }))
	case slacknotify.ActionSilence:
		return text(a.perform(ctx, p, PathInteractions, "silence", auth.ScopeWrite, func() (string, error) { return a.silenceHour(ctx, p, value) }))
	case slacknotify.ActionApprove:
		return text(a.perform(ctx, p, PathInteractions, "approve", auth.ScopeApprove, func() (string, error) { return a.cmdApprove(ctx, p, value) }))
	case slacknotify.ActionDeny:
		return text(a.perform(ctx, p, PathInteractions, "deny", auth.ScopeApprove, func() (string, error) { return a.cmdDeny(ctx, p, value+" denied from Slack") }))
	case slacknotify.ActionRunRunbook:
		var blocks []slack.Block
		out, ok := a.perform(ctx, p, PathInteractions, "runbook_menu", auth.ScopeExecute, func() (string, error) {
			t, b, err := a.runbookMenu(ctx, value)
			blocks = b
			return t, err
		})
		return answer{text: out, blocks: blocks}, ok
	case ActionRunbookChoice:
		// The same action, scope and audit as /aiops runbook run.
		return text(a.perform(ctx, p, PathInteractions, "runbook", auth.ScopeExecute, func() (string, error) { return a.runChosen(ctx, p, value) }))
	}
	a.commands.WithLabelValues("unknown_button", "error").Inc()
	return text(fmt.Sprintf("⚠️ This button (%s) is not one aiops knows.", esc(actionID)), false)
}

// silenceHour is the Silence 1 h button. A second press while the
// incident's silence from Slack still runs creates no second silence.
func (a *App) silenceHour(ctx context.Context, p auth.Principal, id string) (string, error) {
	evs, err := a.o.Incidents.Timeline(ctx, id)
	if err != nil {
		return "", err
	}
	now := a.now()
	for i := len(evs) - 1; i >= 0; i-- {
		if e := evs[i]; e.Type == incident.EventSilenced && e.Silence != nil && e.Silence.EndsAt.After(now) {
			return fmt.Sprintf("🔕 %s is already silenced until %s (silence %s).", esc(id), e.Silence.EndsAt.UTC().Format(time.DateTime+" MST"), esc(e.Silence.ID)), nil
		}
	}
	return a.cmdSilence(ctx, p, id+" 1h silenced from Slack")
}

// esc keeps user and label text from becoming Slack markup (links,
// @channel mentions).
func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// maxQueryRows bounds the series an /aiops query answer lists.
const maxQueryRows = 20

// Query charts: the range drawn when none is given, and the longest.
const (
	defaultQueryRange = time.Hour
	maxQueryRange     = 7 * 24 * time.Hour // errors say 7d
	// uploadTimeout bounds the chart's upload, after the query's time.
	uploadTimeout = 30 * time.Second
)

// splitRange reads "PROMQL [RANGE]": a last word that is a duration
// (1h, 30m) is the range when what comes before it is PromQL on its own.
func splitRange(args string) (expr string, rng time.Duration, err error) {
	expr, rng = args, defaultQueryRange
	if i := strings.LastIndexAny(args, " \t"); i > 0 {
		if d, derr := model.ParseDuration(args[i+1:]); derr == nil {
			if _, perr := selectorParser.ParseExpr(strings.TrimSpace(args[:i])); perr == nil {
				expr, rng = strings.TrimSpace(args[:i]), time.Duration(d)
			}
		}
	}
	if _, err := selectorParser.ParseExpr(expr); err != nil {
		return "", 0, fmt.Errorf("%w: query: %v", incident.ErrInvalid, err)
	}
	if rng <= 0 || rng > maxQueryRange {
		return "", 0, fmt.Errorf("%w: range: %s must be more than 0s and at most 7d", incident.ErrInvalid, model.Duration(rng))
	}
	return expr, rng, nil
}

// cmdQuery checks the expression at once and, after answering, evaluates
// it now and over the range, telling the user alone (through the
// command's response_url) the values and a chart: a PNG drawn as the
// incident charts are, uploaded through the files API and shown in the
// answer.
func (a *App) cmdQuery(ctx context.Context, _ auth.Principal, args string) (string, error) {
	if args == "" {
		return "", usage("query")
	}
	if a.o.Query == nil {
		return "", errors.New("queries from Slack are not configured on this aiops server")
	}
	expr, rng, err := splitRange(args)
	if err != nil {
		return "", err
	}
	timeout := a.o.QueryTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	at := a.now()
	started := a.later(ctx, func(ctx context.Context) answer {
		qctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		v, err := a.o.Query(qctx, expr, at)
		if err != nil {
			return answer{text: "⚠️ " + esc(expr) + ": " + esc(err.Error())}
		}
		ans := answer{text: formatVector(expr, v)}
		if a.o.QueryRange == nil {
			return ans
		}
		png, err := slacknotify.Chart(qctx, slacknotify.ChartSource{QueryRange: a.o.QueryRange, Events: a.o.Events}, expr, at.Add(-rng), at)
		switch {
		case err != nil:
			ans.text += "\n⚠️ No chart: " + esc(err.Error())
			return ans
		case png == nil:
			ans.text += fmt.Sprintf("\nNo data over the last %s to draw.", model.Duration(rng))
			return ans
		}
		// Shared with nobody: the answer alone shows it, to the user alone.
		uctx, cancel := context.WithTimeout(ctx, uploadTimeout)
		defer cancel()
		f, err := slacknotify.UploadChart(uctx, a.o.Slack, png, "query.png", expr, "", "")
		if err != nil {
			a.logger.Warn("Uploading the chart of a Slack query failed", "err", err)
			ans.text += "\n⚠️ The chart could not be uploaded to Slack: " + esc(err.Error())
			return ans
		}
		title := fmt.Sprintf("%s — last %s", expr, model.Duration(rng))
		ans.blocks = []slack.Block{
			slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, clip(ans.text, 2900), false, false), nil, nil),
			slack.NewImageBlockSlackFile(&slack.SlackFileObject{ID: f.ID}, slacknotify.ChartAltText(expr), "chart",
				slack.NewTextBlockObject(slack.PlainTextType, clip(title, 1900), false, false)),
		}
		return ans
	})
	if !started {
		return "", errors.New("query: no channel to answer in")
	}
	return fmt.Sprintf("⏳ Evaluating `%s` (chart of the last %s); the answer follows here.", esc(expr), model.Duration(rng)), nil
}

// clip cuts s to at most n bytes on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func formatVector(expr string, v promql.Vector) string {
	if len(v) == 0 {
		return "`" + esc(expr) + "`: no data"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "`%s`: %d series\n```\n", esc(expr), len(v))
	for i, s := range v {
		if i == maxQueryRows {
			fmt.Fprintf(&b, "… %d more\n", len(v)-i)
			break
		}
		val := strconv.FormatFloat(s.F, 'g', 6, 64)
		if s.H != nil {
			val = fmt.Sprintf("histogram (count %g)", s.H.Count)
		}
		fmt.Fprintf(&b, "%s %s\n", esc(s.Metric.String()), val)
	}
	b.WriteString("```")
	return b.String()
}
