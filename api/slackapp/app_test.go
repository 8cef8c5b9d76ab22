package slackapp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/slack-go/slack"

	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/alerting/slacknotify"
	"github.com/aiops-dev/aiops/api/auth"
	tu "github.com/aiops-dev/aiops/internal/testutil"
)

func TestForgedExpiredReplayedRequestsDoNothing(t *testing.T) {
	e := newEnv(t)
	inc := e.open("g1", "HighErrorRate")
	body := commandBody("UALICE", "ack "+inc.ID, "")
	now := e.clock.Now().Unix()

	for _, tc := range []struct {
		name   string
		req    func() *http.Request
		reason string
	}{
		{"unsigned", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, e.srv.URL+PathCommands, strings.NewReader(string(body)))
			return r
		}, reasonMissing},
		{"wrong secret", func() *http.Request { return e.request(body, now, "not-the-secret") }, reasonForged},
		{"body changed after signing", func() *http.Request {
			r := e.request(body, now, secret)
			r.Body = readCloser(commandBody("UADMIN", "ack "+inc.ID, ""))
			r.ContentLength = -1
			return r
		}, reasonForged},
		{"six minutes old", func() *http.Request { return e.request(body, now-6*60, secret) }, reasonExpired},
		{"six minutes ahead", func() *http.Request { return e.request(body, now+6*60, secret) }, reasonExpired},
		{"not v0", func() *http.Request {
			r := e.request(body, now, secret)
			r.Header.Set("X-Slack-Signature", "v1="+strings.Repeat("ab", 32))
			return r
		}, reasonMalformed},
		{"timestamp not a number", func() *http.Request {
			r := e.request(body, now, secret)
			r.Header.Set("X-Slack-Request-Timestamp", "yesterday")
			return r
		}, reasonMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.ToFloat64(e.app.refused.WithLabelValues(tc.reason))
			code, msg := do(t, tc.req())
			if code != http.StatusUnauthorized || !strings.Contains(msg, "request refused") {
				t.Fatalf("got %d %q, want 401 saying the request was refused", code, msg)
			}
			if strings.Contains(msg, secret) {
				t.Fatal("the answer shows the secret")
			}
			if got := testutil.ToFloat64(e.app.refused.WithLabelValues(tc.reason)); got != before+1 {
				t.Fatalf("refused{reason=%q} = %v, want %v", tc.reason, got, before+1)
			}
		})
	}
	if got, _ := e.mg.Get(inc.ID); got.Status != incident.StatusOpen {
		t.Fatalf("a refused request changed the incident: %s", got.Status)
	}

	// A genuine request works once; the same bytes again are a replay.
	req := e.request(body, now, secret)
	if code, msg := do(t, req); code != http.StatusOK || !strings.Contains(msg, "acknowledged by alice") {
		t.Fatalf("genuine request: %d %s", code, msg)
	}
	if _, err := e.mg.Resolve(context.Background(), inc.ID, incident.Action{Actor: "bob"}); err != nil {
		t.Fatal(err)
	}
	code, msg := do(t, e.request(body, now, secret))
	if code != http.StatusUnauthorized || !strings.Contains(msg, "received before") {
		t.Fatalf("replay: %d %s", code, msg)
	}
	if got, _ := e.mg.Get(inc.ID); got.Status != incident.StatusResolved {
		t.Fatalf("a replay changed the incident: %s", got.Status)
	}

	// Refusals are audited (rate-limited) without the signature.
	recs := e.audit.all()
	if len(recs) == 0 || !strings.HasPrefix(recs[0].Reason, "slack_") {
		t.Fatalf("audit %+v, want a refusal", recs)
	}
}

// A captured request sent again with its signature's hex digits in
// another case (or mixed: 2^n spellings of one MAC) is the same request:
// found from outside by resending a signed /aiops command with the
// signature upper-cased, which the replay memory, keyed by the header's
// text, took for a new one.
func TestReplayWithRecasedSignatureRefused(t *testing.T) {
	e := newEnv(t)
	inc := e.open("g1", "HighErrorRate")
	body := commandBody("UALICE", "note "+inc.ID+" once", "")
	now := e.clock.Now().Unix()
	req := e.request(body, now, secret)
	sig := req.Header.Get("X-Slack-Signature")
	if code, msg := do(t, req); code != http.StatusOK {
		t.Fatalf("genuine request: %d %s", code, msg)
	}
	for _, spelled := range []string{"v0=" + strings.ToUpper(sig[3:]), "v0=" + strings.ToUpper(sig[3:10]) + sig[10:]} {
		if spelled == sig {
			continue
		}
		r := e.request(body, now, secret)
		r.Header.Set("X-Slack-Signature", spelled)
		code, msg := do(t, r)
		if code != http.StatusUnauthorized || !strings.Contains(msg, "received before") {
			t.Fatalf("replay signed %q: %d %s, want 401 received before", spelled, code, msg)
		}
	}
	if got, _ := e.mg.Get(inc.ID); got.Notes != 1 {
		t.Fatalf("the note was added %d times, want 1", got.Notes)
	}
}

func TestHugeBodyRefusedBeforeVerification(t *testing.T) {
	e := newEnv(t)
	body := make([]byte, e.cfg.MaxRequestBytes+1)
	for i := range body {
		body[i] = 'a'
	}
	code, _ := e.post(PathCommands, formType, body)
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("got %d, want 413", code)
	}
	if got := testutil.ToFloat64(e.app.refused.WithLabelValues(reasonTooLarge)); got != 1 {
		t.Fatalf("refused{too_large} = %v", got)
	}
}

func (e *env) request(body []byte, ts int64, key string) *http.Request {
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+PathCommands, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", formType)
	req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("X-Slack-Signature", Sign(key, ts, body))
	return req
}

type rc struct{ *strings.Reader }

func (rc) Close() error { return nil }

func readCloser(b []byte) rc { return rc{strings.NewReader(string(b))} }

func TestCommandsActOnIncidents(t *testing.T) {
	e := newEnv(t)
	inc := e.open("g1", "HighErrorRate")

	if got := e.command("UREADER", "incidents"); !strings.Contains(got, inc.ID) || !strings.Contains(got, "HighErrorRate") {
		t.Fatalf("incidents: %s", got)
	}
	if got := e.command("UREADER", "incident "+inc.ID); !strings.Contains(got, "api-1") {
		t.Fatalf("incident: %s", got)
	}
	if got := e.command("UALICE", "ack "+inc.ID+" on it"); !strings.Contains(got, "acknowledged by alice") {
		t.Fatalf("ack: %s", got)
	}
	if got := e.command("UALICE", "assign "+inc.ID+" bob"); !strings.Contains(got, "assigned to bob") {
		t.Fatalf("assign: %s", got)
	}
	if got := e.command("UALICE", "note "+inc.ID+" restarted the <!channel> pool"); !strings.Contains(got, "Noted") {
		t.Fatalf("note: %s", got)
	}
	if got := e.command("UALICE", "escalate "+inc.ID); !strings.Contains(got, "level 1") {
		t.Fatalf("escalate: %s", got)
	}
	if got := e.command("UALICE", "silence "+inc.ID+" 2h deploy"); !strings.Contains(got, "silenced until") {
		t.Fatalf("silence: %s", got)
	}
	if got := e.command("UALICE", `silence {alertname="Noisy", job="batch"} 30m known flake`); !strings.Contains(got, `alertname="Noisy"`) {
		t.Fatalf("silence by matchers: %s", got)
	}
	if got := e.command("UALICE", "resolve "+inc.ID+" fixed"); !strings.Contains(got, "resolved (by alice)") {
		t.Fatalf("resolve: %s", got)
	}

	got, _ := e.mg.Get(inc.ID)
	if got.Status != incident.StatusResolved || got.AcknowledgedBy != "" && got.AcknowledgedBy != "alice" || got.Assignee != "bob" || got.EscalationLevel != 1 || got.Notes != 1 {
		t.Fatalf("incident after the commands: %+v", got)
	}
	evs, _ := e.mg.Timeline(context.Background(), inc.ID)
	var actors []string
	for _, ev := range evs {
		if ev.Actor != "" && ev.Actor != incident.SystemActor {
			actors = append(actors, string(ev.Type)+":"+ev.Actor)
		}
	}
	want := "acknowledged:alice assigned:alice note:alice escalated:alice silenced:alice resolved:alice"
	if strings.Join(actors, " ") != want {
		t.Fatalf("timeline actors %v, want %s", actors, want)
	}

	// Errors name what was wrong.
	for text, want := range map[string]string{
		"ack inc-nope":                   "incident not found: inc-nope",
		"ack":                            "usage: /aiops ack ID [COMMENT]",
		"silence " + inc.ID + " forever": `duration: "forever" is not a duration`,
		"silence {alertname=~} 1h x":     "matchers:",
		"escalate " + inc.ID:             "incident is resolved",
		"frobnicate":                     `Unknown command "frobnicate"`,
		"approve exec-1":                 "",
	} {
		got := e.command("UALICE", text)
		if want == "" {
			continue
		}
		if !strings.Contains(got, want) {
			t.Errorf("/aiops %s: got %q, want it to contain %q", text, got, want)
		}
	}
	if got := e.command("UREADER", "help"); !strings.Contains(got, "silence") || !strings.Contains(got, "pause") {
		t.Fatalf("help: %s", got)
	}
}

func TestUserWithoutScopeIsRefusedAndAudited(t *testing.T) {
	e := newEnv(t)
	inc := e.open("g1", "HighErrorRate")

	got := e.command("USTRANGER", "ack "+inc.ID)
	if !strings.Contains(got, "may not ack") || !strings.Contains(got, "slack:USTRANGER") {
		t.Fatalf("stranger: %s", got)
	}
	if got := e.command("USTRANGER", "incidents"); !strings.Contains(got, "may not incidents") {
		t.Fatalf("a stranger may not even read: %s", got)
	}
	if got := e.command("UREADER", "resolve "+inc.ID); !strings.Contains(got, "needs the write scope") {
		t.Fatalf("reader: %s", got)
	}
	if got := e.command("UALICE", "pause remediation"); !strings.Contains(got, "needs the execute scope") {
		t.Fatalf("writer pausing: %s", got)
	}
	// Remediation's scopes are the REST API's: write does not approve.
	if got := e.command("UREADER", "approve exec-1"); !strings.Contains(got, "needs the approve scope") {
		t.Fatalf("reader approving: %s", got)
	}
	if g, _ := e.mg.Get(inc.ID); g.Status != incident.StatusOpen {
		t.Fatalf("a refused command changed the incident: %s", g.Status)
	}
	// A guest account does not inherit an employee's access through a
	// matching email.
	if got := e.command("UGUEST", "ack "+inc.ID); !strings.Contains(got, "may not ack") {
		t.Fatalf("guest: %s", got)
	}
	// Carol is mapped by the email Slack holds for her.
	if got := e.command("UCAROL", "ack "+inc.ID); !strings.Contains(got, "acknowledged by carol") {
		t.Fatalf("carol by email: %s", got)
	}

	forbidden := 0
	for _, r := range e.audit.all() {
		if r.Status == http.StatusForbidden && r.Method == "SLACK" && r.Reason == auth.ReasonForbidden {
			forbidden++
		}
	}
	if forbidden != 6 {
		t.Fatalf("%d refusals audited, want 6: %+v", forbidden, e.audit.all())
	}
	if got := testutil.ToFloat64(e.app.commands.WithLabelValues("ack", "forbidden")); got != 2 {
		t.Fatalf("commands{ack,forbidden} = %v, want 2", got)
	}
}

func TestButtons(t *testing.T) {
	e := newEnv(t)
	inc := e.open("g1", "HighErrorRate")

	e.click("USTRANGER", slacknotify.ActionAcknowledge, inc.ID)
	e.ephemeralFor("USTRANGER", "may not ack")
	e.click("UALICE", slacknotify.ActionAcknowledge, inc.ID)
	e.click("UALICE", slacknotify.ActionAcknowledge, inc.ID) // a double click
	e.ephemeralFor("UALICE", "acknowledged by alice")

	e.click("UALICE", slacknotify.ActionSilence, inc.ID)
	e.click("UALICE", slacknotify.ActionSilence, inc.ID)
	e.ephemeralFor("UALICE", "already silenced")

	evs, _ := e.mg.Timeline(context.Background(), inc.ID)
	counts := map[incident.EventType]int{}
	for _, ev := range evs {
		counts[ev.Type]++
	}
	if counts[incident.EventAcknowledged] != 1 || counts[incident.EventSilenced] != 1 {
		t.Fatalf("double clicks made %d acknowledgements and %d silences, want 1 and 1", counts[incident.EventAcknowledged], counts[incident.EventSilenced])
	}

	// Approvals go to the remediation engine, which decides who may.
	e.click("UCAROL", slacknotify.ActionApprove, "exec-42")
	e.ephemeralFor("UCAROL", "carol is not an approver")
	e.click("UALICE", slacknotify.ActionApprove, "exec-42")
	e.ephemeralFor("UALICE", "exec-42 approved by alice")
	e.click("UALICE", slacknotify.ActionDeny, "exec-43")
	e.ephemeralFor("UALICE", "exec-43 denied")
	e.rem.mu.Lock()
	approved, denied := e.rem.approved["exec-42"], e.rem.denied["exec-43"]
	e.rem.mu.Unlock()
	if approved != "alice" || !strings.HasPrefix(denied, "alice") {
		t.Fatalf("approved by %q, denied by %q", approved, denied)
	}

	e.click("UALICE", slacknotify.ActionResolve, inc.ID)
	e.ephemeralFor("UALICE", "is resolved")
	if g, _ := e.mg.Get(inc.ID); g.Status != incident.StatusResolved || g.ResolvedBy != "alice" {
		t.Fatalf("after Resolve: %s by %s", g.Status, g.ResolvedBy)
	}
}

func TestWithoutRemediationEngine(t *testing.T) {
	e := newEnv(t)
	e.app.rem = NoRemediation{}
	if got := e.command("UADMIN", "pause remediation"); !strings.Contains(got, "remediation is not configured") {
		t.Fatalf("pause: %s", got)
	}
	if got := e.command("UADMIN", "runbook run restart-api api-1"); !strings.Contains(got, "remediation is not configured") {
		t.Fatalf("runbook run: %s", got)
	}
}

func TestEvents(t *testing.T) {
	e := newEnv(t)
	code, body := e.post(PathEvents, "application/json", []byte(`{"type":"url_verification","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","token":"x"}`))
	if code != http.StatusOK || !strings.Contains(body, `"challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"`) {
		t.Fatalf("url_verification: %d %s", code, body)
	}
	ev := []byte(`{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention","text":"hi"}}`)
	if code, _ := e.post(PathEvents, "application/json", ev); code != http.StatusOK {
		t.Fatalf("event: %d", code)
	}
	if e.app.firstDelivery("Ev1") {
		t.Fatal("the event was not remembered")
	}
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "bot")
	os.WriteFile(tok, []byte("xoxb-1"), 0o600)
	sec := filepath.Join(dir, "sec")
	os.WriteFile(sec, []byte("s3cr3t-value"), 0o600)
	base := testConfig()
	base.BotTokenFile, base.SigningSecretFile, base.Channel = tok, sec, "#incidents"
	if err := base.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mod  func(c *Config)
		want string
	}{
		{func(c *Config) { c.BotTokenFile = "" }, "slack.bot_token_file: required"},
		{func(c *Config) { c.SigningSecretFile = filepath.Join(dir, "missing") }, "slack.signing_secret_file: read"},
		{func(c *Config) { c.TimestampTolerance = 0 }, "slack.timestamp_tolerance"},
		{func(c *Config) { c.TimestampTolerance = c.TimestampTolerance * 2 }, "at most 5m"},
		{func(c *Config) { c.MaxRequestBytes = 10 }, "slack.max_request_bytes"},
		{func(c *Config) { c.Users = map[string]User{"alice": {Principal: "a", Scopes: []auth.Scope{"read"}}} }, "slack.users.alice: not a Slack user id"},
		{func(c *Config) { c.Users = map[string]User{"U1X": {Principal: "a", Scopes: []auth.Scope{"root"}}} }, `slack.users.U1X.scopes: unknown scope "root"`},
		{func(c *Config) { c.Users = map[string]User{"U1X": {Scopes: []auth.Scope{"read"}}} }, "slack.users.U1X.principal: required"},
		{func(c *Config) {
			c.UsersByEmail = map[string]User{"nobody": {Principal: "a", Scopes: []auth.Scope{"read"}}}
		}, "slack.users_by_email"},
		{func(c *Config) { c.DefaultScopes = []auth.Scope{"ingest"} }, "slack.default_scopes"},
		{func(c *Config) { c.Channel = "" }, "slack.channel"},
	} {
		c := base
		tc.mod(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr3t-value") {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
	_ = time.Second
}

// TestFollowerSaysNotLeader: on the follower of an HA pair, a change is
// refused with an answer that says why and what to do, and reads work.
func TestFollowerSaysNotLeader(t *testing.T) {
	e := newEnv(t)
	inc := e.open("g1", "HighLatency")
	follower, err := incident.New(context.Background(), incident.DefaultConfig(), incident.Deps{Events: e.store, Logger: tu.Logger(t), Now: e.clock.Now, Standby: true})
	if err != nil {
		t.Fatal(err)
	}
	app, err := New(Options{
		Config: e.cfg, SigningSecret: secret, Incidents: follower, Silences: e.silence, Remediation: e.rem,
		Slack:   slack.New(botToken, slack.OptionAPIURL(e.slack.URL())),
		Auditor: e.audit, Logger: tu.Logger(t), Registerer: prometheus.NewRegistry(), Now: e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	if err := app.Mount(mux); err != nil {
		t.Fatal(err)
	}
	leader := e.srv
	t.Cleanup(leader.Close)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(app.Close)

	if got := e.command("UALICE", "ack "+inc.ID); !strings.Contains(got, "not the leader") || !strings.Contains(got, "Try again") {
		t.Fatalf("ack on the follower answered %q", got)
	}
	if got, _ := follower.Get(inc.ID); got.Status != incident.StatusOpen {
		t.Fatalf("status %s after a refused ack", got.Status)
	}
	if got := e.command("UALICE", "incidents"); !strings.Contains(got, inc.ID) {
		t.Fatalf("incidents on the follower answered %q", got)
	}
}
