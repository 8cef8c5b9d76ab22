package main

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/aiops-dev/aiops/internal/chtest"
	"github.com/aiops-dev/aiops/storage"
	"github.com/aiops-dev/aiops/storage/clickhouse"
)

// retryNotices is a slog handler that reports every "retrying" warning of
// openStoreRetrying on a channel.
type retryNotices chan struct{}

func (retryNotices) Enabled(context.Context, slog.Level) bool { return true }
func (n retryNotices) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "ClickHouse unreachable; retrying" {
		select {
		case n <- struct{}{}:
		default:
		}
	}
	return nil
}
func (n retryNotices) WithAttrs([]slog.Attr) slog.Handler { return n }
func (n retryNotices) WithGroup(string) slog.Handler      { return n }

func waitNotices(t *testing.T, n retryNotices, count int) {
	t.Helper()
	for range count {
		select {
		case <-n:
		case <-time.After(time.Minute):
			t.Fatalf("fewer than %d retries within a minute", count)
		}
	}
}

// TestOpenStoreRetrying: ClickHouse down at start is tried again until it
// answers, and until the context ends if it never does, with the reason in
// the error.
func TestOpenStoreRetrying(t *testing.T) {
	srv := chtest.Start(t)
	cfg := StorageConfig{Backend: BackendClickHouse, ClickHouse: clickhouse.DefaultConfig()}
	cfg.ClickHouse.Addresses = []string{srv.NativeAddr()}
	cfg.ClickHouse.Database = srv.NewDatabase(t)
	cfg.ClickHouse.DialTimeout = model.Duration(time.Second)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}

	// Never reachable: attempts go on until the context ends.
	notices := make(retryNotices, 8)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		s, err := openStoreRetrying(ctx, cfg, slog.New(notices), prometheus.NewRegistry())
		if s != nil {
			s.Close()
		}
		done <- err
	}()
	waitNotices(t, notices, 2)
	cancel()
	if err := <-done; !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("after cancelling: %v, want the last attempt's ErrUnavailable", err)
	}

	// Reachable after a while: the store opens.
	notices = make(retryNotices, 8)
	go func() {
		s, err := openStoreRetrying(context.Background(), cfg, slog.New(notices), prometheus.NewRegistry())
		if s != nil {
			s.Close()
		}
		done <- err
	}()
	waitNotices(t, notices, 1)
	srv.Restart(t)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ClickHouse back: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("store not open two minutes after ClickHouse came back")
	}
}
