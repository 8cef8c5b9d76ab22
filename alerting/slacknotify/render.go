package slacknotify

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/aiops-dev/aiops/alerting/incident"
)

// Action ids of the buttons on the messages; the interactive endpoint
// (api/slackapp) dispatches on them. An incident button's value is the
// incident id, an approval button's the remediation execution id.
const (
	ActionAcknowledge = "incident_acknowledge"
	ActionResolve     = "incident_resolve"
	ActionSilence     = "incident_silence_1h"
	ActionApprove     = "remediation_approve"
	ActionDeny        = "remediation_deny"
	// ActionRunRunbook offers the runbooks that match the incident's
	// alerts (Deps.OfferRunbooks).
	ActionRunRunbook = "incident_run_runbook"
)

// Limits Slack puts on blocks (a longer text makes the call fail with
// invalid_blocks, which no retry repairs).
const (
	maxHeader  = 150
	maxSection = 3000
	maxAlerts  = 5
	maxCauses  = 3
)

// render is the incident's message: the summary, what fires, the
// probable causes, the runbooks, links and, while it is not resolved,
// the buttons. text is the notification fallback.
func (n *Notifier) render(inc incident.Incident) (text string, blocks []slack.Block) {
	sev := inc.Severity
	if sev == "" {
		sev = "none"
	}
	head := fmt.Sprintf("%s [%s] %s", statusEmoji(inc.Status), strings.ToUpper(sev), inc.Title)
	text = fmt.Sprintf("[%s] %s — %s", strings.ToUpper(sev), inc.Title, inc.Status)
	blocks = append(blocks, slack.NewHeaderBlock(plain(truncate(head, maxHeader))))

	fields := []*slack.TextBlockObject{
		mrkdwn("*Status*\n" + esc(statusLine(inc))),
		mrkdwn("*Severity*\n" + esc(sev)),
		mrkdwn("*Service*\n" + esc(orDash(strings.Join(inc.Services, ", ")))),
		mrkdwn(fmt.Sprintf("*Firing alerts*\n%d", inc.FiringAlerts+inc.AlertsOverLimit)),
	}
	if inc.Assignee != "" {
		fields = append(fields, mrkdwn("*Assignee*\n"+esc(inc.Assignee)))
	}
	if inc.EscalationLevel > 0 {
		fields = append(fields, mrkdwn(fmt.Sprintf("*Escalation*\nlevel %d", inc.EscalationLevel)))
	}
	summary := ""
	if inc.Summary != "" {
		summary = esc(inc.Summary)
	}
	blocks = append(blocks, slack.NewSectionBlock(mrkdwnOrNil(truncate(summary, maxSection)), fields, nil))

	if lines := alertLines(inc); lines != "" {
		blocks = append(blocks, slack.NewSectionBlock(mrkdwn(truncate(lines, maxSection)), nil, nil))
	}
	if rc := causeLines(inc.RootCauses); rc != "" {
		blocks = append(blocks, slack.NewSectionBlock(mrkdwn(truncate(rc, maxSection)), nil, nil))
	}
	if rb := runbookLines(inc.Runbooks); rb != "" {
		blocks = append(blocks, slack.NewSectionBlock(mrkdwn(truncate(rb, maxSection)), nil, nil))
	}
	if links := n.links(inc); len(links) > 0 {
		var els []slack.MixedElement
		for _, l := range links {
			els = append(els, mrkdwn(l))
		}
		blocks = append(blocks, slack.NewContextBlock("links", els...))
	}
	if inc.Status != incident.StatusResolved {
		var buttons []slack.BlockElement
		if inc.Status == incident.StatusOpen {
			buttons = append(buttons, slack.NewButtonBlockElement(ActionAcknowledge, inc.ID, plain("Acknowledge")).WithStyle(slack.StylePrimary))
		}
		buttons = append(buttons,
			slack.NewButtonBlockElement(ActionResolve, inc.ID, plain("Resolve")),
			slack.NewButtonBlockElement(ActionSilence, inc.ID, plain("Silence 1 h")).WithStyle(slack.StyleDanger))
		if n.deps.OfferRunbooks {
			buttons = append(buttons, slack.NewButtonBlockElement(ActionRunRunbook, inc.ID, plain("Run runbook…")))
		}
		blocks = append(blocks, slack.NewActionBlock("incident:"+inc.ID, buttons...))
	}
	return text, blocks
}

func statusEmoji(s incident.Status) string {
	switch s {
	case incident.StatusAcknowledged:
		return "🟠"
	case incident.StatusResolved:
		return "✅"
	}
	return "🔴"
}

func statusLine(inc incident.Incident) string {
	switch inc.Status {
	case incident.StatusAcknowledged:
		return "acknowledged by " + orDash(inc.AcknowledgedBy)
	case incident.StatusResolved:
		return "resolved by " + orDash(inc.ResolvedBy)
	}
	if inc.Reopens > 0 {
		return fmt.Sprintf("open (reopened %d×)", inc.Reopens)
	}
	return "open"
}

func alertLines(inc incident.Incident) string {
	var b strings.Builder
	shown := 0
	for _, a := range inc.Alerts {
		if a.Status != incident.AlertFiring {
			continue
		}
		if shown == maxAlerts {
			break
		}
		shown++
		fmt.Fprintf(&b, "• *%s* %s", esc(a.Labels["alertname"]), esc(labelString(a.Labels)))
		if s := a.Annotations["summary"]; s != "" {
			fmt.Fprintf(&b, " — %s", esc(s))
		}
		b.WriteString("\n")
	}
	if more := inc.FiringAlerts + inc.AlertsOverLimit - shown; more > 0 && shown > 0 {
		fmt.Fprintf(&b, "… and %d more firing\n", more)
	}
	if b.Len() == 0 {
		return ""
	}
	return "*Firing*\n" + b.String()
}

func labelString(ls map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(ls)) {
		if k == "alertname" {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s=%q", k, ls[k]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func causeLines(rc *incident.RootCauses) string {
	if rc == nil || len(rc.Causes) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("*Probable causes*\n")
	for i, c := range rc.Causes[:min(len(rc.Causes), maxCauses)] {
		fmt.Fprintf(&b, "%d. *%s* (score %.2f, %d anomalies from %s)", i+1, esc(c.Service), c.Score, c.Anomalies, c.Onset.UTC().Format(time.TimeOnly))
		if len(c.Reasons) > 0 {
			fmt.Fprintf(&b, ": %s", esc(strings.Join(c.Reasons, "; ")))
		}
		b.WriteString("\n")
	}
	return b.String()
}

func runbookLines(rbs []incident.RunbookRun) string {
	if len(rbs) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("*Runbooks*\n")
	for _, r := range rbs {
		state := "running"
		if r.FinishedAt != nil {
			state = orDash(r.Outcome)
		}
		fmt.Fprintf(&b, "• %s: %s", esc(r.Runbook), esc(state))
		if r.Message != "" {
			fmt.Fprintf(&b, " — %s", esc(r.Message))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// links are the incident in the API and the expressions of its alerts.
func (n *Notifier) links(inc incident.Incident) []string {
	var out []string
	base := strings.TrimRight(n.cfg.ExternalURL, "/")
	if base != "" {
		out = append(out, fmt.Sprintf("<%s/api/v1/incidents/%s|incident %s>", base, url.PathEscape(inc.ID), esc(inc.ID)))
	} else {
		out = append(out, "incident "+esc(inc.ID))
	}
	for _, l := range inc.Links[:min(len(inc.Links), 3)] {
		u := l.GeneratorURL
		if strings.HasPrefix(u, "/") && base != "" {
			u = base + u
		}
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") {
			continue
		}
		name := l.Alertname
		if name == "" {
			name = "query"
		}
		out = append(out, fmt.Sprintf("<%s|%s query>", strings.NewReplacer("|", "%7C", ">", "%3E").Replace(u), esc(name)))
	}
	return out
}

// threadLine is how one timeline event is told in the incident's thread;
// "" for events the message itself shows and alert events, which are
// told together (alertsLine).
func threadLine(e incident.Event) string {
	who := esc(orDash(e.Actor))
	with := func(s string) string {
		if e.Comment == "" {
			return s
		}
		return s + ": " + esc(truncate(e.Comment, 1000))
	}
	switch e.Type {
	case incident.EventAcknowledged:
		return with("🟠 Acknowledged by " + who)
	case incident.EventResolved:
		s := "✅ Resolved by " + who
		if e.Reason != "" {
			s += " (" + esc(e.Reason) + ")"
		}
		return with(s)
	case incident.EventReopened:
		s := "🔴 Reopened"
		if e.Reason != "" {
			s += " (" + esc(e.Reason) + ")"
		}
		return s
	case incident.EventAssigned:
		if e.Assignee == nil || *e.Assignee == "" {
			return with("Unassigned by " + who)
		}
		return with("Assigned to " + esc(*e.Assignee) + " by " + who)
	case incident.EventNote:
		return "📝 " + who + ": " + esc(truncate(e.Comment, maxSection-200))
	case incident.EventEscalated:
		return with(fmt.Sprintf("⏫ Escalated to level %d by %s", e.Level, who))
	case incident.EventSilenced:
		s := "🔕 Silenced by " + who
		if e.Silence != nil {
			s += fmt.Sprintf(" until %s (silence %s)", e.Silence.EndsAt.UTC().Format(time.DateTime+" MST"), esc(e.Silence.ID))
		}
		return with(s)
	case incident.EventRunbookStarted:
		if e.Runbook != nil {
			return with("▶️ Runbook " + esc(e.Runbook.Runbook) + " started by " + who)
		}
	case incident.EventRunbookFinished:
		if e.Runbook != nil {
			s := "⏹ Runbook " + esc(e.Runbook.Runbook) + " finished: " + esc(orDash(e.Runbook.Outcome))
			if e.Runbook.Message != "" {
				s += " — " + esc(e.Runbook.Message)
			}
			return s
		}
	case incident.EventRootCauses:
		if rc := causeLines(e.RootCauses); rc != "" {
			return "🔎 " + rc
		}
		if e.RootCauses != nil && e.RootCauses.Error != "" {
			return "🔎 No root-cause ranking: " + esc(e.RootCauses.Error)
		}
	}
	return ""
}

// alertsLine tells the alert events of one batch together, so that a
// storm makes one reply rather than hundreds.
func alertsLine(evs []incident.Event) string {
	var firing, resolved []string
	for _, e := range evs {
		if e.Alert == nil {
			continue
		}
		name := esc(e.Alert.Labels["alertname"]) + " " + esc(labelString(e.Alert.Labels))
		switch e.Type {
		case incident.EventAlertFiring:
			firing = append(firing, name)
		case incident.EventAlertResolved:
			resolved = append(resolved, name)
		}
	}
	var b strings.Builder
	list := func(title string, names []string) {
		if len(names) == 0 {
			return
		}
		fmt.Fprintf(&b, "%s (%d): %s", title, len(names), strings.Join(names[:min(len(names), maxAlerts)], ", "))
		if len(names) > maxAlerts {
			fmt.Fprintf(&b, ", … %d more", len(names)-maxAlerts)
		}
		b.WriteString("\n")
	}
	list("🔥 Firing", firing)
	list("🟢 Resolved", resolved)
	return strings.TrimSuffix(b.String(), "\n")
}

func plain(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, s, true, false)
}

func mrkdwn(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
}

func mrkdwnOrNil(s string) *slack.TextBlockObject {
	if s == "" {
		return nil
	}
	return mrkdwn(s)
}

// esc escapes what Slack's mrkdwn treats as markup: labels and comments
// come from anyone who can send an alert or call the API, and must not
// become links or mentions (<!channel>).
func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary.
	cut := n - len("…")
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

func renderApproval(req ApprovalRequest) (string, []slack.Block) {
	text := fmt.Sprintf("Runbook %s on %s is waiting for approval (execution %s)", req.Runbook, req.Target, req.ExecutionID)
	var b strings.Builder
	fmt.Fprintf(&b, "🛂 *Approval needed*: runbook *%s* on `%s` (execution `%s`)\n", esc(req.Runbook), esc(req.Target), esc(req.ExecutionID))
	for i, s := range req.Steps[:min(len(req.Steps), 10)] {
		fmt.Fprintf(&b, "%d. %s\n", i+1, esc(s))
	}
	if len(req.Approvers) > 0 {
		fmt.Fprintf(&b, "Approvers: %s\n", esc(strings.Join(req.Approvers, ", ")))
	}
	if !req.Deadline.IsZero() {
		fmt.Fprintf(&b, "Denied automatically at %s if nobody decides.\n", req.Deadline.UTC().Format(time.DateTime+" MST"))
	}
	blocks := []slack.Block{
		slack.NewSectionBlock(mrkdwn(truncate(b.String(), maxSection)), nil, nil),
		slack.NewActionBlock("approval:"+req.ExecutionID,
			slack.NewButtonBlockElement(ActionApprove, req.ExecutionID, plain("Approve")).WithStyle(slack.StylePrimary),
			slack.NewButtonBlockElement(ActionDeny, req.ExecutionID, plain("Deny")).WithStyle(slack.StyleDanger)),
	}
	return text, blocks
}
