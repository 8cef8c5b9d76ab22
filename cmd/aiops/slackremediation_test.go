package main

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/alerting/slacknotify"
	"github.com/aiops-dev/aiops/internal/slackstandin"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/remediation/engine"
	"github.com/aiops-dev/aiops/remediation/runbook"
)

func TestParseTarget(t *testing.T) {
	for in, want := range map[string]map[string]string{
		"service=api":                       {"service": "api"},
		"service=api,instance=api-0":        {"service": "api", "instance": "api-0"},
		"service=api instance=api-0":        {"service": "api", "instance": "api-0"},
		`{service="api", instance="api-0"}`: {"service": "api", "instance": "api-0"},
		"api":                               nil,
		"service=":                          nil,
		"":                                  nil,
		"{}":                                nil,
		"=api":                              nil,
		`{path="/a b,c", host="x"}`:         {"path": "/a b,c", "host": "x"},
		`{service=~"api.*"}`:                nil,
		`{__name__="up"}`:                   nil,
		`{service="api"`:                    nil,
	} {
		got, err := parseTarget(in)
		if want == nil {
			if err == nil {
				t.Errorf("parseTarget(%q) = %v, want an error", in, got)
			}
			continue
		}
		if err != nil || !maps.Equal(got, want) {
			t.Errorf("parseTarget(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

func TestEngineErrorStatus(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
		text   string
	}{
		{fmt.Errorf("%w: execution ex-1", engine.ErrNotFound), http.StatusNotFound, "not found: execution ex-1"},
		{fmt.Errorf("%w: bob is not an approver of r", engine.ErrForbidden), http.StatusForbidden, "bob is not an approver of r"},
		{fmt.Errorf("%w: execution ex-1 is running, not waiting for approval", engine.ErrConflict), http.StatusConflict, "execution ex-1 is running, not waiting for approval"},
		{&engine.RefusedError{Rail: "kill_switch", Reason: "engaged"}, http.StatusConflict, "refused by kill_switch: engaged"},
		{fmt.Errorf("disk full"), http.StatusInternalServerError, "disk full"},
	} {
		e := remediationErr(c.err).(engineError)
		if e.HTTPStatus() != c.status || e.Error() != c.text {
			t.Errorf("%v: %d %q, want %d %q", c.err, e.HTTPStatus(), e.Error(), c.status, c.text)
		}
	}
}

// fakeExecutions are executions as the engine lists them: the watcher's
// view, without a runbook engine behind it.
type fakeExecutions struct{ xs map[string]engine.Execution }

func (f *fakeExecutions) List(engine.Filter) []engine.Execution {
	var out []engine.Execution
	for _, x := range f.xs {
		if x.State == engine.StatePendingApproval {
			out = append(out, x)
		}
	}
	return out
}

func (f *fakeExecutions) Get(_ context.Context, id string) (engine.Execution, []engine.Event, error) {
	x, ok := f.xs[id]
	if !ok {
		return x, nil, engine.ErrNotFound
	}
	return x, nil, nil
}

func (f *fakeExecutions) Runbook(string) (*runbook.Runbook, bool) { return nil, false }

// TestApprovalWatcher: a request waits for its incident's message, then
// goes to the channel; one Slack refuses for good is not tried again
// every second; a decided one loses its buttons.
func TestApprovalWatcher(t *testing.T) {
	sl := slackstandin.New("xoxb-watcher")
	t.Cleanup(sl.Stop)
	mg, err := incident.New(context.Background(), incident.DefaultConfig(), incident.Deps{Events: storetest.Embedded(t), Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := slacknotify.DefaultConfig()
	cfg.APIURL, cfg.Channel, cfg.StateDir = sl.URL(), "C-W", t.TempDir()
	cfg.Delivery.MaxAttempts, cfg.Delivery.MinBackoff = 1, model.Duration(time.Millisecond)
	n, err := slacknotify.New(cfg, slacknotify.Deps{Incidents: mg, Feed: mg.Feed(incident.FeedOptions{}), Head: mg.FeedHead, BotToken: "xoxb-watcher"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	execs := &fakeExecutions{xs: map[string]engine.Execution{
		"ex-1": {ID: "ex-1", Runbook: "rb", State: engine.StatePendingApproval, Target: map[string]string{"service": "a"},
			Trigger: engine.Trigger{IncidentID: "inc-not-posted"}, Approval: &engine.ApprovalRequest{Approvers: []string{"alice"}}},
	}}
	w := newApprovalWatcher(n, execs, testutil.Logger(t))
	ctx, now := context.Background(), testutil.Epoch
	requests := func() int { return sl.Calls("chat.postMessage") }

	w.sync(ctx, now)
	w.sync(ctx, now.Add(w.threadWait-time.Second))
	if got := requests(); got != 0 {
		t.Fatalf("%d requests posted while the incident's message may still come, want 0", got)
	}
	w.sync(ctx, now.Add(w.threadWait))
	if got := len(sl.TopLevel("C-W")); got != 1 || requests() != 1 {
		t.Fatalf("%d requests in the channel after %s, want 1", got, w.threadWait)
	}
	w.sync(ctx, now.Add(w.threadWait+time.Second))
	if got := requests(); got != 1 {
		t.Fatalf("%d requests posted, want 1", got)
	}

	// Refused for good: logged, then left alone.
	sl.Inject("chat.postMessage", slackstandin.Fault{SlackError: "channel_not_found", Times: -1})
	execs.xs["ex-2"] = engine.Execution{ID: "ex-2", Runbook: "rb", State: engine.StatePendingApproval, Approval: &engine.ApprovalRequest{}}
	w.sync(ctx, now)
	w.sync(ctx, now)
	if got := requests(); got != 2 {
		t.Fatalf("%d calls to chat.postMessage, want 2 (one refused, not retried)", got)
	}
	sl.ClearFaults("chat.postMessage")

	// Decided: the request says so, without buttons.
	x := execs.xs["ex-1"]
	x.State, x.ApprovedBy = engine.StateRunning, "alice"
	execs.xs["ex-1"] = x
	w.sync(ctx, now)
	m := sl.TopLevel("C-W")[0]
	if len(buttonsOf(m)) != 0 || !strings.Contains(m.Text, "Approved by alice") {
		t.Fatalf("decided request %q with buttons %v", m.Text, buttonsOf(m))
	}
	if p := n.PendingApprovals(); len(p) != 0 {
		t.Fatalf("pending approvals %v", p)
	}
}
