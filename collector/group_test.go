package collector

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

	"github.com/aiops-dev/aiops/collector/internal/kafkaotlp"
	"github.com/aiops-dev/aiops/internal/chtest"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/storage/clickhouse"
)

// envClickHouseCluster names the cluster (clickhouse.cluster) the
// ingester children write to.
const envClickHouseCluster = "AIOPS_TEST_CLICKHOUSE_CLUSTER"

// groupAssignment returns the metrics partitions each member of a stable
// group holds, or why the group is not stable.
func groupAssignment(ctx context.Context, brokers []string, group string) (map[string][]int, string) {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second}
	resp, err := client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return nil, err.Error()
	}
	if len(resp.Groups) != 1 || resp.Groups[0].Error != nil {
		return nil, fmt.Sprintf("describe: %+v", resp.Groups)
	}
	g := resp.Groups[0]
	if g.GroupState != "Stable" {
		return nil, "state " + g.GroupState
	}
	held := map[string][]int{}
	for _, m := range g.Members {
		for _, tp := range m.MemberAssignments.Topics {
			if tp.Topic == kafkaotlp.DefaultMetricsTopic {
				held[m.MemberID] = append(held[m.MemberID], tp.Partitions...)
			}
		}
	}
	return held, fmt.Sprintf("%v", held)
}

// TestIngesterGroupTakeover: two ingester processes share the partitions
// of one consumer group while data streams through Kafka into ClickHouse.
// One is killed (SIGKILL: no commit, no leaving the group); the other
// takes its partitions over, without a restart, and afterwards every
// point is stored exactly once: nothing the killed one had fetched but
// not committed is lost, and what it wrote but had not committed, which
// the survivor reads again, is not counted twice.
func TestIngesterGroupTakeover(t *testing.T) {
	srv := sharedClickHouse(t)
	cfg := chConfig(srv, srv.NewDatabase(t))
	runGroupTakeover(t, cfg)
}

// TestIngesterGroupTakeoverCluster is TestIngesterGroupTakeover with the
// ingesters writing to a ClickHouse cluster of two shards.
func TestIngesterGroupTakeoverCluster(t *testing.T) {
	const cluster = "ingest"
	servers := chtest.StartCluster(t, cluster, 2)
	cfg := chConfig(servers[0], "ingest_test")
	cfg.Cluster = cluster
	// The children open the store from the environment.
	t.Setenv(envClickHouseCluster, cluster)
	runGroupTakeover(t, cfg)
	// Both shards took a share.
	for i, srv := range servers {
		out, err := srv.Query(context.Background(), "SELECT uniqExact(fingerprint) FROM ingest_test.metric_samples_local")
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.TrimSpace(out); n == "0" {
			t.Errorf("shard %d holds no series", i)
		}
	}
}

func runGroupTakeover(t *testing.T, chCfg clickhouse.Config) {
	ctx := context.Background()
	brokers := startKafka(t)
	storeSpec := "clickhouse:" + chCfg.Addresses[0] + "/" + chCfg.Database
	coll := start(t, collectorRoleConfig(t, brokers), Deps{})
	snd := newSender(t, coll.grpc)

	const instances, series, rounds = 8, 25, 60
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Millisecond)
	var sent sync.WaitGroup
	sendRounds := func(from, to int) {
		defer sent.Done()
		for r := from; r < to; r++ {
			ts := base.Add(time.Duration(r) * time.Second)
			for inst := range instances {
				if _, err := snd.metrics.Export(ctx, pmetricotlp.NewExportRequestFromMetrics(instanceMetrics(inst, series, ts))); err != nil {
					t.Errorf("export: %v", err)
					return
				}
			}
			time.Sleep(30 * time.Millisecond)
		}
	}

	a := startChild(t, brokers, storeSpec)
	b := startChild(t, brokers, storeSpec)
	var shared map[string][]int
	testutil.Eventually(t, 90*time.Second, "both ingesters hold partitions", func() (bool, string) {
		held, state := groupAssignment(ctx, brokers, "kill-test")
		n := 0
		for _, ps := range held {
			n += len(ps)
		}
		shared = held
		return len(held) == 2 && n == kafkaPartitions && len(held[slices.Collect(maps.Keys(held))[0]]) > 0 &&
			len(held[slices.Collect(maps.Keys(held))[1]]) > 0, state
	})

	// Stream the first half, and kill one ingester while it is being
	// written: once the store has part of it.
	sent.Add(1)
	go sendRounds(0, rounds/2)
	store, err := clickhouse.Open(ctx, chCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	testutil.Eventually(t, 60*time.Second, "the ingesters write", func() (bool, string) {
		n := countSamples(t, store, nameIs("fleet_load"))
		return n > instances*series, fmt.Sprintf("%d samples", n)
	})
	a.kill(t)

	// The survivor, one of the two members seen, holds every partition.
	testutil.Eventually(t, 90*time.Second, "the survivor took every partition", func() (bool, string) {
		held, state := groupAssignment(ctx, brokers, "kill-test")
		for m, ps := range held {
			return len(held) == 1 && len(ps) == kafkaPartitions && shared[m] != nil, state
		}
		return false, state
	})
	sent.Add(1)
	go sendRounds(rounds/2, rounds)
	sent.Wait()
	// An export returns once the collector has queued it; wait until the
	// collector has written everything to Kafka before asking whether the
	// ingester has read it all.
	points := float64(instances * rounds * (series + 2))
	testutil.Eventually(t, 60*time.Second, "everything in Kafka", func() (bool, string) {
		got := metricValue(t, coll.reg, "aiops_collector_stored_items_total", map[string]string{"signal": "metrics"})
		return got == points, fmt.Sprintf("%v of %v points", got, points)
	})
	testutil.Eventually(t, 90*time.Second, "the survivor caught up", func() (bool, string) {
		return groupCaughtUp(ctx, brokers, "kill-test")
	})
	b.terminate(t)

	all := readSeries(t, store, nameIs("fleet_load"))
	got := 0
	for s, samples := range all {
		got += len(samples)
		if len(samples) != rounds {
			t.Errorf("%s: %d samples, want %d", s, len(samples), rounds)
		}
		for i := 1; i < len(samples); i++ {
			if samples[i].t == samples[i-1].t {
				t.Errorf("%s: timestamp %d stored twice", s, samples[i].t)
			}
		}
	}
	if len(all) != instances*series || got != instances*series*rounds {
		t.Fatalf("%d series with %d samples, want %d series with %d", len(all), got, instances*series, instances*series*rounds)
	}
}
