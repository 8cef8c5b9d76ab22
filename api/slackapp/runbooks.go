package slackapp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/slack-go/slack"

	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/api/auth"
)

// ActionRunbookChoice is the menu of runbooks the "Run runbook…" button
// offers (slacknotify.ActionRunRunbook). An option's value is the
// incident id and a digest of the runbook and target: what runs is
// looked up again when it is chosen, so a value sent by hand can only
// pick among what matches the incident then.
const ActionRunbookChoice = "incident_runbook_choice"

// RunbookMatch is a runbook that matches an incident's alerts.
type RunbookMatch struct {
	Runbook string
	// Trigger is what it matches: an alert's name, or "incident".
	Trigger string
	// Target is what a run would act on, as /aiops runbook run takes it
	// ({instance="api-0", service="api"}); empty when it does not
	// render, and Problem then says why.
	Target  string
	Problem string
}

// maxMenuOptions is Slack's limit on the options of a static select.
const maxMenuOptions = 100

func choiceKey(m RunbookMatch) string {
	sum := sha256.Sum256([]byte(m.Runbook + "\x00" + m.Target))
	return hex.EncodeToString(sum[:6])
}

// runbookMenu answers the "Run runbook…" button of an incident: a menu
// of the runbooks that match its alerts, with the targets they would
// act on, or why there is none.
func (a *App) runbookMenu(ctx context.Context, id string) (string, []slack.Block, error) {
	if id == "" {
		return "", nil, fmt.Errorf("%w: the button names no incident", incident.ErrInvalid)
	}
	inc, err := a.o.Incidents.Get(id)
	if err != nil {
		return "", nil, err
	}
	if inc.Status == incident.StatusResolved {
		return fmt.Sprintf("✅ %s is resolved: no runbook to run.", esc(inc.ID)), nil, nil
	}
	ms, err := a.rem.Runbooks(ctx, inc)
	if err != nil {
		return "", nil, err
	}
	var opts []*slack.OptionBlockObject
	var problems []string
	for _, m := range ms {
		if m.Target == "" {
			problems = append(problems, fmt.Sprintf("• %s (%s): %s", esc(m.Runbook), esc(m.Trigger), esc(m.Problem)))
			continue
		}
		if len(opts) == maxMenuOptions {
			continue
		}
		opts = append(opts, slack.NewOptionBlockObject(inc.ID+" "+choiceKey(m),
			slack.NewTextBlockObject(slack.PlainTextType, clip(m.Runbook+" on "+m.Target, 72), false, false),
			slack.NewTextBlockObject(slack.PlainTextType, clip("matches "+m.Trigger, 72), false, false)))
	}
	if len(opts) == 0 {
		if len(problems) == 0 {
			return fmt.Sprintf("No runbook matches the alerts of %s.", esc(inc.ID)), nil, nil
		}
		return clip(fmt.Sprintf("No runbook can run for %s: those that match have no target.\n%s", esc(inc.ID), strings.Join(problems, "\n")), 2900), nil, nil
	}
	text := fmt.Sprintf("Runbooks that match the alerts of %s: choose one to run it on its target (the safety rails and approvals apply, as to `/aiops runbook run`).", esc(inc.ID))
	sel := slack.NewOptionsSelectBlockElement(slack.OptTypeStatic,
		slack.NewTextBlockObject(slack.PlainTextType, "Choose a runbook", false, false), ActionRunbookChoice, opts...)
	blocks := []slack.Block{
		slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, text, false, false), nil, nil),
		slack.NewActionBlock("runbooks:"+inc.ID, sel),
	}
	if len(problems) > 0 {
		blocks = append(blocks, slack.NewContextBlock("runbook_problems",
			slack.NewTextBlockObject(slack.MarkdownType, clip("Not offered, no target:\n"+strings.Join(problems, "\n"), 2900), false, false)))
	}
	return text, blocks, nil
}

// runChosen runs the runbook chosen from the menu as /aiops runbook run
// runs it: the same command, under the same scope and audit.
func (a *App) runChosen(ctx context.Context, p auth.Principal, value string) (string, error) {
	id, key := idAndRest(value)
	if id == "" || key == "" {
		return "", fmt.Errorf("%w: the choice names no incident and runbook", incident.ErrInvalid)
	}
	inc, err := a.o.Incidents.Get(id)
	if err != nil {
		return "", err
	}
	ms, err := a.rem.Runbooks(ctx, inc)
	if err != nil {
		return "", err
	}
	for _, m := range ms {
		if m.Target != "" && choiceKey(m) == key {
			return a.runRunbook(ctx, p, "run "+m.Runbook+" "+m.Target, inc.ID)
		}
	}
	return "", fmt.Errorf("%w: the runbook chosen no longer matches the alerts of %s; press Run runbook… again", incident.ErrStale, inc.ID)
}
