package slacknotify

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/aiops-dev/aiops/storage"
)

// The kinds of the journal's events in the store: one per change, and a
// snapshot of the whole state at each compaction, from which loading
// starts.
const (
	KindJournal  = "slack.journal"
	KindSnapshot = "slack.snapshot"
)

// snapshotEvery is how old the latest snapshot may grow before the
// journal writes another although it has not grown: the store drops
// events older than its retention, and the state of an incident open
// for longer must not go with them.
const snapshotEvery = time.Hour

// storeTimeout bounds one read or write of the journal. Writes do not
// take the caller's context: a message posted to Slack is recorded even
// as the term that posted it ends, or the next leader posts it again.
const storeTimeout = 30 * time.Second

// eventJournal keeps the journal in the store's events, where whichever
// replica of an HA pair holds the lease reads it at the start of its
// term. Events are ordered by (Time, ID); each one's Time is after the
// last one read or written, even when this replica's clock is behind
// the one that wrote it, and its ID is its Time, so that both sort in
// write order.
type eventJournal struct {
	events storage.EventStore
	now    func() time.Time

	// last is the Time of the last event read or written, and snapAt
	// the wall-clock time of the latest snapshot.
	last   time.Time
	snapAt time.Time
}

func newEventJournal(events storage.EventStore, now func() time.Time) *eventJournal {
	return &eventJournal{events: events, now: now}
}

// snapshot is a compaction: the whole state in one event, written or not
// at all.
type snapshot struct {
	Lines []journalLine `json:"lines"`
}

func (ej *eventJournal) next() time.Time {
	t := ej.now()
	if !t.After(ej.last) {
		t = ej.last.Add(time.Nanosecond)
	}
	return t
}

func (ej *eventJournal) write(kind string, payload any) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	t := ej.next()
	ev := storage.Event{ID: fmt.Sprintf("slack-%020d", t.UnixNano()), Time: t, Kind: kind, Payload: b}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := ej.events.AppendEvents(ctx, []storage.Event{ev}); err != nil {
		return fmt.Errorf("slack state: append to the store: %w", err)
	}
	ej.last = t
	return nil
}

func (ej *eventJournal) append(l journalLine) error { return ej.write(KindJournal, l) }

func (ej *eventJournal) compact(state []journalLine) error {
	if state == nil {
		state = []journalLine{}
	}
	if err := ej.write(KindSnapshot, snapshot{Lines: state}); err != nil {
		return err
	}
	ej.snapAt = ej.now()
	return nil
}

func (ej *eventJournal) due() bool { return ej.now().Sub(ej.snapAt) >= snapshotEvery }

func (ej *eventJournal) close() error { return nil }

// load reads the latest snapshot and the changes written after it.
func (ej *eventJournal) load(apply func(journalLine)) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	// The latest snapshot is at most snapshotEvery old while a replica
	// leads: it is looked for among the recent ones first, and in all of
	// history (a snapshot an hour, kept for the event retention) only
	// when the pair was down for longer.
	var snap *storage.Event
	last := func(ev storage.Event) error {
		snap = &ev
		return nil
	}
	if err := ej.scan(ctx, storage.EventQuery{KindPrefix: KindSnapshot, Start: ej.now().Add(-2 * snapshotEvery)}, last); err != nil {
		return 0, err
	}
	if snap == nil {
		if err := ej.scan(ctx, storage.EventQuery{KindPrefix: KindSnapshot}, last); err != nil {
			return 0, err
		}
	}
	n := 0
	q := storage.EventQuery{KindPrefix: KindJournal}
	if snap != nil {
		var s snapshot
		if err := json.Unmarshal(snap.Payload, &s); err != nil {
			return 0, fmt.Errorf("slack state: snapshot %s: %w", snap.ID, err)
		}
		for _, l := range s.Lines {
			apply(l)
		}
		n = len(s.Lines)
		q.AfterTime, q.AfterID = snap.Time, snap.ID
		ej.last = snap.Time
	}
	err := ej.scan(ctx, q, func(ev storage.Event) error {
		var l journalLine
		if err := json.Unmarshal(ev.Payload, &l); err != nil {
			return fmt.Errorf("slack state: event %s: %w", ev.ID, err)
		}
		apply(l)
		n++
		return nil
	})
	return n, err
}

// scan pages through the events q selects, in order, keeping ej.last.
func (ej *eventJournal) scan(ctx context.Context, q storage.EventQuery, fn func(storage.Event) error) error {
	q.Limit = storage.DefaultQueryLimit
	for {
		evs, err := ej.events.QueryEvents(ctx, q)
		if err != nil {
			return fmt.Errorf("slack state: read the store: %w", err)
		}
		for _, ev := range evs {
			if ev.Time.After(ej.last) {
				ej.last = ev.Time
			}
			if err := fn(ev); err != nil {
				return err
			}
		}
		if len(evs) < q.Limit {
			return nil
		}
		q.AfterTime, q.AfterID = evs[len(evs)-1].Time, evs[len(evs)-1].ID
	}
}
