package collector

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/aiops-dev/aiops/collector/internal/kafkaotlp"
	"github.com/aiops-dev/aiops/internal/chtest"
	"github.com/aiops-dev/aiops/storage/clickhouse"
)

// BenchmarkIngesterFromKafka measures one ingester's throughput: the
// metrics topic is filled first (100 resources × 30 rounds of 1,002
// points, about 3 M points, as the collector role writes them), then an
// ingester reads it all into ClickHouse, one server or a cluster of two
// shards on the same machine. points/s is from the ingester's first
// stored point to its last, so the group join is not counted; the broker
// (kfake) runs in the benchmark's process and shares its cores.
//
//	go test -run '^$' -bench IngesterFromKafka -benchtime 1x -count 3 ./collector/
func BenchmarkIngesterFromKafka(b *testing.B) {
	for _, shards := range []int{1, 2} {
		b.Run(fmt.Sprintf("shards=%d", shards), func(b *testing.B) {
			var cfg clickhouse.Config
			if shards == 1 {
				cfg = chConfig(chtest.Start(b), "bench")
			} else {
				servers := chtest.StartCluster(b, "bench", shards)
				cfg = chConfig(servers[0], "bench")
				cfg.Cluster = "bench"
			}
			const resources, series, rounds = 100, 1000, 30
			brokers := startKafka(b)
			fillMetricsTopic(b, brokers, resources, series, rounds)
			points := float64(resources * rounds * (series + 2))

			for i := range b.N {
				cfg := cfg
				cfg.Database = fmt.Sprintf("bench_%d", i)
				store, err := clickhouse.Open(context.Background(), cfg, nil)
				if err != nil {
					b.Fatal(err)
				}
				icfg := ingesterConfig(brokers)
				icfg.Kafka.GroupID = fmt.Sprintf("bench-%d", i)
				icfg.Batch.MaxSize = 50000
				icfg.Batch.FlushTimeout = 200 * time.Millisecond
				b.StartTimer()
				ing := start(b, icfg, Deps{Store: store})
				var first time.Time
				for {
					got := metricValue(b, ing.reg, "aiops_collector_stored_items_total", map[string]string{"signal": "metrics"})
					if got > 0 && first.IsZero() {
						first = time.Now()
					}
					if got >= points {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				elapsed := time.Since(first)
				b.StopTimer()
				b.ReportMetric(points/elapsed.Seconds(), "points/s")
				ing.stop(b)
				store.Close()
			}
		})
	}
}

// fillMetricsTopic writes rounds × resources OTLP metrics messages, keyed
// by resource as the collector role keys them.
func fillMetricsTopic(b *testing.B, brokers []string, resources, series, rounds int) {
	b.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: kafkaotlp.DefaultMetricsTopic, Balancer: &kafka.Hash{}, BatchSize: 100, BatchBytes: 64 << 20, BatchTimeout: 10 * time.Millisecond}
	defer w.Close()
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	for r := range rounds {
		msgs := make([]kafka.Message, 0, resources)
		for inst := range resources {
			md := instanceMetrics(inst, series, base.Add(time.Duration(r)*15*time.Second))
			payload, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
			if err != nil {
				b.Fatal(err)
			}
			key := kafkaotlp.ResourceKey(md.ResourceMetrics().At(0).Resource().Attributes())
			msgs = append(msgs, kafka.Message{Key: []byte(key), Value: payload})
		}
		if err := w.WriteMessages(context.Background(), msgs...); err != nil {
			b.Fatal(err)
		}
	}
}
