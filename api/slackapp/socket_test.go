package slackapp

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/alerting/slacknotify"
	tu "github.com/aiops-dev/aiops/internal/testutil"
)

// TestSocketModeEnvelopesHandledAndAcknowledged: over Socket Mode a
// command is answered in its acknowledgement and a button press acts,
// through the same handlers as the HTTP endpoints.
func TestSocketModeEnvelopesHandledAndAcknowledged(t *testing.T) {
	e := newEnv(t)
	const appToken = "xapp-1-test"
	e.slack.EnableSocketMode(appToken)
	cfg := e.cfg
	cfg.APIURL = e.slack.URL()
	app, err := New(Options{Config: cfg, Incidents: e.mg, Silences: e.silence, Slack: e.app.o.Slack, Logger: tu.Logger(t), Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	sm, err := app.SocketMode(appToken)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sm.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		app.Close()
	})
	tu.WaitFor(t, "socket mode connected", 10*time.Second, func() bool { return e.slack.SocketConnections() == 1 })

	inc := e.open("g1", "HighErrorRate")
	env, err := e.slack.SendEnvelope("slash_commands", map[string]string{
		"command": "/aiops", "text": "ack " + inc.ID, "user_id": "UALICE", "user_name": "alice", "channel_id": "CINC",
	})
	if err != nil {
		t.Fatal(err)
	}
	var ack json.RawMessage
	tu.WaitFor(t, "command acknowledged", 10*time.Second, func() bool {
		var ok bool
		ack, ok = e.slack.Ack(env)
		return ok
	})
	var reply slashReply
	if err := json.Unmarshal(ack, &reply); err != nil || !strings.Contains(reply.Text, "acknowledged by alice") {
		t.Fatalf("acknowledgement payload %s (%v)", ack, err)
	}

	env, err = e.slack.SendEnvelope("interactive", map[string]any{
		"type": "block_actions", "user": map[string]string{"id": "UALICE"}, "channel": map[string]string{"id": "CINC"},
		"actions": []map[string]string{{"action_id": slacknotify.ActionResolve, "block_id": "incident:" + inc.ID, "value": inc.ID}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tu.WaitFor(t, "button acknowledged", 10*time.Second, func() bool { _, ok := e.slack.Ack(env); return ok })
	if g, _ := e.mg.Get(inc.ID); g.Status != incident.StatusResolved || g.ResolvedBy != "alice" {
		t.Fatalf("after the button over Socket Mode: %s by %q", g.Status, g.ResolvedBy)
	}
	env, err = e.slack.SendEnvelope("events_api", map[string]any{"type": "event_callback", "event_id": "Ev9", "event": map[string]string{"type": "app_mention", "text": "hi"}})
	if err != nil {
		t.Fatal(err)
	}
	tu.WaitFor(t, "event acknowledged", 10*time.Second, func() bool { _, ok := e.slack.Ack(env); return ok })
}
