package slackapp

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/alerting/slacknotify"
	"github.com/aiops-dev/aiops/internal/slackstandin"
	tu "github.com/aiops-dev/aiops/internal/testutil"
)

// buttons returns the action id → value of the buttons on a message.
func buttons(m slackstandin.Message) map[string]string {
	out := map[string]string{}
	for _, b := range m.Blocks.BlockSet {
		ab, ok := b.(*slack.ActionBlock)
		if !ok || ab.Elements == nil {
			continue
		}
		for _, el := range ab.Elements.ElementSet {
			if btn, ok := el.(*slack.ButtonBlockElement); ok {
				out[btn.ActionID] = btn.Value
			}
		}
	}
	return out
}

// startNotifier runs the notifier on the env's incidents and stand-in,
// posting to CINC.
func (e *env) startNotifier() *slacknotify.Notifier {
	t := e.t
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "bot")
	os.WriteFile(tokFile, []byte(botToken), 0o600)
	ncfg := slacknotify.DefaultConfig()
	ncfg.BotTokenFile, ncfg.APIURL, ncfg.Channel, ncfg.StateDir = tokFile, e.slack.URL(), "CINC", filepath.Join(dir, "state")
	n, err := slacknotify.New(ncfg, slacknotify.Deps{
		Incidents: e.mg, Feed: e.mg.Feed(incident.FeedOptions{PollInterval: 50 * time.Millisecond}), Head: e.mg.FeedHead,
		BotToken: botToken, Logger: tu.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return n
}

// TestButtonOnPostedMessageUpdatesIt goes the whole way: an incident
// opens, the notifier posts it, a user presses the message's own
// Acknowledge button, and the message changes.
func TestButtonOnPostedMessageUpdatesIt(t *testing.T) {
	e := newEnv(t)
	e.startNotifier()

	inc := e.open("g1", "HighErrorRate")
	tu.WaitFor(t, "incident posted", 5*time.Second, func() bool { return len(e.slack.TopLevel("CINC")) == 1 })
	msg := e.slack.TopLevel("CINC")[0]
	btn := buttons(msg)
	if btn[slacknotify.ActionAcknowledge] != inc.ID || btn[slacknotify.ActionResolve] != inc.ID || btn[slacknotify.ActionSilence] != inc.ID {
		t.Fatalf("buttons %v, want Acknowledge, Resolve and Silence for %s", btn, inc.ID)
	}

	e.click("UALICE", slacknotify.ActionAcknowledge, btn[slacknotify.ActionAcknowledge])
	tu.WaitFor(t, "message shows the acknowledgement", 5*time.Second, func() bool {
		m := e.slack.TopLevel("CINC")[0]
		_, hasAck := buttons(m)[slacknotify.ActionAcknowledge]
		return strings.Contains(m.Text, "acknowledged") && !hasAck
	})
	tu.WaitFor(t, "thread tells who", 5*time.Second, func() bool {
		for _, r := range e.slack.Replies("CINC", msg.TS) {
			if strings.Contains(r.Text, "Acknowledged by alice") {
				return true
			}
		}
		return false
	})
	e.click("UALICE", slacknotify.ActionResolve, inc.ID)
	tu.WaitFor(t, "resolved message has no buttons", 5*time.Second, func() bool {
		m := e.slack.TopLevel("CINC")[0]
		return strings.Contains(m.Text, "resolved") && len(buttons(m)) == 0
	})
	if got := len(e.slack.TopLevel("")); got != 1 {
		t.Fatalf("%d top-level messages, want 1", got)
	}
}

// TestApprovalRequestDecidedFromSlack: remediation asks for approval in
// the incident's thread; someone who is not an approver is told so, an
// approver's press reaches the engine, and the request loses its
// buttons.
func TestApprovalRequestDecidedFromSlack(t *testing.T) {
	e := newEnv(t)
	n := e.startNotifier()
	inc := e.open("g1", "DiskFull")
	tu.WaitFor(t, "incident posted", 5*time.Second, func() bool { return len(e.slack.TopLevel("CINC")) == 1 })
	top := e.slack.TopLevel("CINC")[0]

	err := n.RequestApproval(context.Background(), slacknotify.ApprovalRequest{
		IncidentID: inc.ID, ExecutionID: "exec-7", Runbook: "expand-volume", Target: "db-1",
		Approvers: []string{"alice"}, Steps: []string{"expand volume data by 20 %"},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Asked again (the engine's watcher after a restart): not posted twice.
	if err := n.RequestApproval(context.Background(), slacknotify.ApprovalRequest{IncidentID: inc.ID, ExecutionID: "exec-7"}); err != nil {
		t.Fatal(err)
	}
	var req slackstandin.Message
	requests := 0
	for _, r := range e.slack.Replies("CINC", top.TS) {
		if strings.Contains(r.Text, "exec-7") {
			req = r
			requests++
		}
	}
	if requests != 1 || !slices.Equal(n.PendingApprovals(), []string{"exec-7"}) {
		t.Fatalf("%d approval requests posted, pending %v; want 1, [exec-7]", requests, n.PendingApprovals())
	}
	btn := buttons(req)
	if btn[slacknotify.ActionApprove] != "exec-7" || btn[slacknotify.ActionDeny] != "exec-7" {
		t.Fatalf("approval request buttons %v", btn)
	}

	e.clickOn("UCAROL", slacknotify.ActionApprove, "exec-7", req.TS)
	e.ephemeralFor("UCAROL", "carol is not an approver")
	e.clickOn("UALICE", slacknotify.ActionApprove, "exec-7", req.TS)
	e.ephemeralFor("UALICE", "exec-7 approved by alice")
	tu.WaitFor(t, "the request loses its buttons", 5*time.Second, func() bool {
		for _, r := range e.slack.Replies("CINC", top.TS) {
			if r.TS == req.TS {
				return len(buttons(r)) == 0 && strings.Contains(r.Text, "approved by alice")
			}
		}
		return false
	})
	e.rem.mu.Lock()
	if e.rem.approved["exec-7"] != "alice" {
		t.Fatalf("approvals %v", e.rem.approved)
	}
	e.rem.mu.Unlock()

	// The engine's word on it replaces the request once more, and it is
	// no longer pending.
	if err := n.ApprovalDecided(context.Background(), "exec-7", "Approved by alice: running"); err != nil {
		t.Fatal(err)
	}
	for _, r := range e.slack.Replies("CINC", top.TS) {
		if r.TS == req.TS && (r.Text != "Approved by alice: running" || len(buttons(r)) != 0) {
			t.Fatalf("decided request %q, buttons %v", r.Text, buttons(r))
		}
	}
	if p := n.PendingApprovals(); len(p) != 0 {
		t.Fatalf("pending approvals %v after the decision", p)
	}
}
