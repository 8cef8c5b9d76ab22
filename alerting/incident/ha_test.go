package incident

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/aiops-dev/aiops/internal/testutil"
)

// TestStandbyPair: two standby Managers on one store. Neither writes
// until it leads; the follower sees the leader's incidents; when the
// lease moves, the new leader continues the same incident (its next
// sequence number, no second incident for the group) and the deposed one
// refuses changes at once.
func TestStandbyPair(t *testing.T) {
	store := openEmbedded(t, t.TempDir())
	c := newClock()
	mk := func() *Manager {
		m, err := New(context.Background(), testConfig(), Deps{Events: store, Logger: testutil.Logger(t), Now: c.Now, Standby: true})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); m.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		return m
	}
	a, b := mk(), mk()
	ls := model.LabelSet{"alertname": "HighLatency", "service": "api"}
	gl := model.LabelSet{"alertname": "HighLatency"}
	if v := a.Notify(groupCtx("g1", "oncall", gl), mkAlert(ls, t0, time.Time{})); !errors.Is(v.Err(), ErrNotLeader) {
		t.Fatalf("a follower took a group: %v", v.Err())
	}

	lead := func(m *Manager) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		if err := m.Lead(ctx); err != nil {
			t.Fatal(err)
		}
		return func() {
			cancel()
			testutil.WaitFor(t, "following", 10*time.Second, func() bool { return !m.Leading() })
		}
	}
	stopA := lead(a)
	send(t, a, "g1", mkAlert(ls, t0, time.Time{}))
	incs, _ := a.List(Query{})
	if len(incs) != 1 {
		t.Fatalf("leader has %d incidents", len(incs))
	}
	id := incs[0].ID
	testutil.Eventually(t, 10*time.Second, "the follower sees the incident", func() (bool, string) {
		got, err := b.Get(id)
		return err == nil && got.Version == incs[0].Version, fmt.Sprint(err)
	})
	if _, err := b.Acknowledge(context.Background(), id, Action{Actor: "bob"}); !errors.Is(err, ErrNotLeader) {
		t.Errorf("the follower acknowledged: %v", err)
	}

	// The lease moves: a stops at once, b reads the store and continues.
	stopA()
	if _, err := a.Acknowledge(context.Background(), id, Action{Actor: "alice"}); !errors.Is(err, ErrNotLeader) {
		t.Errorf("the deposed leader acknowledged: %v", err)
	}
	stopB := lead(b)
	defer stopB()
	c.Add(time.Minute)
	ls2 := model.LabelSet{"alertname": "HighLatency", "service": "api", "instance": "2"}
	send(t, b, "g1", mkAlert(ls, t0, time.Time{}), mkAlert(ls2, c.Now(), time.Time{}))
	got, err := b.Acknowledge(context.Background(), id, Action{Actor: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if got.FiringAlerts != 2 || got.Status != StatusAcknowledged {
		t.Errorf("incident after the handover: %+v", got)
	}
	if incs, _ := b.List(Query{}); len(incs) != 1 {
		t.Errorf("%d incidents after the handover, want the one continued", len(incs))
	}
	evs, err := b.Timeline(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			t.Fatalf("timeline sequence %d at %d: the log forked: %+v", e.Seq, i, evs)
		}
	}
	testutil.Eventually(t, 10*time.Second, "the deposed leader follows", func() (bool, string) {
		inc, err := a.Get(id)
		return err == nil && inc.Status == StatusAcknowledged, fmt.Sprint(inc.Status, err)
	})
}
