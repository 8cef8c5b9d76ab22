package clickhouse

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/aiops-dev/aiops/internal/chtest"
	"github.com/aiops-dev/aiops/internal/testutil"
)

// server is shared by the tests of this package: starting ClickHouse costs
// seconds, a database costs milliseconds.
var server *chtest.Server

// afterAll holds clean-ups of state shared by several benchmarks.
var afterAll []func()

func TestMain(m *testing.M) {
	srv, stop, err := chtest.StartMain()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	server = srv
	code := m.Run()
	for i := len(afterAll) - 1; i >= 0; i-- {
		afterAll[i]()
	}
	stop()
	os.Exit(code)
}

// testConfig returns a config for a fresh database on the shared server.
func testConfig(t testing.TB) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Addresses = []string{server.NativeAddr()}
	cfg.Database = server.NewDatabase(t)
	if c := os.Getenv("AIOPS_TEST_CLICKHOUSE_COMPRESSION"); c != "" {
		cfg.Compression = c
	} else {
		cfg.Compression = "none"
	}
	cfg.ReadTimeout = model.Duration(30 * time.Second)
	// Test data is mostly near the epoch, which retention relative to now
	// would drop at once; the retention tests turn it on.
	cfg.Retention = 0
	return cfg
}

// openStore opens a store on a fresh database and closes it when the test
// ends.
func openStore(t testing.TB, mutate ...func(*Config)) *Store {
	t.Helper()
	return openWith(t, testConfig(t), mutate...)
}

// openWith opens a store with cfg changed by mutate (cfg itself is not)
// and closes it when the test ends: several stores on one database are
// several processes sharing it.
func openWith(t testing.TB, cfg Config, mutate ...func(*Config)) *Store {
	t.Helper()
	return openAt(t, cfg, nil, mutate...)
}

// openAt is openWith with the store's clock at clock (time.Now if nil):
// tests whose data is at fixed dates give the stores on it one clock.
func openAt(t testing.TB, cfg Config, clock *testutil.Clock, mutate ...func(*Config)) *Store {
	t.Helper()
	for _, f := range mutate {
		f(&cfg)
	}
	var opts []Option
	if clock != nil {
		opts = append(opts, WithClock(clock.Now))
	}
	s, err := Open(context.Background(), cfg, slog.New(slog.DiscardHandler), opts...)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
