package clickhouse

import (
	"testing"

	"github.com/prometheus/prometheus/promql/promqltest"
	promstorage "github.com/prometheus/prometheus/storage"
)

// TestPromQLConformance runs Prometheus's own PromQL acceptance tests on
// the ClickHouse store, with the engine configured as Prometheus's tests
// configure it (promqltest.NewTestEngine: @ modifier, negative offsets,
// delayed name removal, start timestamps, and TestParserOpts for
// experimental functions, fill modifiers and unquoted UTF-8 names).
// Every load/clear opens the store on a fresh database.
func TestPromQLConformance(t *testing.T) {
	engine := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	promqltest.RunBuiltinTestsWithStorage(t, engine, func(tb testing.TB) promstorage.Storage {
		return openStore(tb)
	})
}
