package collector

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	promstorage "github.com/prometheus/prometheus/storage"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/aiops-dev/aiops/internal/chtest"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/storage"
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

func chConfig(srv *chtest.Server, db string) clickhouse.Config {
	cfg := clickhouse.DefaultConfig()
	cfg.Addresses = []string{srv.NativeAddr()}
	cfg.Database = db
	cfg.Compression = "none"
	cfg.DialTimeout = model.Duration(2 * time.Second)
	cfg.ReadTimeout = model.Duration(20 * time.Second)
	return cfg
}

func openClickHouseStore(t testing.TB, cfg clickhouse.Config) *clickhouse.Store {
	t.Helper()
	s, err := clickhouse.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open ClickHouse store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openChildClickHouse opens the store named by "addr/database" for the
// ingester child process of the kill test.
func openChildClickHouse(spec string) (storage.Store, func(), error) {
	addr, db, ok := strings.Cut(spec, "/")
	if !ok {
		return nil, nil, fmt.Errorf("want addr/database, got %q", spec)
	}
	cfg := clickhouse.DefaultConfig()
	cfg.Addresses = []string{addr}
	cfg.Database = db
	cfg.Compression = "none"
	cfg.Cluster = os.Getenv(envClickHouseCluster)
	if dir := os.Getenv(envClickHouseWAL); dir != "" {
		// Drained only by the first round and the next store: the kill
		// must find the log holding what was acknowledged.
		cfg.WAL.Mode, cfg.WAL.Dir = clickhouse.WALOn, dir
		cfg.WAL.FlushInterval = model.Duration(time.Hour)
	}
	s, err := clickhouse.Open(context.Background(), cfg, nil)
	if err != nil {
		return nil, nil, err
	}
	return s, func() { s.Close() }, nil
}

// TestSDKMetricsEveryTypeClickHouse: every metric type from the OTel SDK
// through the all-in-one collector into ClickHouse.
func TestSDKMetricsEveryTypeClickHouse(t *testing.T) {
	srv := sharedClickHouse(t)
	testEveryMetricType(t, openClickHouseStore(t, chConfig(srv, srv.NewDatabase(t))))
}

// TestClickHouseKilledWhileStreaming kills the ClickHouse server while
// data streams in, starts it again, and finds every accepted point stored
// exactly once.
func TestClickHouseKilledWhileStreaming(t *testing.T) {
	ctx := context.Background()
	srv := chtest.Start(t)
	store := openClickHouseStore(t, chConfig(srv, srv.NewDatabase(t)))
	cfg := allInOneConfig(t)
	cfg.Batch.MinSize, cfg.Batch.MaxSize = 200, 1000
	r := start(t, cfg, Deps{Store: store})
	snd := newSender(t, r.grpc)

	const instances, series, rounds = 4, 50, 40
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Millisecond)
	var pushedBack atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for round := range rounds {
			ts := base.Add(time.Duration(round) * time.Second)
			for inst := range instances {
				req := pmetricotlp.NewExportRequestFromMetrics(instanceMetrics(inst, series, ts))
				// Retry pushback, as OTLP clients do.
				for {
					_, err := snd.metrics.Export(ctx, req)
					if err == nil {
						break
					}
					if status.Code(err) != codes.Unavailable {
						t.Errorf("export: %v", err)
						return
					}
					pushedBack.Add(1)
					time.Sleep(100 * time.Millisecond)
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	time.Sleep(700 * time.Millisecond)
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "writes fail while ClickHouse is down", func() (bool, string) {
		n := metricValue(t, r.reg, "aiops_collector_export_failures_total", map[string]string{"signal": "metrics"})
		return n > 0, fmt.Sprintf("%v failures", n)
	})
	time.Sleep(time.Second)
	srv.Restart(t)
	wg.Wait()

	want := instances * series * rounds
	testutil.Eventually(t, 120*time.Second, "every point stored", func() (bool, string) {
		n := countSamples(t, store, nameIs("fleet_load"))
		return n >= want, fmt.Sprintf("%d of %d", n, want)
	})
	checkFleetLoad(t, store, instances*series, rounds)
	if n := countSamples(t, store, nameIs("fleet_ops_total")); n != instances*rounds {
		t.Errorf("counter: %d samples, want %d", n, instances*rounds)
	}
	t.Logf("client requests pushed back during the outage: %d", pushedBack.Load())
}

// TestIngesterKilledClickHouse: the ingester process is SIGKILLed twice
// while it writes into ClickHouse; every point is there exactly once.
func TestIngesterKilledClickHouse(t *testing.T) {
	srv := sharedClickHouse(t)
	db := srv.NewDatabase(t)
	brokers := startKafka(t)
	runKillScenario(t, brokers, "clickhouse:"+srv.NativeAddr()+"/"+db, func() (storage.Store, func()) {
		s, err := clickhouse.Open(context.Background(), chConfig(srv, db), nil)
		if err != nil {
			t.Fatal(err)
		}
		return s, func() { s.Close() }
	})
}

// TestKafkaToClickHouseExporter: OTLP → collector → Kafka → ingester with
// the clickhouse exporter (a ClickHouse store of the collector's own).
func TestKafkaToClickHouseExporter(t *testing.T) {
	ctx := context.Background()
	srv := sharedClickHouse(t)
	db := srv.NewDatabase(t)
	brokers := startKafka(t)
	coll := start(t, collectorRoleConfig(t, brokers), Deps{})
	icfg := ingesterConfig(brokers)
	icfg.Exporter = ExporterClickHouse
	icfg.ClickHouse.Addresses = []string{srv.NativeAddr()}
	icfg.ClickHouse.Database = db
	start(t, icfg, Deps{})

	snd := newSender(t, coll.grpc)
	base := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	for round := range 3 {
		for inst := range 5 {
			if _, err := snd.metrics.Export(ctx, pmetricotlp.NewExportRequestFromMetrics(instanceMetrics(inst, 40, base.Add(time.Duration(round)*time.Second)))); err != nil {
				t.Fatal(err)
			}
		}
	}
	for inst := range 5 {
		if _, err := snd.logs.Export(ctx, plogotlp.NewExportRequestFromLogs(instanceLogs(inst, 4, base))); err != nil {
			t.Fatal(err)
		}
	}
	store := openClickHouseStore(t, chConfig(srv, db))
	testutil.Eventually(t, 60*time.Second, "ingested into ClickHouse", func() (bool, string) {
		n := countSamples(t, store, nameIs("fleet_load"))
		logs, _ := store.QueryLogs(ctx, storage.LogQuery{ServiceName: "fleet", Limit: 1000})
		return n == 3*5*40 && len(logs) == 20, fmt.Sprintf("%d of %d samples, %d of 20 logs", n, 3*5*40, len(logs))
	})
}

// TestClickHouseGroupCommit: requests arriving together are written to
// ClickHouse in one insert, each acknowledged only once it is stored, and
// nothing goes through the queue while ClickHouse is up.
func TestClickHouseGroupCommit(t *testing.T) {
	srv := sharedClickHouse(t)
	store := openClickHouseStore(t, chConfig(srv, srv.NewDatabase(t)))
	cfg := allInOneConfig(t)
	const clients, perRequest = 8, 50
	cfg.Batch.MinSize = clients * perRequest
	cfg.Batch.FlushTimeout = 2 * time.Second
	r := start(t, cfg, Deps{Store: store})
	ts := time.Now().Truncate(time.Millisecond)

	// After a quiet spell a request is written at once, alone.
	if resp := postOTLP(t, r.http, gaugeRequest(10_000, 1, ts)); resp.StatusCode != 200 {
		t.Fatalf("first request: %s", resp.Status)
	}
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp := postOTLP(t, r.http, gaugeRequest(c*perRequest, perRequest, ts)); resp.StatusCode != 200 {
				t.Errorf("client %d: %s", c, resp.Status)
			}
		}()
	}
	wg.Wait()
	// Acknowledged means stored.
	if n := countSamples(t, store, nameIs("bp_gauge")); n != clients*perRequest+1 {
		t.Fatalf("%d of %d points stored when every client had its answer", n, clients*perRequest+1)
	}
	writes := 0.0
	mfs, _ := r.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "aiops_collector_export_duration_seconds" {
			for _, m := range mf.GetMetric() {
				if labelsMatch(m.GetLabel(), map[string]string{"signal": "metrics"}) {
					writes += float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	if writes != 2 {
		t.Errorf("%v writes for one request and then %d concurrent ones filling one batch, want 2", writes, clients)
	}
	if s := metricValue(t, r.reg, "aiops_collector_spilled_items_total", map[string]string{"signal": "metrics"}); s != 0 {
		t.Errorf("%v items went through the queue while ClickHouse was up", s)
	}
}

// checkFleetLoad checks that store holds every fleet_load point sent
// exactly once: each of the series has one sample per round.
func checkFleetLoad(t *testing.T, store promstorage.Queryable, series, rounds int) {
	t.Helper()
	all := readSeries(t, store, nameIs("fleet_load"))
	got := 0
	for s, samples := range all {
		got += len(samples)
		if len(samples) != rounds {
			t.Errorf("%s: %d samples, want %d", s, len(samples), rounds)
		}
	}
	if len(all) != series || got != series*rounds {
		t.Fatalf("%d series, %d samples; want %d series, %d samples", len(all), got, series, series*rounds)
	}
}
