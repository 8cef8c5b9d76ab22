package slackapp

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/slack-go/slack"

	"github.com/aiops-dev/aiops/alerting/alertmanager"
	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/api/auth"
	"github.com/aiops-dev/aiops/internal/slackstandin"
	tu "github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage/embedded"
)

const (
	secret   = "8f742231b10e8888abcd99yyyzzz85a5"
	botToken = "xoxb-app-test"
)

type recordingAuditor struct {
	mu   sync.Mutex
	recs []auth.AuditRecord
}

func (r *recordingAuditor) Audit(_ context.Context, rec auth.AuditRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
}

func (r *recordingAuditor) all() []auth.AuditRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]auth.AuditRecord(nil), r.recs...)
}

// fakeRemediation stands in for the remediation engine (built apart, in
// remediation/): it records what it is asked and refuses approvals by
// anyone but its approver, as the engine's runbooks will.
type fakeRemediation struct {
	NoRemediation
	approver string
	mu       sync.Mutex
	approved map[string]string
	denied   map[string]string
	// runGate, when set, holds Run until it is closed.
	runGate <-chan struct{}
	runs    []string
	// matches are what Runbooks answers.
	matches []RunbookMatch
}

func (f *fakeRemediation) Run(ctx context.Context, name, target, incidentID string, by auth.Principal) (string, error) {
	if f.runGate != nil {
		select {
		case <-f.runGate:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	run := by.ID + " " + name + " " + target
	if incidentID != "" {
		run += " for " + incidentID
	}
	f.runs = append(f.runs, run)
	return "ex-" + strconv.Itoa(len(f.runs)), nil
}

func (f *fakeRemediation) Runbooks(context.Context, incident.Incident) ([]RunbookMatch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]RunbookMatch(nil), f.matches...), nil
}

func (f *fakeRemediation) ranRuns() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.runs...)
}

func (f *fakeRemediation) Approve(_ context.Context, id string, by auth.Principal) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if by.ID != f.approver {
		return &notApprover{by.ID}
	}
	if f.approved == nil {
		f.approved = map[string]string{}
	}
	f.approved[id] = by.ID
	return nil
}

func (f *fakeRemediation) Deny(_ context.Context, id string, by auth.Principal, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.denied == nil {
		f.denied = map[string]string{}
	}
	f.denied[id] = by.ID + ": " + reason
	return nil
}

type notApprover struct{ who string }

func (e *notApprover) Error() string { return e.who + " is not an approver of this runbook" }

type env struct {
	t       testing.TB
	clock   *tu.Clock
	store   *embedded.Store
	mg      *incident.Manager
	slack   *slackstandin.Server
	app     *App
	srv     *httptest.Server
	audit   *recordingAuditor
	rem     *fakeRemediation
	reg     *prometheus.Registry
	cfg     Config
	silence *incident.Silencer
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Users = map[string]User{
		"UALICE":  {Principal: "alice", Scopes: []auth.Scope{auth.ScopeWrite, auth.ScopeApprove}},
		"UREADER": {Principal: "rita", Scopes: []auth.Scope{auth.ScopeRead}},
		"UADMIN":  {Principal: "root", Scopes: []auth.Scope{auth.ScopeAdmin}},
	}
	cfg.UsersByEmail = map[string]User{"Carol@Example.com": {Principal: "carol", Scopes: []auth.Scope{auth.ScopeWrite, auth.ScopeApprove}}}
	return cfg
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{t: t, clock: tu.NewClock(tu.Epoch), audit: &recordingAuditor{}, rem: &fakeRemediation{approver: "alice"}, reg: prometheus.NewRegistry(), cfg: testConfig()}
	e.store = storetest.Embedded(t)
	mg, err := incident.New(context.Background(), incident.DefaultConfig(), incident.Deps{Events: e.store, Logger: tu.Logger(t), Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.mg = mg
	am, err := alertmanager.New(alertmanager.Options{DataDir: t.TempDir(), Logger: tu.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { am.Close() })
	// Silences run on the wall clock, as the Alertmanager's do.
	e.silence = incident.NewSilencer(am.Silences(), mg, nil)
	e.slack = slackstandin.New(botToken)
	t.Cleanup(e.slack.Stop)
	// The stand-in's response URLs are on api_url's host: followed.
	e.cfg.APIURL = e.slack.URL()
	e.slack.AddUser(slack.User{ID: "UCAROL", Name: "carol", Profile: slack.UserProfile{Email: "carol@example.com"}})
	e.slack.AddUser(slack.User{ID: "UGUEST", Name: "guest", IsRestricted: true, Profile: slack.UserProfile{Email: "carol@example.com"}})
	app, err := New(Options{
		Config: e.cfg, SigningSecret: secret, Incidents: mg, Silences: e.silence, Remediation: e.rem,
		Slack:   slack.New(botToken, slack.OptionAPIURL(e.slack.URL())),
		Auditor: e.audit, Logger: tu.Logger(t), Registerer: e.reg, Now: e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.app = app
	mux := http.NewServeMux()
	if err := app.Mount(mux); err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(mux)
	t.Cleanup(func() { e.srv.Close(); app.Close() })
	return e
}

// open fires a group of alerts and returns its incident.
func (e *env) open(group string, names ...string) incident.Incident {
	e.t.Helper()
	var alerts []*alert.Alert
	for _, name := range names {
		a := model.Alert{
			Labels:   model.LabelSet{"alertname": model.LabelValue(name), "service": "checkout", "instance": "api-1"},
			StartsAt: e.clock.Now(), EndsAt: e.clock.Now().Add(time.Hour),
		}
		alerts = append(alerts, alert.New(a, e.clock.Now(), false))
	}
	ctx := notify.WithGroupKey(context.Background(), group)
	ctx = notify.WithReceiverName(ctx, "oncall")
	ctx = notify.WithGroupLabels(ctx, model.LabelSet{"service": "checkout"})
	if v := e.mg.Notify(ctx, alerts...); v.Err() != nil {
		e.t.Fatal(v.Err())
	}
	incs, _ := e.mg.List(incident.Query{})
	for _, inc := range incs {
		if inc.GroupKey == group {
			return inc
		}
	}
	e.t.Fatalf("no incident for group %s", group)
	return incident.Incident{}
}

// post sends body to path signed as Slack signs it at the clock's now.
func (e *env) post(path, contentType string, body []byte) (int, string) {
	e.t.Helper()
	return e.postSigned(path, contentType, body, e.clock.Now().Unix(), secret)
}

func (e *env) postSigned(path, contentType string, body []byte, ts int64, key string) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("X-Slack-Signature", Sign(key, ts, body))
	return do(e.t, req)
}

func do(t testing.TB, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const formType = "application/x-www-form-urlencoded"

// triggers numbers requests as Slack's trigger_id does: no two of
// Slack's requests have the same body.
var triggers atomic.Int64

// commandBody is a slash command as Slack sends it, answering to
// responseURL (none when empty).
func commandBody(user, text, responseURL string) []byte {
	v := url.Values{
		"trigger_id": {strconv.FormatInt(triggers.Add(1), 10) + ".1.abc"},
		"command":    {"/aiops"}, "text": {text}, "user_id": {user}, "user_name": {strings.ToLower(user)},
		"channel_id": {"CINC"}, "team_id": {"T1"},
	}
	if responseURL != "" {
		v.Set("response_url", responseURL)
	}
	return []byte(v.Encode())
}

// command runs /aiops text as user and returns Slack's view of the answer.
func (e *env) command(user, text string) string {
	e.t.Helper()
	code, body := e.post(PathCommands, formType, commandBody(user, text, e.slack.ResponseURL(user)))
	if code != http.StatusOK {
		e.t.Fatalf("/aiops %s: %d %s", text, code, body)
	}
	var r slashReply
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		e.t.Fatalf("/aiops %s: answer %q is not JSON: %v", text, body, err)
	}
	return r.Text
}

func clickBody(user, actionID, value string) []byte { return clickBodyOn(user, actionID, value, "") }

// clickBodyOn is a button press on the message ts.
func clickBodyOn(user, actionID, value, ts string) []byte {
	cb := map[string]any{
		"container":  map[string]any{"type": "message", "message_ts": ts, "channel_id": "CINC"},
		"type":       "block_actions",
		"trigger_id": strconv.FormatInt(triggers.Add(1), 10) + ".1.abc",
		"user":       map[string]any{"id": user, "name": strings.ToLower(user)},
		"channel":    map[string]any{"id": "CINC"},
		"actions":    []map[string]any{{"action_id": actionID, "value": value, "type": "button", "block_id": "incident:" + value}},
	}
	payload, _ := json.Marshal(cb)
	return []byte(url.Values{"payload": {string(payload)}}.Encode())
}

// click presses a button as user.
func (e *env) click(user, actionID, value string) {
	e.t.Helper()
	code, body := e.post(PathInteractions, formType, clickBody(user, actionID, value))
	if code != http.StatusOK {
		e.t.Fatalf("click %s: %d %s", actionID, code, body)
	}
}

// clickOn presses a button of the message ts as user.
func (e *env) clickOn(user, actionID, value, ts string) {
	e.t.Helper()
	code, body := e.post(PathInteractions, formType, clickBodyOn(user, actionID, value, ts))
	if code != http.StatusOK {
		e.t.Fatalf("click %s: %d %s", actionID, code, body)
	}
}

// ephemeralFor waits for an ephemeral answer to user containing want.
func (e *env) ephemeralFor(user, want string) {
	e.t.Helper()
	tu.Eventually(e.t, 5*time.Second, "ephemeral answer to "+user, func() (bool, string) {
		var seen []string
		for _, m := range e.slack.Ephemerals() {
			if m.User == user && strings.Contains(m.Text, want) {
				return true, ""
			}
			seen = append(seen, m.User+": "+m.Text)
		}
		return false, strings.Join(seen, " | ")
	})
}

// responseFor waits for an answer sent to user's response URL (the
// stand-in's, named after the user) containing want in its text or
// blocks, and returns it.
func (e *env) responseFor(user, want string) slackstandin.Response {
	e.t.Helper()
	var found slackstandin.Response
	tu.Eventually(e.t, 10*time.Second, "answer through the response_url of "+user, func() (bool, string) {
		var seen []string
		for _, r := range e.slack.Responses() {
			b, _ := json.Marshal(r.Message.Blocks)
			if r.Name == user && strings.Contains(r.Message.Text+string(b), want) {
				found = r
				return true, ""
			}
			seen = append(seen, r.Name+": "+r.Message.Text)
		}
		return false, strings.Join(seen, " | ")
	})
	return found
}
