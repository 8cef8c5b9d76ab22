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
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/aiops-dev/aiops/internal/diskspace"
	"github.com/aiops-dev/aiops/storage"
	"github.com/aiops-dev/aiops/storage/embedded/internal/walmend"
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
	// DiskReserveMiB is disk space kept free for the store's own needs:
	// writes are refused (retryably) while less is free, and as much
	// again is held in a reserve file that is given back when the disk
	// fills anyway, so that the store can reopen its log and restart on
	// a full disk. 0 turns both off.
	DiskReserveMiB int `yaml:"disk_reserve_mib"`
}

// DefaultConfig returns the defaults for every key.
func DefaultConfig() Config {
	return Config{
		DataDir:          "data",
		Retention:        model.Duration(15 * 24 * time.Hour),
		OutOfOrderWindow: model.Duration(2 * time.Hour),
		DiskReserveMiB:   64,
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
	case c.DiskReserveMiB < 0:
		return fmt.Errorf("storage.embedded.disk_reserve_mib: must be >= 0, got %d", c.DiskReserveMiB)
	}
	return nil
}

// minOpenBytes is the free space the TSDB needs to open: its head chunk
// files are preallocated (128 KiB each), and it writes a few small files.
const minOpenBytes = 1 << 20

// Store is the embedded backend. It implements storage.Store.
//
// Nothing acknowledged is lost when the disk fills: a commit is
// acknowledged once the TSDB has written it to its write-ahead log, and a
// write to the log that fails may leave a torn record in it, which the
// TSDB would repair at the next start by dropping everything after it.
// So after a failed write nothing more is acknowledged (commits fail
// with storage.ErrUnavailable, Ready says why) until the store has
// closed the TSDB, removed the torn record (walmend) and opened it
// again, which it does by itself in the background; the same mending
// runs before every open, so a crash on a full disk loses nothing
// either. See diskSpace for how the store keeps room for this.
type Store struct {
	*Records
	cfg    Config
	opts   *tsdb.Options
	logger *slog.Logger
	meta   *metadataCache
	reg    *tsdbRegisterer
	space  *diskSpace
	// now is the clock retention is measured against.
	now func() time.Time

	// gate holds the open TSDB and orders its uses against its closing.
	gate gate
	// last is the latest TSDB opened, for status reads that need no
	// lease (Head, BlockMetas).
	last atomic.Pointer[tsdb.DB]

	stateMu sync.Mutex
	// torn is why the log is not whole (a write to it failed); it is
	// cleared by a reopen. fatal is why the store cannot go on without a
	// restart.
	torn, fatal error
	// mend wakes the mender.
	mend chan struct{}

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
	s := &Store{
		Records: records,
		cfg:     cfg,
		opts:    opts,
		logger:  logger,
		reg:     &tsdbRegisterer{next: reg},
		space:   newDiskSpace(cfg.DataDir, int64(cfg.DiskReserveMiB)<<20),
		now:     time.Now,
		mend:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	for _, o := range options {
		o(s)
	}
	// The reserve gives the TSDB room to open, and is taken again once
	// there is room for it besides. Without room the TSDB panics as it
	// opens (it preallocates its head chunk files); say so instead.
	s.space.release()
	if free, err := diskspace.Free(cfg.DataDir); err == nil && free < minOpenBytes {
		records.Close()
		return nil, fmt.Errorf("open tsdb: %d KiB free in %s, and the TSDB needs about %d KiB to open: free some space (storage.embedded.disk_reserve_mib keeps room for this in advance)",
			free>>10, cfg.DataDir, minOpenBytes>>10)
	}
	db, err := s.openTSDB()
	if err != nil {
		records.Close()
		return nil, err
	}
	s.gate.put(db)
	if s.meta, err = loadMetadata(records.db); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.space.check(); err != nil {
		logger.Warn("Refusing writes until there is disk space", "err", err)
	}
	s.wg.Add(2)
	go s.retentionLoop()
	go s.mender()
	return s, nil
}

// openTSDB mends the TSDB's logs and opens it.
func (s *Store) openTSDB() (*tsdb.DB, error) {
	dir := filepath.Join(s.cfg.DataDir, "tsdb")
	for _, sub := range []string{"wal", "wbl"} {
		if _, err := walmend.Mend(filepath.Join(dir, sub), s.logger); err != nil {
			return nil, fmt.Errorf("open tsdb: %w", err)
		}
	}
	db, err := tsdb.Open(dir, s.logger, s.reg, s.opts, tsdb.NewDBStats())
	if err != nil {
		s.reg.reset()
		return nil, fmt.Errorf("open tsdb: %w", err)
	}
	s.last.Store(db)
	return db, nil
}

// leaseTimeout bounds how long closing the TSDB waits for the uses in
// flight (queries time out within it).
const leaseTimeout = 2 * time.Minute

// lease returns the open TSDB for one use, and the function that ends
// the use.
func (s *Store) lease() (*tsdb.DB, func(), error) {
	db, release := s.gate.acquire()
	if db == nil {
		return nil, nil, s.unavailable()
	}
	return db, release, nil
}

// unavailable says why the TSDB cannot be used.
func (s *Store) unavailable() error {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	switch {
	case s.fatal != nil:
		return fmt.Errorf("embedded store: %w: %w; restart aiops", storage.ErrUnavailable, s.fatal)
	case s.torn != nil:
		return fmt.Errorf("embedded store: %w: a write to the TSDB's log failed (%w); nothing more is taken until it is reopened", storage.ErrUnavailable, s.torn)
	}
	return fmt.Errorf("embedded store: the TSDB is closed or being reopened: %w", storage.ErrUnavailable)
}

// writable returns nil while commits may be acknowledged.
func (s *Store) writable() error {
	s.stateMu.Lock()
	bad := s.fatal != nil || s.torn != nil
	s.stateMu.Unlock()
	if bad {
		return s.unavailable()
	}
	if err := s.space.check(); err != nil {
		return fmt.Errorf("embedded store: %w: %w", storage.ErrUnavailable, err)
	}
	return nil
}

// afterWrite is called with what a commit or rollback of the TSDB
// returned. A failed write to the TSDB's logs since it was opened
// (counted by the TSDB, whichever appender it was) means a torn log:
// nothing more is acknowledged, this commit included, as its records may
// follow the torn one.
func (s *Store) afterWrite(err error) error {
	if s.reg.writeFailures() == 0 {
		return err
	}
	cause := err
	if cause == nil {
		cause = errors.New("a write to the TSDB's out-of-order log failed")
	}
	s.stateMu.Lock()
	first := s.torn == nil
	if first {
		s.torn = cause
	}
	s.stateMu.Unlock()
	if first {
		s.logger.Error("A write to the TSDB's log failed; refusing writes until it is reopened", "err", cause)
		// Room for the TSDB to close and reopen cleanly.
		s.space.release()
		select {
		case s.mend <- struct{}{}:
		default:
		}
	}
	return s.unavailable()
}

// mender reopens the TSDB after a failed write, so that its log is whole
// again, retrying while that fails.
func (s *Store) mender() {
	defer s.wg.Done()
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	wait := time.Second
	for {
		select {
		case <-s.stop:
			return
		case <-s.mend:
		case <-retry.C:
		}
		s.stateMu.Lock()
		need := s.torn != nil && s.fatal == nil
		s.stateMu.Unlock()
		if !need {
			continue
		}
		if err := s.reopen(); err != nil {
			s.logger.Error("Reopening the TSDB failed; retrying", "in", wait, "err", err)
			retry.Reset(wait)
			wait = min(2*wait, 30*time.Second)
			continue
		}
		wait = time.Second
	}
}

// reopen closes the TSDB and opens it again, which mends its log.
func (s *Store) reopen() error {
	old, abandoned := s.gate.take(leaseTimeout)
	if abandoned > 0 {
		s.logger.Warn("Closing the TSDB with uses still in flight (an appender never committed or rolled back?)", "leases", abandoned)
	}
	if old != nil {
		if err := closeTSDB(old); err != nil {
			var p *tsdbPanic
			if errors.As(err, &p) {
				// Half closed: its files may still be written to.
				s.stateMu.Lock()
				s.fatal = err
				s.stateMu.Unlock()
				s.logger.Error("Closing the TSDB failed; restart aiops", "err", err)
				return nil
			}
			// What it could not write (the last page of its log) was
			// never acknowledged.
			s.logger.Warn("Closing the TSDB after a failed write", "err", err)
		}
	}
	s.reg.reset()
	db, err := s.openTSDB()
	if err != nil {
		return err
	}
	s.gate.put(db)
	s.stateMu.Lock()
	s.torn = nil
	s.stateMu.Unlock()
	s.logger.Info("Reopened the TSDB; its log is whole again")
	return nil
}

// tsdbPanic is a panic of the TSDB while closing: it panics on a failed
// write of head chunks.
type tsdbPanic struct{ v any }

func (p *tsdbPanic) Error() string { return fmt.Sprintf("tsdb panicked: %v", p.v) }

func closeTSDB(db *tsdb.DB) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &tsdbPanic{v}
		}
	}()
	return db.Close()
}

// Ready reports whether the store can take writes and keep them.
func (s *Store) Ready(ctx context.Context) error {
	s.closeMu.Lock()
	closed := s.closed
	s.closeMu.Unlock()
	if closed {
		return fmt.Errorf("embedded store is closed: %w", storage.ErrUnavailable)
	}
	if err := s.writable(); err != nil {
		return err
	}
	if err := s.Records.db.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: %w: %w", storage.ErrUnavailable, err)
	}
	return nil
}

// Healthy returns an error when the store cannot recover without a
// restart.
func (s *Store) Healthy() error {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if s.fatal != nil {
		return fmt.Errorf("embedded store: %w", s.fatal)
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
	var dbErr error
	db, abandoned := s.gate.take(leaseTimeout)
	if abandoned > 0 {
		s.logger.Warn("Closing the TSDB with uses still in flight (an appender never committed or rolled back?)", "leases", abandoned)
	}
	if db != nil {
		dbErr = closeTSDB(db)
	}
	s.closeErr = errors.Join(dbErr, s.Records.Close())
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

// AppendLogs stores log records, refusing them (retryably) while the
// disk is almost full.
func (s *Store) AppendLogs(ctx context.Context, records []storage.LogRecord) error {
	if err := s.space.check(); err != nil {
		return fmt.Errorf("embedded store: %w: %w", storage.ErrUnavailable, err)
	}
	return s.Records.AppendLogs(ctx, records)
}

// AppendSpans stores spans, refusing them (retryably) while the disk is
// almost full.
func (s *Store) AppendSpans(ctx context.Context, spans []storage.Span) error {
	if err := s.space.check(); err != nil {
		return fmt.Errorf("embedded store: %w: %w", storage.ErrUnavailable, err)
	}
	return s.Records.AppendSpans(ctx, spans)
}
