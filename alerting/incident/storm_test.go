package incident

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/prometheus/alertmanager/alert"
)

func stormAlerts(n int, start time.Time, end time.Time) []*alert.Alert {
	out := make([]*alert.Alert, n)
	for i := range n {
		ls := model.LabelSet{"alertname": "Storm", "instance": model.LabelValue(fmt.Sprintf("i%06d", i)), "job": "api"}
		// Later instances start later: the earliest are recorded.
		out[i] = mkAlert(ls, start.Add(time.Duration(i)*time.Second), end)
	}
	return out
}

// TestMaxAlerts: an incident records at most incidents.max_alerts
// alerts, the earliest started, and counts the rest; the same group
// again changes nothing; it does not resolve by itself while alerts over
// the limit fire, and does once they stop; and resolving it by hand
// sticks while they fire on.
func TestMaxAlerts(t *testing.T) {
	clock := newClock()
	cfg := testConfig()
	cfg.MaxAlerts = 3
	m := newManager(t, openEmbedded(t, t.TempDir()), cfg, clock)
	ctx := context.Background()

	storm := stormAlerts(5, t0, time.Time{})
	send(t, m, "g", storm...)
	inc := only(t, m)
	if len(inc.Alerts) != 3 || inc.FiringAlerts != 3 || inc.AlertsOverLimit != 2 {
		t.Fatalf("incident over its limit: %d alerts, %d firing, %d over the limit; want 3, 3, 2", len(inc.Alerts), inc.FiringAlerts, inc.AlertsOverLimit)
	}
	for i, a := range inc.Alerts {
		if want := fmt.Sprintf("i%06d", i); a.Labels["instance"] != want {
			t.Errorf("alert %d is %s, want the earliest started, %s", i, a.Labels["instance"], want)
		}
	}
	v := inc.Version
	send(t, m, "g", storm...)
	if got := only(t, m).Version; got != v {
		t.Fatalf("the same group again moved the incident from version %d to %d", v, got)
	}

	// The recorded alerts resolve while the others fire: no
	// auto-resolution; once the others stop, it resolves.
	clock.Add(time.Minute)
	send(t, m, "g", append(stormAlerts(3, t0, clock.Now()), storm[3:]...)...)
	clock.Add(time.Hour)
	if err := m.CheckDeadlines(ctx); err != nil {
		t.Fatal(err)
	}
	if inc := only(t, m); inc.Status == StatusResolved || inc.AlertsOverLimit != 2 || inc.FiringAlerts != 0 {
		t.Fatalf("with %d alerts over the limit firing: %s, %d recorded firing", inc.AlertsOverLimit, inc.Status, inc.FiringAlerts)
	}
	send(t, m, "g", stormAlerts(5, t0, clock.Now())...)
	clock.Add(time.Hour)
	if err := m.CheckDeadlines(ctx); err != nil {
		t.Fatal(err)
	}
	if inc := only(t, m); inc.Status != StatusResolved || inc.AlertsOverLimit != 0 {
		t.Fatalf("once every alert resolved: %s, %d over the limit; want resolved, 0", inc.Status, inc.AlertsOverLimit)
	}

	// Over the limit, resolved by hand: the group firing on does not
	// reopen it.
	m2 := newManager(t, openEmbedded(t, t.TempDir()), cfg, clock)
	send(t, m2, "g", storm...)
	id := only(t, m2).ID
	if _, err := m2.Resolve(ctx, id, Action{Actor: "alice"}); err != nil {
		t.Fatal(err)
	}
	send(t, m2, "g", storm...)
	if inc := only(t, m2); inc.Status != StatusResolved {
		t.Fatalf("the group firing on changed a resolved incident to %s", inc.Status)
	}
	// A new alert does.
	send(t, m2, "g", append(storm, mkAlert(model.LabelSet{"alertname": "Storm", "instance": "new"}, clock.Now(), time.Time{}))...)
	if inc := only(t, m2); inc.Status != StatusOpen {
		t.Fatalf("a new alert left the resolved incident %s", inc.Status)
	}

	// The state folds back the same from the store.
	m3 := newManager(t, m2.events, cfg, clock)
	if got, want := only(t, m3), only(t, m2); got.AlertsOverLimit != want.AlertsOverLimit || len(got.Alerts) != len(want.Alerts) || got.Version != want.Version {
		t.Errorf("rebuilt: %d alerts, %d over, version %d; was %d, %d, %d", len(got.Alerts), got.AlertsOverLimit, got.Version, len(want.Alerts), want.AlertsOverLimit, want.Version)
	}
}

// TestStormDoesNotHoldUpOtherChanges: a group of 50,000 alerts is read
// and sorted before the Manager's write lock is taken, so an unrelated
// acknowledgement issued meanwhile completes (it would wait for the lock
// otherwise); and its incident takes max_alerts alerts' events, not
// 50,000.
func TestStormDoesNotHoldUpOtherChanges(t *testing.T) {
	clock := newClock()
	cfg := testConfig()
	m := newManager(t, openEmbedded(t, t.TempDir()), cfg, clock)
	ctx := context.Background()
	send(t, m, "other", mkAlert(errRate, t0, time.Time{}))
	other := only(t, m).ID

	acked := make(chan error, 1)
	m.testHookPrepared = func() {
		m.testHookPrepared = nil
		go func() {
			_, err := m.Acknowledge(ctx, other, Action{Actor: "alice"})
			acked <- err
		}()
		select {
		case err := <-acked:
			acked <- err
		case <-time.After(time.Minute):
			t.Error("an acknowledgement issued while a storm's group was being prepared did not complete: the write lock is held")
		}
	}
	send(t, m, "storm", stormAlerts(50_000, t0, time.Time{})...)
	if err := <-acked; err != nil {
		t.Fatal(err)
	}
	incs, _ := m.List(Query{})
	for _, inc := range incs {
		if inc.ID == other {
			continue
		}
		if len(inc.Alerts) != cfg.MaxAlerts || inc.AlertsOverLimit != 50_000-cfg.MaxAlerts {
			t.Errorf("storm incident: %d alerts, %d over the limit; want %d, %d", len(inc.Alerts), inc.AlertsOverLimit, cfg.MaxAlerts, 50_000-cfg.MaxAlerts)
		}
		if inc.Version > uint64(cfg.MaxAlerts)+2 {
			t.Errorf("storm incident at version %d: more events than max_alerts (%d) and two", inc.Version, cfg.MaxAlerts)
		}
	}
}
