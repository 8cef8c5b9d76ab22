// Package embedded is the default aiops backend: everything in one data
// directory, no server to run. Metrics go to a Prometheus TSDB; logs,
// spans, events and metric metadata go to SQLite (modernc.org/sqlite, pure
// Go). Both survive a restart.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/aiops-dev/aiops/storage"
)

// Config configures the embedded store. YAML keys live under `storage.embedded`.
type Config struct {
	// DataDir holds the TSDB (DataDir/tsdb) and the SQLite file (DataDir/aiops.db).
	DataDir string `yaml:"data_dir"`
	// Retention is how long samples, logs and spans are kept. Events
	// (incidents, audit records) are kept for EventRetention.
	Retention model.Duration `yaml:"retention"`
	// EventRetention is how long events are kept; 0 keeps them forever.
	EventRetention model.Duration `yaml:"event_retention"`
	// OutOfOrderWindow is how far behind the newest sample of a series a
	// sample may arrive and still be accepted, e.g. when a queue replays
	// data after an outage.
	OutOfOrderWindow model.Duration `yaml:"out_of_order_window"`
}

// DefaultConfig returns the defaults for every key.
func DefaultConfig() Config {
	return Config{
		DataDir:          "data",
		Retention:        model.Duration(15 * 24 * time.Hour),
		OutOfOrderWindow: model.Duration(2 * time.Hour),
	}
}

// Validate reports the first invalid key.
func (c Config) Validate() error {
	switch {
	case c.DataDir == "":
		return errors.New("storage.embedded.data_dir: must not be empty")
	case c.Retention <= 0:
		return fmt.Errorf("storage.embedded.retention: must be > 0, got %s", c.Retention)
	case c.EventRetention < 0:
		return fmt.Errorf("storage.embedded.event_retention: must be >= 0, got %s", c.EventRetention)
	case c.OutOfOrderWindow < 0:
		return fmt.Errorf("storage.embedded.out_of_order_window: must be >= 0, got %s", c.OutOfOrderWindow)
	}
	return nil
}

// Store is the embedded backend. It implements storage.Store.
type Store struct {
	*tsdb.DB
	*Records
	logger *slog.Logger
	meta   *metadataCache
	// now is the clock retention is measured against.
	now func() time.Time

	stop     chan struct{}
	wg       sync.WaitGroup
	closeMu  sync.Mutex
	closed   bool
	closeErr error
}

var _ storage.Store = (*Store)(nil)

// Option changes how Open sets the store up.
type Option func(*Store)

// WithClock makes the store measure the retention of logs, spans and
// events against now instead of time.Now, so that tests can keep their
// data at fixed dates. The TSDB measures its own retention against the
// newest sample, not the clock.
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// Open opens (or creates) the store in cfg.DataDir. reg may be nil.
func Open(cfg Config, logger *slog.Logger, reg prometheus.Registerer, options ...Option) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	records, err := OpenRecords(cfg)
	if err != nil {
		return nil, err
	}

	opts := tsdb.DefaultOptions()
	opts.RetentionDuration = int64(time.Duration(cfg.Retention) / time.Millisecond)
	opts.OutOfOrderTimeWindow = int64(time.Duration(cfg.OutOfOrderWindow) / time.Millisecond)
	opts.EnableExemplarStorage = true
	opts.MaxExemplars = 100_000
	// Start timestamps from OTLP cumulative points are kept, so that rate()
	// and friends see counter resets the way the producer reported them.
	// Only the XOR2 chunk encoding stores them; Prometheus's own PromQL
	// acceptance suite runs on this combination.
	opts.EnableSTStorage = true
	opts.EnableHistogramSTEncoding = true
	opts.FloatChunkEncoding = chunkenc.EncXOR2
	tdb, err := tsdb.Open(filepath.Join(cfg.DataDir, "tsdb"), logger, reg, opts, tsdb.NewDBStats())
	if err != nil {
		records.Close()
		return nil, fmt.Errorf("open tsdb: %w", err)
	}
	s := &Store{
		DB:      tdb,
		Records: records,
		logger:  logger,
		now:     time.Now,
		stop:    make(chan struct{}),
	}
	for _, o := range options {
		o(s)
	}
	if s.meta, err = loadMetadata(records.db); err != nil {
		s.Close()
		return nil, err
	}
	s.wg.Add(1)
	go s.retentionLoop()
	return s, nil
}

// Ready reports whether the store can take writes.
func (s *Store) Ready(ctx context.Context) error {
	s.closeMu.Lock()
	closed := s.closed
	s.closeMu.Unlock()
	if closed {
		return fmt.Errorf("embedded store is closed: %w", storage.ErrUnavailable)
	}
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: %w: %w", storage.ErrUnavailable, err)
	}
	return nil
}

// Close flushes and closes the TSDB and the SQLite file. It is safe to call
// more than once.
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return s.closeErr
	}
	s.closed = true
	close(s.stop)
	s.wg.Wait()
	s.closeErr = errors.Join(s.DB.Close(), s.Records.Close())
	return s.closeErr
}

// retentionLoop deletes logs, spans and events past their retention; the
// TSDB enforces its own.
func (s *Store) retentionLoop() {
	defer s.wg.Done()
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if err := s.enforceRetention(context.Background(), s.now()); err != nil {
			s.logger.Warn("Enforcing retention failed", "err", err)
		}
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}
