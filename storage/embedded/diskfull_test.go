package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/storage"
)

// mountTmpfs mounts a tmpfs of size bytes on a fresh directory, as root
// (CI runs the tests as root).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount a %s tmpfs (the test needs root, as CI runs): %v: %s", size, err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	return mnt
}

// fillDisk writes path until the disk is full, as another program would.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}

// logRecorder keeps the messages logged, for asserting on what the store
// says it did.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.msgs = append(r.msgs, rec.Message)
	r.mu.Unlock()
	return nil
}
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

func (r *logRecorder) said(prefix string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.msgs {
		if strings.HasPrefix(m, prefix) {
			return true
		}
	}
	return false
}

// TestDiskFullLosesNothingAcknowledged fills the disk under the store
// from outside (another program), which tears a record in the TSDB's log:
// from the first failed write on, nothing is acknowledged and Ready says
// why; once there is room again the store reopens its TSDB and takes
// writes; and after a restart on a disk that is full again, every
// acknowledged sample, log record and event is there.
func TestDiskFullLosesNothingAcknowledged(t *testing.T) {
	mnt := mountTmpfs(t, "40m")
	hog := filepath.Join(mnt, "hog")
	rec := &logRecorder{}
	cfg := DefaultConfig()
	cfg.DataDir = filepath.Join(mnt, "data")
	// A reserve smaller than the log's segment, which the TSDB's own
	// repair of a torn record would need to rewrite.
	cfg.DiskReserveMiB = 1
	open := func() *Store {
		t.Helper()
		s, err := Open(cfg, slog.New(rec), nil, WithClock(testutil.NewClock(testutil.Epoch).Now))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	}
	s := open()
	defer func() { s.Close() }()
	ctx := context.Background()

	// A batch spans pages of the log (3,000 samples, over 32 KiB), so
	// that a failed write can tear it.
	const series, perSeries = 300, 10
	start := testutil.Epoch.UnixMilli()
	acked := map[int]bool{} // batches acknowledged
	var ackedLogs, ackedEvents []string
	batch := 0
	write := func() error {
		b := batch
		batch++
		app := s.AppenderV2(ctx)
		for i := range series * perSeries {
			ls := labels.FromStrings("__name__", "m", "i", fmt.Sprint(i%series))
			if _, err := app.Append(0, ls, 0, start+int64(b*perSeries+i/series)*1000, float64(b), nil, nil, promstorage.AOptions{}); err != nil {
				app.Rollback()
				return err
			}
		}
		if err := app.Commit(); err != nil {
			return err
		}
		acked[b] = true
		id := fmt.Sprintf("b%05d", b)
		body := id + strings.Repeat("x", 2000)
		if err := s.AppendLogs(ctx, []storage.LogRecord{{Timestamp: testutil.Epoch.Add(time.Duration(b) * time.Second), Body: body}}); err == nil {
			ackedLogs = append(ackedLogs, body)
		} else if !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("append logs: %v, want a retryable error", err)
		}
		if err := s.AppendEvents(ctx, []storage.Event{{ID: id, Time: testutil.Epoch, Kind: "k", Payload: bytes.Repeat([]byte{'e'}, 2000)}}); err == nil {
			ackedEvents = append(ackedEvents, id)
		} else if !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("append events: %v, want a retryable error", err)
		}
		return nil
	}
	for range 150 {
		if err := write(); err != nil {
			t.Fatalf("write on a disk with room: %v", err)
		}
	}

	// tear fills the disk as another program would, faster than the
	// store's check of free space sees it, so that a write to the TSDB's
	// log fails: writes fail, retryably, and keep failing; Ready says so.
	tear := func() {
		t.Helper()
		s.space.mu.Lock()
		s.space.checked, s.space.err = time.Now().Add(time.Hour), nil
		s.space.mu.Unlock()
		fillDisk(t, hog)
		var failed error
		for range 20 {
			if failed = write(); failed != nil {
				break
			}
		}
		if !errors.Is(failed, storage.ErrUnavailable) {
			t.Fatalf("write on a full disk: %v, want storage.ErrUnavailable", failed)
		}
		if err := s.Ready(ctx); err == nil {
			t.Fatal("Ready on a full disk = nil")
		}
		for range 5 {
			if err := write(); !errors.Is(err, storage.ErrUnavailable) {
				t.Fatalf("write after a failed one: %v, want storage.ErrUnavailable", err)
			}
		}
	}
	// mended checks that a torn record was mended, so that the test
	// tests what it should.
	mended := func() {
		t.Helper()
		if !rec.said("A write to the TSDB's log failed") || !rec.said("Removed records torn by failed writes") {
			t.Fatal("no write to the TSDB's log failed, or no torn record was mended; the test does not test what it should")
		}
		rec.mu.Lock()
		rec.msgs = nil
		rec.mu.Unlock()
	}

	// Torn, and aiops restarts on the full disk: it opens with no more
	// room than its reserve, less than the TSDB's own repair needs, has
	// everything acknowledged, and takes writes once there is room.
	tear()
	s.Close()
	s = open()
	mended()
	check(t, s, acked, ackedLogs, ackedEvents)
	if err := os.Remove(hog); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the store to be ready after space came back", 30*time.Second, func() bool { return s.Ready(ctx) == nil })
	for range 20 {
		if err := write(); err != nil {
			t.Fatalf("write after space came back: %v", err)
		}
	}

	// Torn again, while aiops runs on: once there is room it reopens
	// its TSDB by itself and takes writes again.
	tear()
	if err := os.Remove(hog); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the store to be ready after space came back", 30*time.Second, func() bool { return s.Ready(ctx) == nil })
	mended()
	for range 20 {
		if err := write(); err != nil {
			t.Fatalf("write after space came back: %v", err)
		}
	}

	// The disk fills again and aiops restarts: everything acknowledged
	// is there.
	fillDisk(t, hog)
	s.Close()
	s = open()
	check(t, s, acked, ackedLogs, ackedEvents)
	t.Logf("%d batches acknowledged, %d attempted", len(acked), batch)
}

// check asserts that every acknowledged batch of samples (series ×
// perSeries samples of value b), log record and event is in s.
func check(t *testing.T, s *Store, acked map[int]bool, ackedLogs, ackedEvents []string) {
	t.Helper()
	const series, perSeries = 300, 10
	ctx := context.Background()
	q, err := s.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	got := map[int]int{} // batch → samples
	ss := q.Select(ctx, false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "m"))
	for ss.Next() {
		it := ss.At().Iterator(nil)
		for it.Next() != 0 {
			_, v := it.At()
			got[int(v)]++
		}
	}
	if err := ss.Err(); err != nil {
		t.Fatal(err)
	}
	for b := range acked {
		if got[b] != series*perSeries {
			t.Errorf("batch %d: %d samples after the restart, %d were acknowledged", b, got[b], series*perSeries)
		}
	}

	logs, err := s.QueryLogs(ctx, storage.LogQuery{Limit: 100_000})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, l := range logs {
		have[l.Body] = true
	}
	for _, body := range ackedLogs {
		if !have[body] {
			t.Errorf("log record %.6s was acknowledged and is gone", body)
		}
	}
	events, err := s.QueryEvents(ctx, storage.EventQuery{Limit: 100_000})
	if err != nil {
		t.Fatal(err)
	}
	have = map[string]bool{}
	for _, e := range events {
		have[e.ID] = true
	}
	for _, id := range ackedEvents {
		if !have[id] {
			t.Errorf("event %s was acknowledged and is gone", id)
		}
	}
}
