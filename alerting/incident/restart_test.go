package incident

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/prometheus/alertmanager/alert"

	"github.com/aiops-dev/aiops/internal/chtest"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/storage"
	"github.com/aiops-dev/aiops/storage/clickhouse"
)

// buildHistory gives m a few incidents that went through every kind of
// event.
func buildHistory(t *testing.T, m *Manager, c *testutil.Clock) {
	t.Helper()
	ctx := context.Background()
	send(t, m, "k-pool", mkAlert(pool, t0, time.Time{}))
	c.Add(time.Second)
	send(t, m, "k-err", mkAlert(errRate, t0, time.Time{}), mkAlert(errRate2, t0, time.Time{}))
	incs, _ := m.List(Query{})
	errID, poolID := incs[0].ID, incs[1].ID
	c.Add(time.Second)
	must := func(_ Incident, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(m.Acknowledge(ctx, errID, Action{Actor: "alice", Comment: "on it"}))
	must(m.Assign(ctx, errID, "bob", Action{Actor: "alice"}))
	must(m.AddNote(ctx, errID, "deploy 42 rolled out at 11:58", Action{Actor: "bob"}))
	must(m.Escalate(ctx, errID, Action{Actor: "bob"}))
	must(m.RecordRunbook(ctx, errID, RunbookStarted, RunbookEvent{RunID: "r1", Runbook: "rollback"}, Action{Actor: "remediation"}))
	must(m.RecordRunbook(ctx, errID, RunbookFinished, RunbookEvent{RunID: "r1", Outcome: "succeeded"}, Action{Actor: "remediation"}))
	c.Add(time.Minute)
	send(t, m, "k-err", mkAlert(errRate, t0, c.Now()), mkAlert(errRate2, t0, c.Now()))
	c.Add(6 * time.Minute)
	if err := m.CheckDeadlines(ctx); err != nil {
		t.Fatal(err)
	}
	must(m.Resolve(ctx, poolID, Action{Actor: "carol"}))
	c.Add(time.Minute)
	send(t, m, "k-pool", mkAlert(pool, c.Now(), time.Time{})) // reopens
}

func snapshot(t *testing.T, m *Manager) ([]Incident, map[string][]Event) {
	t.Helper()
	incs := mustList(m)
	tl := map[string][]Event{}
	for _, inc := range incs {
		tl[inc.ID] = mustTimeline(t, m, inc.ID)
	}
	return incs, tl
}

// checkRestart builds a history on open(), reopens the store, and checks
// that the rebuilt projection equals the one that was kept current.
func checkRestart(t *testing.T, open func() storage.EventStore, closeStore func(storage.EventStore)) {
	c := newClock()
	s := open()
	m := newManager(t, s, testConfig(), c)
	buildHistory(t, m, c)
	wantIncs, wantTL := snapshot(t, m)
	if len(wantIncs) != 2 || wantIncs[1].Reopens != 1 || wantIncs[0].Status != StatusResolved || wantIncs[0].Assignee != "bob" {
		t.Fatalf("history not as planned: %+v", wantIncs)
	}
	closeStore(s)

	s = open()
	t.Cleanup(func() { closeStore(s) })
	m2 := newManager(t, s, testConfig(), c)
	gotIncs, gotTL := snapshot(t, m2)
	if !reflect.DeepEqual(gotIncs, wantIncs) {
		t.Fatalf("rebuilt incidents differ:\n got %+v\nwant %+v", gotIncs, wantIncs)
	}
	if !reflect.DeepEqual(gotTL, wantTL) {
		t.Fatalf("timelines differ:\n got %+v\nwant %+v", gotTL, wantTL)
	}
	// The rebuilt manager carries on where the old one stopped: the next
	// event gets the next sequence number, and a replayed group is
	// recognised.
	id := gotIncs[0].ID
	send(t, m2, "k-pool", mkAlert(pool, c.Now(), time.Time{}))
	inc, err := m2.AddNote(context.Background(), id, "after restart", Action{Actor: "dave"})
	if err != nil || inc.Version != gotIncs[0].Version+1 {
		t.Fatalf("note after restart: version %d (was %d), %v", inc.Version, gotIncs[0].Version, err)
	}
	mustTimeline(t, m2, id)
}

func TestRestartEmbedded(t *testing.T) {
	dir := t.TempDir()
	checkRestart(t,
		func() storage.EventStore { return openEmbedded(t, dir) },
		func(s storage.EventStore) { s.(storage.Store).Close() })
}

func TestRestartClickHouse(t *testing.T) {
	srv := chtest.Start(t)
	cfg := clickhouse.DefaultConfig()
	cfg.Addresses = []string{srv.NativeAddr()}
	cfg.Database = srv.NewDatabase(t)
	cfg.Compression = "none"
	cfg.Retention = 0
	checkRestart(t,
		func() storage.EventStore {
			s, err := clickhouse.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		func(s storage.EventStore) { s.(storage.Store).Close() })
}

// TestConcurrentAckResolve races acknowledgements, notes and resolutions
// from many goroutines (run with -race). Whatever the interleaving, the
// incident ends resolved, an acknowledgement never follows the
// resolution in the log, and the sequence has no gap or fork. With
// If-Match on the same version exactly one of two racers wins.
func TestConcurrentAckResolve(t *testing.T) {
	m := newManager(t, openEmbedded(t, t.TempDir()), testConfig(), nil)
	ctx := context.Background()
	for round := range 20 {
		key := "k" + string(rune('a'+round))
		send(t, m, key, mkAlert(model.LabelSet{"alertname": model.LabelValue("A" + key), "job": "api"}, t0, time.Time{}))
		var id string
		for _, inc := range mustList(m) {
			if inc.GroupKey == key {
				id = inc.ID
			}
		}
		base, _ := m.Get(id)

		var wg sync.WaitGroup
		var mu sync.Mutex
		var staleWins, wins int
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				switch g % 4 {
				case 0:
					_, err = m.Acknowledge(ctx, id, Action{Actor: "ack"})
					if errors.Is(err, ErrResolved) {
						err = nil
					}
				case 1:
					_, err = m.Resolve(ctx, id, Action{Actor: "res"})
				case 2:
					_, err = m.AddNote(ctx, id, "note", Action{Actor: "note"})
				case 3:
					// Both conditional racers hold the same version: one
					// wins, the other is told it is stale.
					act := Action{Actor: "cond", IfVersion: base.Version}
					if g%8 == 3 {
						_, err = m.Acknowledge(ctx, id, act)
					} else {
						_, err = m.Resolve(ctx, id, act)
					}
					mu.Lock()
					switch {
					case err == nil:
						wins++
					case errors.Is(err, ErrStale):
						staleWins++
						err = nil
					}
					mu.Unlock()
				}
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if wins > 1 || wins+staleWins != 2 {
			t.Errorf("round %d: %d conditional racers won, %d were stale", round, wins, staleWins)
		}
		inc, _ := m.Get(id)
		if inc.Status != StatusResolved || inc.Reopens != 0 {
			t.Fatalf("round %d: %+v", round, inc)
		}
		evs := mustTimeline(t, m, id)
		if inc.Version != uint64(len(evs)) {
			t.Fatalf("round %d: version %d, %d events", round, inc.Version, len(evs))
		}
		resolved := false
		for _, e := range evs {
			switch e.Type {
			case EventResolved:
				if resolved {
					t.Fatalf("round %d: resolved twice: %v", round, types(evs))
				}
				resolved = true
			case EventAcknowledged, EventReopened:
				if resolved {
					t.Fatalf("round %d: %s after the resolution: %v", round, e.Type, types(evs))
				}
			}
		}
	}
}

// flakyStore fails appends on demand: before writing (the store was
// down) or after writing (the answer was lost).
type flakyStore struct {
	storage.EventStore
	mu         sync.Mutex
	failBefore int
	failAfter  int
}

func (f *flakyStore) AppendEvents(ctx context.Context, evs []storage.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failBefore > 0 {
		f.failBefore--
		return errors.Join(storage.ErrUnavailable, errors.New("store down"))
	}
	if err := f.EventStore.AppendEvents(ctx, evs); err != nil {
		return err
	}
	if f.failAfter > 0 {
		f.failAfter--
		return errors.New("connection reset after the write")
	}
	return nil
}

// TestStoreFailures: an append that failed leaves the incident as it
// was; one whose answer was lost is read back, so the next event follows
// what the store holds, not a second event with the same number.
func TestStoreFailures(t *testing.T) {
	c := newClock()
	fs := &flakyStore{EventStore: openEmbedded(t, t.TempDir())}
	m := newManager(t, fs, testConfig(), c)
	ctx := context.Background()

	fs.failBefore = 1
	a := mkAlert(pool, t0, time.Time{})
	if v := m.Notify(groupCtx("k", "oncall", nil), a); !v.ShouldRetry() {
		t.Fatalf("store down: verdict %v retry=%v", v.Err(), v.ShouldRetry())
	}
	if incs, _ := m.List(Query{}); len(incs) != 0 {
		t.Fatalf("incident without stored events: %+v", incs)
	}
	send(t, m, "k", a) // the pipeline's retry
	id := only(t, m).ID

	fs.failAfter = 1
	if _, err := m.AddNote(ctx, id, "lost answer", Action{Actor: "x"}); err == nil {
		t.Fatal("AddNote reported success")
	}
	inc, err := m.AddNote(ctx, id, "next", Action{Actor: "x"})
	if err != nil || inc.Version != 4 || inc.Notes != 2 {
		t.Fatalf("after a lost answer: %+v %v", inc, err)
	}
	evs := mustTimeline(t, m, id)
	if evs[2].Comment != "lost answer" || evs[3].Comment != "next" {
		t.Fatalf("timeline %+v", evs)
	}

	// A lost answer while opening: the incident is found on the next try.
	fs.failAfter = 1
	if v := m.Notify(groupCtx("k2", "oncall", nil), mkAlert(errRate, t0, time.Time{})); !v.ShouldRetry() {
		t.Fatal("lost answer not retried")
	}
	send(t, m, "k2", mkAlert(errRate, t0, time.Time{}))
	if n := len(mustList(m)); n != 2 {
		t.Fatalf("%d incidents, want 2", n)
	}
}

// TestConditionalRace: two clients read the same version and race, one
// acknowledging and one resolving with If-Match: exactly one wins, and the
// incident ends in the winner's status.
func TestConditionalRace(t *testing.T) {
	m := newManager(t, openEmbedded(t, t.TempDir()), testConfig(), nil)
	ctx := context.Background()
	for round := range 30 {
		key := "k" + string(rune('a'+round))
		send(t, m, key, mkAlert(model.LabelSet{"alertname": model.LabelValue("A" + key)}, t0, time.Time{}))
		var id string
		for _, inc := range mustList(m) {
			if inc.GroupKey == key {
				id = inc.ID
			}
		}
		base, _ := m.Get(id)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, errs[0] = m.Acknowledge(ctx, id, Action{Actor: "a", IfVersion: base.Version})
		}()
		go func() { defer wg.Done(); _, errs[1] = m.Resolve(ctx, id, Action{Actor: "r", IfVersion: base.Version}) }()
		wg.Wait()
		inc, _ := m.Get(id)
		switch {
		case errs[0] == nil && errors.Is(errs[1], ErrStale):
			if inc.Status != StatusAcknowledged {
				t.Fatalf("round %d: ack won but status %s", round, inc.Status)
			}
		case errs[1] == nil && errors.Is(errs[0], ErrStale):
			if inc.Status != StatusResolved {
				t.Fatalf("round %d: resolve won but status %s", round, inc.Status)
			}
		default:
			t.Fatalf("round %d: ack %v, resolve %v", round, errs[0], errs[1])
		}
		if inc.Version != base.Version+1 {
			t.Fatalf("round %d: version %d after one winner from %d", round, inc.Version, base.Version)
		}
	}
}

// switchableStore is the embedded store, unavailable while down is set,
// as ClickHouse is when aiops starts before it.
type switchableStore struct {
	storage.EventStore
	down atomic.Bool
}

func (s *switchableStore) AppendEvents(ctx context.Context, evs []storage.Event) error {
	if s.down.Load() {
		return fmt.Errorf("down: %w", storage.ErrUnavailable)
	}
	return s.EventStore.AppendEvents(ctx, evs)
}

func (s *switchableStore) QueryEvents(ctx context.Context, q storage.EventQuery) ([]storage.Event, error) {
	if s.down.Load() {
		return nil, fmt.Errorf("down: %w", storage.ErrUnavailable)
	}
	return s.EventStore.QueryEvents(ctx, q)
}

// TestStartsWhileStoreIsDown: the Manager starts on a store that cannot
// be read yet; groups handed to it meanwhile fail retryably (the
// Alertmanager hands them again), and once the store answers, Run reads
// the incidents it held and the Manager works on them.
func TestStartsWhileStoreIsDown(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	store := &switchableStore{EventStore: openEmbedded(t, t.TempDir())}
	m := newManager(t, store, testConfig(), clock)
	send(t, m, "k", mkAlert(errRate, t0, time.Time{}))
	id := only(t, m).ID

	store.down.Store(true)
	m2 := newManager(t, store, testConfig(), clock)
	if err := m2.HandleGroup(ctx, Group{Key: "k2", Receiver: "oncall", Alerts: []*alert.Alert{mkAlert(errRate2, t0, time.Time{})}}); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("HandleGroup before the incidents are loaded: %v, want ErrUnavailable", err)
	}
	if _, err := m2.Acknowledge(ctx, id, Action{Actor: "alice"}); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Acknowledge before the incidents are loaded: %v, want ErrUnavailable", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go m2.Run(runCtx)
	store.down.Store(false)
	testutil.WaitFor(t, "the incidents to load", 30*time.Second, func() bool { _, err := m2.Get(id); return err == nil })
	if _, err := m2.Acknowledge(ctx, id, Action{Actor: "alice"}); err != nil {
		t.Fatalf("Acknowledge once loaded: %v", err)
	}
	if inc, _ := m2.Get(id); inc.Status != StatusAcknowledged || inc.Version != 3 {
		t.Fatalf("incident after loading and acknowledging: %s at version %d", inc.Status, inc.Version)
	}
}
