package incident

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/notify"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage"
	"github.com/aiops-dev/aiops/storage/embedded"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func newClock() *testutil.Clock { return testutil.NewClock(t0) }

func openEmbedded(t testing.TB, dir string) *embedded.Store {
	t.Helper()
	return storetest.EmbeddedWith(t, embedded.Config{DataDir: dir, Retention: model.Duration(24 * time.Hour)})
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.AutoResolveAfter = model.Duration(5 * time.Minute)
	cfg.ReopenWindow = model.Duration(time.Hour)
	return cfg
}

func newManager(t *testing.T, events storage.EventStore, cfg Config, c *testutil.Clock) *Manager {
	t.Helper()
	deps := Deps{Events: events, Logger: testutil.Logger(t)}
	if c != nil {
		deps.Now = c.Now
	}
	m, err := New(context.Background(), cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// mkAlert builds an alert as the dispatcher hands it over: firing when
// end is zero (EndsAt far ahead, as the ruler's ValidUntil), resolved at
// end otherwise.
func mkAlert(ls model.LabelSet, start, end time.Time) *alert.Alert {
	a := model.Alert{
		Labels:       ls,
		Annotations:  model.LabelSet{"summary": model.LabelValue("summary of " + string(ls["alertname"]))},
		StartsAt:     start,
		EndsAt:       end,
		GeneratorURL: "https://aiops.example.com/graph?g0.expr=" + url.QueryEscape(string(ls["alertname"])+"_expr > 1"),
	}
	if end.IsZero() {
		a.EndsAt = start.Add(100 * 365 * 24 * time.Hour)
	}
	return alert.New(a, start, false)
}

func groupCtx(key, receiver string, gl model.LabelSet) context.Context {
	ctx := notify.WithGroupKey(context.Background(), key)
	ctx = notify.WithReceiverName(ctx, receiver)
	return notify.WithGroupLabels(ctx, gl)
}

// send hands a group to the manager the way the dispatcher does and fails
// the test when the manager does not take it.
func send(t *testing.T, m *Manager, key string, alerts ...*alert.Alert) {
	t.Helper()
	gl := model.LabelSet{"alertname": alerts[0].Labels["alertname"]}
	v := m.Notify(groupCtx(key, "oncall", gl), alerts...)
	if v.Err() != nil {
		t.Fatalf("Notify: %v", v.Err())
	}
}

func only(t *testing.T, m *Manager) Incident {
	t.Helper()
	incs, _ := m.List(Query{})
	if len(incs) != 1 {
		t.Fatalf("%d incidents, want 1: %+v", len(incs), incs)
	}
	return incs[0]
}

func types(evs []Event) []EventType {
	out := make([]EventType, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

func mustTimeline(t *testing.T, m *Manager, id string) []Event {
	t.Helper()
	evs, err := m.Timeline(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d: %v", i, e.Seq, types(evs))
		}
	}
	return evs
}
