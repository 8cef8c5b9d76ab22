package collector

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

	"github.com/aiops-dev/aiops/internal/chtest"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/storage/clickhouse"
)

// TestClickHouseWALAbsorbsOutage: with the ClickHouse store's write-ahead
// log, a ClickHouse outage costs clients nothing: no request is refused
// or pushed back while it lasts, nothing goes through the queue, and
// once ClickHouse is back every point is stored exactly once.
func TestClickHouseWALAbsorbsOutage(t *testing.T) {
	ctx := context.Background()
	srv := chtest.Start(t)
	chCfg := chConfig(srv, srv.NewDatabase(t))
	chCfg.WAL.Mode, chCfg.WAL.Dir = clickhouse.WALOn, t.TempDir()
	store := openClickHouseStore(t, chCfg)
	r := start(t, allInOneConfig(t), Deps{Store: store})
	snd := newSender(t, r.grpc)

	const instances, series, rounds = 4, 50, 40
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Millisecond)
	send := func(round int) {
		t.Helper()
		for inst := range instances {
			req := pmetricotlp.NewExportRequestFromMetrics(instanceMetrics(inst, series, base.Add(time.Duration(round)*time.Second)))
			if _, err := snd.metrics.Export(ctx, req); err != nil {
				t.Fatalf("round %d: export: %v", round, err)
			}
		}
	}
	for round := range rounds / 2 {
		send(round)
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	for round := rounds / 2; round < rounds; round++ {
		send(round)
	}
	testutil.Eventually(t, 30*time.Second, "the log holds what ClickHouse has not taken", func() (bool, string) {
		n := store.WALPending()
		return n > 0, fmt.Sprintf("%d bytes pending", n)
	})
	if n := metricValue(t, r.reg, "aiops_collector_spilled_items_total", map[string]string{"signal": "metrics"}); n != 0 {
		t.Errorf("%v points went through the queue; the log should have taken them", n)
	}
	srv.Restart(t)
	if err := store.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	checkFleetLoad(t, store, instances*series, rounds)
}
