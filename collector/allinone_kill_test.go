package collector

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	promstorage "github.com/prometheus/prometheus/storage"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage/clickhouse"
)

// Environment of the all-in-one child process.
const (
	envAllInOneChild = "AIOPS_TEST_ALLINONE_CHILD" // the OTLP/gRPC address
	envQueueDir      = "AIOPS_TEST_QUEUE_DIR"
	envClickHouseWAL = "AIOPS_TEST_CLICKHOUSE_WAL" // the ClickHouse store's write-ahead log dir
)

// TestAllInOneChildProcess is not a test: it is the all-in-one collector
// that TestAllInOneKilled starts (and kills) as a separate process.
func TestAllInOneChildProcess(t *testing.T) {
	addr := os.Getenv(envAllInOneChild)
	if addr == "" {
		return
	}
	cfg := DefaultConfig()
	cfg.OTLP.GRPCEndpoint, cfg.OTLP.HTTPEndpoint = addr, "off"
	cfg.Queue.Dir = os.Getenv(envQueueDir)
	runChild(t, cfg)
}

// TestAllInOneKilled: the all-in-one collector writes metrics through to
// its store; it is SIGKILLed while clients stream. Every point whose
// request was acknowledged is in the store afterwards: write-through
// acknowledges only after the store committed it to its write-ahead log
// (the embedded TSDB's, or the ClickHouse store's, which the next store
// opened on it drains).
func TestAllInOneKilled(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		dir := t.TempDir()
		testAllInOneKilled(t, []string{envStore + "=embedded:" + dir}, func() promstorage.Queryable {
			return storetest.EmbeddedIn(t, dir)
		})
	})
	t.Run("clickhouse", func(t *testing.T) {
		srv := sharedClickHouse(t)
		db, walDir := srv.NewDatabase(t), t.TempDir()
		env := []string{envStore + "=clickhouse:" + srv.NativeAddr() + "/" + db, envClickHouseWAL + "=" + walDir}
		testAllInOneKilled(t, env, func() promstorage.Queryable {
			cfg := chConfig(srv, db)
			cfg.WAL.Mode, cfg.WAL.Dir = clickhouse.WALOn, walDir
			s := openClickHouseStore(t, cfg)
			if n := s.WALPending(); n == 0 {
				t.Errorf("the killed process left nothing in its write-ahead log; the kill tested nothing of it")
			}
			if err := s.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			return s
		})
	})
}

func testAllInOneKilled(t *testing.T, env []string, reopen func() promstorage.Queryable) {
	queueDir, addr := t.TempDir(), freeAddr(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestAllInOneChildProcess$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), envAllInOneChild+"="+addr, envQueueDir+"="+queueDir), env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})

	snd := newSender(t, addr)
	const instances, series = 4, 50
	const step = 100 * time.Millisecond // between rounds
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Millisecond)
	send := func(inst, round int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := snd.metrics.Export(ctx, pmetricotlp.NewExportRequestFromMetrics(instanceMetrics(inst, series, base.Add(time.Duration(round)*step))))
		return err
	}
	// Wait for the child to listen.
	testutil.Eventually(t, 60*time.Second, "child collector listening", func() (bool, string) {
		err := send(0, 0)
		return err == nil, fmt.Sprint(err)
	})
	// One client per instance streams rounds until the kill; the kill
	// lands while requests are in flight. A request counts as acknowledged
	// only if its Export returned without error.
	var (
		mu    sync.Mutex
		acked = map[string]bool{"0/0": true} // instance/round
		wg    sync.WaitGroup
		stop  atomic.Bool
	)
	const maxRounds = 5000 // 500 s of rounds after base, which is 10 minutes ago
	for inst := range instances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 1; round < maxRounds && !stop.Load(); round++ {
				if send(inst, round) == nil {
					mu.Lock()
					acked[fmt.Sprintf("%d/%d", inst, round)] = true
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(400 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
	exited <- nil // for the cleanup
	stop.Store(true)
	wg.Wait()
	if len(acked) >= instances*(maxRounds-1) {
		t.Fatalf("all %d requests were acknowledged before the kill; it landed too late to test anything", len(acked))
	}
	if len(acked) < 20 {
		t.Fatalf("only %d requests acknowledged before the kill", len(acked))
	}

	store := reopen()
	stored := map[string]int{}
	for s, samples := range readSeries(t, store, nameIs("fleet_load")) {
		inst := s[strings.Index(s, `instance="i-`)+len(`instance="i-`):]
		inst = inst[:strings.IndexByte(inst, '"')]
		for _, smp := range samples {
			round := (smp.t - base.UnixMilli()) / step.Milliseconds()
			stored[fmt.Sprintf("%s/%d", inst, round)]++
		}
	}
	for k := range acked {
		if stored[k] != series {
			t.Errorf("request %s (instance/round) was acknowledged, %d of its %d points stored", k, stored[k], series)
		}
	}
	t.Logf("%d requests acknowledged before the kill, all stored", len(acked))
}
