package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/aiops-dev/aiops/alerting/slacknotify"
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

// TestServeSlackApprovals connects Slack to the remediation engine in a
// real `aiops serve`: an alert opens an incident, its runbook needs an
// approval, which is asked in the incident's thread (once, a restart
// too); a user without the approve scope is refused, alice's Approve lets
// the run act (the webhook is called, the timeline shows the step); a
// runbook run from Slack is denied from Slack, another through the REST
// API, and each request loses its buttons.
func TestServeSlackApprovals(t *testing.T) {
	const botToken, signingSecret = "xoxb-approvals-token", "approvals-signing-secret"
	sl := slackstandin.New(botToken)
	t.Cleanup(sl.Stop)
	var hits sync.Map // target service → calls
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		n, _ := hits.LoadOrStore(string(b), new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
	}))
	t.Cleanup(hook.Close)
	calls := func(service string) int64 {
		n, ok := hits.Load(service)
		if !ok {
			return 0
		}
		return n.(*atomic.Int64).Load()
	}

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
`)
	runbooks := write("runbooks.yml", `runbooks:
  - name: restart-checkout
    description: Restart what is down, once a person says so.
    trigger: {alert: CheckoutDown}
    target: {service: '{{ $labels.service }}'}
    steps:
      - name: restart it
        action: webhook
        params: {url: '`+hook.URL+`/restart', body: '{{ $target.service }}'}
        verify: {expr: 'vector(1) > 0', for: 1s, within: 1m}
    safety:
      approval: {required: true, approvers: [alice, bootstrap-admin], timeout: 10m}
      cooldown: 1m
      max_runs: {count: 5, window: 1h}
`)
	amConf := write("alertmanager.yml", "route:\n  receiver: oncall\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\nreceivers:\n  - name: oncall\n")
	cfg := write("aiops.yaml", "alerting:\n  rule_files: ["+rules+"]\n  alertmanager_config_file: "+amConf+"\n  evaluation_interval: 500ms\n"+
		"remediation:\n  runbook_files: ["+runbooks+"]\n  drivers:\n    webhook: {allowed_url_prefixes: ['"+hook.URL+"/']}\n"+
		"slack:\n  bot_token_file: "+write("bot.token", botToken)+"\n  signing_secret_file: "+write("signing.secret", signingSecret)+
		"\n  api_url: "+sl.URL()+"\n  channel: C-ONCALL\n"+
		"  users:\n    UALICE: {principal: alice, scopes: [write, approve]}\n    UBOB: {principal: bob, scopes: [write]}\n    UCAROL: {principal: carol, scopes: [approve]}\n    UROOT: {principal: root, scopes: [admin]}\n")
	data := filepath.Join(dir, "data")
	ts := startServe(t, data, "--config", cfg)

	post := func(path string, form url.Values) (int, string) {
		t.Helper()
		b := []byte(form.Encode())
		req, _ := http.NewRequest(http.MethodPost, "http://"+ts.http+path, strings.NewReader(string(b)))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		now := time.Now().Unix()
		req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(now, 10))
		req.Header.Set("X-Slack-Signature", slackapp.Sign(signingSecret, now, b))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	press := func(user, actionID string, m slackstandin.Message) {
		t.Helper()
		payload, _ := json.Marshal(map[string]any{
			"type": "block_actions", "trigger_id": "1.2.3",
			"container": map[string]any{"type": "message", "message_ts": m.TS, "channel_id": m.Channel},
			"user":      map[string]any{"id": user, "name": strings.ToLower(user)},
			"channel":   map[string]any{"id": m.Channel},
			"actions":   []map[string]any{{"action_id": actionID, "value": buttonsOf(m)[actionID], "type": "button", "block_id": "approval"}},
		})
		if code, body := post(slackapp.PathInteractions, url.Values{"payload": {string(payload)}}); code != http.StatusOK {
			t.Fatalf("press %s: %d %s", actionID, code, body)
		}
	}
	told := func(user, want string) {
		t.Helper()
		testutil.WaitFor(t, user+" told "+want, 10*time.Second, func() bool {
			for _, e := range sl.Ephemerals() {
				if e.User == user && strings.Contains(e.Text, want) {
					return true
				}
			}
			return false
		})
	}
	// request finds the approval request of an execution (any, when
	// exec is empty) among msgs; n counts them.
	request := func(msgs []slackstandin.Message, exec string) (m slackstandin.Message, n int) {
		for _, r := range msgs {
			if v := buttonsOf(r)[slacknotify.ActionApprove]; v != "" && (exec == "" || v == exec) || exec != "" && strings.Contains(r.Text, exec) {
				m, n = r, n+1
			}
		}
		return m, n
	}
	state := func(exec string) string {
		code, body := ts.get(t, "/api/v1/executions/"+exec, ts.token)
		var x struct {
			State     string `json:"state"`
			Execution struct {
				State string `json:"state"`
			} `json:"execution"`
		}
		if json.Unmarshal(body, &x); code != http.StatusOK {
			t.Fatalf("execution %s: %d %s", exec, code, body)
		}
		return x.State + x.Execution.State
	}

	// The incident opens and its run asks for approval in its thread.
	testutil.WaitFor(t, "the incident posted", 30*time.Second, func() bool { return len(sl.TopLevel("C-ONCALL")) >= 1 })
	top := sl.TopLevel("C-ONCALL")[0]
	var req slackstandin.Message
	testutil.WaitFor(t, "the approval request in the incident's thread", 30*time.Second, func() bool {
		req, _ = request(sl.Replies("C-ONCALL", top.TS), "")
		return req.TS != ""
	})
	exec := buttonsOf(req)[slacknotify.ActionApprove]
	if !strings.Contains(req.Text, "restart-checkout") || !strings.Contains(req.Text, "service=checkout") || state(exec) != "pending_approval" {
		t.Fatalf("approval request %q for %s (%s)", req.Text, exec, state(exec))
	}

	// A restart does not ask again.
	if code := ts.stop(); code != 0 {
		t.Fatalf("serve exited with %d", code)
	}
	ts = startServe(t, data, "--config", cfg)

	// bob may write but not approve: refused, audited, nothing runs.
	press("UBOB", slacknotify.ActionApprove, req)
	told("UBOB", "needs the approve scope")
	if calls("checkout") != 0 || state(exec) != "pending_approval" {
		t.Fatalf("after bob's refused press: %d calls, %s", calls("checkout"), state(exec))
	}
	// alice approves: the run acts and the incident's timeline shows it.
	press("UALICE", slacknotify.ActionApprove, req)
	told("UALICE", "approved by alice")
	testutil.WaitFor(t, "the webhook called", 20*time.Second, func() bool { return calls("checkout") == 1 })
	code, body := ts.get(t, "/api/v1/incidents?status=open", ts.token)
	var list struct{ Incidents []struct{ ID string } }
	if json.Unmarshal(body, &list); code != http.StatusOK || len(list.Incidents) != 1 {
		t.Fatalf("incidents: %d %s", code, body)
	}
	testutil.WaitFor(t, "the step in the incident's timeline", 20*time.Second, func() bool {
		_, tl := ts.get(t, "/api/v1/incidents/"+list.Incidents[0].ID+"/timeline", ts.token)
		return strings.Contains(string(tl), `"runbook_step"`) && strings.Contains(string(tl), "approved by alice")
	})
	// The watcher's own word replaces the request (after a full pass since
	// the restart, which therefore did not post it again).
	testutil.WaitFor(t, "the request says who approved it", 20*time.Second, func() bool {
		m, _ := request(sl.Replies("C-ONCALL", top.TS), exec)
		return strings.Contains(m.Text, "Approved by alice") && len(buttonsOf(m)) == 0
	})
	if _, n := request(sl.Messages("C-ONCALL"), exec); n != 1 {
		t.Fatalf("%d approval requests for %s, want 1", n, exec)
	}
	if log := ts.stderr.String(); !strings.Contains(log, `"Slack user refused"`) || !strings.Contains(log, "bob") {
		t.Errorf("bob's refusal is not logged:\n%s", log)
	}
	_, metrics := ts.get(t, "/metrics", ts.token)
	if !strings.Contains(string(metrics), `aiops_slack_commands_total{action="approve",outcome="forbidden"} 1`) {
		t.Error("bob's refusal is not counted")
	}

	// Errors come back as answers that say what was wrong.
	command := func(user, text string) string {
		t.Helper()
		code, body := post(slackapp.PathCommands, url.Values{"command": {"/aiops"}, "text": {text}, "user_id": {user}, "trigger_id": {"7"}})
		var answer struct{ Text string }
		if json.Unmarshal([]byte(body), &answer); code != http.StatusOK {
			t.Fatalf("/aiops %s: %d %s", text, code, body)
		}
		return answer.Text
	}
	for _, c := range []struct{ user, text, want string }{
		{"UALICE", "approve ex-nope", "not found: execution ex-nope"},
		{"UALICE", "approve " + exec, ", not waiting for approval"},
		{"UROOT", "runbook run restart-checkout nothing", `target: "nothing" is not label=value`},
		{"UROOT", "runbook run no-such-runbook service=x", `not found: runbook "no-such-runbook"`},
		{"UROOT", "pause remediation", "Remediation is paused"},
		{"UROOT", "runbook run restart-checkout service=cart", "refused by kill_switch"},
		{"UROOT", "resume remediation", "Remediation is resumed"},
	} {
		if got := command(c.user, c.text); !strings.Contains(got, c.want) {
			t.Errorf("/aiops %s: %q, want it to contain %q", c.text, got, c.want)
		}
	}

	// A run from Slack (no incident: the request goes to the channel),
	// denied from Slack: it never acts.
	run := func(service string) string {
		t.Helper()
		code, body := post(slackapp.PathCommands, url.Values{"command": {"/aiops"}, "text": {"runbook run restart-checkout service=" + service}, "user_id": {"UROOT"}, "trigger_id": {"9"}})
		var answer struct{ Text string }
		json.Unmarshal([]byte(body), &answer)
		i := strings.Index(answer.Text, "(execution ")
		if code != http.StatusOK || i < 0 {
			t.Fatalf("runbook run: %d %s", code, body)
		}
		return strings.TrimSuffix(strings.Fields(answer.Text[i+len("(execution "):])[0], ").")
	}
	waitRequest := func(exec string) slackstandin.Message {
		t.Helper()
		var m slackstandin.Message
		testutil.WaitFor(t, "the approval request of "+exec, 20*time.Second, func() bool {
			m, _ = request(sl.TopLevel("C-ONCALL"), exec)
			return len(buttonsOf(m)) == 2
		})
		return m
	}
	denied := run("payments")
	// carol may approve, but not this runbook; root asked for the run.
	press("UCAROL", slacknotify.ActionApprove, waitRequest(denied))
	told("UCAROL", "carol is not an approver of restart-checkout (approvers: alice, bootstrap-admin)")
	press("UROOT", slacknotify.ActionApprove, waitRequest(denied))
	told("UROOT", "root asked for this run and cannot also approve it")
	press("UALICE", slacknotify.ActionDeny, waitRequest(denied))
	told("UALICE", "denied by alice")
	testutil.WaitFor(t, denied+" denied", 20*time.Second, func() bool { return state(denied) == "denied" })

	// Denied through the REST API: the request loses its buttons too.
	viaAPI := run("search")
	waitRequest(viaAPI)
	req2, _ := http.NewRequest(http.MethodPost, "http://"+ts.http+"/api/v1/executions/"+viaAPI+"/deny", strings.NewReader(`{"reason":"not now"}`))
	req2.Header.Set("Authorization", "Bearer "+ts.token)
	req2.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req2)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("deny through the API: %d", resp.StatusCode)
	}
	for _, x := range []string{denied, viaAPI} {
		testutil.WaitFor(t, "the request of "+x+" without buttons", 20*time.Second, func() bool {
			m, _ := request(sl.TopLevel("C-ONCALL"), x)
			return len(buttonsOf(m)) == 0 && strings.Contains(m.Text, "Denied by")
		})
	}
	if calls("payments") != 0 || calls("search") != 0 {
		t.Fatalf("denied runs acted: payments %d, search %d", calls("payments"), calls("search"))
	}

	// Run runbook… on the incident's message offers the runbooks the
	// engine says match its alerts; the choice goes through the engine's
	// rails as /aiops runbook run does.
	top = sl.TopLevel("C-ONCALL")[0]
	if buttonsOf(top)[slacknotify.ActionRunRunbook] != list.Incidents[0].ID {
		t.Fatalf("the incident's message has no Run runbook… button: %v", buttonsOf(top))
	}
	press("UBOB", slacknotify.ActionRunRunbook, top)
	told("UBOB", "needs the execute scope")
	press("UROOT", slacknotify.ActionRunRunbook, top)
	var choice string
	testutil.WaitFor(t, "the runbook menu", 10*time.Second, func() bool {
		for _, e := range sl.Ephemerals() {
			for _, b := range e.Blocks.BlockSet {
				if ab, ok := b.(*slack.ActionBlock); ok && e.User == "UROOT" {
					for _, el := range ab.Elements.ElementSet {
						if sel, ok := el.(*slack.SelectBlockElement); ok && len(sel.Options) == 1 &&
							sel.Options[0].Text.Text == `restart-checkout on {service="checkout"}` {
							choice = sel.Options[0].Value
						}
					}
				}
			}
		}
		return choice != ""
	})
	payload, _ := json.Marshal(map[string]any{
		"type": "block_actions", "trigger_id": "1.2.4",
		"container": map[string]any{"type": "message", "channel_id": top.Channel, "is_ephemeral": true},
		"user":      map[string]any{"id": "UROOT", "name": "root"},
		"channel":   map[string]any{"id": top.Channel},
		"actions": []map[string]any{{"action_id": slackapp.ActionRunbookChoice, "block_id": "runbooks", "type": "static_select",
			"selected_option": map[string]any{"text": map[string]any{"type": "plain_text", "text": "x"}, "value": choice}}},
	})
	if code, body := post(slackapp.PathInteractions, url.Values{"payload": {string(payload)}}); code != http.StatusOK {
		t.Fatalf("choose: %d %s", code, body)
	}
	// The run checked by the rails: started (waiting for approval), or
	// refused by the cooldown of the run alice approved.
	testutil.WaitFor(t, "the chosen runbook run", 10*time.Second, func() bool {
		for _, e := range sl.Ephemerals() {
			if e.User == "UROOT" && (strings.Contains(e.Text, `Runbook restart-checkout started on {service="checkout"}`) ||
				strings.Contains(e.Text, "refused by cooldown")) {
				return true
			}
		}
		return false
	})
}

// buttonsOf returns a message's buttons: action id → value.
func buttonsOf(m slackstandin.Message) map[string]string {
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
