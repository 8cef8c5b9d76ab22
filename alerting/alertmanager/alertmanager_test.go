package alertmanager

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/prometheus/alertmanager/nflog"
	"github.com/prometheus/alertmanager/nflog/nflogpb"
	"github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/alertmanager/silence"
	"github.com/prometheus/alertmanager/silence/silencepb"

	"github.com/aiops-dev/aiops/internal/testutil"
)

// fastRoute keeps group timings short so tests run in seconds.
const fastRoute = `
  group_wait: 100ms
  group_interval: 400ms
  repeat_interval: 1h`

// TestGroupSinks checks that a sink sees every group exactly as the
// dispatcher forms it, per route, and its resolved notification.
func TestGroupSinks(t *testing.T) {
	h := newHook(t)
	sink := &recordingSink{}
	conf := fmt.Sprintf(`
route:
  receiver: default
  group_by: [alertname]%s
  routes:
    - matchers: [team="db"]
      receiver: db
      continue: true
    - matchers: [team="db"]
      receiver: db-oncall
      group_by: [alertname, instance]
receivers:
  - name: default
  - name: db
    webhook_configs:
      - url: %s
  - name: db-oncall
`, fastRoute, h.srv.URL)
	am := startAM(t, t.TempDir(), conf, sink)

	// Fresh alerts wait group_wait, so each group's first flush holds all
	// of its alerts.
	start := time.Now()
	a := model.LabelSet{"alertname": "PoolFull", "team": "db", "instance": "pg-1"}
	b := model.LabelSet{"alertname": "PoolFull", "team": "db", "instance": "pg-2"}
	other := model.LabelSet{"alertname": "Other", "team": "web", "instance": "web-1"}
	if err := am.Put(context.Background(), firing(a, start), firing(b, start), firing(other, start)); err != nil {
		t.Fatal(err)
	}
	// Groups: db/{PoolFull} with both instances, db-oncall/{PoolFull,pg-1},
	// db-oncall/{PoolFull,pg-2}, default/{Other}.
	testutil.WaitFor(t, "four firing groups at the sink", 10*time.Second, func() bool { return len(sink.snapshot()) >= 4 })
	calls := sink.snapshot()
	byGroup := map[string]sinkCall{}
	for _, c := range calls {
		byGroup[c.receiver+" "+c.groupLabels.String()] = c
	}
	want := map[string][]string{
		`db {alertname="PoolFull"}`:                         {"pg-1", "pg-2"},
		`db-oncall {alertname="PoolFull", instance="pg-1"}`: {"pg-1"},
		`db-oncall {alertname="PoolFull", instance="pg-2"}`: {"pg-2"},
		`default {alertname="Other"}`:                       {"web-1"},
	}
	for g, firing := range want {
		c, ok := byGroup[g]
		if !ok {
			t.Fatalf("sink never saw group %s; saw %+v", g, calls)
		}
		slices.Sort(c.firing)
		if !slices.Equal(c.firing, firing) || len(c.resolved) != 0 {
			t.Errorf("group %s: firing %v resolved %v, want firing %v", g, c.firing, c.resolved, firing)
		}
	}
	// The sink and the receiver's webhook saw the same group key.
	testutil.WaitFor(t, "webhook notification", 5*time.Second, func() bool { return len(h.messages()) >= 1 })
	if got, want := h.messages()[0].GroupKey, byGroup[`db {alertname="PoolFull"}`].groupKey; got != want {
		t.Errorf("webhook group key %q, sink group key %q", got, want)
	}

	// Resolve pg-1: its db-oncall group and the db group notify resolved.
	if err := am.Put(context.Background(), resolved(a, start)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "resolved notifications at the sink", 10*time.Second, func() bool {
		n := 0
		for _, c := range sink.snapshot()[len(calls):] {
			if len(c.resolved) > 0 {
				n++
			}
		}
		return n >= 2
	})
	for _, c := range sink.snapshot()[len(calls):] {
		g := c.receiver + " " + c.groupLabels.String()
		switch g {
		case `db {alertname="PoolFull"}`:
			if !slices.Equal(c.resolved, []string{"pg-1"}) || !slices.Equal(c.firing, []string{"pg-2"}) {
				t.Errorf("db group after resolve: firing %v resolved %v", c.firing, c.resolved)
			}
		case `db-oncall {alertname="PoolFull", instance="pg-1"}`:
			if !slices.Equal(c.resolved, []string{"pg-1"}) || len(c.firing) != 0 {
				t.Errorf("db-oncall pg-1 after resolve: firing %v resolved %v", c.firing, c.resolved)
			}
		default:
			t.Errorf("unexpected notification for unchanged group %s: %+v", g, c)
		}
	}
}

// TestWebhookRetryAfter checks that 429 and 503 are retried no sooner than
// their Retry-After says, and that other 4xx are not retried.
func TestWebhookRetryAfter(t *testing.T) {
	h := newHook(t,
		func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", http.StatusTooManyRequests)
		},
		func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "2")
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
		},
	)
	bad := newHook(t, func(w http.ResponseWriter) { http.Error(w, "no such channel", http.StatusBadRequest) })
	conf := fmt.Sprintf(`
global:
  resolve_timeout: 5m
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 50ms
  group_interval: 30s
  repeat_interval: 1h
  routes:
    - matchers: [alertname="Bad"]
      receiver: bad
receivers:
  - name: hook
    webhook_configs:
      - url: %s
  - name: bad
    webhook_configs:
      - url: %s
`, h.srv.URL, bad.srv.URL)
	am := startAM(t, t.TempDir(), conf)
	start := time.Now().Add(-time.Minute)
	if err := am.Put(context.Background(),
		firing(model.LabelSet{"alertname": "Retry", "instance": "a"}, start),
		firing(model.LabelSet{"alertname": "Bad", "instance": "b"}, start)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "delivery after two refusals", 20*time.Second, func() bool { return len(h.messages()) == 1 })
	at := h.attemptTimes()
	if len(at) != 3 {
		t.Fatalf("%d attempts, want 3 (429, 503, 200)", len(at))
	}
	if gap := at[1].Sub(at[0]); gap < time.Second {
		t.Errorf("retry after 429 with Retry-After: 1 came after %s", gap)
	}
	if gap := at[2].Sub(at[1]); gap < 2*time.Second {
		t.Errorf("retry after 503 with Retry-After: 2 came after %s", gap)
	}
	m := h.messages()[0]
	if m.Version != "4" || m.Status != "firing" || len(m.Alerts) != 1 || m.Alerts[0].Labels["alertname"] != "Retry" {
		t.Errorf("unexpected payload %+v", m)
	}
	if m.Receiver != "hook" || !strings.Contains(m.GroupKey, `alertname="Retry"`) {
		t.Errorf("receiver %q group key %q", m.Receiver, m.GroupKey)
	}
	// The 400 was attempted once and not retried, although the backoff
	// (0.5 s and up) would have retried by now.
	if n := len(bad.attemptTimes()); n != 1 {
		t.Errorf("400 response attempted %d times, want 1", n)
	}
}

// TestRestartKeepsSilencesAndNflog restarts the Alertmanager over the same
// data dir: the silence is still there and still mutes, and a group that
// was already notified is not notified again.
func TestRestartKeepsSilencesAndNflog(t *testing.T) {
	dir := t.TempDir()
	h := newHook(t)
	conf := fmt.Sprintf(`
route:
  receiver: hook
  group_by: [alertname]%s
receivers:
  - name: hook
    webhook_configs:
      - url: %s
`, fastRoute, h.srv.URL)

	am := startAM(t, dir, conf)
	sil := &silencepb.Silence{
		Matchers:  []*silencepb.Matcher{{Type: silencepb.Matcher_EQUAL, Name: "instance", Pattern: "muted"}},
		StartsAt:  timestamppb.Now(),
		EndsAt:    timestamppb.New(time.Now().Add(time.Hour)),
		CreatedBy: "test",
		Comment:   "maintenance",
	}
	if err := am.Silences().Set(context.Background(), sil); err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Minute)
	x := model.LabelSet{"alertname": "Disk", "instance": "x"}
	muted := model.LabelSet{"alertname": "Disk", "instance": "muted"}
	if err := am.Put(context.Background(), firing(x, start), firing(muted, start)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "first notification", 5*time.Second, func() bool { return len(h.messages()) == 1 })
	if got := h.messages()[0].Alerts; len(got) != 1 || got[0].Labels["instance"] != "x" {
		t.Fatalf("first notification: %+v (the silenced alert must be left out)", got)
	}
	// The pipeline logs a notification just after sending it; a crash in
	// between would send it again (at least once), so wait for the entry.
	recv := &nflogpb.Receiver{GroupName: "hook", Integration: "webhook", Idx: 0}
	testutil.WaitFor(t, "notification log entry", 5*time.Second, func() bool {
		e, err := am.nflog.Query(nflog.QReceiver(recv), nflog.QGroupKey(h.messages()[0].GroupKey))
		return err == nil && len(e) == 1
	})
	if err := am.Close(); err != nil {
		t.Fatal(err)
	}

	am2 := startAM(t, dir, conf)
	got, _, err := am2.Silences().Query(context.Background(), silence.QIDs(sil.Id))
	if err != nil || len(got) != 1 || got[0].Comment != "maintenance" {
		t.Fatalf("silence after restart: %v, %v", got, err)
	}
	// The rule evaluator re-sends the same alerts after a restart; the
	// notification log knows the group was notified.
	if err := am2.Put(context.Background(), firing(x, start), firing(muted, start)); err != nil {
		t.Fatal(err)
	}
	infos, err := am2.ListAlerts(context.Background(), AlertFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 {
		t.Fatalf("ListAlerts: %d alerts, want 2", len(infos))
	}
	for _, in := range infos {
		silenced := len(in.Status.SilencedBy) == 1 && in.Status.SilencedBy[0] == sil.Id
		if (in.Labels["instance"] == "muted") != silenced {
			t.Errorf("alert %s: status %+v", in.Labels, in.Status)
		}
		if !slices.Equal(in.Receivers, []string{"hook"}) {
			t.Errorf("alert %s: receivers %v", in.Labels, in.Receivers)
		}
	}
	m, err := labels.NewMatcher(labels.MatchEqual, "alertname", "Disk")
	if err != nil {
		t.Fatal(err)
	}
	onlyActive, err := am2.ListAlerts(context.Background(), AlertFilter{ExcludeSilenced: true, Matchers: []*labels.Matcher{m}})
	if err != nil || len(onlyActive) != 1 || onlyActive[0].Labels["instance"] != "x" {
		t.Errorf("ListAlerts without silenced: %v, %v", onlyActive, err)
	}

	// Wait well past group_wait and a group_interval: no repeat.
	time.Sleep(1200 * time.Millisecond)
	if n := len(h.messages()); n != 1 {
		t.Fatalf("%d notifications after restart, want still 1 (nflog lost?)", n)
	}
	// A change in the group does notify, so the pipeline is alive.
	y := model.LabelSet{"alertname": "Disk", "instance": "y"}
	if err := am2.Put(context.Background(), firing(y, time.Now())); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "notification for the new alert", 5*time.Second, func() bool { return len(h.messages()) == 2 })
	if got := h.messages()[1].Alerts; len(got) != 2 {
		t.Errorf("second notification has %d alerts, want x and y", len(got))
	}
}

// TestReloadKeepsConfigOnError checks that a broken configuration file is
// refused with its name and the running configuration stays.
func TestReloadKeepsConfigOnError(t *testing.T) {
	dir := t.TempDir()
	am := startAM(t, dir, "route:\n  receiver: a\nreceivers:\n  - name: a\n")
	file := am.opts.ConfigFile
	if err := writeFile(file, "route:\n  receiver: missing\nreceivers:\n  - name: a\n"); err != nil {
		t.Fatal(err)
	}
	err := am.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Reload of a broken file: %v", err)
	}
	if got := am.Config().Route.Receiver; got != "a" {
		t.Errorf("route receiver after failed reload: %q", got)
	}
	if err := writeFile(file, "route:\n  receiver: b\nreceivers:\n  - name: b\n"); err != nil {
		t.Fatal(err)
	}
	if err := am.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := am.Config().Route.Receiver; got != "b" {
		t.Errorf("route receiver after reload: %q", got)
	}
}
