package clickhouse

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/aiops-dev/aiops/internal/testutil"
)

func TestBlockRanges(t *testing.T) {
	var b blockRanges
	if b.covers(1, 1) {
		t.Fatal("empty set covers 1")
	}
	b.add(5, 5)
	b.add(1, 2)
	b.add(9, 12)
	if want := [][2]int64{{1, 2}, {5, 5}, {9, 12}}; !slices.Equal(b.r, want) {
		t.Fatalf("ranges %v, want %v", b.r, want)
	}
	for _, c := range []struct {
		lo, hi int64
		want   bool
	}{{1, 2, true}, {2, 2, true}, {1, 5, false}, {3, 3, false}, {5, 5, true}, {10, 11, true}, {12, 13, false}, {0, 0, false}} {
		if got := b.covers(c.lo, c.hi); got != c.want {
			t.Errorf("covers(%d, %d) = %t, want %t", c.lo, c.hi, got, c.want)
		}
	}
	// Adjacent and overlapping ranges merge.
	b.add(3, 4)
	b.add(6, 9)
	if want := [][2]int64{{1, 12}}; !slices.Equal(b.r, want) {
		t.Fatalf("ranges %v, want %v", b.r, want)
	}
	b.add(20, 20)
	b.add(14, 14)
	b.add(0, 30)
	if want := [][2]int64{{0, 30}}; !slices.Equal(b.r, want) {
		t.Fatalf("ranges %v, want %v", b.r, want)
	}
}

// names returns the sorted __name__ values Select finds over [mint, maxt].
func names(t *testing.T, s *Store, mint, maxt int64) []string {
	t.Helper()
	_, order := readAll(t, newQuerier(t, s, mint, maxt), nil, re("__name__", ".+"))
	var out []string
	for _, ls := range order {
		out = append(out, ls.Get("__name__"))
	}
	return out
}

func appendAt(t *testing.T, s *Store, name string, ts int64) {
	t.Helper()
	app := s.AppenderV2(ctx)
	if _, err := app.Append(0, labels.FromStrings("__name__", name, "job", "j"), 0, ts, 1, nil, nil, promstorage.AOptions{}); err != nil {
		t.Fatal(err)
	}
	commit(t, app)
}

// TestSeriesIndexFollowsOtherWriters checks that a store's series index
// sees what another store (another process) writes to the same database:
// new series, new days of known series, merged parts, and partitions
// dropped by the other's retention.
func TestSeriesIndexFollowsOtherWriters(t *testing.T) {
	clock := testutil.NewClock(testutil.Epoch)
	now := clock.Now()
	// Retention stays off but for the store that applies it: each store
	// applies it once as it opens, which could drop the old day before
	// the test reads it.
	cfg := testConfig(t)
	writer, reader := openAt(t, cfg, clock), openAt(t, cfg, clock)
	old := now.Add(-20 * 24 * time.Hour).UnixMilli()
	today := now.UnixMilli()

	if got := names(t, reader, 0, today); len(got) != 0 {
		t.Fatalf("empty database: %v", got)
	}
	appendAt(t, writer, "a", today)
	if got := names(t, reader, 0, today); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after the writer added a: %v", got)
	}
	// A known series on another day, and a new one, in two inserts.
	appendAt(t, writer, "a", old)
	appendAt(t, writer, "b", old)
	if got := names(t, reader, old, old); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("on the old day: %v", got)
	}
	if got := names(t, reader, today, today); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("today: %v", got)
	}
	// Merged parts hold nothing new; a series inserted after is found.
	if err := writer.Merge(ctx); err != nil {
		t.Fatal(err)
	}
	appendAt(t, writer, "c", today)
	if got := names(t, reader, 0, today); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("after merging: %v", got)
	}
	// Another store's retention drops the old day; the reader forgets b.
	pruner := openAt(t, cfg, clock, func(c *Config) { c.Retention = model.Duration(10 * 24 * time.Hour) })
	if _, err := pruner.ApplyRetention(ctx, now); err != nil {
		t.Fatal(err)
	}
	if got := names(t, reader, 0, today); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("after retention: %v", got)
	}
	vals, _, err := newQuerier(t, reader, 0, today).LabelValues(ctx, "__name__", nil)
	if err != nil || !slices.Equal(vals, []string{"a", "c"}) {
		t.Fatalf("label values after retention: %v, %v", vals, err)
	}

	// With a refresh interval, other writers' series wait for it; the
	// store's own are there at once.
	lazy := openAt(t, cfg, clock, func(c *Config) { c.SeriesIndexRefresh = model.Duration(time.Hour) })
	if got := names(t, lazy, 0, today); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("lazy reader: %v", got)
	}
	appendAt(t, writer, "d", today)
	appendAt(t, lazy, "e", today)
	if got := names(t, lazy, 0, today); !slices.Equal(got, []string{"a", "c", "e"}) {
		t.Fatalf("lazy reader within its refresh interval: %v", got)
	}
	if got := names(t, reader, 0, today); !slices.Equal(got, []string{"a", "c", "d", "e"}) {
		t.Fatalf("reader: %v", got)
	}
}

// TestSeriesIndexLoadsOnFirstQuery checks that a store that only writes
// (an ingester) keeps no index, and that the first query loads it.
func TestSeriesIndexLoadsOnFirstQuery(t *testing.T) {
	s := openStore(t)
	appendAt(t, s, "a", 1000)
	if n := len(s.index.byFP); n != 0 {
		t.Fatalf("index holds %d series before any query", n)
	}
	if got := names(t, s, 0, 2000); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("first query: %v", got)
	}
	appendAt(t, s, "b", 1000)
	if n := len(s.index.byFP); n != 2 {
		t.Fatalf("index holds %d series after a query and a write, want 2", n)
	}
}
