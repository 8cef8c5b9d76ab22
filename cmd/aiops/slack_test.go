package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aiops-dev/aiops/api/slackapp"
	"github.com/aiops-dev/aiops/internal/slackstandin"
	"github.com/aiops-dev/aiops/internal/testutil"
)

// TestServeSlack runs `aiops serve` with the slack: section against the
// Slack stand-in: a rule's alert opens an incident, which is posted; a
// signed /aiops command acknowledges it and the message follows; the
// endpoints take Slack's signature, not aiops tokens.
func TestServeSlack(t *testing.T) {
	const botToken, signingSecret = "xoxb-serve-test-token", "serve-test-signing-secret"
	sl := slackstandin.New(botToken)
	t.Cleanup(sl.Stop)

	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rules := write("rules.yml", `groups:
  - name: e2e
    interval: 500ms
    rules:
      - alert: CheckoutDown
        expr: vector(1)
        labels: {severity: critical, service: checkout}
        annotations: {summary: checkout is down}
`)
	amConf := write("alertmanager.yml", "route:\n  receiver: oncall\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\nreceivers:\n  - name: oncall\n")
	botFile := write("bot.token", botToken+"\n")
	secretFile := write("signing.secret", signingSecret)
	cfg := write("aiops.yaml", "alerting:\n  rule_files: ["+rules+"]\n  alertmanager_config_file: "+amConf+"\n  evaluation_interval: 500ms\n"+
		"slack:\n  bot_token_file: "+botFile+"\n  signing_secret_file: "+secretFile+"\n  api_url: "+sl.URL()+"\n  channel: C-ONCALL\n"+
		"  users:\n    UALICE: {principal: alice, scopes: [write]}\n")
	ts := startServe(t, filepath.Join(dir, "data"), "--config", cfg)

	testutil.WaitFor(t, "the incident posted to Slack", 90*time.Second, func() bool { return len(sl.TopLevel("C-ONCALL")) == 1 })
	msg := sl.TopLevel("C-ONCALL")[0]
	if !strings.Contains(msg.Text, "CheckoutDown") {
		t.Fatalf("message %q", msg.Text)
	}
	code, body := ts.get(t, "/api/v1/incidents?status=open", ts.token)
	var list struct{ Incidents []struct{ ID string } }
	if json.Unmarshal(body, &list); code != http.StatusOK || len(list.Incidents) != 1 {
		t.Fatalf("incidents: %d %s", code, body)
	}
	id := list.Incidents[0].ID

	send := func(form url.Values, sign bool, bearer string) (int, string) {
		b := []byte(form.Encode())
		req, _ := http.NewRequest(http.MethodPost, "http://"+ts.http+slackapp.PathCommands, strings.NewReader(string(b)))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if sign {
			now := time.Now().Unix()
			req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(now, 10))
			req.Header.Set("X-Slack-Signature", slackapp.Sign(signingSecret, now, b))
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var sb strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			sb.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return resp.StatusCode, sb.String()
	}
	ack := url.Values{"command": {"/aiops"}, "text": {"ack " + id}, "user_id": {"UALICE"}, "trigger_id": {"1"}}
	// The admin token opens every API but this one: Slack's endpoints
	// want Slack's signature.
	if code, body := send(ack, false, ts.token); code != http.StatusUnauthorized {
		t.Fatalf("unsigned command with the admin token: %d %s, want 401", code, body)
	}
	if code, body := send(ack, true, ""); code != http.StatusOK || !strings.Contains(body, "acknowledged by alice") {
		t.Fatalf("signed command: %d %s", code, body)
	}
	testutil.WaitFor(t, "message shows the acknowledgement", 30*time.Second, func() bool {
		return strings.Contains(sl.TopLevel("C-ONCALL")[0].Text, "acknowledged")
	})
	if code, _ := ts.get(t, "/metrics", ts.token); code != http.StatusOK {
		t.Fatal("metrics")
	}
	_, metrics := ts.get(t, "/metrics", ts.token)
	for _, want := range []string{`aiops_slack_messages_total{op="post"} 1`, `aiops_slack_requests_refused_total{reason="missing_signature"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if log := ts.stderr.String(); strings.Contains(log, botToken) || strings.Contains(log, signingSecret) {
		t.Fatal("a Slack secret appears in the server log")
	}

	// A restart continues the same message: a note after it goes in the
	// same thread, and nothing is posted again.
	if code := ts.stop(); code != 0 {
		t.Fatalf("serve exited with %d", code)
	}
	ts = startServe(t, filepath.Join(dir, "data"), "--config", cfg)
	note := url.Values{"command": {"/aiops"}, "text": {"note " + id + " after the restart"}, "user_id": {"UALICE"}, "trigger_id": {"2"}}
	if code, body := send(note, true, ""); code != http.StatusOK || !strings.Contains(body, "Noted") {
		t.Fatalf("note after restart: %d %s", code, body)
	}
	testutil.WaitFor(t, "the note in the incident's thread", 30*time.Second, func() bool {
		for _, r := range sl.Replies("C-ONCALL", msg.TS) {
			if strings.Contains(r.Text, "after the restart") {
				return true
			}
		}
		return false
	})
	if got := len(sl.TopLevel("C-ONCALL")); got != 1 {
		t.Fatalf("%d top-level messages after the restart, want 1", got)
	}
}
