package collector

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

	"github.com/aiops-dev/aiops/collector/internal/kafkaotlp"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/storage"
	"github.com/aiops-dev/aiops/storage/embedded"
)

// Environment of the ingester child process.
const (
	envChild   = "AIOPS_TEST_INGESTER_CHILD"
	envBrokers = "AIOPS_TEST_BROKERS"
	envStore   = "AIOPS_TEST_STORE" // embedded:<dir> or clickhouse:<addr>/<database>
)

// TestIngesterChildProcess is not a test: it is the ingester that
// TestIngesterKilled starts (and kills) as a separate process.
func TestIngesterChildProcess(t *testing.T) {
	if os.Getenv(envChild) == "" {
		return
	}
	cfg := ingesterConfig(strings.Split(os.Getenv(envBrokers), ","))
	cfg.Kafka.GroupID = "kill-test"
	cfg.Kafka.SessionTimeout = 6 * time.Second
	// Small batches, so that a kill lands between a write and its commit
	// with some probability every time.
	cfg.Batch.MaxSize = 300
	runChild(t, cfg)
}

// runChild runs a collector with cfg over the store $AIOPS_TEST_STORE
// names until SIGTERM, then exits the process: 0 after a clean stop, 3 on
// any failure.
func runChild(t *testing.T, cfg Config) {
	store, closeStore, err := childStore(os.Getenv(envStore))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child store:", err)
		os.Exit(3)
	}
	c, err := New(cfg, Deps{Store: store, Logger: testutil.Logger(t)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child collector:", err)
		os.Exit(3)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := c.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "child run:", err)
		os.Exit(3)
	}
	closeStore()
	os.Exit(0)
}

func childStore(spec string) (storage.Store, func(), error) {
	kind, arg, _ := strings.Cut(spec, ":")
	switch kind {
	case "embedded":
		cfg := embedded.DefaultConfig()
		cfg.DataDir = arg
		s, err := embedded.Open(cfg, nil, nil)
		if err != nil {
			return nil, nil, err
		}
		return s, func() { s.Close() }, nil
	case "clickhouse":
		return openChildClickHouse(arg)
	}
	return nil, nil, fmt.Errorf("unknown store %q", spec)
}

type child struct {
	cmd  *exec.Cmd
	done chan error
}

func startChild(t *testing.T, brokers []string, storeSpec string) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestIngesterChildProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), envChild+"=1", envBrokers+"="+strings.Join(brokers, ","), envStore+"="+storeSpec)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); <-c.done })
	return c
}

func (c *child) kill(t *testing.T) {
	t.Helper()
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
	c.done <- nil // for the cleanup
}

func (c *child) terminate(t *testing.T) {
	t.Helper()
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		if err != nil {
			t.Errorf("ingester exited with %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("ingester did not stop within 60s of SIGTERM")
	}
	c.done <- nil
}

// groupCaughtUp reports whether the consumer group has committed every
// message of the metrics topic.
func groupCaughtUp(ctx context.Context, brokers []string, group string) (bool, string) {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second}
	parts := make([]int, kafkaPartitions)
	reqs := make([]kafka.OffsetRequest, kafkaPartitions)
	for p := range parts {
		parts[p] = p
		reqs[p] = kafka.LastOffsetOf(p)
	}
	topic := kafkaotlp.DefaultMetricsTopic
	ends, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return false, err.Error()
	}
	committed, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return false, err.Error()
	}
	end := map[int]int64{}
	for _, p := range ends.Topics[topic] {
		end[p.Partition] = p.LastOffset
	}
	state := ""
	ok := true
	for _, p := range committed.Topics[topic] {
		state += fmt.Sprintf(" p%d %d/%d", p.Partition, p.CommittedOffset, end[p.Partition])
		if p.CommittedOffset < end[p.Partition] {
			ok = false
		}
	}
	return ok && len(committed.Topics[topic]) == kafkaPartitions, state
}

// groupJoined reports whether the group is stable with every metrics
// partition assigned to members not in seen (a new process), and adds the
// members to seen when it is.
func groupJoined(ctx context.Context, brokers []string, group string, seen map[string]bool) (bool, string) {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second}
	resp, err := client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return false, err.Error()
	}
	if len(resp.Groups) != 1 {
		return false, fmt.Sprintf("%d groups described", len(resp.Groups))
	}
	g := resp.Groups[0]
	if g.Error != nil {
		return false, g.Error.Error()
	}
	if g.GroupState != "Stable" {
		return false, "state " + g.GroupState
	}
	assigned := 0
	for _, m := range g.Members {
		if seen[m.MemberID] {
			return false, "a member of an earlier process is still in the group"
		}
		for _, tp := range m.MemberAssignments.Topics {
			if tp.Topic == kafkaotlp.DefaultMetricsTopic {
				assigned += len(tp.Partitions)
			}
		}
	}
	if assigned != kafkaPartitions {
		return false, fmt.Sprintf("%d of %d metrics partitions assigned", assigned, kafkaPartitions)
	}
	for _, m := range g.Members {
		seen[m.MemberID] = true
	}
	return true, ""
}

// TestIngesterKilled streams data through Kafka while the ingester
// process is killed (SIGKILL: no shutdown, no commit) twice and started
// again. Afterwards every point is in the store exactly once.
func TestIngesterKilled(t *testing.T) {
	brokers := startKafka(t)
	dir := t.TempDir()
	storeSpec := "embedded:" + dir
	runKillScenario(t, brokers, storeSpec, func() (storage.Store, func()) {
		s, closeStore, err := childStore(storeSpec)
		if err != nil {
			t.Fatal(err)
		}
		return s, closeStore
	})
}

func runKillScenario(t *testing.T, brokers []string, storeSpec string, openStore func() (storage.Store, func())) {
	ctx := context.Background()
	coll := start(t, collectorRoleConfig(t, brokers), Deps{})
	snd := newSender(t, coll.grpc)

	const instances, series, rounds = 4, 50, 40
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Millisecond)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for r := range rounds {
			ts := base.Add(time.Duration(r) * time.Second)
			for inst := range instances {
				if _, err := snd.metrics.Export(ctx, pmetricotlp.NewExportRequestFromMetrics(instanceMetrics(inst, series, ts))); err != nil {
					t.Errorf("export: %v", err)
					return
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	// Each child is killed once it holds the metrics partitions, so the
	// kill lands while it fetches, writes and commits; killed while still
	// joining, it would test the broker's handling of a half-joined
	// member instead, and the rebalance after it takes longer than the
	// stream on a loaded machine.
	seen := map[string]bool{}
	for i := range 2 {
		c := startChild(t, brokers, storeSpec)
		testutil.Eventually(t, 60*time.Second, "child joined the group", func() (bool, string) {
			return groupJoined(ctx, brokers, "kill-test", seen)
		})
		time.Sleep(time.Duration(100+300*i) * time.Millisecond)
		c.kill(t)
	}
	wg.Wait()
	// Exports return once queued in the collector: wait until it has
	// written everything to Kafka, or "caught up" below could come before
	// the last messages and the check after it miss them.
	points := float64(instances * rounds * (series + 2))
	testutil.Eventually(t, 60*time.Second, "everything in Kafka", func() (bool, string) {
		got := metricValue(t, coll.reg, "aiops_collector_stored_items_total", map[string]string{"signal": "metrics"})
		return got == points, fmt.Sprintf("%v of %v points", got, points)
	})
	c := startChild(t, brokers, storeSpec)
	testutil.Eventually(t, 60*time.Second, "last child joined the group", func() (bool, string) {
		return groupJoined(ctx, brokers, "kill-test", seen)
	})
	testutil.Eventually(t, 90*time.Second, "ingester caught up", func() (bool, string) {
		return groupCaughtUp(ctx, brokers, "kill-test")
	})
	c.terminate(t)

	store, closeStore := openStore()
	defer closeStore()
	want := instances * series * rounds
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
	if len(all) != instances*series || got != want {
		t.Fatalf("%d series with %d samples, want %d series with %d", len(all), got, instances*series, want)
	}
}
