package incident

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/aiops-dev/aiops/storage"
)

// The feed is every incident's events in one log, in the order the
// Manager committed them, read from the event store after a cursor.
//
// Order: the Manager is the one writer. Under its write lock it gives
// each change a time after the previous change's (eventTime) and each
// event the next feed sequence number, so the store's (Time, ID) order,
// which both stores keep exactly (nanoseconds as Int64), is the commit
// order, and a position in it is a cursor a query can continue from.
// The sequence numbers have no gaps; a reader that sees one (a number
// skipped) waits for the missing event rather than move past it.

// position is a place in the feed: just after the event with this
// sequence number, time and ID. The zero position is the start.
type position struct {
	seq uint64
	t   time.Time
	id  string
}

// after is the position just after se, which follows p in the feed.
func (p position) after(se storage.Event) position {
	next := position{seq: p.seq, t: se.Time, id: se.ID}
	if n := feedSeqOf(se); n > 0 {
		next.seq = n
	}
	return next
}

const cursorVersion = "f1"

// cursor encodes p; the start is "".
func (p position) cursor() string {
	if p.id == "" {
		return ""
	}
	raw := strconv.FormatUint(p.seq, 10) + ":" + strconv.FormatInt(storage.UnixNano(p.t), 10) + ":" + p.id
	return cursorVersion + "." + base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func parseCursor(s string) (position, error) {
	if s == "" {
		return position{}, nil
	}
	bad := fmt.Errorf("%w: cursor: %q is not a feed cursor", ErrInvalid, s)
	enc, ok := strings.CutPrefix(s, cursorVersion+".")
	if !ok {
		return position{}, bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return position{}, bad
	}
	seqs, rest, ok1 := strings.Cut(string(raw), ":")
	ts, id, ok2 := strings.Cut(rest, ":")
	seq, err1 := strconv.ParseUint(seqs, 10, 64)
	ns, err2 := strconv.ParseInt(ts, 10, 64)
	if !ok1 || !ok2 || err1 != nil || err2 != nil || ns == 0 || id == "" {
		return position{}, bad
	}
	return position{seq: seq, t: storage.FromUnixNano(ns), id: id}, nil
}

// FeedEvent is one event of the feed.
type FeedEvent struct {
	// Cursor is the feed's position just after this event: a consumer
	// persists it once it has handled the event, and resumes from it.
	Cursor string `json:"cursor"`
	// Seq numbers the feed's events from 1, without gaps, in commit
	// order; it is 0 for events stored before the feed numbered them,
	// which come first. Event.Seq is the event's number in its
	// incident's log.
	Seq        uint64 `json:"feed_seq"`
	IncidentID string `json:"incident_id"`
	Event      `json:"event"`
}

// FeedOptions tune a Feed; zero values take the defaults.
type FeedOptions struct {
	// PollInterval is how often Tail reads the store again while it
	// waits, for events it is not woken for: all of them when the feed
	// does not come from the writing Manager. Default 2s.
	PollInterval time.Duration
	// GapWait is how long Tail waits for a missing sequence number before
	// it moves past it (the event fell out of the store's retention).
	// Default 10s.
	GapWait time.Duration
	// Logger hears about undecodable events and gaps moved past.
	Logger *slog.Logger
}

// Feed reads the incident event log in commit order. It holds no
// position of its own: every call says where to read from, so one Feed
// serves any number of consumers.
type Feed struct {
	events storage.EventStore
	// wake returns a channel closed at the next commit; nil when the feed
	// is not the writer's and only polls.
	wake func() <-chan struct{}
	opts FeedOptions
}

func newFeed(events storage.EventStore, wake func() <-chan struct{}, o FeedOptions) *Feed {
	if o.PollInterval <= 0 {
		o.PollInterval = 2 * time.Second
	}
	if o.GapWait <= 0 {
		o.GapWait = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Feed{events: events, wake: wake, opts: o}
}

// NewFeed reads the incident events in events, for a process that does
// not run the Manager writing them: Tail finds new events by polling.
func NewFeed(events storage.EventStore, o FeedOptions) *Feed {
	return newFeed(events, nil, o)
}

// Feed returns a feed over the Manager's store whose Tail wakes as soon
// as the Manager commits.
func (mg *Manager) Feed(o FeedOptions) *Feed {
	return newFeed(mg.events, func() <-chan struct{} {
		mg.mu.RLock()
		defer mg.mu.RUnlock()
		return mg.changed
	}, o)
}

// FeedHead is the cursor after the last event the Manager has stored:
// where a consumer starts that wants only what happens from now on.
func (mg *Manager) FeedHead() string {
	mg.mu.RLock()
	defer mg.mu.RUnlock()
	return mg.head.cursor()
}

// Read returns up to limit events after cursor ("" is the start; limit
// <= 0 means storage.DefaultQueryLimit), oldest first, without waiting:
// none when there is nothing new. It stops before a gap in the sequence
// numbers, which Tail waits for.
func (f *Feed) Read(ctx context.Context, cursor string, limit int) ([]FeedEvent, error) {
	from, err := parseCursor(cursor)
	if err != nil {
		return nil, err
	}
	evs, _, err := f.read(ctx, from, limit, false)
	return evs, err
}

// Tail returns up to limit events after cursor, as Read does, but waits
// until there is at least one or ctx is done (returning ctx's error). A
// gap in the sequence numbers is waited for up to GapWait, then moved
// past with a warning. Consumers loop: handle the events, persist the
// last one's Cursor, call Tail again with it; on an error (the store is
// unreachable) they retry from the same cursor.
func (f *Feed) Tail(ctx context.Context, cursor string, limit int) ([]FeedEvent, error) {
	from, err := parseCursor(cursor)
	if err != nil {
		return nil, err
	}
	var gapSince time.Time
	for {
		var wake <-chan struct{}
		if f.wake != nil {
			// Taken before reading, so that a commit after the read wakes
			// us.
			wake = f.wake()
		}
		skipGap := !gapSince.IsZero() && time.Since(gapSince) >= f.opts.GapWait
		evs, gap, err := f.read(ctx, from, limit, skipGap)
		if err != nil {
			return nil, err
		}
		if len(evs) > 0 {
			return evs, nil
		}
		wait := f.opts.PollInterval
		switch {
		case !gap:
			gapSince = time.Time{}
		case gapSince.IsZero():
			gapSince = time.Now()
			wait = min(wait, f.opts.GapWait)
		default:
			wait = min(wait, max(f.opts.GapWait-time.Since(gapSince), time.Millisecond))
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-wake:
			timer.Stop()
		case <-timer.C:
		}
	}
}

// read returns the events after from, stopping before a gap in the
// sequence numbers (gap reports one) unless skipGap.
func (f *Feed) read(ctx context.Context, from position, limit int, skipGap bool) (out []FeedEvent, gap bool, err error) {
	limit = storage.QueryLimit(limit)
	pos := from
	for {
		q := storage.EventQuery{KindPrefix: KindPrefix, AfterTime: pos.t, AfterID: pos.id, Limit: limit}
		evs, err := f.events.QueryEvents(ctx, q)
		if err != nil {
			return nil, false, fmt.Errorf("incident feed: read after %q: %w", pos.cursor(), err)
		}
		for _, se := range evs {
			if n := feedSeqOf(se); n > pos.seq+1 {
				if !skipGap {
					return out, true, nil
				}
				f.opts.Logger.Warn("Incident feed moves past missing events", "after", pos.seq, "next", n)
			}
			pos = pos.after(se)
			e, err := DecodeEvent(se)
			if err != nil {
				f.opts.Logger.Warn("Incident feed skips an undecodable event", "err", err)
				continue
			}
			out = append(out, FeedEvent{Cursor: pos.cursor(), Seq: feedSeqOf(se), IncidentID: se.Subject, Event: e})
			if len(out) == limit {
				return out, false, nil
			}
		}
		// A full page of nothing decodable is read past, so that such
		// events cannot hold a reader up.
		if len(out) > 0 || len(evs) < limit {
			return out, false, nil
		}
	}
}
