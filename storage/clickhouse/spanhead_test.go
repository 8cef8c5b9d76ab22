package clickhouse

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage"
)

// spanHeadPair opens, on one database, a store with the span head (at
// clock, refresh 1 s) and one without: the same reads both ways must
// answer the same.
func spanHeadPair(t *testing.T, clock *testutil.Clock, mib int) (head, plain *Store) {
	t.Helper()
	cfg := testConfig(t)
	head = openAt(t, cfg, clock, func(c *Config) {
		c.SpanHeadMiB = mib
		c.SpanHeadRefresh = model.Duration(time.Second)
	})
	plain = openAt(t, cfg, clock, func(c *Config) { c.SpanHeadMiB = 0 })
	return head, plain
}

// sameReads runs q both ways, as TraceIDs and as QuerySpans, and fails
// unless both answer the same; it returns how many of the two reads the
// head answered.
func sameReads(t *testing.T, head, plain *Store, q storage.SpanQuery) int64 {
	t.Helper()
	ctx := context.Background()
	before := head.spanHead.answered.Load()
	gotIDs, err := head.TraceIDs(ctx, q)
	if err != nil {
		t.Fatalf("TraceIDs(%+v) with the head: %v", q, err)
	}
	wantIDs, err := plain.TraceIDs(ctx, q)
	if err != nil {
		t.Fatalf("TraceIDs(%+v): %v", q, err)
	}
	if !reflect.DeepEqual(gotIDs, wantIDs) {
		t.Errorf("TraceIDs(%+v):\nhead %v\n  CH %v", q, gotIDs, wantIDs)
	}
	got, err := head.QuerySpans(ctx, q)
	if err != nil {
		t.Fatalf("QuerySpans(%+v) with the head: %v", q, err)
	}
	want, err := plain.QuerySpans(ctx, q)
	if err != nil {
		t.Fatalf("QuerySpans(%+v): %v", q, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("QuerySpans(%+v): head and ClickHouse differ:\nhead %d spans %v\n  CH %d spans %v", q, len(got), spanNames(got), len(want), spanNames(want))
	}
	return head.spanHead.answered.Load() - before
}

// waitHead waits for the span head's first load, which the first read
// starts in the background.
func waitHead(t *testing.T, s *Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.WaitSpanHead(ctx); err != nil {
		t.Fatalf("span head not loaded: %v", err)
	}
}

func spanNames(spans []storage.Span) string {
	var b strings.Builder
	for _, sp := range spans {
		fmt.Fprintf(&b, "%s/%s@%d ", sp.TraceID[len(sp.TraceID)-4:], sp.SpanID, sp.StartTime.UnixNano())
	}
	return b.String()
}

// fixtureQueries are searches and look-ups over storetest.TraceFixture:
// every filter, alone and combined at random, with limits and time ranges.
func fixtureQueries(spans []storage.Span) []storage.SpanQuery {
	rng := rand.New(rand.NewPCG(5, 6))
	ms := time.Millisecond
	ep := testutil.Epoch
	services := []string{"", "api", "auth", "worker", "db", "nope"}
	names := []string{"", "GET /v1/sessions", "POST /v1/documents", "SELECT sessions", "POST /validate", "nope"}
	statuses := []string{"", "Ok", "Error", "Unset", "nope"}
	tags := []map[string]string{nil,
		{"http.response.status_code": "502"}, {"host.name": "node-1"}, {"host.name": "node-1", "sampled": "true"},
		{"exception.type": "TimeoutError"}, {"attempt": "2"}, {"peer.service": "db"}, {"db.rows": "7"},
		{"exception.type": "nope"}, {"nope": "x"}, {"service.name": "auth"}}
	ranges := [][2]time.Time{{}, {ep.Add(100 * time.Second), ep.Add(300 * time.Second)}, {ep, ep.Add(10 * time.Second)},
		{ep.Add(-time.Hour), ep.Add(time.Hour)}, {ep.Add(590 * time.Second), {}}, {{}, ep.Add(30 * time.Second)}}
	limits := []int{0, 1, 3, 20, 1000}
	var qs []storage.SpanQuery
	for range 150 {
		r := ranges[rng.IntN(len(ranges))]
		q := storage.SpanQuery{
			ServiceName: services[rng.IntN(len(services))], Start: r[0], End: r[1],
			Limit: limits[rng.IntN(len(limits))],
		}
		switch rng.IntN(4) {
		case 0:
			q.Name = names[rng.IntN(len(names))]
		case 1:
			q.StatusCode = statuses[rng.IntN(len(statuses))]
		case 2:
			q.Attributes = tags[rng.IntN(len(tags))]
		case 3:
			q.MinDuration = time.Duration(rng.IntN(3)) * 500 * ms
			q.MaxDuration = time.Duration(rng.IntN(3)) * 700 * ms
		}
		if rng.IntN(3) == 0 {
			for range 1 + rng.IntN(3) {
				q.TraceIDs = append(q.TraceIDs, spans[rng.IntN(len(spans))].TraceID)
			}
			if rng.IntN(2) == 0 {
				q.TraceID = "ffffffffffffffffffffffffffffffff"
			}
		}
		qs = append(qs, q)
	}
	return qs
}

// TestSpanHeadMatchesClickHouse checks that reads the span head answers
// equal ClickHouse's, spans written before it loaded, by this process
// after (and replayed) and by another.
func TestSpanHeadMatchesClickHouse(t *testing.T) {
	clock := testutil.NewClock(testutil.Epoch.Add(time.Hour))
	head, plain := spanHeadPair(t, clock, 64)
	ctx := context.Background()
	spans := storetest.TraceFixture()
	// Before the first read, a process that writes keeps nothing.
	if err := plain.AppendSpans(ctx, spans[:50]); err != nil {
		t.Fatal(err)
	}
	if err := head.AppendSpans(ctx, spans[50:100]); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := head.SpanHeadStats(); n != 0 {
		t.Fatalf("the head holds %d spans before the first read", n)
	}
	// The first read starts the load.
	sameReads(t, head, plain, storage.SpanQuery{TraceID: spans[0].TraceID})
	waitHead(t, head)
	if n, _, start := head.SpanHeadStats(); n != 100 || start != math.MinInt64 {
		t.Fatalf("after the first read the head holds %d spans from %d, want 100 from -∞", n, start)
	}
	// The rest from this process, part of it twice (a replay).
	for _, batch := range [][]storage.Span{spans[100:], spans[90:120], spans[:10]} {
		if err := head.AppendSpans(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	if n, _, _ := head.SpanHeadStats(); n != len(spans) {
		t.Fatalf("the head holds %d spans, want %d", n, len(spans))
	}
	var answered int64
	qs := fixtureQueries(spans)
	for _, q := range qs {
		answered += sameReads(t, head, plain, q)
	}
	if want := int64(2 * len(qs)); answered != want {
		t.Errorf("the head answered %d reads of %d", answered, want)
	}
}

// TestSpanHeadOtherWriter checks that spans another process writes are
// read after span_head_refresh, and this process's own at once.
func TestSpanHeadOtherWriter(t *testing.T) {
	clock := testutil.NewClock(testutil.Epoch.Add(time.Hour))
	head, plain := spanHeadPair(t, clock, 64)
	ctx := context.Background()
	spans := storetest.TraceFixture()
	mine, theirs := spans[0].TraceID, spans[len(spans)-1].TraceID
	var mineSpans, theirSpans []storage.Span
	for _, sp := range spans {
		switch sp.TraceID {
		case mine:
			mineSpans = append(mineSpans, sp)
		case theirs:
			theirSpans = append(theirSpans, sp)
		}
	}
	count := func(id string) int {
		t.Helper()
		got, err := head.QuerySpans(ctx, storage.SpanQuery{TraceID: id})
		if err != nil {
			t.Fatal(err)
		}
		return len(got)
	}
	if n := count(mine); n != 0 {
		t.Fatalf("%d spans before any write", n)
	}
	waitHead(t, head)
	if err := plain.AppendSpans(ctx, theirSpans); err != nil {
		t.Fatal(err)
	}
	if err := head.AppendSpans(ctx, mineSpans); err != nil {
		t.Fatal(err)
	}
	if n := count(mine); n != len(mineSpans) {
		t.Errorf("own trace at once: %d spans, want %d", n, len(mineSpans))
	}
	if n := count(theirs); n != 0 {
		t.Errorf("another writer's trace within the refresh interval: %d spans, want 0 (the head answers)", n)
	}
	clock.Add(time.Second)
	if n := count(theirs); n != len(theirSpans) {
		t.Errorf("another writer's trace after the refresh interval: %d spans, want %d", n, len(theirSpans))
	}
	sameReads(t, head, plain, storage.SpanQuery{ServiceName: "api", Limit: 100})
}

// spansOverHours makes traces of three spans, one trace every interval
// from start, with spans of services a, b and c.
func spansOverHours(start time.Time, traces int, interval time.Duration, prefix string) []storage.Span {
	var out []storage.Span
	for i := range traces {
		st := start.Add(time.Duration(i) * interval)
		trace := fmt.Sprintf("%s%028x", prefix, i)
		for j, svc := range []string{"a", "b", "c"} {
			out = append(out, storage.Span{
				TraceID: trace, SpanID: fmt.Sprintf("%016x", i*4+j+1), Name: fmt.Sprintf("op-%d", j), Kind: "Server",
				ServiceName: svc, StartTime: st.Add(time.Duration(j) * time.Millisecond), EndTime: st.Add(time.Duration(j+1+i%50) * time.Millisecond),
				StatusCode: "Unset", Attributes: map[string]string{"http.route": fmt.Sprintf("/r/%d", i%7), "pad": strings.Repeat("x", 200)},
				ResourceAttributes: map[string]string{"service.name": svc},
			})
		}
	}
	return out
}

// TestSpanHeadBudget checks that the head keeps within span_head_mib by
// evicting whole hours, answers reads within its window and sends older
// ones (and traces that reach before it) to ClickHouse, also after a
// restart.
func TestSpanHeadBudget(t *testing.T) {
	clock := testutil.NewClock(testutil.Epoch.Add(24 * time.Hour))
	head, plain := spanHeadPair(t, clock, 1)
	ctx := context.Background()
	// 12 hours of traces, a trace every 30 s (about 4 MiB of spans).
	spans := spansOverHours(testutil.Epoch, 12*120, 30*time.Second, "0000")
	if err := plain.AppendSpans(ctx, spans); err != nil {
		t.Fatal(err)
	}
	// A trace whose spans lie 11 hours apart: read by id it needs
	// ClickHouse.
	longTrace := "00010000000000000000000000000001"
	long := []storage.Span{spans[0], spans[len(spans)-1]}
	for i := range long {
		long[i].TraceID = longTrace
	}
	if err := plain.AppendSpans(ctx, long); err != nil {
		t.Fatal(err)
	}
	check := func(name string, s *Store) {
		t.Helper()
		waitHead(t, s)
		recent := spans[len(spans)-3].TraceID
		if got := sameReads(t, s, plain, storage.SpanQuery{TraceID: recent}); got != 2 {
			t.Errorf("%s: the head answered %d of 2 reads of a recent trace", name, got)
		}
		n, bytes, start := s.SpanHeadStats()
		t.Logf("%s: %d spans, %d bytes, from %s", name, n, bytes, storage.FromUnixNano(start))
		if bytes > 1<<20 || n == 0 || start%nsPerHour != 0 || start <= testutil.Epoch.UnixNano() {
			t.Fatalf("%s: the head holds %d spans in %d bytes from %d: want within 1 MiB, from a whole hour after the first", name, n, bytes, start)
		}
		last := testutil.Epoch.Add(12 * time.Hour)
		from := storage.FromUnixNano(start)
		if got := sameReads(t, s, plain, storage.SpanQuery{ServiceName: "b", Start: from, End: last, Limit: 20}); got != 2 {
			t.Errorf("%s: the head answered %d of 2 reads within its window", name, got)
		}
		if got := sameReads(t, s, plain, storage.SpanQuery{ServiceName: "b", Start: from.Add(-time.Minute), End: last, Limit: 20}); got != 0 {
			t.Errorf("%s: the head answered %d reads reaching before its window", name, got)
		}
		if got := sameReads(t, s, plain, storage.SpanQuery{TraceID: longTrace}); got != 0 {
			t.Errorf("%s: the head answered %d reads of a trace reaching before its window", name, got)
		}
		if got := sameReads(t, s, plain, storage.SpanQuery{TraceID: "0002ffffffffffffffffffffffffffff"}); got != 2 {
			t.Errorf("%s: the head answered %d of 2 reads of an unknown trace", name, got)
		}
		sameReads(t, s, plain, storage.SpanQuery{TraceID: spans[0].TraceID})
	}
	check("first load", head)
	// Three hours more: the head moves on.
	_, _, start := head.SpanHeadStats()
	more := spansOverHours(testutil.Epoch.Add(12*time.Hour), 3*120, 30*time.Second, "0003")
	if err := head.AppendSpans(ctx, more); err != nil {
		t.Fatal(err)
	}
	check("after own writes", head)
	if _, _, now := head.SpanHeadStats(); now <= start {
		t.Errorf("head_start stayed at %d after three hours more of spans", now)
	}
	// A restart: a new process loads the head again.
	cfg := head.cfg
	head.Close()
	again := openAt(t, cfg, clock)
	if n, _, _ := again.SpanHeadStats(); n != 0 {
		t.Fatalf("the head holds %d spans before the first read", n)
	}
	check("restart", again)
}

// TestSpanHeadLateSpans checks spans that arrive for time before the
// head's start, from this process and another: their traces are read
// from ClickHouse, whole.
func TestSpanHeadLateSpans(t *testing.T) {
	clock := testutil.NewClock(testutil.Epoch.Add(24 * time.Hour))
	head, plain := spanHeadPair(t, clock, 1)
	ctx := context.Background()
	spans := spansOverHours(testutil.Epoch, 12*120, 30*time.Second, "0000")
	if err := plain.AppendSpans(ctx, spans); err != nil {
		t.Fatal(err)
	}
	recent := spans[len(spans)-3:]
	waitHead(t, head)
	if got := sameReads(t, head, plain, storage.SpanQuery{TraceID: recent[0].TraceID}); got != 2 {
		n, bytes, start := head.SpanHeadStats()
		t.Fatalf("the head (%d spans, %d bytes from %s) answered %d of 2 reads of a recent trace", n, bytes, storage.FromUnixNano(start), got)
	}
	late := func(s *Store, sp storage.Span, id string) {
		t.Helper()
		sp.SpanID, sp.StartTime, sp.EndTime = id, testutil.Epoch.Add(time.Minute), testutil.Epoch.Add(2*time.Minute)
		if err := s.AppendSpans(ctx, []storage.Span{sp}); err != nil {
			t.Fatal(err)
		}
	}
	// This process writes an old span into a recent trace: at once, its
	// reads by id go to ClickHouse.
	late(head, recent[0], "00000000000000f1")
	if got := sameReads(t, head, plain, storage.SpanQuery{TraceID: recent[0].TraceID}); got != 0 {
		t.Errorf("the head answered %d reads of a trace with an old span of its own", got)
	}
	// Another process does: after the refresh interval.
	other := spans[len(spans)-6]
	late(plain, other, "00000000000000f2")
	clock.Add(time.Second)
	if got := sameReads(t, head, plain, storage.SpanQuery{TraceID: other.TraceID}); got != 0 {
		t.Errorf("the head answered %d reads of a trace with another writer's old span", got)
	}
	// A new span in the head's window from another writer.
	fresh := spans[len(spans)-9]
	fresh.SpanID = "00000000000000f3"
	fresh.StartTime = fresh.StartTime.Add(time.Second)
	if err := plain.AppendSpans(ctx, []storage.Span{fresh}); err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Second)
	if got := sameReads(t, head, plain, storage.SpanQuery{TraceID: fresh.TraceID}); got != 2 {
		t.Errorf("the head answered %d of 2 reads of a recent trace", got)
	}
}

// TestSpanHeadMergedParts checks that a part merged away while a sync
// read it makes the head incomplete (reads go to ClickHouse) until the
// next sync reads its successor, without holding a span twice.
func TestSpanHeadMergedParts(t *testing.T) {
	clock := testutil.NewClock(testutil.Epoch.Add(time.Hour))
	head, plain := spanHeadPair(t, clock, 64)
	ctx := context.Background()
	spans := storetest.TraceFixture()
	if err := plain.AppendSpans(ctx, spans[:50]); err != nil {
		t.Fatal(err)
	}
	waitHead(t, head)
	for _, batch := range [][]storage.Span{spans[50:100], spans[100:], spans[40:60]} {
		if err := plain.AppendSpans(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	head.spanHead.afterRead = func() {
		head.spanHead.afterRead = nil
		if err := plain.Merge(ctx); err != nil {
			t.Error(err)
		}
	}
	clock.Add(time.Second)
	if got := sameReads(t, head, plain, storage.SpanQuery{ServiceName: "api"}); got != 0 {
		t.Errorf("the head answered %d reads while incomplete", got)
	}
	clock.Add(time.Second)
	if got := sameReads(t, head, plain, storage.SpanQuery{ServiceName: "api", Limit: 1000}); got != 2 {
		t.Errorf("the head answered %d of 2 reads after the next sync", got)
	}
	if n, _, _ := head.SpanHeadStats(); n != len(spans) {
		t.Errorf("the head holds %d spans, want %d", n, len(spans))
	}
	for _, q := range fixtureQueries(spans) {
		sameReads(t, head, plain, q)
	}
}

// TestSpanHeadDroppedDay checks that a day dropped from the table (by
// retention, in another process) leaves the head.
func TestSpanHeadDroppedDay(t *testing.T) {
	clock := testutil.NewClock(testutil.Epoch.Add(72 * time.Hour))
	head, plain := spanHeadPair(t, clock, 64)
	ctx := context.Background()
	day0 := spansOverHours(testutil.Epoch, 50, time.Minute, "0000")
	day1 := spansOverHours(testutil.Epoch.Add(24*time.Hour), 50, time.Minute, "0001")
	if err := plain.AppendSpans(ctx, append(day0, day1...)); err != nil {
		t.Fatal(err)
	}
	waitHead(t, head)
	day := testutil.Epoch.UnixNano() / nsPerDay
	for _, table := range []string{plain.t.spans, plain.t.traceIndex} {
		if err := plain.conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s DROP PARTITION %d", table, day)); err != nil {
			t.Fatal(err)
		}
	}
	clock.Add(time.Second)
	if got := sameReads(t, head, plain, storage.SpanQuery{ServiceName: "a", Limit: 1000}); got != 0 {
		t.Errorf("the head answered %d reads reaching into the dropped day", got)
	}
	if got := sameReads(t, head, plain, storage.SpanQuery{TraceID: day1[0].TraceID}); got != 2 {
		t.Errorf("the head answered %d of 2 reads of a trace after the dropped day", got)
	}
	sameReads(t, head, plain, storage.SpanQuery{TraceID: day0[0].TraceID})
	if n, _, start := head.SpanHeadStats(); n != len(day1) || start != (day+1)*nsPerDay {
		t.Errorf("the head holds %d spans from %d, want %d from the next day", n, start, len(day1))
	}
}

func TestSpanHeadConfig(t *testing.T) {
	for _, c := range []struct {
		mutate func(*Config)
		want   string
	}{
		{func(c *Config) { c.SpanHeadMiB = -1 }, "clickhouse.span_head_mib"},
		{func(c *Config) { c.SpanHeadMiB = 1 << 30 }, "clickhouse.span_head_mib"},
		{func(c *Config) { c.SpanHeadRefresh = -1 }, "clickhouse.span_head_refresh"},
	} {
		cfg := DefaultConfig()
		c.mutate(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate: %v, want an error naming %s", err, c.want)
		}
	}
}

// TestSpanHeadReadDoesNotWaitForReads: once the head is loaded, a read
// starts while another holds the head for reading. Each read used to take
// the head's lock exclusively to see whether it was loaded, which waited
// for every read in progress: eight concurrent clients' searches went one
// at a time, fewer a second than one client's (aiops-bench traces
// --clients 8).
func TestSpanHeadReadDoesNotWaitForReads(t *testing.T) {
	h := newSpanHead(1<<30, 0, nil)
	if loaded, start := h.beginLoad(); loaded || !start {
		t.Fatalf("first beginLoad: loaded %v, start %v; want the caller to start the load", loaded, start)
	}
	h.endLoad(true)
	h.mu.RLock() // a read in progress
	defer h.mu.RUnlock()
	done := make(chan bool)
	go func() {
		loaded, _ := h.beginLoad()
		done <- loaded && h.loaded()
	}()
	select {
	case ok := <-done:
		if !ok {
			t.Error("the head is loaded, but beginLoad or loaded says not")
		}
	case <-time.After(time.Minute):
		t.Fatal("beginLoad waited for a read in progress")
	}
}

// TestSpanHeadEncoding checks that a span comes out of the head as it
// went in, and that a span's ids in any form survive.
func TestSpanHeadEncoding(t *testing.T) {
	h := newSpanHead(1<<30, 0, nil)
	h.activate(math.MinInt64)
	rows := []spanRow{
		{traceID: "t1", spanID: "00000000000000aa", parent: "", name: "n", kind: "Server", service: "s", scope: "sc",
			start: 5 * nsPerHour, end: 5*nsPerHour - 7, status: "Error", statusMsg: "bad",
			attrKeys: []string{"a", "b"}, attrVals: []string{"1", ""}, resKeys: []string{"r"}, resVals: []string{"v"},
			details: storage.EncodeSpanDetails(&storage.Span{TraceState: "x=1"}), eventKeys: []string{"e"}, eventVals: []string{"f"}},
		{traceID: "t1", spanID: "ABC-not-hex", parent: "0a", name: "", service: "", start: -3, end: 10},
	}
	h.add(rows)
	h.add(rows) // again: held once
	if h.spans != 2 {
		t.Fatalf("%d spans held, want 2", h.spans)
	}
	h.complete = true
	got, a, err := h.querySpans(storage.SpanQuery{TraceID: "t1"}, []string{"t1"})
	if err != nil || a != headYes || len(got) != 2 {
		t.Fatalf("querySpans: %v, %v, %d spans", err, a, len(got))
	}
	want0 := storage.Span{TraceID: "t1", SpanID: "ABC-not-hex", ParentSpanID: "0a", StartTime: storage.FromUnixNano(-3), EndTime: storage.FromUnixNano(10)}
	if !reflect.DeepEqual(got[0], want0) {
		t.Errorf("span 0:\n got %+v\nwant %+v", got[0], want0)
	}
	want1 := storage.Span{TraceID: "t1", SpanID: "00000000000000aa", Name: "n", Kind: "Server", ServiceName: "s", ScopeName: "sc",
		StartTime: storage.FromUnixNano(5 * nsPerHour), EndTime: storage.FromUnixNano(5*nsPerHour - 7), StatusCode: "Error", StatusMessage: "bad",
		Attributes: map[string]string{"a": "1", "b": ""}, ResourceAttributes: map[string]string{"r": "v"}, TraceState: "x=1"}
	if !reflect.DeepEqual(got[1], want1) {
		t.Errorf("span 1:\n got %+v\nwant %+v", got[1], want1)
	}
	// A tag matches the span's, its resource's and its events' attributes.
	for k, v := range map[string]string{"e": "f", "a": "1", "b": "", "r": "v"} {
		ids, _ := h.traceIDs(storage.SpanQuery{Attributes: map[string]string{k: v}}, nil)
		if !reflect.DeepEqual(ids, []string{"t1"}) {
			t.Errorf("tag %s=%s: %v, want [t1]", k, v, ids)
		}
	}
	for k, v := range map[string]string{"e": "x", "zz": "1", "r": "w"} {
		if ids, _ := h.traceIDs(storage.SpanQuery{Attributes: map[string]string{k: v}}, nil); len(ids) != 0 {
			t.Errorf("tag %s=%s: %v, want none", k, v, ids)
		}
	}
}
