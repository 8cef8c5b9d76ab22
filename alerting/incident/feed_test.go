package incident

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/aiops-dev/aiops/internal/chtest"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/storage"
	"github.com/aiops-dev/aiops/storage/clickhouse"
)

// forEachStore runs f on the embedded store and on ClickHouse. open opens
// the test's store, the same one each time (a restart opens it again);
// closeStore closes one, as a process going away does.
func forEachStore(t *testing.T, f func(t *testing.T, open func() storage.EventStore)) {
	closeStore := func(s storage.EventStore) { s.(storage.Store).Close() }
	t.Run("embedded", func(t *testing.T) {
		dir := t.TempDir()
		f(t, func() storage.EventStore {
			s := openEmbedded(t, dir)
			return s
		})
	})
	t.Run("clickhouse", func(t *testing.T) {
		srv := chtest.Start(t)
		cfg := clickhouse.DefaultConfig()
		cfg.Addresses = []string{srv.NativeAddr()}
		cfg.Database = srv.NewDatabase(t)
		cfg.Compression = "none"
		cfg.Retention = 0
		f(t, func() storage.EventStore {
			s, err := clickhouse.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { closeStore(s) })
			return s
		})
	})
}

func startManager(t *testing.T, s storage.EventStore, c *testutil.Clock) *Manager {
	t.Helper()
	m, err := New(context.Background(), testConfig(), Deps{Events: s, Logger: testutil.Logger(t), Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// step is what a test expects to find in the feed: an incident (by group
// key) and an event type.
type step struct {
	group string
	typ   EventType
}

func must(t *testing.T) func(Incident, error) {
	return func(_ Incident, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestFeedFollowsIncidentLife follows an incident's whole life, with a
// second incident's events in between, from the start of the feed. The
// consumer stops partway and persists its cursor in a file; the process
// goes away; a new Manager over the same store carries on while the
// consumer resumes from the file, woken by the commits (it never polls).
// The consumer sees every event once, in the order of the log.
func TestFeedFollowsIncidentLife(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() storage.EventStore) {
		ctx := context.Background()
		c := testutil.NewClock(testutil.Epoch)
		store := open()
		m := startManager(t, store, c)
		const kA, kB = "k-pool", "k-err"
		a1 := mkAlert(pool, testutil.Epoch, time.Time{})
		b1 := mkAlert(errRate, testutil.Epoch, time.Time{})
		idOf := func(m *Manager, key string) string {
			t.Helper()
			for _, inc := range mustList(m) {
				if inc.GroupKey == key {
					return inc.ID
				}
			}
			t.Fatalf("no incident for group %s", key)
			return ""
		}

		// Before the restart.
		send(t, m, kA, a1)
		c.Add(time.Second)
		send(t, m, kB, b1)
		idA := idOf(m, kA)
		c.Add(time.Second)
		must(t)(m.Acknowledge(ctx, idA, Action{Actor: "alice", Comment: "on it"}))
		must(t)(m.AddNote(ctx, idA, "the pool is at its limit", Action{Actor: "alice"})) // the same instant
		c.Add(time.Second)
		must(t)(m.Assign(ctx, idA, "bob", Action{Actor: "alice"}))
		must(t)(m.Escalate(ctx, idA, Action{Actor: "bob"}))

		// The consumer reads part of it, three events at a time, and
		// persists its cursor after handling each event.
		cursorFile := filepath.Join(t.TempDir(), "cursor")
		var got []FeedEvent
		handle := func(evs []FeedEvent) {
			for _, e := range evs {
				got = append(got, e)
				if err := os.WriteFile(cursorFile, []byte(e.Cursor), 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		feed := m.Feed(FeedOptions{PollInterval: time.Hour})
		for range 2 {
			evs, err := feed.Tail(ctx, string(readFile(t, cursorFile)), 3)
			if err != nil || len(evs) != 3 {
				t.Fatalf("tail: %d events, %v", len(evs), err)
			}
			handle(evs)
		}

		// The process goes away; a new one opens the store, its clock
		// behind the events already written.
		store.(storage.Store).Close()
		c.Add(-time.Hour)
		store = open()
		m = startManager(t, store, c)
		feed = m.Feed(FeedOptions{PollInterval: time.Hour})

		runCtx, stop := context.WithCancel(ctx)
		var (
			mu      sync.Mutex
			resumed []FeedEvent
			tailErr error
		)
		done := make(chan struct{})
		cursor := string(readFile(t, cursorFile))
		go func() {
			defer close(done)
			for {
				evs, err := feed.Tail(runCtx, cursor, 2)
				if err != nil {
					if !errors.Is(err, context.Canceled) {
						mu.Lock()
						tailErr = err
						mu.Unlock()
					}
					return
				}
				mu.Lock()
				resumed = append(resumed, evs...)
				mu.Unlock()
				cursor = evs[len(evs)-1].Cursor
			}
		}()

		c.Add(2 * time.Hour)
		must(t)(m.RecordRunbook(ctx, idA, RunbookStarted, RunbookEvent{RunID: "r1", Runbook: "resize-pool"}, Action{Actor: "remediation"}))
		must(t)(m.AddNote(ctx, idOf(m, kB), "errors follow the pool", Action{Actor: "carol"}))
		c.Add(-10 * time.Minute) // the clock steps back
		must(t)(m.RecordRunbook(ctx, idA, RunbookFinished, RunbookEvent{RunID: "r1", Outcome: "succeeded"}, Action{Actor: "remediation"}))
		must(t)(m.Resolve(ctx, idA, Action{Actor: "bob", Comment: "pool resized"}))
		c.Add(time.Minute)
		a2 := mkAlert(model.LabelSet{"alertname": "PoolFull", "severity": "critical", "service": "postgres", "pool": "replica"}, c.Now(), time.Time{})
		send(t, m, kA, a1, a2) // a new alert within the reopen window
		c.Add(time.Minute)
		send(t, m, kA, mkAlert(pool, testutil.Epoch, c.Now()), mkAlert(a2.Labels, a2.StartsAt, c.Now()))
		// Quiet for auto_resolve_after, counted from the alerts' recorded
		// resolution, which the step back put ten minutes ahead.
		c.Add(16 * time.Minute)
		if err := m.CheckDeadlines(ctx); err != nil {
			t.Fatal(err)
		}

		want := []step{
			{kA, EventOpened}, {kA, EventAlertFiring},
			{kB, EventOpened}, {kB, EventAlertFiring},
			{kA, EventAcknowledged}, {kA, EventNote}, {kA, EventAssigned}, {kA, EventEscalated},
			{kA, EventRunbookStarted}, {kB, EventNote}, {kA, EventRunbookFinished}, {kA, EventResolved},
			{kA, EventReopened}, {kA, EventAlertFiring},
			{kA, EventAlertResolved}, {kA, EventAlertResolved}, {kA, EventResolved},
		}
		testutil.Eventually(t, 10*time.Second, "the resumed consumer has every event", func() (bool, string) {
			mu.Lock()
			defer mu.Unlock()
			return len(got)+len(resumed) >= len(want) || tailErr != nil, fmt.Sprintf("%d of %d events:\n%s", len(got)+len(resumed), len(want), describe(append(slices.Clone(got), resumed...)))
		})
		stop()
		<-done
		if tailErr != nil {
			t.Fatal(tailErr)
		}
		all := append(got, resumed...)

		// Every event once, in the log's order, numbered without gaps.
		ids := map[string]string{kA: idA, kB: idOf(m, kB)}
		if len(all) != len(want) {
			t.Fatalf("%d events, want %d:\n%s", len(all), len(want), describe(all))
		}
		for i, e := range all {
			if e.Seq != uint64(i+1) || e.IncidentID != ids[want[i].group] || e.Type != want[i].typ {
				t.Fatalf("event %d: feed seq %d, %s %s; want %d, %s %s\n%s", i, e.Seq, e.IncidentID, e.Type,
					i+1, ids[want[i].group], want[i].typ, describe(all))
			}
			if i > 0 && e.Time.Before(all[i-1].Time) {
				t.Fatalf("event %d at %s, before the one before it (%s)", i, e.Time, all[i-1].Time)
			}
		}
		// The feed carries the timelines' events, unchanged.
		for key, id := range ids {
			var fromFeed []Event
			for _, e := range all {
				if e.IncidentID == id {
					fromFeed = append(fromFeed, e.Event)
				}
			}
			if tl := mustTimeline(t, m, id); !reflect.DeepEqual(fromFeed, tl) {
				t.Fatalf("%s: feed and timeline differ:\n feed %+v\n  log %+v", key, fromFeed, tl)
			}
		}
		// A reader in another process (polling, no Manager) reads the same.
		other, err := NewFeed(store, FeedOptions{}).Read(ctx, "", 0)
		if err != nil || !reflect.DeepEqual(other, all) {
			t.Fatalf("another reader: %v\n%s", err, describe(other))
		}
		if head := m.FeedHead(); head != all[len(all)-1].Cursor {
			t.Fatalf("head %q, want the last event's cursor %q", head, all[len(all)-1].Cursor)
		}
	})
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func describe(evs []FeedEvent) string {
	var s string
	for _, e := range evs {
		s += fmt.Sprintf("  %d %s %d %s %s\n", e.Seq, e.IncidentID, e.Event.Seq, e.Type, e.Time.Format(time.RFC3339Nano))
	}
	return s
}

// TestFeedClockBackwards: changes keep the order they were made in when
// the clock goes backwards, stands still, or is behind the store after a
// restart; a cursor taken in between resumes exactly after its event.
func TestFeedClockBackwards(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() storage.EventStore) {
		ctx := context.Background()
		c := testutil.NewClock(testutil.Epoch)
		store := open()
		m := startManager(t, store, c)
		send(t, m, "a", mkAlert(pool, testutil.Epoch, time.Time{}))
		send(t, m, "b", mkAlert(errRate, testutil.Epoch, time.Time{})) // the same nanosecond
		incs := mustList(m)
		idB, idA := incs[0].ID, incs[1].ID // newest first
		mid := m.FeedHead()
		var order []string
		note := func(id, text string) {
			t.Helper()
			must(t)(m.AddNote(ctx, id, text, Action{Actor: "x"}))
			order = append(order, text)
		}
		c.Set(testutil.Epoch.Add(-time.Hour))
		note(idB, "1: an hour back")
		c.Set(testutil.Epoch.Add(-2 * time.Hour))
		note(idA, "2: two hours back")
		note(idB, "3: the same instant")
		c.Set(testutil.Epoch.Add(time.Hour))
		note(idA, "4: forward again")
		note(idB, "5: the same instant")

		store.(storage.Store).Close()
		c.Set(testutil.Epoch.Add(-24 * time.Hour))
		store = open()
		m = startManager(t, store, c)
		note(idA, "6: after a restart, a day behind")
		c.Set(testutil.Epoch.Add(-48 * time.Hour))
		note(idB, "7: and further back")

		feed := m.Feed(FeedOptions{})
		evs, err := feed.Read(ctx, mid, 0)
		if err != nil {
			t.Fatal(err)
		}
		var texts []string
		for i, e := range evs {
			texts = append(texts, e.Comment)
			if i > 0 && !e.Time.After(evs[i-1].Time) {
				t.Errorf("event %d at %s, not after the one before (%s)", i, e.Time, evs[i-1].Time)
			}
		}
		if !slices.Equal(texts, order) {
			t.Fatalf("after the cursor: %q, want %q", texts, order)
		}
		all, err := feed.Read(ctx, "", 0)
		if err != nil || len(all) != 4+len(order) || all[0].Seq != 1 || all[len(all)-1].Seq != uint64(len(all)) {
			t.Fatalf("whole feed: %v\n%s", err, describe(all))
		}
		// The first change's events share its time: the clock's.
		if !all[0].Time.Equal(testutil.Epoch) || !all[1].Time.Equal(testutil.Epoch) || !all[2].Time.After(testutil.Epoch) {
			t.Errorf("times of the first changes:\n%s", describe(all[:3]))
		}
	})
}

// TestFeedFailedWrites: a write whose answer was lost (the store has it)
// and one that never reached the store leave the feed numbered without a
// gap or a repeat.
func TestFeedFailedWrites(t *testing.T) {
	c := testutil.NewClock(testutil.Epoch)
	fs := &flakyStore{EventStore: openEmbedded(t, t.TempDir())}
	m := startManager(t, fs, c)
	ctx := context.Background()
	send(t, m, "k", mkAlert(pool, testutil.Epoch, time.Time{}))
	id := only(t, m).ID

	fs.failAfter = 1
	if _, err := m.AddNote(ctx, id, "stored, answer lost", Action{}); err == nil {
		t.Fatal("AddNote reported success")
	}
	fs.failBefore = 1
	if _, err := m.AddNote(ctx, id, "never stored", Action{}); err == nil {
		t.Fatal("AddNote reported success")
	}
	must(t)(m.AddNote(ctx, id, "stored", Action{}))
	evs, err := m.Feed(FeedOptions{}).Read(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has feed seq %d:\n%s", i, e.Seq, describe(evs))
		}
		texts = append(texts, e.Comment)
	}
	if want := []string{"", "", "stored, answer lost", "stored"}; !slices.Equal(texts, want) {
		t.Fatalf("notes %q, want %q", texts, want)
	}
}

// TestFeedGap: a reader that sees a sequence number skipped waits for the
// missing event (visible late, as a lagging replica would show it) rather
// than move past it; Tail moves past a gap that stays after GapWait.
func TestFeedGap(t *testing.T) {
	ctx := context.Background()
	c := testutil.NewClock(testutil.Epoch)
	store := openEmbedded(t, t.TempDir())
	m := startManager(t, store, c)
	send(t, m, "k", mkAlert(pool, testutil.Epoch, time.Time{}))
	head := m.FeedHead()
	feed := m.Feed(FeedOptions{PollInterval: 10 * time.Millisecond, GapWait: 100 * time.Millisecond})

	put := func(feedSeq uint64, at time.Time, text string) {
		t.Helper()
		se, err := encodeEvent("inc-elsewhere", feedSeq, Event{Seq: feedSeq, Type: EventNote, Time: at, Comment: text})
		if err != nil {
			t.Fatal(err)
		}
		if err := store.AppendEvents(ctx, []storage.Event{se}); err != nil {
			t.Fatal(err)
		}
	}
	put(4, testutil.Epoch.Add(2*time.Second), "four")
	if evs, err := feed.Read(ctx, head, 0); err != nil || len(evs) != 0 {
		t.Fatalf("read across a gap: %v\n%s", err, describe(evs))
	}
	put(3, testutil.Epoch.Add(time.Second), "three")
	evs, err := feed.Read(ctx, head, 0)
	if err != nil || len(evs) != 2 || evs[0].Comment != "three" || evs[1].Comment != "four" {
		t.Fatalf("after the missing event came: %v\n%s", err, describe(evs))
	}
	put(6, testutil.Epoch.Add(3*time.Second), "six") // 5 never comes
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	evs, err = feed.Tail(tctx, evs[1].Cursor, 0)
	if err != nil || len(evs) != 1 || evs[0].Seq != 6 {
		t.Fatalf("tail past a gap that stays: %v\n%s", err, describe(evs))
	}
}

// TestFeedCursors: a consumer may start at the head and then sees only
// what comes next; Tail waits for it; bad cursors are refused.
func TestFeedCursors(t *testing.T) {
	ctx := context.Background()
	c := testutil.NewClock(testutil.Epoch)
	m := startManager(t, openEmbedded(t, t.TempDir()), c)
	feed := m.Feed(FeedOptions{PollInterval: time.Hour})
	if m.FeedHead() != "" {
		t.Fatalf("head of an empty feed: %q", m.FeedHead())
	}
	send(t, m, "k", mkAlert(pool, testutil.Epoch, time.Time{}))
	head := m.FeedHead()
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if evs, err := feed.Tail(short, head, 0); !errors.Is(err, context.DeadlineExceeded) || len(evs) != 0 {
		t.Fatalf("tail at the head with nothing new: %v %v", evs, err)
	}
	got := make(chan []FeedEvent, 1)
	go func() {
		evs, err := feed.Tail(ctx, head, 0)
		if err != nil {
			t.Error(err)
		}
		got <- evs
	}()
	must(t)(m.AddNote(ctx, only(t, m).ID, "news", Action{}))
	select {
	case evs := <-got:
		if len(evs) != 1 || evs[0].Comment != "news" || evs[0].Seq != 3 {
			t.Fatalf("woken with %s", describe(evs))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Tail not woken by the commit")
	}
	for _, bad := range []string{"x", "f1.%%%", "f1." + "bm9wZQ", "f2." + head[3:]} {
		if _, err := feed.Read(ctx, bad, 0); !errors.Is(err, ErrInvalid) {
			t.Errorf("cursor %q: %v", bad, err)
		}
	}
}
