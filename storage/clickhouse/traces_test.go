package clickhouse

import (
	"context"
	"slices"
	"testing"

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
