package slacknotify

import (
	"context"
	"testing"
	"time"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage"
)

func openEventJournal(t *testing.T, events storage.EventStore, clock *testutil.Clock) (*journal, *eventJournal) {
	t.Helper()
	ej := newEventJournal(events, clock.Now)
	j := newJournal(ej)
	if err := j.reload(); err != nil {
		t.Fatal(err)
	}
	return j, ej
}

// TestEventJournalReloads: a second replica reading the store sees what
// the first wrote, latest change last, and reads from the latest
// snapshot on.
func TestEventJournalReloads(t *testing.T) {
	store := storetest.Embedded(t)
	clock := testutil.NewClock(testutil.Epoch)
	a, _ := openEventJournal(t, store, clock)
	if _, ok := a.Cursor(); ok {
		t.Fatal("an empty store has a cursor")
	}
	for i := range 1200 {
		clock.Add(time.Millisecond)
		if err := a.setMessage("inc-1", Message{Channel: "C1", TS: "1.1", Version: uint64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	a.setMessage("inc-2", Message{Channel: "C1", TS: "2.2", Version: 1})
	a.setApproval("x-1", Message{Channel: "C1", TS: "3.3"})
	a.setCursor("f1.abc")
	a.forgetApproval("x-1")
	a.write(journalLine{Incident: "inc-2", Forget: true})

	b, bej := openEventJournal(t, store, clock)
	if c, ok := b.Cursor(); !ok || c != "f1.abc" {
		t.Fatalf("cursor %q %v", c, ok)
	}
	if m, ok := b.message("inc-1"); !ok || m.Version != 1199 {
		t.Fatalf("inc-1 %+v %v", m, ok)
	}
	if _, ok := b.message("inc-2"); ok {
		t.Fatal("a forgotten message came back")
	}
	if ids := b.pendingApprovals(); len(ids) != 0 {
		t.Fatalf("approvals %v", ids)
	}
	// 1200 changes were compacted along the way: the load started from a
	// snapshot, not from the first change.
	n, err := bej.load(func(journalLine) {})
	if err != nil {
		t.Fatal(err)
	}
	if n > 10 {
		t.Fatalf("loading read %d lines: not from the latest snapshot", n)
	}
}

// TestEventJournalClockBehind: a new holder whose clock is behind the
// last event still writes after it, so its changes win on reload.
func TestEventJournalClockBehind(t *testing.T) {
	store := storetest.Embedded(t)
	ahead := testutil.NewClock(testutil.Epoch.Add(time.Hour))
	a, _ := openEventJournal(t, store, ahead)
	a.setMessage("inc-1", Message{Channel: "C1", TS: "1.1", Version: 1})
	a.setCursor("f1.a")

	behind := testutil.NewClock(testutil.Epoch)
	b, _ := openEventJournal(t, store, behind)
	b.setMessage("inc-1", Message{Channel: "C1", TS: "1.1", Version: 2})
	b.setCursor("f1.b")

	c, _ := openEventJournal(t, store, behind)
	if m, _ := c.message("inc-1"); m.Version != 2 {
		t.Fatalf("version %d after a reload, want the later write's 2", m.Version)
	}
	if cur, _ := c.Cursor(); cur != "f1.b" {
		t.Fatalf("cursor %q, want f1.b", cur)
	}
	// A reader whose clock is hours ahead finds the latest snapshot all
	// the same, past the recent ones it looks at first.
	far, _ := openEventJournal(t, store, testutil.NewClock(testutil.Epoch.Add(5*time.Hour)))
	if m, _ := far.message("inc-1"); m.Version != 2 {
		t.Fatalf("version %d read by a clock ahead, want 2", m.Version)
	}
	evs, err := store.QueryEvents(context.Background(), storage.EventQuery{KindPrefix: "slack."})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(evs); i++ {
		if !evs[i].Time.After(evs[i-1].Time) || evs[i].ID <= evs[i-1].ID {
			t.Fatalf("events %d and %d out of write order: %v %s, %v %s", i-1, i, evs[i-1].Time, evs[i-1].ID, evs[i].Time, evs[i].ID)
		}
	}
}

// TestEventJournalRewritesLiveState: with nothing happening, the state
// is written again once the snapshot is old, so that the store's event
// retention never drops an open incident's message.
func TestEventJournalRewritesLiveState(t *testing.T) {
	store := storetest.Embedded(t)
	clock := testutil.NewClock(testutil.Epoch)
	a, _ := openEventJournal(t, store, clock)
	a.setMessage("inc-1", Message{Channel: "C1", TS: "1.1", Version: 1})
	clock.Add(snapshotEvery + time.Minute)
	if err := a.maintain(); err != nil {
		t.Fatal(err)
	}
	// Retention drops everything before the new snapshot.
	evs, err := store.QueryEvents(context.Background(), storage.EventQuery{KindPrefix: KindSnapshot, Start: clock.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 {
		t.Fatalf("%d recent snapshots, want 1", len(evs))
	}
	only := &onlyAfter{EventStore: store, from: evs[0].Time}
	b, _ := openEventJournal(t, only, clock)
	if m, ok := b.message("inc-1"); !ok || m.TS != "1.1" {
		t.Fatalf("the live message is gone once old events are: %+v %v", m, ok)
	}
}

// onlyAfter is a store whose retention dropped the events before from.
type onlyAfter struct {
	storage.EventStore
	from time.Time
}

func (o *onlyAfter) QueryEvents(ctx context.Context, q storage.EventQuery) ([]storage.Event, error) {
	if q.Start.Before(o.from) {
		q.Start = o.from
	}
	return o.EventStore.QueryEvents(ctx, q)
}
