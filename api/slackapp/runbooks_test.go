package slackapp

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/aiops-dev/aiops/alerting/slacknotify"
	tu "github.com/aiops-dev/aiops/internal/testutil"
)

// choose picks an option of the runbook menu as user, as Slack sends a
// static select.
func (e *env) choose(user, incidentID, value string) {
	e.t.Helper()
	cb := map[string]any{
		"container":  map[string]any{"type": "message", "channel_id": "CINC", "is_ephemeral": true},
		"type":       "block_actions",
		"trigger_id": strconv.FormatInt(triggers.Add(1), 10) + ".1.abc",
		"user":       map[string]any{"id": user, "name": strings.ToLower(user)},
		"channel":    map[string]any{"id": "CINC"},
		"actions": []map[string]any{{
			"action_id": ActionRunbookChoice, "block_id": "runbooks:" + incidentID, "type": "static_select",
			"selected_option": map[string]any{"text": map[string]any{"type": "plain_text", "text": "x"}, "value": value},
		}},
	}
	payload, _ := json.Marshal(cb)
	code, body := e.post(PathInteractions, formType, []byte(url.Values{"payload": {string(payload)}}.Encode()))
	if code != http.StatusOK {
		e.t.Fatalf("choose: %d %s", code, body)
	}
}

// menuFor waits for the runbook menu sent to user and returns its
// options.
func (e *env) menuFor(user string) []*slack.OptionBlockObject {
	e.t.Helper()
	var opts []*slack.OptionBlockObject
	tu.WaitFor(e.t, "runbook menu for "+user, 5*time.Second, func() bool {
		for _, m := range e.slack.Ephemerals() {
			if m.User != user {
				continue
			}
			for _, b := range m.Blocks.BlockSet {
				ab, ok := b.(*slack.ActionBlock)
				if !ok {
					continue
				}
				for _, el := range ab.Elements.ElementSet {
					if sel, ok := el.(*slack.SelectBlockElement); ok && sel.ActionID == ActionRunbookChoice {
						opts = sel.Options
						return true
					}
				}
			}
		}
		return false
	})
	return opts
}

// TestRunRunbookButton: "Run runbook…" offers the runbooks that match
// the incident's alerts, with their targets, in a menu; choosing one
// runs it as /aiops runbook run does, under the same scope and audit.
func TestRunRunbookButton(t *testing.T) {
	e := newEnv(t)
	inc := e.open("g1", "HighErrorRate")

	// Nothing matches: said so.
	e.click("UADMIN", slacknotify.ActionRunRunbook, inc.ID)
	e.ephemeralFor("UADMIN", "No runbook matches the alerts of "+inc.ID)

	e.rem.matches = []RunbookMatch{
		{Runbook: "restart-api", Trigger: "HighErrorRate", Target: `{instance="api-1", service="checkout"}`},
		{Runbook: "scale-out", Trigger: "incident", Target: `{service="checkout"}`},
		{Runbook: "broken", Trigger: "HighErrorRate", Problem: "target.host: rendered empty"},
	}
	// Offering needs the scope that running needs.
	e.click("UREADER", slacknotify.ActionRunRunbook, inc.ID)
	e.ephemeralFor("UREADER", "may not runbook_menu: it needs the execute scope")

	e.click("UADMIN", slacknotify.ActionRunRunbook, inc.ID)
	opts := e.menuFor("UADMIN")
	if len(opts) != 2 || opts[0].Text.Text != `restart-api on {instance="api-1", service="checkout"}` || opts[1].Text.Text != `scale-out on {service="checkout"}` {
		t.Fatalf("options %+v", opts)
	}
	e.ephemeralFor("UADMIN", "Runbooks that match the alerts of "+inc.ID)

	// A reader cannot run it by sending the choice.
	e.choose("UREADER", inc.ID, opts[0].Value)
	e.ephemeralFor("UREADER", "may not runbook: it needs the execute scope")
	e.choose("UADMIN", inc.ID, opts[0].Value)
	e.ephemeralFor("UADMIN", `Runbook restart-api started on {instance="api-1", service="checkout"} (execution ex-1)`)
	// The run is the incident's: its steps go in the incident's timeline.
	if runs := e.rem.ranRuns(); len(runs) != 1 || runs[0] != `root restart-api {instance="api-1", service="checkout"} for `+inc.ID {
		t.Fatalf("runs %q", runs)
	}
	// A value made up, or one that no longer matches, runs nothing.
	e.choose("UADMIN", inc.ID, inc.ID+" 0123456789ab")
	e.ephemeralFor("UADMIN", "no longer matches the alerts of "+inc.ID)
	e.choose("UADMIN", inc.ID, "inc-nope "+strings.Fields(opts[0].Value)[1])
	e.ephemeralFor("UADMIN", "incident not found: inc-nope")
	if runs := e.rem.ranRuns(); len(runs) != 1 {
		t.Fatalf("runs %q", runs)
	}

	var audited, refused bool
	for _, r := range e.audit.all() {
		if r.Path == PathInteractions+" runbook" && r.Principal == "root" && r.Status == http.StatusOK {
			audited = true
		}
		if r.Path == PathInteractions+" runbook" && r.Principal == "rita" && r.Status == http.StatusForbidden {
			refused = true
		}
	}
	if !audited || !refused {
		t.Fatalf("audit (run by root %v, refused for rita %v): %+v", audited, refused, e.audit.all())
	}
}
