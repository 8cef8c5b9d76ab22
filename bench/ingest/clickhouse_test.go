package ingest

import (
	"context"
	"log/slog"
	"os"
	"testing"

	"github.com/aiops-dev/aiops/internal/chtest"
	"github.com/aiops-dev/aiops/storage/clickhouse"
)

// sharedCH is one ClickHouse server for the tests that do not stop it.
var sharedCH chtest.Lazy

func TestMain(m *testing.M) {
	code := m.Run()
	sharedCH.Stop()
	os.Exit(code)
}

func sharedClickHouse(t testing.TB) *chtest.Server { return sharedCH.Get(t) }

func openClickHouseStore(t testing.TB, srv *chtest.Server, db string) *clickhouse.Store {
	t.Helper()
	cfg := clickhouse.DefaultConfig()
	cfg.Addresses = []string{srv.NativeAddr()}
	cfg.Database = db
	cfg.Compression = "none"
	// As aiops serve's all-in-one role has it.
	cfg.WAL.Mode, cfg.WAL.Dir = clickhouse.WALOn, t.TempDir()
	s, err := clickhouse.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open ClickHouse store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkIngestClickHouse measures OTLP points/s into ClickHouse and
// the bytes ClickHouse keeps per sample:
//
//	go test ./bench/ingest -run '^$' -bench IngestClickHouse -benchtime 1x -count 5
func BenchmarkIngestClickHouse(b *testing.B) {
	srv := sharedClickHouse(b)
	for range b.N {
		db := srv.NewDatabase(b)
		store := openClickHouseStore(b, srv, db)
		res, err := Run(context.Background(), Options{
			Store:     store,
			Points:    *benchPoints,
			Config:    benchConfig(),
			Senders:   *benchSenders,
			QueueDir:  b.TempDir(),
			DiskBytes: ClickHouseDiskBytes([]string{srv.NativeAddr()}, db, "default", ""),
		})
		if err != nil {
			b.Fatal(err)
		}
		if res.Lost != 0 {
			b.Fatalf("lost %d points: %s", res.Lost, res)
		}
		b.ReportMetric(res.PointsPerSecond, "points/s")
		b.ReportMetric(res.PointsPerCPUSecond, "points/CPU-s")
		b.ReportMetric(res.BytesPerSample, "bytes/sample")
		b.ReportMetric(float64(res.MaxHeapBytes>>20), "maxheap-MiB")
		b.Log(res)
	}
}

// TestRunClickHouseSmall keeps the ClickHouse benchmark path
// working, over both protocols: every point arrives (Run waits for the
// write-ahead log to drain before it counts), and bytes per sample and
// inserts per second are measured.
func TestRunClickHouseSmall(t *testing.T) {
	for _, protocol := range []string{ProtocolGRPC, ProtocolHTTP} {
		t.Run(protocol, func(t *testing.T) {
			srv := sharedClickHouse(t)
			db := srv.NewDatabase(t)
			store := openClickHouseStore(t, srv, db)
			res, err := Run(context.Background(), Options{
				Store: store, Points: 20_000, Series: 2_000, PointsPerRequest: 1_000, Protocol: protocol, Senders: 1,
				DiskBytes: ClickHouseDiskBytes([]string{srv.NativeAddr()}, db, "default", ""),
				Inserts:   ClickHouseInserts([]string{srv.NativeAddr()}, "default", ""),
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Stored != res.Points || res.BytesPerSample <= 0 || res.InsertsPerSecond <= 0 || res.Acked > res.Elapsed {
				t.Fatalf("%s", res)
			}
		})
	}
}
