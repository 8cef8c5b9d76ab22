package clickhouse

import (
	"github.com/aiops-dev/aiops/internal/testutil/storetest"

	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/promqltest"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/aiops-dev/aiops/internal/chserver"
	"github.com/aiops-dev/aiops/internal/chtest"
	"github.com/aiops-dev/aiops/internal/testutil"
)

const testCluster = "aiops_test"

// testClusterServers is a two-shard cluster shared by the cluster tests,
// started on first use and stopped by TestMain.
var (
	clusterOnce    sync.Once
	clusterServers []*chserver.Server
	clusterErr     error
	clusterDBSeq   atomic.Uint64
)

func sharedCluster(t testing.TB) []*chserver.Server {
	t.Helper()
	clusterOnce.Do(func() {
		clusterServers, clusterErr = chserver.StartCluster(testCluster, 2)
		afterAll = append(afterAll, func() {
			for _, s := range clusterServers {
				s.Close()
			}
		})
	})
	if clusterErr != nil {
		t.Fatalf("chtest: %v", clusterErr)
	}
	return clusterServers
}

// clusterConfig returns a config for a fresh database on the shared
// cluster, reached through its first server, and drops the database on
// every server when the test ends.
func clusterConfig(t testing.TB) Config {
	t.Helper()
	servers := sharedCluster(t)
	cfg := DefaultConfig()
	cfg.Addresses = []string{servers[0].NativeAddr()}
	cfg.Cluster = testCluster
	cfg.Database = fmt.Sprintf("cluster_%d_%d", time.Now().UnixNano(), clusterDBSeq.Add(1))
	cfg.Compression = "none"
	cfg.ReadTimeout = model.Duration(30 * time.Second)
	cfg.Retention = 0
	t.Cleanup(func() {
		for _, s := range servers {
			_ = s.Exec(context.Background(), "DROP DATABASE IF EXISTS "+cfg.Database)
		}
	})
	return cfg
}

func queryLines(t testing.TB, s *chserver.Server, q string) []string {
	t.Helper()
	out, err := s.Query(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(out)
}

// TestClusterShardsBySeries writes through a two-shard cluster: every
// series lands whole on one shard (its samples and its series rows), both
// shards get a share, reads through either server see everything once,
// a replayed commit is not counted twice, and PromQL answers over it.
func TestClusterShardsBySeries(t *testing.T) {
	cfg := clusterConfig(t)
	s := openWith(t, cfg)
	const nSeries, nSamples = 200, 10
	write := func() {
		app := s.AppenderV2(ctx)
		for i := range nSeries {
			ls := labels.FromStrings("__name__", "jobs_running", "instance", fmt.Sprintf("w-%03d", i))
			for j := range nSamples {
				if _, err := app.Append(0, ls, 0, int64(j)*15000, float64(i), nil, nil, promstorage.AOptions{}); err != nil {
					t.Fatal(err)
				}
			}
		}
		commit(t, app)
	}
	write()

	servers := sharedCluster(t)
	var total int
	owner := map[string]int{}
	for i, srv := range servers {
		fps := queryLines(t, srv, fmt.Sprintf("SELECT DISTINCT fingerprint FROM %s.metric_samples_local", cfg.Database))
		if len(fps) == 0 || len(fps) == nSeries {
			t.Errorf("shard %d holds %d of %d series: want a share", i, len(fps), nSeries)
		}
		for _, fp := range fps {
			if j, ok := owner[fp]; ok {
				t.Errorf("series %s has samples on shards %d and %d", fp, j, i)
			}
			owner[fp] = i
		}
		total += len(fps)
		for _, fp := range queryLines(t, srv, fmt.Sprintf("SELECT DISTINCT fingerprint FROM %s.metric_series_local", cfg.Database)) {
			if owner[fp] != i {
				t.Errorf("series %s: series row on shard %d, samples on shard %d", fp, i, owner[fp])
			}
		}
	}
	if total != nSeries {
		t.Errorf("%d series on the shards, want %d", total, nSeries)
	}

	check := func(s *Store, what string) {
		t.Helper()
		got, _ := readAll(t, newQuerier(t, s, 0, nSamples*15000), nil, eq("__name__", "jobs_running"))
		if len(got) != nSeries {
			t.Fatalf("%s: %d series, want %d", what, len(got), nSeries)
		}
		for name, samples := range got {
			if len(samples) != nSamples {
				t.Errorf("%s: %s has %d samples, want %d", what, name, len(samples), nSamples)
			}
		}
	}
	check(s, "first read")
	write() // a replay, as after a crash between a write and its commit
	check(s, "after a replay")

	// Another process, through the other server: the schema is there,
	// and migrating again changes nothing.
	cfg2 := cfg
	cfg2.Addresses = []string{servers[1].NativeAddr()}
	s2 := openWith(t, cfg2)
	check(s2, "through the second server")
	if s2.index == nil || s2.cache == nil || s2.head == nil {
		t.Fatal("the series index, sample cache and head are off on a cluster")
	}
	// Series and samples the first process writes now reach the second
	// one's index, cache and head, which follow every shard's parts.
	app := s.AppenderV2(ctx)
	for i := range nSeries {
		ls := labels.FromStrings("__name__", "jobs_running", "instance", fmt.Sprintf("late-%03d", i))
		if _, err := app.Append(0, ls, 0, (nSamples-1)*15000, 1, nil, nil, promstorage.AOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	commit(t, app)
	late, _ := readAll(t, newQuerier(t, s2, 0, nSamples*15000), nil, re("instance", "late-.*"))
	if len(late) != nSeries {
		t.Errorf("the second process sees %d of the %d series written after it opened", len(late), nSeries)
	}
	for i, srv := range servers {
		rows := queryLines(t, srv, fmt.Sprintf("SELECT count(), uniqExact(version) FROM %s.schema_migrations", cfg.Database))
		if len(rows) != 2 || rows[0] != rows[1] || rows[0] != fmt.Sprint(len(migrations)) {
			t.Errorf("shard %d: schema_migrations rows and versions %v, want %d of each", i, rows, len(migrations))
		}
	}

	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	for q, want := range map[string]float64{
		`count(jobs_running{instance=~"w-.*"})`: nSeries,
		`sum(jobs_running{instance=~"w-.*"})`:   nSeries * (nSeries - 1) / 2,
		`max(jobs_running{instance=~"w-0.*"})`:  99,
	} {
		qry, err := engine.NewInstantQuery(ctx, s2, nil, q, time.UnixMilli((nSamples-1)*15000))
		if err != nil {
			t.Fatal(err)
		}
		res := qry.Exec(ctx)
		v, err := res.Vector()
		if err != nil || len(v) != 1 || v[0].F != want {
			t.Errorf("%s = %v (%v), want %v", q, v, err, want)
		}
		qry.Close()
	}

	// Retention drops the day on every shard.
	s3 := openWith(t, cfg, func(c *Config) { c.Retention = model.Duration(24 * time.Hour) })
	if n, err := s3.ApplyRetention(ctx, time.UnixMilli(0).Add(3*24*time.Hour)); err != nil || n == 0 {
		t.Fatalf("retention dropped %d partitions: %v", n, err)
	}
	for i, srv := range servers {
		if rows := queryLines(t, srv, fmt.Sprintf("SELECT count() FROM %s.metric_samples_local", cfg.Database)); len(rows) != 1 || rows[0] != "0" {
			t.Errorf("shard %d: %v samples left after retention", i, rows)
		}
	}
}

// TestClusterPromQLConformance runs Prometheus's PromQL acceptance tests
// on the store sharded over two servers.
func TestClusterPromQLConformance(t *testing.T) {
	engine := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	promqltest.RunBuiltinTestsWithStorage(t, engine, func(tb testing.TB) promstorage.Storage {
		return openWith(tb, clusterConfig(tb))
	})
}

// TestClusterReadiness: a store on a cluster is ready only while every
// shard answers, since every commit needs them all.
func TestClusterReadiness(t *testing.T) {
	servers := chtest.StartCluster(t, "ready", 2)
	cfg := DefaultConfig()
	cfg.Addresses = []string{servers[0].NativeAddr()}
	cfg.Cluster = "ready"
	cfg.Database = "ready_test"
	cfg.Compression = "none"
	cfg.DialTimeout = model.Duration(2 * time.Second)
	s := openWith(t, cfg)
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("ready with both shards: %v", err)
	}
	if err := servers[1].Kill(); err != nil {
		t.Fatal(err)
	}
	err := s.Ready(ctx)
	if err == nil || !strings.Contains(err.Error(), servers[1].NativeAddr()) {
		t.Fatalf("ready with a shard down: %v, want an error naming %s", err, servers[1].NativeAddr())
	}
	servers[1].Restart(t)
	testutil.Eventually(t, 30*time.Second, "ready again", func() (bool, string) {
		err := s.Ready(ctx)
		return err == nil, fmt.Sprint(err)
	})
}

// TestClusterTraceQueries runs the trace and log reads through the
// Distributed tables: the trace index and operations have per-shard
// tables too, and the span detail columns reach both kinds of table.
func TestClusterTraceQueries(t *testing.T) {
	s := openWith(t, clusterConfig(t))
	storetest.CheckTraceQueries(t, s)
	storetest.CheckLogQueries(t, openWith(t, clusterConfig(t)))
}
