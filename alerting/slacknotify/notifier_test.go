package slacknotify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"

	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/internal/slackstandin"
	tu "github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage"
)

const token = "xoxb-test-token"

type env struct {
	t      *testing.T
	slack  *slackstandin.Server
	mg     *incident.Manager
	clock  *tu.Clock
	cfg    Config
	sleeps *sleepLog
	// offerRunbooks is Deps.OfferRunbooks of the notifiers started.
	offerRunbooks bool
	// journal is Deps.Journal of the notifiers started.
	journal storage.EventStore
}

type sleepLog struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleepLog) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleepLog) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

func newEnv(t *testing.T) *env {
	t.Helper()
	sl := slackstandin.New(token)
	t.Cleanup(sl.Stop)
	e := newEnvOn(t, sl)
	e.t = t
	return e
}

// newEnvOn is the env over the stand-in sl; the incidents' clock is the
// test's when it is a test, the wall clock for a benchmark.
func newEnvOn(t testing.TB, sl *slackstandin.Server) *env {
	t.Helper()
	clock := tu.NewClock(tu.Epoch)
	deps := incident.Deps{Events: storetest.Embedded(t), Logger: tu.Logger(t), Now: clock.Now}
	if _, bench := t.(*testing.B); bench {
		deps.Now = nil
	}
	mg, err := incident.New(context.Background(), incident.DefaultConfig(), deps)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.BotTokenFile = tokenFile
	cfg.APIURL = sl.URL()
	cfg.Channel = "C-DEFAULT"
	cfg.Channels = map[string]string{"db-team": "C-DB"}
	cfg.ExternalURL = "https://aiops.example.com"
	cfg.StateDir = filepath.Join(dir, "state")
	return &env{slack: sl, mg: mg, clock: clock, cfg: cfg, sleeps: &sleepLog{}}
}

// start runs a notifier until the test ends or stop is called.
func (e *env) start(reg prometheus.Registerer) (n *Notifier, stop func()) {
	e.t.Helper()
	return e.startIn(context.Background(), reg)
}

// startIn is start with Run's context derived from parent.
func (e *env) startIn(parent context.Context, reg prometheus.Registerer) (n *Notifier, stop func()) {
	e.t.Helper()
	n, err := New(e.cfg, Deps{
		Incidents: e.mg, Feed: e.mg.Feed(incident.FeedOptions{PollInterval: 50 * time.Millisecond}), Head: e.mg.FeedHead,
		BotToken: token, Logger: tu.Logger(e.t), Registerer: reg, Sleep: e.sleeps.sleep, Now: e.clock.Now,
		OfferRunbooks: e.offerRunbooks, Journal: e.journal,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := n.Reload(); err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(parent)
	if t, ok := parent.(*termCtx); ok {
		// Run is handed the term itself, as serve hands it the lease's.
		t.Context, cancel = context.WithCancel(context.Background())
		ctx = t
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("Run: %v", err)
			}
		})
	}
	e.t.Cleanup(stop)
	return n, stop
}

// fire hands the incident manager a firing group, as the dispatcher does.
func (e *env) fire(receiver, group string, names ...string) {
	e.t.Helper()
	var alerts []*alert.Alert
	for _, name := range names {
		a := model.Alert{
			Labels:       model.LabelSet{"alertname": model.LabelValue(name), "service": "checkout", "severity": "critical"},
			Annotations:  model.LabelSet{"summary": model.LabelValue(name + " is failing <!channel>")},
			StartsAt:     e.clock.Now(),
			EndsAt:       e.clock.Now().Add(time.Hour),
			GeneratorURL: "/graph?g0.expr=up+%3D%3D+0",
		}
		alerts = append(alerts, alert.New(a, e.clock.Now(), false))
	}
	ctx := notify.WithGroupKey(context.Background(), group)
	ctx = notify.WithReceiverName(ctx, receiver)
	ctx = notify.WithGroupLabels(ctx, model.LabelSet{"service": "checkout"})
	if v := e.mg.Notify(ctx, alerts...); v.Err() != nil {
		e.t.Fatal(v.Err())
	}
}

func (e *env) onlyIncident() incident.Incident {
	e.t.Helper()
	incs, _ := e.mg.List(incident.Query{})
	if len(incs) != 1 {
		e.t.Fatalf("%d incidents, want 1", len(incs))
	}
	return incs[0]
}

func renderJSON(t *testing.T, m slackstandin.Message) string {
	t.Helper()
	b, err := json.Marshal(m.Blocks)
	if err != nil {
		t.Fatal(err)
	}
	return m.Text + "\n" + string(b)
}

func TestMessageFollowsIncidentThroughRestart(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, stop := e.start(nil)

	e.fire("oncall", "g1", "HighErrorRate")
	inc := e.onlyIncident()
	tu.WaitFor(t, "incident posted", 5*time.Second, func() bool { return len(e.slack.TopLevel("C-DEFAULT")) == 1 })
	top := e.slack.TopLevel("C-DEFAULT")[0]
	if !strings.Contains(top.Text, "HighErrorRate") || !strings.Contains(top.Text, "open") {
		t.Fatalf("message text %q", top.Text)
	}
	if len(top.Blocks.BlockSet) < 3 {
		t.Fatalf("message has %d blocks, want the summary, alerts and buttons", len(top.Blocks.BlockSet))
	}

	if _, err := e.mg.Acknowledge(ctx, inc.ID, incident.Action{Actor: "alice", Comment: "looking"}); err != nil {
		t.Fatal(err)
	}
	tu.WaitFor(t, "message updated to acknowledged", 5*time.Second, func() bool {
		m := e.slack.TopLevel("C-DEFAULT")[0]
		return strings.Contains(m.Text, "acknowledged")
	})
	tu.WaitFor(t, "acknowledgement in the thread", 5*time.Second, func() bool {
		for _, r := range e.slack.Replies("C-DEFAULT", top.TS) {
			if strings.Contains(r.Text, "Acknowledged by alice: looking") {
				return true
			}
		}
		return false
	})

	// A restart: the notifier reads its journal and continues.
	stop()
	e.clock.Add(time.Minute)
	if _, err := e.mg.Resolve(ctx, inc.ID, incident.Action{Actor: "bob"}); err != nil {
		t.Fatal(err)
	}
	e.start(nil)
	tu.WaitFor(t, "message updated to resolved", 5*time.Second, func() bool {
		m := e.slack.TopLevel("C-DEFAULT")[0]
		return strings.Contains(m.Text, "resolved")
	})
	// The alert fires again within the reopen window: the same message.
	e.clock.Add(time.Minute)
	e.fire("oncall", "g1", "HighErrorRate", "Latency")
	tu.WaitFor(t, "reopened", 5*time.Second, func() bool {
		return strings.Contains(e.slack.TopLevel("C-DEFAULT")[0].Text, "— open")
	})
	if got := e.slack.TopLevel(""); len(got) != 1 {
		t.Fatalf("%d top-level messages after restart and reopening, want 1", len(got))
	}
	final := e.slack.TopLevel("C-DEFAULT")[0]
	if final.TS != top.TS || final.Updates < 3 {
		t.Fatalf("message %s updated %d times, want %s updated >= 3 times", final.TS, final.Updates, top.TS)
	}
	var replies []string
	for _, r := range e.slack.Replies("C-DEFAULT", top.TS) {
		replies = append(replies, r.Text)
	}
	joined := strings.Join(replies, "\n")
	for _, want := range []string{"Acknowledged by alice", "Resolved by bob", "Reopened", `Latency {service="checkout"`} {
		if !strings.Contains(joined, want) {
			t.Errorf("thread lacks %q:\n%s", want, joined)
		}
	}
	if strings.Count(joined, "Acknowledged by alice") != 1 {
		t.Errorf("acknowledgement told more than once:\n%s", joined)
	}
}

func TestRouteChannelAndEscaping(t *testing.T) {
	e := newEnv(t)
	e.start(nil)
	e.fire("db-team", "g1", "ReplicaLag")
	tu.WaitFor(t, "posted to the route's channel", 5*time.Second, func() bool { return len(e.slack.TopLevel("C-DB")) == 1 })
	m := e.slack.TopLevel("C-DB")[0]
	raw := renderJSON(t, m)
	if strings.Contains(raw, "<!channel>") {
		t.Fatalf("an alert's summary became a mention: %s", raw)
	}
	if !strings.Contains(raw, "https://aiops.example.com/api/v1/incidents/") || !strings.Contains(raw, "https://aiops.example.com/graph?g0.expr=") {
		t.Fatalf("links missing: %s", raw)
	}
	if len(e.slack.TopLevel("C-DEFAULT")) != 0 {
		t.Fatal("the default channel got the route's incident")
	}
}

func TestRateLimitedCallWaitsAndIsDelivered(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	e.slack.Inject("chat.postMessage", slackstandin.Fault{Status: http.StatusTooManyRequests, RetryAfter: 7, Times: 2})
	n, _ := e.start(reg)
	e.fire("oncall", "g1", "HighErrorRate")
	tu.WaitFor(t, "posted after the rate limit", 5*time.Second, func() bool { return len(e.slack.TopLevel("C-DEFAULT")) == 1 })
	if got := e.sleeps.all(); len(got) != 2 || got[0] != 7*time.Second || got[1] != 7*time.Second {
		t.Fatalf("waits %v, want [7s 7s] as Retry-After said", got)
	}
	if got := testutil.ToFloat64(n.m.rateLimited.WithLabelValues(opPost)); got != 2 {
		t.Fatalf("rate_limited = %v, want 2", got)
	}
	if got := testutil.ToFloat64(n.m.failed.WithLabelValues(opPost)); got != 0 {
		t.Fatalf("failures = %v, want 0", got)
	}
}

func TestTransientErrorsRetriedWithBackoff(t *testing.T) {
	e := newEnv(t)
	e.slack.Inject("chat.postMessage", slackstandin.Fault{Status: http.StatusInternalServerError, Times: 3})
	n, _ := e.start(nil)
	e.fire("oncall", "g1", "HighErrorRate")
	tu.WaitFor(t, "posted after 5xx", 5*time.Second, func() bool { return len(e.slack.TopLevel("C-DEFAULT")) == 1 })
	if got := e.sleeps.all(); len(got) != 3 || got[0] != time.Second || got[1] != 2*time.Second || got[2] != 4*time.Second {
		t.Fatalf("waits %v, want exponential backoff from 1s", got)
	}
	if got := testutil.ToFloat64(n.m.retries.WithLabelValues(opPost)); got != 3 {
		t.Fatalf("retries = %v, want 3", got)
	}
}

func TestUndeliverableIsCountedAndNoted(t *testing.T) {
	e := newEnv(t)
	e.cfg.Delivery.MaxAttempts = 2
	e.slack.Inject("chat.postMessage", slackstandin.Fault{SlackError: "channel_not_found", Times: -1})
	n, _ := e.start(nil)
	e.fire("oncall", "g1", "HighErrorRate")
	inc := e.onlyIncident()
	tu.WaitFor(t, "failure noted in the timeline", 5*time.Second, func() bool {
		evs, _ := e.mg.Timeline(context.Background(), inc.ID)
		for _, ev := range evs {
			if ev.Type == incident.EventNote && ev.Actor == Actor && strings.Contains(ev.Comment, "channel_not_found") {
				return true
			}
		}
		return false
	})
	if got := testutil.ToFloat64(n.m.failed.WithLabelValues(opPost)); got != 1 {
		t.Fatalf("failures = %v, want 1", got)
	}
	// A permanent refusal is not retried, and the note does not start a
	// loop of attempts and notes.
	calls := e.slack.Calls("chat.postMessage")
	e.fire("oncall", "g1", "HighErrorRate", "Other")
	tu.WaitFor(t, "the next event tried", 5*time.Second, func() bool { return e.slack.Calls("chat.postMessage") == calls+1 })
	evs, _ := e.mg.Timeline(context.Background(), inc.ID)
	notes := 0
	for _, ev := range evs {
		if ev.Type == incident.EventNote {
			notes++
		}
	}
	if notes != 2 {
		t.Fatalf("%d notes, want one per undelivered change (2)", notes)
	}
	if got := e.slack.Calls("chat.postMessage"); got != calls+1 {
		t.Fatalf("%d calls, want %d", got, calls+1)
	}
}

func TestShutdownDuringRetryLeavesEventForNextRun(t *testing.T) {
	e := newEnv(t)
	e.slack.Inject("chat.postMessage", slackstandin.Fault{Status: http.StatusServiceUnavailable, Times: -1})
	blocked := make(chan struct{})
	var once sync.Once
	e.sleeps = &sleepLog{}
	n, err := New(e.cfg, Deps{
		Incidents: e.mg, Feed: e.mg.Feed(incident.FeedOptions{PollInterval: 50 * time.Millisecond}), Head: e.mg.FeedHead,
		BotToken: token, Logger: tu.Logger(t),
		Sleep: func(ctx context.Context, d time.Duration) error {
			once.Do(func() { close(blocked) })
			<-ctx.Done()
			return ctx.Err()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	e.fire("oncall", "g1", "HighErrorRate")
	<-blocked
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	e.slack.ClearFaults("chat.postMessage")
	e.start(nil)
	tu.WaitFor(t, "posted by the next run", 5*time.Second, func() bool { return len(e.slack.TopLevel("C-DEFAULT")) == 1 })
}

func TestConfigValidateNamesKeys(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "tok")
	os.WriteFile(good, []byte("xoxb-secret-value"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	base := DefaultConfig()
	base.BotTokenFile, base.Channel = good, "#incidents"
	for _, tc := range []struct {
		name string
		mod  func(c *Config)
		want string
	}{
		{"missing token file", func(c *Config) { c.BotTokenFile = filepath.Join(dir, "nope") }, "slack.bot_token_file: read"},
		{"empty token file", func(c *Config) { c.BotTokenFile = empty }, "slack.bot_token_file: " + empty + " is empty"},
		{"bad api url", func(c *Config) { c.APIURL = "slack.com" }, "slack.api_url"},
		{"no channel", func(c *Config) { c.Channel = "" }, "slack.channel: must name a channel"},
		{"bad route channel", func(c *Config) { c.Channels = map[string]string{"db": "a b"} }, "slack.channels.db"},
		{"attempts", func(c *Config) { c.Delivery.MaxAttempts = 0 }, "slack.delivery.max_attempts"},
		{"backoff", func(c *Config) { c.Delivery.MaxBackoff = model.Duration(time.Millisecond) }, "slack.delivery.max_backoff"},
		{"retention", func(c *Config) { c.MessageRetention = 0 }, "slack.message_retention: must be at least 1h"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.mod(&c)
			err := c.Validate("slack")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "xoxb-secret-value") {
				t.Fatalf("error shows the secret: %v", err)
			}
		})
	}
	if err := base.Validate("slack"); err != nil {
		t.Fatal(err)
	}
	if err := (Config{}).Validate("slack"); err != nil {
		t.Fatalf("a disabled section is valid: %v", err)
	}
	s, _ := ReadSecretFile(good)
	if s.String() != "<secret>" {
		t.Fatalf("secret prints as %q", s.String())
	}
}

// lagging is the incident service as the feed's reader may see it: an
// event already in the feed, the state it folds into not yet shown.
type lagging struct {
	*incident.Manager
	mu    sync.Mutex
	stale map[string]incident.Incident
	// unknown is how many more Gets answer ErrNotFound (not loaded yet).
	unknown int
}

func (l *lagging) Get(id string) (incident.Incident, error) {
	l.mu.Lock()
	if l.unknown > 0 {
		l.unknown--
		l.mu.Unlock()
		return incident.Incident{}, fmt.Errorf("%w: %s", incident.ErrNotFound, id)
	}
	inc, ok := l.stale[id]
	delete(l.stale, id)
	l.mu.Unlock()
	if ok {
		return inc, nil
	}
	return l.Manager.Get(id)
}

func TestMessageCatchesUpWithStateShownAfterItsEvent(t *testing.T) {
	e := newEnv(t)
	// The first reads find nothing, as while the incident service loads.
	lag := &lagging{Manager: e.mg, stale: map[string]incident.Incident{}, unknown: 5}
	n, err := New(e.cfg, Deps{
		Incidents: lag, Feed: e.mg.Feed(incident.FeedOptions{PollInterval: 50 * time.Millisecond}), Head: e.mg.FeedHead,
		BotToken: token, Logger: tu.Logger(t), Sleep: e.sleeps.sleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	e.fire("oncall", "g1", "HighErrorRate")
	inc := e.onlyIncident()
	tu.WaitFor(t, "posted", 5*time.Second, func() bool { _, ok := n.MessageOf(inc.ID); return ok })
	before, _ := e.mg.Get(inc.ID)
	lag.mu.Lock()
	lag.stale[inc.ID] = before
	lag.mu.Unlock()
	if _, err := e.mg.Acknowledge(context.Background(), inc.ID, incident.Action{Actor: "alice"}); err != nil {
		t.Fatal(err)
	}
	tu.WaitFor(t, "message updated although the first read was stale", 5*time.Second, func() bool {
		return strings.Contains(e.slack.TopLevel("C-DEFAULT")[0].Text, "acknowledged")
	})
}

// The messages of incidents resolved longer ago than the retention are
// forgotten, so that the state does not grow with every incident ever
// posted; one reopened within the retention keeps its message.
func TestResolvedMessagesForgottenAfterRetention(t *testing.T) {
	e := newEnv(t)
	e.cfg.MessageRetention = model.Duration(48 * time.Hour)
	ctx := context.Background()
	n, stop := e.start(nil)

	e.fire("oncall", "g1", "HighErrorRate")
	e.fire("oncall", "g2", "DiskFull")
	incs, _ := e.mg.List(incident.Query{})
	if len(incs) != 2 {
		t.Fatalf("%d incidents, want 2", len(incs))
	}
	for _, inc := range incs {
		if _, err := e.mg.Resolve(ctx, inc.ID, incident.Action{Actor: "bob"}); err != nil {
			t.Fatal(err)
		}
	}
	tu.WaitFor(t, "both messages recorded as resolved", 5*time.Second, func() bool {
		for _, inc := range incs {
			if m, ok := n.MessageOf(inc.ID); !ok || m.ResolvedAt != e.clock.Now().Unix() {
				return false
			}
		}
		return true
	})
	stop()
	top := e.slack.TopLevel("C-DEFAULT")

	// g1 fires again within the reopen window: it continues its message,
	// which is no longer resolved.
	e.clock.Add(30 * time.Minute)
	e.fire("oncall", "g1", "HighErrorRate")
	reopened := ""
	for _, inc := range incs {
		if got, _ := e.mg.Get(inc.ID); got.Status != incident.StatusResolved {
			reopened = inc.ID
		}
	}
	if reopened == "" {
		t.Fatal("g1 did not reopen its incident")
	}
	n, stop = e.start(nil)
	tu.WaitFor(t, "reopened message no longer resolved", 5*time.Second, func() bool {
		m, ok := n.MessageOf(reopened)
		return ok && m.ResolvedAt == 0 && strings.Contains(e.slack.TopLevel("C-DEFAULT")[0].Text+e.slack.TopLevel("C-DEFAULT")[1].Text, "— open")
	})
	stop()

	// Past the retention: the resolved one is forgotten, on disk too; the
	// open one is kept.
	e.clock.Add(49 * time.Hour)
	n, stop = e.start(nil)
	for _, inc := range incs {
		_, ok := n.MessageOf(inc.ID)
		if want := inc.ID == reopened; ok != want {
			t.Errorf("message of %s (reopened %v) remembered = %v", inc.ID, inc.ID == reopened, ok)
		}
	}
	stop()
	j, err := openJournal(e.cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	if len(j.messages) != 1 || j.messages[reopened].TS == "" {
		t.Fatalf("journal holds %v, want the reopened incident's message alone", j.messages)
	}
	if got := e.slack.TopLevel(""); len(got) != len(top) {
		t.Fatalf("%d top-level messages, want %d: nothing posted again", len(got), len(top))
	}
}

// TestRunRunbookButtonOffered: the "Run runbook…" button is on the
// message when the notifier is told the app can answer it, and goes with
// the other buttons once the incident is resolved.
func TestRunRunbookButtonOffered(t *testing.T) {
	for _, offer := range []bool{false, true} {
		t.Run(fmt.Sprint(offer), func(t *testing.T) {
			e := newEnv(t)
			e.offerRunbooks = offer
			e.start(nil)
			e.fire("oncall", "g1", "HighErrorRate")
			tu.WaitFor(t, "incident posted", 5*time.Second, func() bool { return len(e.slack.TopLevel("C-DEFAULT")) == 1 })
			js := renderJSON(t, e.slack.TopLevel("C-DEFAULT")[0])
			if got := strings.Contains(js, `"action_id":"`+ActionRunRunbook+`"`); got != offer {
				t.Fatalf("button shown = %v, want %v: %s", got, offer, js)
			}
			if _, err := e.mg.Resolve(context.Background(), e.onlyIncident().ID, incident.Action{Actor: "bob"}); err != nil {
				t.Fatal(err)
			}
			tu.WaitFor(t, "message resolved without buttons", 5*time.Second, func() bool {
				js := renderJSON(t, e.slack.TopLevel("C-DEFAULT")[0])
				return strings.Contains(js, "resolved") && !strings.Contains(js, ActionRunRunbook) && !strings.Contains(js, ActionResolve)
			})
		})
	}
}

// TestStoreJournalHandsOver: two notifiers with their journal in the
// store, one after the other as the terms of an HA lease pass: the
// second updates the first one's message and replies in its thread.
func TestStoreJournalHandsOver(t *testing.T) {
	e := newEnv(t)
	e.journal = storetest.Embedded(t)
	e.cfg.StateDir = ""
	ctx := context.Background()
	_, stop := e.start(nil)
	e.fire("oncall", "g1", "HighErrorRate")
	inc := e.onlyIncident()
	tu.WaitFor(t, "incident posted", 5*time.Second, func() bool { return len(e.slack.TopLevel("C-DEFAULT")) == 1 })
	top := e.slack.TopLevel("C-DEFAULT")[0]
	stop()

	if _, err := e.mg.Acknowledge(ctx, inc.ID, incident.Action{Actor: "alice", Comment: "looking"}); err != nil {
		t.Fatal(err)
	}
	e.start(nil)
	tu.WaitFor(t, "the next holder updates the message", 5*time.Second, func() bool {
		return strings.Contains(e.slack.TopLevel("C-DEFAULT")[0].Text, "acknowledged")
	})
	tu.WaitFor(t, "the acknowledgement in the same thread", 5*time.Second, func() bool {
		for _, r := range e.slack.Replies("C-DEFAULT", top.TS) {
			if strings.Contains(r.Text, "Acknowledged by alice") {
				return true
			}
		}
		return false
	})
	if got := e.slack.TopLevel(""); len(got) != 1 || got[0].TS != top.TS {
		t.Fatalf("top-level messages %+v, want the first one alone", got)
	}
}

// termCtx stands for lease.StoreElector's term context: Err reports the
// term over once over is set, before the context is cancelled.
type termCtx struct {
	context.Context
	over atomic.Bool
}

func (c *termCtx) Err() error {
	if c.over.Load() {
		return context.DeadlineExceeded
	}
	return c.Context.Err()
}

// TestPausedHolderDoesNotPost: a holder whose term is over on its own
// clock, but not yet cancelled (a process paused past its lease and
// resumed), makes no Slack call: the next holder may have made it from
// the same journal. Found attacking the HA pair from outside with
// SIGSTOP.
func TestPausedHolderDoesNotPost(t *testing.T) {
	e := newEnv(t)
	e.journal = storetest.Embedded(t)
	e.cfg.StateDir = ""
	term := &termCtx{Context: context.Background()}
	n, _ := e.startIn(term, nil)
	e.fire("oncall", "g1", "HighErrorRate")
	inc := e.onlyIncident()
	tu.WaitFor(t, "incident posted", 5*time.Second, func() bool { return len(e.slack.TopLevel("C-DEFAULT")) == 1 })

	term.over.Store(true)
	err := n.RequestApproval(context.Background(), ApprovalRequest{IncidentID: inc.ID, ExecutionID: "ex-1", Runbook: "restart", Target: "api"})
	if err == nil || !strings.Contains(err.Error(), "lease term is over") {
		t.Fatalf("RequestApproval after the term: %v, want a refusal naming the term", err)
	}
	if got := len(e.slack.Messages("")); got != 1 {
		t.Fatalf("%d Slack messages, want the incident's alone", got)
	}
	if ids := n.PendingApprovals(); len(ids) != 0 {
		t.Fatalf("pending approvals %v recorded without a post", ids)
	}

	// The next term (Reload, then Run) posts again.
	term2 := &termCtx{Context: context.Background()}
	n2, _ := e.startIn(term2, nil)
	if err := n2.RequestApproval(context.Background(), ApprovalRequest{IncidentID: inc.ID, ExecutionID: "ex-1", Runbook: "restart", Target: "api"}); err != nil {
		t.Fatalf("RequestApproval in the next term: %v", err)
	}
}
