package slackapp

import (
	"context"
	"os"
	"path/filepath"
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

// TestButtonOnPostedMessageUpdatesIt goes the whole way: an incident
// opens, the notifier posts it, a user presses the message's own
// Acknowledge button, and the message changes.
func TestButtonOnPostedMessageUpdatesIt(t *testing.T) {
	e := newEnv(t)
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
