package collector

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/aiops-dev/aiops/collector/internal/kafkaotlp"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage"
)

const kafkaPartitions = 4

// startKafka starts an in-process Kafka broker with the three topics.
func startKafka(t testing.TB) []string {
	t.Helper()
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.SeedTopics(kafkaPartitions, kafkaotlp.DefaultMetricsTopic, kafkaotlp.DefaultLogsTopic, kafkaotlp.DefaultSpansTopic),
	)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

func collectorRoleConfig(t testing.TB, brokers []string) Config {
	cfg := allInOneConfig(t)
	cfg.Role = RoleCollector
	cfg.Kafka.Brokers = brokers
	cfg.Batch.MinSize = 1000
	cfg.Batch.MaxSize = 5000
	return cfg
}

func ingesterConfig(brokers []string) Config {
	cfg := DefaultConfig()
	cfg.Role = RoleIngester
	cfg.Kafka.Brokers = brokers
	cfg.Batch.FlushTimeout = 50 * time.Millisecond
	cfg.Batch.MaxSize = 5000
	return cfg
}

// instanceMetrics returns one request from service instance inst with
// `series` gauge series and a counter, all at ts.
func instanceMetrics(inst, series int, ts time.Time) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "fleet")
	rm.Resource().Attributes().PutStr("service.instance.id", fmt.Sprintf("i-%d", inst))
	ms := rm.ScopeMetrics().AppendEmpty().Metrics()
	g := ms.AppendEmpty()
	g.SetName("fleet_load")
	gauge := g.SetEmptyGauge()
	for s := range series {
		dp := gauge.DataPoints().AppendEmpty()
		dp.Attributes().PutInt("cpu", int64(s))
		dp.SetTimestamp(pcommon.NewTimestampFromTime(ts))
		dp.SetDoubleValue(float64(s))
	}
	c := ms.AppendEmpty()
	c.SetName("fleet_ops")
	sum := c.SetEmptySum()
	sum.SetIsMonotonic(true)
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	dp := sum.DataPoints().AppendEmpty()
	dp.SetStartTimestamp(pcommon.NewTimestampFromTime(ts.Add(-time.Hour)))
	dp.SetTimestamp(pcommon.NewTimestampFromTime(ts))
	dp.SetIntValue(ts.UnixMilli() % 100000)
	// A delta counter: 2 per second; stored as a cumulative counter.
	d := ms.AppendEmpty()
	d.SetName("fleet_jobs")
	dsum := d.SetEmptySum()
	dsum.SetIsMonotonic(true)
	dsum.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	ddp := dsum.DataPoints().AppendEmpty()
	ddp.SetStartTimestamp(pcommon.NewTimestampFromTime(ts.Add(-time.Second)))
	ddp.SetTimestamp(pcommon.NewTimestampFromTime(ts))
	ddp.SetIntValue(2)
	return md
}

func instanceLogs(inst, n int, ts time.Time) plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "fleet")
	rl.Resource().Attributes().PutStr("service.instance.id", fmt.Sprintf("i-%d", inst))
	lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
	for i := range n {
		lr := lrs.AppendEmpty()
		lr.SetTimestamp(pcommon.NewTimestampFromTime(ts.Add(time.Duration(i) * time.Microsecond)))
		lr.Body().SetStr(fmt.Sprintf("instance %d line %d", inst, i))
	}
	return ld
}

func instanceSpans(inst, n int, ts time.Time) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "fleet")
	rs.Resource().Attributes().PutStr("service.instance.id", fmt.Sprintf("i-%d", inst))
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	for i := range n {
		s := spans.AppendEmpty()
		s.SetName("op")
		s.SetTraceID(pcommon.TraceID{byte(inst + 1), byte(i + 1), 1})
		s.SetSpanID(pcommon.SpanID{byte(inst + 1), byte(i + 1), 2})
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(ts))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(ts.Add(time.Millisecond)))
	}
	return td
}

// sender sends raw OTLP over gRPC.
type sender struct {
	conn    *grpc.ClientConn
	metrics pmetricotlp.GRPCClient
	logs    plogotlp.GRPCClient
	traces  ptraceotlp.GRPCClient
}

func newSender(t testing.TB, addr string) *sender {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &sender{conn: conn, metrics: pmetricotlp.NewGRPCClient(conn), logs: plogotlp.NewGRPCClient(conn), traces: ptraceotlp.NewGRPCClient(conn)}
}

// TestKafkaPipeline: OTLP → collector role → Kafka → ingester role →
// store. Every point, log record and span arrives once; each resource's
// messages stay on one partition.
func TestKafkaPipeline(t *testing.T) {
	ctx := context.Background()
	brokers := startKafka(t)
	store := storetest.Embedded(t)

	coll := start(t, collectorRoleConfig(t, brokers), Deps{})
	ing := start(t, ingesterConfig(brokers), Deps{Store: store})

	const instances, series, rounds = 8, 50, 4
	snd := newSender(t, coll.grpc)
	base := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	for r := range rounds {
		ts := base.Add(time.Duration(r) * time.Second)
		for inst := range instances {
			if _, err := snd.metrics.Export(ctx, pmetricotlp.NewExportRequestFromMetrics(instanceMetrics(inst, series, ts))); err != nil {
				t.Fatalf("export metrics: %v", err)
			}
			if _, err := snd.logs.Export(ctx, plogotlp.NewExportRequestFromLogs(instanceLogs(inst, 5, ts))); err != nil {
				t.Fatalf("export logs: %v", err)
			}
		}
	}
	for inst := range instances {
		if _, err := snd.traces.Export(ctx, ptraceotlp.NewExportRequestFromTraces(instanceSpans(inst, 3, base))); err != nil {
			t.Fatalf("export spans: %v", err)
		}
	}

	wantGauge := instances * series * rounds
	testutil.Eventually(t, 60*time.Second, "everything ingested", func() (bool, string) {
		g := countSamples(t, store, nameIs("fleet_load"))
		c := countSamples(t, store, nameIs("fleet_ops_total"))
		logs, _ := store.QueryLogs(ctx, storage.LogQuery{ServiceName: "fleet", Limit: 100000})
		spans, _ := store.QuerySpans(ctx, storage.SpanQuery{ServiceName: "fleet", Limit: 100000})
		return g == wantGauge && c == instances*rounds && len(logs) == instances*rounds*5 && len(spans) == instances*3,
			fmt.Sprintf("gauge %d/%d counter %d/%d logs %d/%d spans %d/%d", g, wantGauge, c, instances*rounds,
				len(logs), instances*rounds*5, len(spans), instances*3)
	})
	for s, samples := range readSeries(t, store, nameIs("fleet_load")) {
		if len(samples) != rounds {
			t.Errorf("%s: %d samples, want %d", s, len(samples), rounds)
		}
	}
	// Deltas went through Kafka as deltas and came out cumulative.
	testutil.Eventually(t, 10*time.Second, "delta counter", func() (bool, string) {
		n := countSamples(t, store, nameIs("fleet_jobs_total"))
		return n == instances*rounds, fmt.Sprintf("%d of %d", n, instances*rounds)
	})
	for s, samples := range readSeries(t, store, nameIs("fleet_jobs_total")) {
		for i, smp := range samples {
			if smp.v != float64(2*(i+1)) {
				t.Errorf("%s sample %d = %v, want %d (cumulative of deltas of 2)", s, i, smp.v, 2*(i+1))
			}
		}
	}
	points := float64(instances * rounds * (series + 2))
	if got := metricValue(t, coll.reg, "aiops_collector_stored_items_total", map[string]string{"signal": "metrics"}); got != points {
		t.Errorf("collector wrote %v points to Kafka, want %v", got, points)
	}
	testutil.Eventually(t, 10*time.Second, "ingester counts", func() (bool, string) {
		got := metricValue(t, ing.reg, "aiops_collector_stored_items_total", map[string]string{"signal": "metrics"})
		return got == points, fmt.Sprintf("ingester stored %v points, want %v", got, points)
	})

	// Every message of one resource is on one partition.
	partitionsOf := map[string]map[int]bool{}
	for p := range kafkaPartitions {
		rd := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: kafkaotlp.DefaultMetricsTopic, Partition: p, MaxWait: 100 * time.Millisecond})
		for {
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			msg, err := rd.ReadMessage(rctx)
			cancel()
			if err != nil {
				break
			}
			md, err := (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(msg.Value)
			if err != nil {
				t.Fatalf("partition %d offset %d: %v", p, msg.Offset, err)
			}
			for i := range md.ResourceMetrics().Len() {
				key := kafkaotlp.ResourceKey(md.ResourceMetrics().At(i).Resource().Attributes())
				if string(msg.Key) != key {
					t.Errorf("message key %q holds resource %q", msg.Key, key)
				}
				if partitionsOf[key] == nil {
					partitionsOf[key] = map[int]bool{}
				}
				partitionsOf[key][p] = true
			}
		}
		rd.Close()
	}
	if len(partitionsOf) != instances {
		t.Errorf("found %d resources in the topic, want %d", len(partitionsOf), instances)
	}
	for key, ps := range partitionsOf {
		if len(ps) != 1 {
			t.Errorf("resource %q spread over partitions %v", key, ps)
		}
	}
}

// TestIngesterWaitsForStore: while the store is down the ingester retries
// and commits nothing; it stops promptly all the same, and a new ingester
// writes everything once the store is back.
func TestIngesterWaitsForStore(t *testing.T) {
	ctx := context.Background()
	brokers := startKafka(t)
	store := &gatedStore{Store: storetest.Embedded(t)}
	store.down.Store(true)
	coll := start(t, collectorRoleConfig(t, brokers), Deps{})
	cfg := ingesterConfig(brokers)
	cfg.Kafka.GroupID = "outage-test"
	cfg.Kafka.SessionTimeout = 6 * time.Second
	ing := start(t, cfg, Deps{Store: store})

	snd := newSender(t, coll.grpc)
	base := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	for r := range 3 {
		for inst := range 4 {
			if _, err := snd.metrics.Export(ctx, pmetricotlp.NewExportRequestFromMetrics(instanceMetrics(inst, 20, base.Add(time.Duration(r)*time.Second)))); err != nil {
				t.Fatal(err)
			}
		}
	}
	testutil.Eventually(t, 30*time.Second, "ingester tried and failed", func() (bool, string) {
		n := metricValue(t, ing.reg, "aiops_collector_export_failures_total", map[string]string{"signal": "metrics"})
		return n > 0, fmt.Sprintf("%v failures", n)
	})
	if ok, state := groupCaughtUp(ctx, brokers, "outage-test"); ok {
		t.Fatalf("offsets committed while the store was down: %s", state)
	}
	began := time.Now()
	ing.stop(t)
	if d := time.Since(began); d > 30*time.Second {
		t.Errorf("shutdown with the store down took %s", d)
	}

	store.down.Store(false)
	start(t, cfg, Deps{Store: store})
	testutil.Eventually(t, 60*time.Second, "everything written after the outage", func() (bool, string) {
		n := countSamples(t, store, nameIs("fleet_load"))
		return n == 3*4*20, fmt.Sprintf("%d of %d", n, 3*4*20)
	})
	testutil.Eventually(t, 30*time.Second, "offsets committed", func() (bool, string) {
		return groupCaughtUp(ctx, brokers, "outage-test")
	})
}

// TestKafkaMalformedAndOversized: a message that is not OTLP is counted,
// skipped and committed past without blocking its partition; payloads
// larger than kafka.max_message_bytes are cut into several messages and
// arrive whole.
func TestKafkaMalformedAndOversized(t *testing.T) {
	ctx := context.Background()
	brokers := startKafka(t)
	store := storetest.Embedded(t)

	// Garbage first, on every partition, so that the good data behind it
	// can only arrive if the ingester gets past it.
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: kafkaotlp.DefaultMetricsTopic, Balancer: &kafka.RoundRobin{}, BatchTimeout: time.Millisecond}
	var garbage []kafka.Message
	for i := range kafkaPartitions {
		garbage = append(garbage, kafka.Message{Value: []byte(fmt.Sprintf("\x0a\xff\xffnot otlp %d", i))})
	}
	if err := w.WriteMessages(ctx, garbage...); err != nil {
		t.Fatal(err)
	}
	w.Close()

	ccfg := collectorRoleConfig(t, brokers)
	ccfg.Kafka.MaxMessageBytes = 8 << 10
	coll := start(t, ccfg, Deps{})
	icfg := ingesterConfig(brokers)
	icfg.Kafka.GroupID = "malformed-test"
	ing := start(t, icfg, Deps{Store: store})

	snd := newSender(t, coll.grpc)
	ts := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	// One resource with 2000 points: far more than 8 KiB.
	if _, err := snd.metrics.Export(ctx, pmetricotlp.NewExportRequestFromMetrics(instanceMetrics(0, 2000, ts))); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 60*time.Second, "oversized payload stored", func() (bool, string) {
		n := countSamples(t, store, nameIs("fleet_load"))
		return n == 2000, fmt.Sprintf("%d of 2000", n)
	})
	if got := metricValue(t, coll.reg, "aiops_collector_kafka_produced_messages_total", map[string]string{"topic": kafkaotlp.DefaultMetricsTopic}); got < 5 {
		t.Errorf("the 2000 points went out in %v messages, want them cut into several", got)
	}
	if got := metricValue(t, ing.reg, "aiops_collector_kafka_malformed_messages_total", nil); got != kafkaPartitions {
		t.Errorf("malformed messages counted: %v, want %d", got, kafkaPartitions)
	}
	testutil.Eventually(t, 30*time.Second, "committed past the garbage", func() (bool, string) {
		return groupCaughtUp(ctx, brokers, "malformed-test")
	})
}

// TestCollectorWaitsForKafka: while Kafka is down the collector role
// accepts data into its persistent queue and retries; when a broker is
// back on the same address, everything is written.
func TestCollectorWaitsForKafka(t *testing.T) {
	ctx := context.Background()
	addr := freeAddr(t)
	_, portStr, _ := strings.Cut(addr, ":")
	port, _ := strconv.Atoi(portStr)
	newCluster := func() *kfake.Cluster {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port),
			kfake.SeedTopics(kafkaPartitions, kafkaotlp.DefaultMetricsTopic, kafkaotlp.DefaultLogsTopic, kafkaotlp.DefaultSpansTopic))
		if err != nil {
			t.Fatalf("start kfake: %v", err)
		}
		return c
	}
	first := newCluster()
	brokers := first.ListenAddrs()
	coll := start(t, collectorRoleConfig(t, brokers), Deps{})
	first.Close()

	snd := newSender(t, coll.grpc)
	ts := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	for inst := range 4 {
		if _, err := snd.metrics.Export(ctx, pmetricotlp.NewExportRequestFromMetrics(instanceMetrics(inst, 25, ts))); err != nil {
			t.Fatalf("export while Kafka is down: %v", err)
		}
	}
	testutil.Eventually(t, 30*time.Second, "writes to Kafka fail", func() (bool, string) {
		n := metricValue(t, coll.reg, "aiops_collector_export_failures_total", map[string]string{"signal": "metrics"})
		return n > 0, fmt.Sprintf("%v failures", n)
	})

	second := newCluster()
	t.Cleanup(second.Close)
	store := storetest.Embedded(t)
	start(t, ingesterConfig(brokers), Deps{Store: store})
	testutil.Eventually(t, 60*time.Second, "queued data written once Kafka is back", func() (bool, string) {
		n := countSamples(t, store, nameIs("fleet_load"))
		return n == 100, fmt.Sprintf("%d of 100", n)
	})
}
