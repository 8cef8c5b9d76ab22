package collector

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/aiops-dev/aiops/collector/internal/queuestorage"
	"github.com/aiops-dev/aiops/collector/storeexporter"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	aiopsstorage "github.com/aiops-dev/aiops/storage"
)

// refusingStore refuses log writes, retryably, while refuse is set: a
// store on a full disk. attempts counts the writes it was asked for.
type refusingStore struct {
	aiopsstorage.Store
	refuse   atomic.Bool
	attempts atomic.Int64
}

func (s *refusingStore) AppendLogs(ctx context.Context, recs []aiopsstorage.LogRecord) error {
	s.attempts.Add(1)
	if s.refuse.Load() {
		return fmt.Errorf("embedded store: %w: disk almost full", aiopsstorage.ErrUnavailable)
	}
	return s.Store.AppendLogs(ctx, recs)
}

// TestQueueKeepsRequestsReadOnAFullDisk: acknowledged requests waiting in
// the persistent queue while its disk is full reach the store once the
// store takes them. Found from outside: aiops serve with its data dir on a
// small tmpfs, OTLP from several clients, the disk filled by another
// file; exporterhelper's queue deleted every request whose read it could
// not record on the full disk (90,300 acknowledged spans of 138,500 lost).
func TestQueueKeepsRequestsReadOnAFullDisk(t *testing.T) {
	ctx := context.Background()
	store := &refusingStore{Store: storetest.Embedded(t)}
	store.refuse.Store(true)
	f := storeexporter.NewFactory(storeexporter.Deps{Store: store, Logger: testutil.Logger(t)})
	cfg := f.CreateDefaultConfig().(*storeexporter.Config)
	cfg.Retry.InitialInterval, cfg.Retry.MaxInterval = 5*time.Millisecond, 20*time.Millisecond
	disk := &failingStorage{kv: map[string][]byte{}}
	diskID := component.MustNewID("queue_disk")
	q := exporterhelper.NewDefaultQueueConfig()
	q.Sizer, q.QueueSize, q.NumConsumers, q.StorageID = exporterhelper.RequestSizerTypeItems, 1000, 1, &diskID
	q.Batch = configoptional.None[exporterhelper.BatchConfig]()
	cfg.Queue = configoptional.Some(q)
	exp, err := f.CreateLogs(ctx, exportertest.NewNopSettings(f.Type()), cfg)
	if err != nil {
		t.Fatal(err)
	}
	host := extHost{map[component.ID]component.Component{diskID: queuestorage.Wrap(disk, testutil.Logger(t))}}
	if err := exp.Start(ctx, host); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exp.Shutdown(context.Background()) })

	const requests, per = 5, 10
	for i := range requests {
		if err := exp.ConsumeLogs(ctx, logRecordsFrom(i*per, per)); err != nil {
			t.Fatalf("request %d not queued: %v", i, err)
		}
	}
	// The one consumer holds the first request, retrying; the rest wait.
	testutil.WaitFor(t, "the store asked for the first request", 10*time.Second, func() bool { return store.attempts.Load() > 0 })
	disk.fail.Store(true)
	store.refuse.Store(false)
	count := func() int {
		recs, err := store.QueryLogs(ctx, aiopsstorage.LogQuery{Start: testutil.Epoch.Add(-time.Hour), End: testutil.Epoch.Add(time.Hour), Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		return len(recs)
	}
	testutil.WaitFor(t, "every acknowledged record stored while the queue's disk is full", 10*time.Second, func() bool {
		return count() == requests*per
	})
}

func logRecordsFrom(first, n int) plog.Logs {
	ld := logRecords(n, testutil.Epoch)
	lrs := ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords()
	for i := range n {
		lrs.At(i).Body().SetStr(fmt.Sprint("queued ", first+i))
	}
	return ld
}
