package clickhouse

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage"
)

func TestTraceQueries(t *testing.T) {
	storetest.CheckTraceQueries(t, openStore(t))
}

func TestLogQueries(t *testing.T) {
	storetest.CheckLogQueries(t, openStore(t))
}

// TestTraceIndexMigration opens a database as schema 2 left it (spans
// without details, no trace index, no operations) and checks that
// migration 3 makes the spans stored before it findable by trace id and
// lists their services and operations.
func TestTraceIndexMigration(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	s := openWith(t, cfg)
	spans := storetest.TraceFixture()
	if err := s.AppendSpans(ctx, spans); err != nil {
		t.Fatal(err)
	}
	s.Close()
	db := cfg.Database
	for _, stmt := range []string{
		"DROP TABLE " + db + ".trace_index",
		"DROP TABLE " + db + ".span_operations",
		"ALTER TABLE " + db + ".spans DROP COLUMN details",
		"ALTER TABLE " + db + ".spans DROP COLUMN event_keys",
		"ALTER TABLE " + db + ".spans DROP COLUMN event_values",
		"DROP TABLE " + db + ".schema_migrations",
		"CREATE TABLE " + db + ".schema_migrations (version UInt32, name String, applied_at DateTime) ENGINE = MergeTree() ORDER BY version",
		"INSERT INTO " + db + ".schema_migrations (version, name, applied_at) VALUES (1, 'base schema', now()), (2, 'mark series', now())",
	} {
		if err := server.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}

	s = openWith(t, cfg)
	if v, err := s.SchemaVersion(ctx); err != nil || v != migrations[len(migrations)-1].version {
		t.Fatalf("schema version %d, %v", v, err)
	}
	id := spans[0].TraceID
	got, err := s.QuerySpans(ctx, storage.SpanQuery{TraceID: id, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, sp := range spans {
		if sp.TraceID == id {
			want++
		}
	}
	if len(got) != want {
		t.Errorf("trace %s after the migration: %d spans, want %d", id, len(got), want)
	}
	services, err := s.Services(ctx)
	if err != nil || !slices.Equal(services, []string{"api", "auth", "db", "worker"}) {
		t.Errorf("services after the migration: %v, %v", services, err)
	}
	ids, err := s.TraceIDs(ctx, storage.SpanQuery{ServiceName: "api", Limit: 1000})
	if err != nil || len(ids) != 60 {
		t.Errorf("traces of api after the migration: %d, %v", len(ids), err)
	}
}

// TestTracesFarApartByID reads traces by id whose spans lie hours and
// days apart, which the look-up reads as several time ranges, and more
// traces than it reads range by range (maxRangeTerms): every span comes
// back, and no other.
func TestTracesFarApartByID(t *testing.T) {
	ctx := context.Background()
	// The traces take 25 days; retention keeps them all.
	s := openAt(t, testConfig(t), testutil.NewClock(testutil.Epoch.Add(30*24*time.Hour)),
		func(c *Config) { c.Retention = model.Duration(60 * 24 * time.Hour) })
	const traces = maxRangeTerms + 44
	var spans []storage.Span
	for i := range traces {
		start := testutil.Epoch.Add(time.Duration(i) * 2 * time.Hour)
		id := fmt.Sprintf("%032x", 0xfa0000+i)
		spans = append(spans,
			storage.Span{TraceID: id, SpanID: fmt.Sprintf("%016x", 2*i+1), Name: "GET /", Kind: "Server", ServiceName: "api",
				StartTime: start, EndTime: start.Add(time.Second), StatusCode: "Unset"},
			// A child 40 minutes later in another service: a trace of its own
			// is one term; traces two hours apart are not.
			storage.Span{TraceID: id, SpanID: fmt.Sprintf("%016x", 2*i+2), ParentSpanID: fmt.Sprintf("%016x", 2*i+1), Name: "job", Kind: "Consumer",
				ServiceName: fmt.Sprintf("worker-%d", i%3), StartTime: start.Add(40 * time.Minute), EndTime: start.Add(41 * time.Minute), StatusCode: "Unset"})
	}
	if err := s.AppendSpans(ctx, spans); err != nil {
		t.Fatal(err)
	}
	for _, pick := range [][]int{{0}, {0, 1, 13}, {5, 200}} {
		var ids []string
		want := map[string]bool{}
		for _, i := range pick {
			ids = append(ids, spans[2*i].TraceID)
			want[spans[2*i].SpanID], want[spans[2*i+1].SpanID] = true, true
		}
		got, err := s.QuerySpans(ctx, storage.SpanQuery{TraceIDs: ids, Limit: 10000})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Errorf("traces %v: %d spans, want %d", pick, len(got), len(want))
		}
		for _, sp := range got {
			if !want[sp.SpanID] {
				t.Errorf("traces %v: span %s of trace %s", pick, sp.SpanID, sp.TraceID)
			}
		}
	}
	var all []string
	for i := range traces {
		all = append(all, spans[2*i].TraceID)
	}
	got, err := s.QuerySpans(ctx, storage.SpanQuery{TraceIDs: all, Limit: 10000})
	if err != nil || len(got) != len(spans) {
		t.Errorf("all %d traces: %d spans, %v; want %d", traces, len(got), err, len(spans))
	}
}

// TestQuerySpansKeepsIDs checks that a read by trace ids leaves the
// caller's ids as they were: the Jaeger API answers a search's traces in
// their order (it once came back sorted by id from ClickHouse).
func TestQuerySpansKeepsIDs(t *testing.T) {
	s := openStore(t, func(c *Config) { c.SpanHeadMiB = 0 })
	ctx := context.Background()
	spans := storetest.TraceFixture()
	if err := s.AppendSpans(ctx, spans); err != nil {
		t.Fatal(err)
	}
	ids := []string{spans[len(spans)-1].TraceID, spans[0].TraceID}
	want := slices.Clone(ids)
	if _, err := s.QuerySpans(ctx, storage.SpanQuery{TraceIDs: ids}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, want) {
		t.Errorf("QuerySpans changed its ids to %v, from %v", ids, want)
	}
}
