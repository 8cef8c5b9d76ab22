package lease

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/aiops-dev/aiops/internal/testutil"
)

const topic = "aiops-lease"

func startKafka(t *testing.T) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

func testConfig(brokers []string) KafkaConfig {
	return KafkaConfig{Brokers: brokers, Topic: topic, Group: "aiops-incidents", SessionTimeout: 6 * time.Second}
}

// holders tracks which of several in-process electors lead.
type holders struct {
	mu      sync.Mutex
	leading map[int]Term
	epochs  []int64
	overlap bool
}

func (h *holders) lead(i int) func(ctx context.Context, t Term) {
	return func(ctx context.Context, t Term) {
		h.mu.Lock()
		if len(h.leading) > 0 {
			h.overlap = true
		}
		h.leading[i] = t
		h.epochs = append(h.epochs, t.Epoch)
		h.mu.Unlock()
		<-ctx.Done()
		h.mu.Lock()
		delete(h.leading, i)
		h.mu.Unlock()
	}
}

func (h *holders) leader() (int, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range h.leading {
		return i, len(h.leading) == 1
	}
	return -1, false
}

// TestOneHolder: of three replicas one holds the lease; when it stops,
// another takes it over at once (the stopping one leaves the group), in a
// later epoch, and never two at a time.
func TestOneHolder(t *testing.T) {
	brokers := startKafka(t)
	h := &holders{leading: map[int]Term{}}
	cancels := make([]context.CancelFunc, 3)
	var wg sync.WaitGroup
	for i := range cancels {
		e, err := NewKafka(testConfig(brokers), testutil.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancels[i] = cancel
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.Run(ctx, h.lead(i)); err != nil {
				t.Errorf("elector %d: %v", i, err)
			}
		}()
	}
	defer func() {
		for _, c := range cancels {
			c()
		}
		wg.Wait()
	}()

	var first int
	testutil.Eventually(t, 60*time.Second, "one holder", func() (bool, string) {
		i, one := h.leader()
		first = i
		return one, fmt.Sprintf("leading: %v", h.leading)
	})
	cancels[first]()
	began := time.Now()
	testutil.Eventually(t, 30*time.Second, "another holder", func() (bool, string) {
		i, one := h.leader()
		return one && i != first, fmt.Sprintf("leading: %v", h.leading)
	})
	t.Logf("handed over in %s after a clean stop", time.Since(began))
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.overlap {
		t.Error("two electors led at once")
	}
	for i := 1; i < len(h.epochs); i++ {
		if h.epochs[i] <= h.epochs[i-1] {
			t.Errorf("epochs %v do not increase", h.epochs)
		}
	}
}

func TestValidate(t *testing.T) {
	good := testConfig([]string{"k:9092"})
	for _, c := range []struct {
		mutate func(*KafkaConfig)
		key    string
	}{
		{func(c *KafkaConfig) { c.Brokers = nil }, "x.brokers"},
		{func(c *KafkaConfig) { c.Topic = "" }, "x.topic"},
		{func(c *KafkaConfig) { c.Group = "" }, "x.group"},
		{func(c *KafkaConfig) { c.SessionTimeout = time.Millisecond }, "x.session_timeout"},
	} {
		cfg := good
		c.mutate(&cfg)
		if err := cfg.Validate("x"); err == nil || !strings.HasPrefix(err.Error(), c.key+":") {
			t.Errorf("%s: %v", c.key, err)
		}
	}
	if err := good.Validate("x"); err != nil {
		t.Error(err)
	}
}

const envChild, envBrokers = "AIOPS_TEST_LEASE_CHILD", "AIOPS_TEST_LEASE_BROKERS"

// TestLeaseChildProcess is not a test: it is a replica that
// TestHolderKilled starts and kills. It prints "lead EPOCH" when it takes
// the lease and "end EPOCH" when it loses it.
func TestLeaseChildProcess(t *testing.T) {
	if os.Getenv(envChild) == "" {
		return
	}
	e, err := NewKafka(testConfig(strings.Split(os.Getenv(envBrokers), ",")), nil)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	ctx, stop := signalContext()
	defer stop()
	err = e.Run(ctx, func(ctx context.Context, term Term) {
		fmt.Printf("lead %d\n", term.Epoch)
		<-ctx.Done()
		fmt.Printf("end %d\n", term.Epoch)
	})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	os.Exit(0)
}

func signalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// The parent kills children with SIGKILL; reading stdin until
		// it closes ends a child whose parent died.
		bufio.NewReader(os.Stdin).ReadString('\n')
		cancel()
	}()
	return ctx, cancel
}

type replica struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

func (r *replica) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.lines) == 0 {
		return ""
	}
	return r.lines[len(r.lines)-1]
}

// startReplica re-runs the test binary as a replica: the child test
// named run, with env added.
func startReplica(t *testing.T, run string, env ...string) *replica {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^"+run+"$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), envChild+"=1"), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &replica{cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			r.mu.Lock()
			r.lines = append(r.lines, sc.Text())
			r.mu.Unlock()
		}
		cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-r.done
		}
	})
	return r
}

// TestHolderKilled: two replica processes; the holder is SIGKILLed (no
// leaving the group, no goodbye) and the other takes the lease over
// within the session timeout and a rebalance, in a later epoch.
func TestHolderKilled(t *testing.T) {
	brokers := startKafka(t)
	rs := []*replica{startReplica(t, "TestLeaseChildProcess", envBrokers+"="+strings.Join(brokers, ",")), startReplica(t, "TestLeaseChildProcess", envBrokers+"="+strings.Join(brokers, ","))}
	epoch, next, took := killHolder(t, rs)
	if next <= epoch {
		t.Errorf("new term's epoch %d, the killed holder's %d: want it later", next, epoch)
	}
	// The session timeout (6 s) plus a rebalance; generous for a loaded
	// machine, but it must not wait for anything open-ended.
	if limit := 3 * testConfig(nil).SessionTimeout; took > limit {
		t.Errorf("took %s to replace the killed holder, want within %s", took, limit)
	}
	t.Logf("killed holder replaced after %s", took)
}

// killHolder waits for one of two replicas to lead, SIGKILLs it (no
// release, no goodbye) and waits for the other to lead. It returns the
// killed holder's term, the new one's, and how long the lease was
// vacant from the kill.
func killHolder(t *testing.T, rs []*replica) (killedTerm, nextTerm int64, took time.Duration) {
	t.Helper()
	var holder int
	testutil.Eventually(t, 60*time.Second, "one replica holds the lease", func() (bool, string) {
		var leading []int
		for i, r := range rs {
			if strings.HasPrefix(r.last(), "lead ") {
				leading = append(leading, i)
			}
		}
		if len(leading) == 1 {
			holder = leading[0]
		}
		return len(leading) == 1, fmt.Sprintf("%q %q", rs[0].last(), rs[1].last())
	})
	fmt.Sscanf(rs[holder].last(), "lead %d", &killedTerm)
	rs[holder].cmd.Process.Signal(syscall.SIGKILL)
	<-rs[holder].done
	killed := time.Now()

	other := rs[1-holder]
	testutil.Eventually(t, 60*time.Second, "the other replica holds the lease", func() (bool, string) {
		return strings.HasPrefix(other.last(), "lead "), other.last()
	})
	took = time.Since(killed)
	fmt.Sscanf(other.last(), "lead %d", &nextTerm)
	return killedTerm, nextTerm, took
}
